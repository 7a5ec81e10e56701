"""Layers and models: behaviour, bad input, frozen tables, hooks, modes, jit training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxembed as je
from jaxembed.models import DEFAULT_DOMAINS, SearchCTR, WideAndDeep, sigmoid_cross_entropy
from jaxembed.nn import (
    Embed,
    EmbedBag,
    FrozenTable,
    apply_constraints,
    keep_ids_hashed,
    keep_rows,
    l2_rows,
    l2_table,
    max_norm,
    max_norm_constraint,
)
from jaxembed.text import write_glove_text, write_word2vec_binary, write_word2vec_text

TABLE = np.arange(24, dtype=np.float32).reshape(6, 4) / 8.0
IDS = np.array([[1, 0, 5], [2, -1, 1]], np.int32)


def paths(tree) -> list[str]:
    return ["/".join(map(str, p)) for p, _ in nnx.to_flat_state(tree)]


# --- Embed ------------------------------------------------------------------------------------
def test_embed_looks_up_rows_and_pads_with_zeros():
    layer, keys = Embed.from_pretrained(TABLE, freeze=False)
    assert keys is None
    out = np.asarray(layer(IDS))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out[0], TABLE[[1, 0, 5]])
    np.testing.assert_array_equal(out[1, 1], 0.0)


def test_embed_default_init_and_dtypes():
    layer = Embed(1000, 16, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    table = layer.embedding[...]
    assert table.dtype == jnp.float32 and table.shape == (1000, 16)
    norms = np.sum(np.asarray(table) ** 2, axis=1)
    assert 0.8 < norms.mean() < 1.2  # rows ~ N(0, 1/K): squared norm 1 on average
    assert layer(IDS).dtype == jnp.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"num_embeddings": 0}, ValueError),
        ({"features": -1}, ValueError),
        ({"lookup_style": "scatter"}, ValueError),
        ({"max_norm": 0.0}, ValueError),
        ({"dropout": 1.0}, ValueError),
        ({"dropout": -0.1}, ValueError),
        ({"dropout_draw": "coin"}, ValueError),
        ({"freeze": True, "embeddings_constraint": max_norm(1.0)}, ValueError),
    ],
)
def test_embed_rejects_bad_configuration(kwargs, error):
    args = {"num_embeddings": 6, "features": 4, **kwargs}
    with pytest.raises(error):
        Embed(args.pop("num_embeddings"), args.pop("features"), rngs=nnx.Rngs(0), **args)


def test_embed_rejects_bad_ids():
    layer, _ = Embed.from_pretrained(TABLE)
    with pytest.raises(IndexError, match="id 6 at position"):
        layer(np.array([1, 6]))
    with pytest.raises(IndexError, match="id -2"):
        layer(np.array([-2]))
    with pytest.raises(TypeError, match="integer dtype"):
        layer(np.array([1.0]))


def test_mask_zero_follows_keras():
    """Id 0 still looks up W[0]; the mask marks it (and padding) for the caller."""
    layer, _ = Embed.from_pretrained(TABLE, mask_zero=True)
    np.testing.assert_array_equal(np.asarray(layer(IDS))[0, 1], TABLE[0])
    np.testing.assert_array_equal(layer.compute_mask(IDS), IDS > 0)
    plain, _ = Embed.from_pretrained(TABLE)
    np.testing.assert_array_equal(plain.compute_mask(IDS), IDS != -1)


def test_attend_is_query_times_table_transposed():
    layer, _ = Embed.from_pretrained(TABLE)
    query = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layer.attend(query), query @ TABLE.T, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="last axis must be features=4"):
        layer.attend(np.ones((2, 3)))


def test_max_norm_clips_looked_up_rows_not_the_table():
    layer, _ = Embed.from_pretrained(TABLE, max_norm=1.0)
    out = np.asarray(layer(np.array([5])))
    assert np.linalg.norm(out) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_array_equal(layer.embedding[...], TABLE)


# --- dropout ----------------------------------------------------------------------------------
def test_dropout_is_off_in_eval_mode_and_on_in_train_mode():
    table = np.ones((50, 3), np.float32)
    ids = np.arange(50)
    layer, _ = Embed.from_pretrained(table, dropout=0.5, rngs=nnx.Rngs(dropout=1))
    first, second = np.asarray(layer(ids)), np.asarray(layer(ids))
    assert set(np.unique(first)) == {0.0, 2.0}
    assert not np.array_equal(first, second)  # the stream advances: a new mask each call
    np.testing.assert_array_equal(layer(ids, deterministic=True), table)
    layer.eval()
    np.testing.assert_array_equal(layer(ids), table)
    layer.train()
    assert set(np.unique(np.asarray(layer(ids)))) == {0.0, 2.0}
    np.testing.assert_array_equal(nnx.view(layer, deterministic=True)(ids), table)
    key = jax.random.key(7)
    np.testing.assert_array_equal(layer(ids, rngs=key), layer(ids, rngs=key))


def test_dropout_under_jit_draws_a_new_mask_each_step():
    layer, _ = Embed.from_pretrained(
        np.ones((50, 3), np.float32), dropout=0.5, rngs=nnx.Rngs(dropout=2)
    )
    forward = nnx.jit(lambda m, ids: m(ids))
    ids = jnp.arange(50)
    first, second = np.asarray(forward(layer, ids)), np.asarray(forward(layer, ids))
    assert set(np.unique(first)) == {0.0, 2.0}
    assert not np.array_equal(first, second)


def test_dropout_without_rngs_is_an_error():
    with pytest.raises(ValueError, match="needs rngs"):
        Embed.from_pretrained(TABLE, dropout=0.5)


@pytest.mark.parametrize("rate", [0.1, 0.7])
def test_both_draws_keep_rows_with_probability_one_minus_rate(rate):
    """Binomial check, 6 standard deviations (deterministic keys: never flaky)."""
    n = 100_000
    sd = np.sqrt(n * rate * (1 - rate))
    key = jax.random.key(3)
    for kept in (keep_rows(key, n, rate), keep_ids_hashed(key, jnp.arange(n), rate)):
        assert abs(int(jnp.sum(kept)) - n * (1 - rate)) < 6 * sd


def test_hashed_draw_is_independent_of_position_and_batch():
    key = jax.random.key(0)
    a = keep_ids_hashed(key, jnp.array([3, 9, 3, 4]), 0.5)
    b = keep_ids_hashed(key, jnp.array([[4, 9], [3, 3]]), 0.5)
    assert a[0] == a[2] == b[1, 0] == b[1, 1] and a[1] == b[0, 1] and a[3] == b[0, 0]


# --- EmbedBag ---------------------------------------------------------------------------------
def test_embedbag_pools_each_bag():
    bags = je.Bags.from_lists([[1, 1, 2], [], [5]])
    layer, _ = EmbedBag.from_pretrained(TABLE, combiner="sum")
    out = np.asarray(layer(bags))
    np.testing.assert_allclose(out[0], 2 * TABLE[1] + TABLE[2])
    np.testing.assert_array_equal(out[1], 0.0)
    with pytest.raises(ValueError, match="combiner"):
        EmbedBag(6, 4, combiner="median", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="Bags"):
        layer(np.array([[1, 2]]))
    with pytest.raises(ValueError, match="max"):
        EmbedBag.from_pretrained(TABLE, combiner="max")[0](
            je.Bags.from_lists([[1]], weights=[[2.0]])
        )


# --- pretrained and frozen tables -------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "write"),
    [
        ("word2vec_text", write_word2vec_text),
        ("word2vec_binary", write_word2vec_binary),
        ("glove_text", write_glove_text),
    ],
)
def test_from_pretrained_reads_vector_files(tmp_path, fmt, write):
    keys = ["a", "b", "c", "d", "e", "f"]
    write(tmp_path / "v", keys, TABLE)
    layer, index_to_key = Embed.from_pretrained(tmp_path / "v", format=fmt)
    assert index_to_key == keys
    np.testing.assert_array_equal(layer(np.array([keys.index("c")])), TABLE[[2]])
    bag, _ = EmbedBag.from_pretrained(str(tmp_path / "v"), format=fmt, combiner="mean")
    np.testing.assert_allclose(bag(je.Bags.from_lists([[0, 1]])), TABLE[[0, 1]].mean(0)[None])


def test_from_pretrained_needs_a_known_format(tmp_path):
    write_word2vec_text(tmp_path / "v", ["a"], TABLE[:1])
    with pytest.raises(ValueError, match="format must be one of"):
        Embed.from_pretrained(tmp_path / "v")
    with pytest.raises(ValueError, match="for files"):
        Embed.from_pretrained(TABLE, format="glove_text")
    with pytest.raises(ValueError, match="not finite"):
        Embed.from_pretrained(np.array([[1.0, np.nan]], np.float32))


class Tower(nnx.Module):
    """A frozen pretrained Embed under a trainable dense layer."""

    def __init__(self, freeze: bool):
        self.embed, _ = Embed.from_pretrained(TABLE, freeze=freeze)
        self.dense = nnx.Linear(4, 1, rngs=nnx.Rngs(0))

    def __call__(self, ids):
        return self.dense(self.embed(ids)).sum()


def test_frozen_table_is_never_updated():
    model = Tower(freeze=True)
    assert isinstance(model.embed.embedding, FrozenTable)
    optimizer = nnx.Optimizer(model, optax.adam(0.1), wrt=nnx.Param)
    grads = nnx.grad(lambda m: m(IDS))(model)
    assert "embed/embedding" not in paths(grads)
    kernel = np.asarray(model.dense.kernel[...])
    optimizer.update(model, grads)
    np.testing.assert_array_equal(model.embed.embedding[...], TABLE)
    assert not np.array_equal(model.dense.kernel[...], kernel)
    # even differentiating every variable gives the table no gradient
    everything = nnx.grad(lambda m: m(IDS), argnums=nnx.DiffState(0, nnx.Variable))(model)
    np.testing.assert_array_equal(everything["embed"]["embedding"][...], 0.0)


def test_unfrozen_pretrained_table_trains():
    model = Tower(freeze=False)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    optimizer.update(model, nnx.grad(lambda m: m(IDS))(model))
    assert not np.array_equal(model.embed.embedding[...], TABLE)


# --- regularizers and constraints -------------------------------------------------------------
def test_regularizers_and_their_hooks():
    bags = je.Bags.from_lists([[1, 1, 2], [], [2]])
    sq = np.sum(TABLE.astype(np.float64) ** 2, axis=1)
    assert float(l2_table(0.5)(jnp.asarray(TABLE))) == pytest.approx(0.5 * sq.sum(), rel=1e-6)
    assert float(l2_rows(2.0)(TABLE, bags)) == pytest.approx(2 * (sq[1] + sq[2]), rel=1e-6)
    assert float(l2_rows(2.0, unique=False)(TABLE, bags)) == pytest.approx(
        2 * (2 * sq[1] + 2 * sq[2]), rel=1e-6
    )
    assert float(l2_rows(1.0)(TABLE, np.array([-1, -1]))) == 0.0
    layer, _ = EmbedBag.from_pretrained(TABLE, freeze=False, embeddings_regularizer=l2_rows(1.0))
    assert float(layer.regularization(bags)) == pytest.approx(sq[1] + sq[2], rel=1e-6)
    plain, _ = Embed.from_pretrained(TABLE)
    assert float(plain.regularization(IDS)) == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        l2_rows(-1.0)


def test_max_norm_constraint_renormalizes_long_rows_only():
    table = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], np.float32)
    out = np.asarray(max_norm_constraint(table, 1.0))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="max_norm"):
        max_norm_constraint(table, 0.0)


def test_apply_constraints_after_an_optimizer_step():
    layer = Embed(6, 4, embeddings_constraint=max_norm(0.5), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(layer, optax.sgd(10.0), wrt=nnx.Param)
    optimizer.update(layer, nnx.grad(lambda m: -jnp.sum(m(IDS)))(layer))
    assert np.linalg.norm(np.asarray(layer.embedding[...]), axis=1).max() > 0.5
    apply_constraints(layer)
    assert np.linalg.norm(np.asarray(layer.embedding[...]), axis=1).max() <= 0.5 + 1e-6


# --- SearchCTR --------------------------------------------------------------------------------
# One vocabulary size for every domain and one configuration for every test: the compiled
# initializers and layers are shared (compiling is what costs time here).
DOMAINS = dict.fromkeys(DEFAULT_DOMAINS, 32)
NUM_STATS, WIDE_SIZE, B = 3, 64, 16


def random_batch(
    rng: np.random.Generator, domains=DOMAINS, num_stats=NUM_STATS, wide_size=WIDE_SIZE
):
    def bags(vocab):
        lists = [list(rng.integers(0, vocab, rng.integers(0, 5))) for _ in range(B)]
        return je.Bags.from_lists(lists, width=4)

    batch = {name: bags(v) for name, v in domains.items()}
    batch["wide"] = bags(wide_size)
    batch["stats"] = rng.normal(size=(B, num_stats)).astype(np.float32)
    return batch


@pytest.fixture(scope="module")
def ctr_model():
    return SearchCTR(DOMAINS, NUM_STATS, WIDE_SIZE, rngs=nnx.Rngs(0))


def test_search_ctr_has_the_eight_layers_and_named_paths(ctr_model):
    model = ctr_model
    names = paths(nnx.state(model, nnx.Param))
    for d in DOMAINS:
        assert f"behavior/{d}/embed/embedding" in names
        assert f"behavior/{d}/dense/layers/1/kernel" in names
    assert {"wide/kernel", "wide/bias", "prediction/layers/2/kernel"} <= set(names)
    assert [n for n in names if "embed" in n] == sorted(
        f"behavior/{d}/embed/embedding" for d in DOMAINS
    )
    # the layer widths: 16 (sparse inner product), 16, 32 per domain; 64, 64, 1 after concat
    assert model.behavior["item"].embed.embedding[...].shape == (32, 16)
    assert [l.kernel[...].shape for l in model.behavior["item"].dense.layers] == [
        (16, 16),
        (16, 32),
    ]
    assert [l.kernel[...].shape for l in model.prediction.layers] == [
        (32 * 6, 64),
        (64, 64),
        (64, 1),
    ]
    assert [l.kernel[...].shape for l in model.stats_tower.layers] == [(3, 32), (32, 16), (16, 1)]


def test_search_ctr_logit_is_deep_plus_wide_plus_stats(ctr_model):
    """Recompute the forward pass by hand from the parameters (ReLU, tanh, sigmoid)."""
    model = nnx.clone(ctr_model)
    wide_weights = np.arange(WIDE_SIZE, dtype=np.float32) / WIDE_SIZE
    model.wide.kernel[...] = jnp.asarray(wide_weights)[:, None]
    batch = random_batch(np.random.default_rng(0))

    def dense(layer, x):
        return x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])

    parts = []
    for name in DOMAINS:
        net = model.behavior[name]
        x = np.asarray(je.multi_hot(batch[name], net.embed.num_embeddings))
        h = x @ np.asarray(net.embed.embedding[...])
        for layer in net.dense.layers:
            h = np.maximum(dense(layer, h), 0)
        parts.append(h)
    h = np.concatenate(parts, axis=1)
    p0, p1, p2 = model.prediction.layers
    deep = dense(p2, np.maximum(dense(p1, np.maximum(dense(p0, h), 0)), 0))[:, 0]
    wide = np.asarray(je.multi_hot(batch["wide"], WIDE_SIZE)) @ wide_weights
    s0, s1, s2 = model.stats_tower.layers
    stats = dense(s2, 1 / (1 + np.exp(-dense(s1, np.tanh(dense(s0, batch["stats"]))))))[:, 0]
    np.testing.assert_allclose(model(batch), deep + wide + stats, rtol=1e-4, atol=1e-5)


def test_search_ctr_trains_under_jit(ctr_model):
    model = nnx.clone(ctr_model)
    optimizer = nnx.Optimizer(model, optax.sgd(0.3), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    batch = random_batch(rng)
    labels = jnp.asarray(rng.integers(0, 2, B), jnp.float32)

    @nnx.jit
    def train_step(model, optimizer, batch, labels):
        def loss_fn(model):
            return jnp.mean(sigmoid_cross_entropy(model(batch), labels))

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer, batch, labels)) for _ in range(20)]
    assert losses[-1] < 0.75 * losses[0], losses


def test_search_ctr_without_wide_or_stats():
    model = SearchCTR({"item": 32}, 0, 0, rngs=nnx.Rngs(0))
    assert model.wide is None and model.stats_tower is None
    assert paths(nnx.state(model, nnx.Param))[-1] == "prediction/layers/2/kernel"
    batch = random_batch(np.random.default_rng(3))
    assert model({"item": batch["item"]}).shape == (B,)


def test_search_ctr_rejects_bad_configuration_and_batches(ctr_model):
    with pytest.raises(ValueError, match="reserved"):
        SearchCTR({"wide": 5}, 1, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="non-empty dict"):
        SearchCTR({}, 1, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"domains\['item'\]"):
        SearchCTR({"item": 0}, 1, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="prediction_widths"):
        SearchCTR({"item": 5}, 1, 1, rngs=nnx.Rngs(0), prediction_widths=(0,))
    with pytest.raises(ValueError, match="combiner"):
        SearchCTR({"item": 5}, 1, 1, rngs=nnx.Rngs(0), combiner="median")
    good = random_batch(np.random.default_rng(2))
    bad_item = je.Bags.from_lists([[32]] + [[]] * (B - 1))
    with pytest.raises(ValueError, match="no 'user' entry"):
        ctr_model({k: v for k, v in good.items() if k != "user"})
    with pytest.raises(TypeError, match=r"must be a jaxembed\.Bags"):
        ctr_model({**good, "item": np.zeros((B, 1), np.int32)})
    with pytest.raises(ValueError, match="disagree on the batch size"):
        ctr_model({**good, "user": je.Bags.from_lists([[0]])})
    with pytest.raises(ValueError, match=r"stats must be \[B, 3\]"):
        ctr_model({**good, "stats": np.zeros((B, 2), np.float32)})
    with pytest.raises(IndexError, match="id 32"):
        ctr_model({**good, "item": bad_item})


def test_sigmoid_cross_entropy_checks_labels():
    with pytest.raises(ValueError, match="outside"):
        sigmoid_cross_entropy(np.zeros(2), np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        sigmoid_cross_entropy(np.zeros(2), np.zeros(3))


# --- WideAndDeep ------------------------------------------------------------------------------
def test_wide_and_deep_paths_and_training():
    categorical = {"country": 32, "app": 32}
    model = WideAndDeep(
        WIDE_SIZE, categorical, NUM_STATS, rngs=nnx.Rngs(0), embed_dim=16, hidden_widths=(64, 64)
    )
    names = paths(nnx.state(model, nnx.Param))
    assert {"wide/kernel", "embed/app/embedding", "deep/layers/2/kernel"} <= set(names)
    rng = np.random.default_rng(1)
    batch = random_batch(rng, categorical)
    batch["dense"] = batch.pop("stats")
    labels = jnp.asarray(rng.integers(0, 2, B), jnp.float32)
    optimizer = nnx.Optimizer(model, optax.adam(0.01), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, batch):
        loss, grads = nnx.value_and_grad(
            lambda m: jnp.mean(sigmoid_cross_entropy(m(batch), labels))
        )(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer, batch)) for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0], losses
    with pytest.raises(ValueError, match="no 'dense' entry"):
        model({k: v for k, v in batch.items() if k != "dense"})
