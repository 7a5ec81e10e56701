"""The model zoo (FM, DeepFM, DCN-V2, xDeepFM, AutoInt, DIN, and LR / Wide & Deep): each
builds from a ModelInputs by name, runs jitted, has finite gradients, keeps to the gathered-
rows contract (``head(gather_rows(...)) == model(batch)``, and the row gradients scatter to the
tables' gradients), and bad input is named."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxembed as je
from jaxembed.models import registry
from jaxembed.models.inputs import FieldSpec, ModelInputs, TableSpec
from jaxembed.nn.ctr import sigmoid_cross_entropy
from jaxembed.nn.fields import Table, gather_rows, module_rows, table_fields

B = 8
INPUTS = ModelInputs(
    tables=(TableSpec("item", 40, 4), TableSpec("user", 30, 4), TableSpec("tag", 20, 4)),
    fields=(FieldSpec("item", "item"),
            FieldSpec("user", "user", combiner="mean"),
            FieldSpec("recent", "item", combiner="mean", multi=True, width=4),
            FieldSpec("tags", "tag", combiner="sqrtn", multi=True, width=4)),
    num_dense=2, wide_size=16)
SMALL = {  # small towers: the tests check wiring, not capacity, and compile faster
    "autoint": {"layers": 2, "hidden": (8,)},
    "dcnv2": {"hidden": (8,)},
    "deepfm": {"hidden": (8,)},
    "din": {"att_hidden": (8,), "hidden": (8,)},
    "fm": {},
    "lr": {},
    "search_ctr": {"domains": {"goods": ["item", "recent"]}, "behavior": (4, 8),
                   "prediction": (8,), "stats": (4, 4)},
    "wide_deep": {"hidden": (8,)},
    "xdeepfm": {"cin_layers": (4, 3), "hidden": (8,)},
}
VARIANTS = [(name, SMALL[name]) for name in sorted(SMALL)] + [
    ("dcnv2", {"hidden": (8,), "structure": "stacked", "low_rank": 2, "num_experts": 3,
               "expert_activation": "tanh"}),
    ("xdeepfm", {"cin_layers": (3, 3), "split_half": False, "hidden": ()}),
    ("autoint", {"layers": 1, "residual": False, "hidden": ()}),
    ("autoint", {"layers": 1, "dense_interactions": True, "hidden": ()}),
    ("fm", {"dense_interactions": True}),
    ("deepfm", {"hidden": (8,), "dense_interactions": True}),
]


def make_batch(seed: int = 0) -> tuple[dict, jax.Array]:
    rng = np.random.default_rng(seed)
    recent = rng.integers(-1, 40, (B, 4))
    recent[0] = [3, 3, -1, -1]  # a duplicate
    recent[1] = -1  # an empty history
    batch = {
        "item": je.Bags(rng.integers(0, 40, (B, 1))),
        "user": je.Bags(rng.integers(0, 30, (B, 1))),
        "recent": je.Bags(recent),
        "tags": je.Bags(rng.integers(-1, 20, (B, 4)),
                        rng.uniform(0.5, 2.0, (B, 4)).astype(np.float32)),
        "dense": rng.normal(size=(B, 2)).astype(np.float32),
        "wide": je.Bags(rng.integers(-1, 16, (B, 2))),
    }
    return batch, jnp.asarray(rng.integers(0, 2, B), jnp.float32)


@pytest.mark.parametrize(("name", "hyper"), VARIANTS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
def test_model_keeps_the_gathered_rows_contract(name, hyper):
    model = registry.build(name, INPUTS, seed=1, **hyper)
    batch, labels = make_batch()
    fields = table_fields(model)
    assert fields, f"{name} owns no Table"
    for key, names in fields.items():
        assert names, key
    graphdef, tables, rest = nnx.split(model, Table, ...)
    table_values = {v.get_metadata()["table_key"]: v[...]
                    for _, v in nnx.to_flat_state(tables)}

    def loss_tables(tables, rest):
        return jnp.mean(sigmoid_cross_entropy(nnx.merge(graphdef, tables, rest)(batch), labels))

    def loss_rows(rows, rest):
        m = nnx.merge(graphdef, tables, rest)
        return jnp.mean(sigmoid_cross_entropy(m.head(rows, batch), labels))

    @jax.jit
    def everything(table_values, tables, rest):
        rows = gather_rows(table_values, fields, batch)
        logits = nnx.merge(graphdef, tables, rest)(batch)
        head = nnx.merge(graphdef, tables, rest).head(rows, batch)
        return (rows, logits, head, jax.grad(loss_tables, argnums=(0, 1))(tables, rest),
                jax.grad(loss_rows, argnums=(0, 1))(rows, rest))

    _, logits, head, (g_tables, g_rest), (g_rows, g_rest_rows) = everything(
        table_values, tables, rest)
    assert logits.shape == (B,) and bool(jnp.all(jnp.isfinite(logits)))
    np.testing.assert_allclose(head, logits, rtol=1e-5, atol=1e-6)
    for leaf in jax.tree.leaves((g_tables, g_rest, g_rows)):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    # the row gradients, scattered to their ids, are the tables' gradients (row-sparse update)
    for _, variable in nnx.to_flat_state(g_tables):
        key = variable.get_metadata()["table_key"]
        dense = variable[...]
        scattered = jnp.zeros_like(dense)
        for field in fields[key]:
            bags = batch[field]
            ids = jnp.where(bags.mask, bags.ids, dense.shape[0]).reshape(-1)
            scattered = scattered.at[ids].add(
                g_rows[key][field].reshape(-1, dense.shape[1]), mode="drop")
        np.testing.assert_allclose(scattered, dense, rtol=1e-4, atol=1e-7, err_msg=key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
                 g_rest, g_rest_rows)


@pytest.mark.parametrize(("name", "hyper"), VARIANTS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(VARIANTS)])
def test_an_abstract_build_has_the_concrete_structure(name, hyper):
    """``registry.build(..., abstract=True)`` (what a loaded run restores into) has the
    concrete model's graph and every parameter's shape and dtype, and no value."""
    concrete = registry.build(name, INPUTS, seed=0, **hyper)
    abstract = registry.build(name, INPUTS, seed=0, abstract=True, **hyper)
    graph, state = nnx.split(concrete)
    abstract_graph, abstract_state = nnx.split(abstract)
    assert graph == abstract_graph
    leaves, shapes = jax.tree.leaves(state), jax.tree.leaves(abstract_state)
    assert len(leaves) == len(shapes) > 0
    for leaf, shape in zip(leaves, shapes, strict=True):
        assert isinstance(shape, jax.ShapeDtypeStruct)
        assert (shape.shape, shape.dtype) == (leaf.shape, leaf.dtype)


def test_registry_lists_the_zoo():
    assert {"fm", "deepfm", "dcnv2", "xdeepfm", "autoint", "din"} <= set(registry.available())
    with pytest.raises(ValueError, match="unknown model 'fmm'; available: autoint, dcnv2"):
        registry.build("fmm", INPUTS)
    with pytest.raises(ValueError, match="no hyperparameter 'depth'"):
        registry.build("dcnv2", INPUTS, depth=3)


def test_models_needing_one_dim_name_the_field():
    mixed = ModelInputs(tables=(TableSpec("a", 5, 4), TableSpec("b", 5, 6)),
                        fields=(FieldSpec("x", "a"), FieldSpec("y", "b")))
    for name in ("fm", "deepfm", "xdeepfm", "autoint"):
        with pytest.raises(ValueError, match=rf"{name} needs .*field 'y' \(table 'b'\) has dim 6"):
            registry.build(name, mixed)
    for name in ("dcnv2", "wide_deep", "lr"):  # concatenating models take any dims
        assert registry.build(name, mixed, **SMALL[name]) is not None


def test_din_needs_a_history():
    flat = ModelInputs(tables=(TableSpec("item", 5, 4), TableSpec("tag", 5, 4)),
                       fields=(FieldSpec("item", "item"),
                               FieldSpec("tags", "tag", multi=True, width=2)))
    with pytest.raises(ValueError, match='din needs a multi-valued field with share = "<field>"'):
        registry.build("din", flat)
    with pytest.raises(ValueError, match=r'din target \'item\' has no history: .*share = "item"'):
        registry.build("din", flat, target="item")
    with pytest.raises(ValueError, match="din target 'tags' is multi-valued"):
        registry.build("din", flat, target="tags")
    with pytest.raises(ValueError, match="din target 'nope' is not a field"):
        registry.build("din", flat, target="nope")
    assert registry.build("din", INPUTS).target == "item"
    assert registry.build("din", INPUTS).histories == ("recent",)


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match=r"structure must be one of .* got 'serial'"):
        registry.build("dcnv2", INPUTS, structure="serial")
    with pytest.raises(ValueError, match="need low_rank"):
        registry.build("dcnv2", INPUTS, num_experts=4)
    with pytest.raises(ValueError, match=r"cin_layers\[0\] = 5 must be even"):
        registry.build("xdeepfm", INPUTS, cin_layers=(5, 4))
    with pytest.raises(ValueError, match="att_activation must be one of"):
        registry.build("din", INPUTS, att_activation="dice")
    with pytest.raises(ValueError, match="hidden must be positive ints"):
        registry.build("deepfm", INPUTS, hidden=(8, 0))
    with pytest.raises(ValueError, match="dense_interactions must be true or false, got 'yes'"):
        registry.build("fm", INPUTS, dense_interactions="yes")


def test_din_attention_is_masked_and_unnormalized():
    model = registry.build("din", INPUTS, **SMALL["din"])
    batch, _ = make_batch()
    rows = module_rows(model, batch)
    h = model.fields.rows(rows, "recent")
    a = model.attention(h, model.fields.pooled(rows, batch, "item"), batch["recent"])
    assert bool(jnp.all(jnp.where(batch["recent"].mask, True, a == 0)))
    assert not np.allclose(np.asarray(a[2:]).sum(1), 1.0)  # not a softmax
