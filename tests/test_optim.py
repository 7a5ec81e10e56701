"""Behaviour and bad input of jaxembed.optim: ftrl, partitioned, the sparse rules, the bench."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxembed as je
from jaxembed.optim.ftrl import FtrlState, ftrl
from jaxembed.optim.partition import label_by_path, param_path, partitioned
from jaxembed.optim.sparse import sparse_adagrad, sparse_adam, sparse_ftrl, sparse_sgd

# --------------------------------------------------------------------------------- ftrl


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be finite"),
        ({"learning_rate": 0.1, "learning_rate_power": 0.5}, "learning_rate_power must be <= 0"),
        (
            {"learning_rate": 0.1, "initial_accumulator_value": -0.1},
            "initial_accumulator_value must be >= 0",
        ),
        ({"learning_rate": 0.1, "l1": -1.0}, "l1 must be >= 0"),
        ({"learning_rate": 0.1, "l2": -1.0}, "l2 must be >= 0"),
        ({"learning_rate": 0.1, "l2_shrinkage": -1.0}, "l2_shrinkage must be >= 0"),
        ({"learning_rate": 0.1, "beta": -1.0}, "beta must be >= 0"),
    ],
)
def test_ftrl_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ftrl(**kwargs)


def test_ftrl_rejects_non_numbers():
    with pytest.raises(TypeError, match="learning_rate must be a concrete real number"):
        ftrl("fast")


def test_ftrl_zero_curvature_gives_zero_not_inf():
    """n0 = 0, l2 = beta = 0, g = 0 but shrinkage makes z != 0: TF gives ±inf, ftrl gives 0."""
    tx = ftrl(0.1, initial_accumulator_value=0.0, l2_shrinkage=0.1)
    params = jnp.asarray([0.5, -0.5, 0.0], jnp.float32)
    updates, state = tx.update(jnp.zeros(3), tx.init(params), params)
    assert np.all(np.asarray(state.linear)[:2] != 0.0)
    np.testing.assert_array_equal(optax.apply_updates(params, updates), [0.0, 0.0, 0.0])


def test_ftrl_update_needs_params():
    tx = ftrl(0.1)
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="params=None"):
        tx.update(params, tx.init(params))


def test_ftrl_state_and_dtypes():
    tx = ftrl(0.1, initial_accumulator_value=0.25)
    params = {"f32": jnp.ones((2, 3), jnp.float32), "bf16": jnp.ones(4, jnp.bfloat16)}
    state = tx.init(params)
    assert isinstance(state, FtrlState)
    assert state.accumulators["f32"].dtype == jnp.float32
    assert state.linear["bf16"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(state.accumulators["f32"], 0.25)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, state = jax.jit(tx.update)(grads, state, params)
    assert updates["bf16"].dtype == jnp.bfloat16 and updates["f32"].dtype == jnp.float32
    new = optax.apply_updates(params, updates)
    assert np.all(np.isfinite(np.asarray(new["bf16"], np.float32)))


def test_ftrl_zero_accumulator_zero_gradient_gives_zero_not_nan():
    """n0 = 0, p = -1/2, l2 = beta = 0, g = 0: curvature 0 and z = 0 -> weight exactly 0."""
    tx = ftrl(1.0, initial_accumulator_value=0.0)
    params = jnp.asarray([0.0, 3.0, -2.0], jnp.float32)
    updates, state = tx.update(jnp.zeros(3), tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new, [0.0, 0.0, 0.0])
    updates, _ = tx.update(jnp.asarray([0.5, 0.0, -1.0]), state, new)
    np.testing.assert_allclose(optax.apply_updates(new, updates), [-1.0, 0.0, 1.0])


def test_optim_exports():
    from jaxembed import optim

    assert optim.ftrl is ftrl and optim.partitioned is partitioned
    assert optim.sparse_ftrl is sparse_ftrl and optim.FROZEN == "frozen"


# ---------------------------------------------------------------------------- partition


def test_param_path_of_dicts_lists_and_variables():
    tree = {"a": [jnp.ones(1), {"b": jnp.ones(1)}]}
    paths = [param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    assert paths == ["a/0", "a/1/b"]
    state = nnx.state(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Param)
    paths = sorted(param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0])
    assert paths == ["bias", "kernel"]


def test_label_by_path_regex_glob_and_default():
    params = {"wide": {"kernel": 1.0, "bias": 2.0}, "mlp": {"bias": 3.0}}
    labels = label_by_path(params, [("^wide/", "ftrl"), ("bias$", "nodecay")], default="sgd")
    assert labels == {"wide": {"kernel": "ftrl", "bias": "ftrl"}, "mlp": {"bias": "nodecay"}}
    labels = label_by_path(params, [("*/bias", "b")], default="w", syntax="glob")
    assert labels == {"wide": {"kernel": "w", "bias": "b"}, "mlp": {"bias": "b"}}


def test_label_by_path_errors():
    params = {"wide": {"kernel": 1.0}, "deep": {"kernel": 2.0}}
    with pytest.raises(ValueError, match="'deep/kernel' matches no rule"):
        label_by_path(params, [("^wide/", "ftrl")])
    with pytest.raises(ValueError, match="rule 1: invalid regular expression"):
        label_by_path(params, [("wide", "a"), ("(", "b")])
    with pytest.raises(TypeError, match="rule 0 must be a"):
        label_by_path(params, ["wide"])
    with pytest.raises(TypeError, match="label must be a string"):
        label_by_path(params, [("wide", 3)])
    with pytest.raises(ValueError, match="syntax must be"):
        label_by_path(params, [("wide", "a")], syntax="sql")


def test_partitioned_checks_labels_and_freezes():
    with pytest.raises(ValueError, match=r"labels \['adam'\] have no transform"):
        partitioned({"sgd": optax.sgd(0.1)}, [("^wide/", "adam")], default="sgd")
    tx = partitioned({"sgd": optax.sgd(1.0)}, [("^frozen_part$", "frozen")], default="sgd")
    params = {"frozen_part": jnp.ones(2), "other": jnp.ones(2)}
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
    np.testing.assert_array_equal(updates["frozen_part"], 0.0)
    np.testing.assert_array_equal(updates["other"], -1.0)


def test_partitioned_nnx_optimizer_under_jit():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.wide = nnx.Linear(3, 1, rngs=rngs)
            self.embed = nnx.Embed(6, 2, rngs=rngs)
            self.mlp = nnx.Linear(2, 1, rngs=rngs)

        def __call__(self, x, ids):
            return (self.wide(x) + self.mlp(self.embed(ids)))[:, 0]

    model = Model(nnx.Rngs(1))
    tx = partitioned(
        {"ftrl": ftrl(0.1, l1=0.01), "sgd": optax.sgd(0.1)},
        [("^wide/", "ftrl"), ("^embed/", "frozen")],
        default="sgd",
    )
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    embedding = np.asarray(model.embed.embedding[...])

    @nnx.jit
    def train_step(model, optimizer, x, ids, y):
        def loss(model):
            return optax.sigmoid_binary_cross_entropy(model(x, ids), y).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    x, ids, y = jnp.ones((4, 3)), jnp.asarray([0, 1, 1, 5]), jnp.asarray([1.0, 0.0, 1.0, 0.0])
    losses = [float(train_step(model, optimizer, x, ids, y)) for _ in range(5)]
    assert losses[-1] < losses[0]
    np.testing.assert_array_equal(model.embed.embedding[...], embedding)


# ------------------------------------------------------------------------------ sparse

RULES = {
    "sgd": lambda: sparse_sgd(0.5),
    "adagrad": lambda: sparse_adagrad(0.5),
    "ftrl": lambda: sparse_ftrl(0.5, l1=0.01),
    "adam": lambda: sparse_adam(0.1),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_sparse_rule_bad_inputs(name):
    rule = RULES[name]()
    table = jnp.zeros((4, 2), jnp.float32)
    state = rule.init(table)
    with pytest.raises(IndexError, match="id 4 at position 1 is out of range"):
        rule.update(table, state, np.asarray([0, 4]), np.ones((2, 2), np.float32))
    with pytest.raises(IndexError, match="id -2 at position 0"):
        rule.update(table, state, np.asarray([-2]), np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match=r"row_grads has shape \(2, 3\), expected \(2, 2\)"):
        rule.update(table, state, np.asarray([0, 1]), np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="ids must have an integer dtype"):
        rule.update(table, state, np.asarray([0.0]), np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="ids must be 1-D"):
        rule.update(table, state, np.zeros((1, 1), np.int32), np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="table must be 2-D"):
        rule.init(jnp.zeros(3))


def test_sparse_rule_bad_hyperparameters():
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        sparse_sgd(0.0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        sparse_adagrad(0.1, eps=-1.0)
    with pytest.raises(ValueError, match="b1 must be in"):
        sparse_adam(0.1, b1=1.0)
    with pytest.raises(ValueError, match="l1 must be >= 0"):
        sparse_ftrl(0.1, l1=-1.0)


@pytest.mark.parametrize("name", sorted(RULES))
def test_sparse_empty_batch_changes_nothing(name):
    """N = 0 ids (all-padding batches are covered by proofs/proof_sparse_update.py)."""
    rule = RULES[name]()
    table = jnp.asarray(np.arange(8, dtype=np.float32).reshape(4, 2))
    state = rule.init(table)
    same, new_state = rule.update(table, state, np.zeros(0, np.int32), np.zeros((0, 2), np.float32))
    np.testing.assert_array_equal(same, table)
    assert type(new_state) is type(state)


def test_sparse_single_id_from_python_lists_matches_dense():
    rule = sparse_adagrad(0.5)
    dense = optax.adagrad(0.5)
    table = jnp.asarray(np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2))
    new, _ = rule.update(table, rule.init(table), [3], [[0.5, -0.25]])
    grad = jnp.zeros((5, 2)).at[3].set(jnp.asarray([0.5, -0.25]))
    updates, _ = dense.update(grad, dense.init(table), table)
    np.testing.assert_allclose(new, optax.apply_updates(table, updates), rtol=1e-6)


def test_sparse_out_of_range_under_jit_is_dropped_or_checked():
    rule = sparse_sgd(1.0)
    table = jnp.zeros((3, 1), jnp.float32)
    ids, rows = jnp.asarray([0, 7], jnp.int32), jnp.ones((2, 1), jnp.float32)
    new, _ = jax.jit(rule.update)(table, rule.init(table), ids, rows)
    np.testing.assert_array_equal(new[:, 0], [-1.0, 0.0, 0.0])
    checked_update = je.checked(rule.update)
    with pytest.raises(Exception, match="id 7 at flat position 1 is out of range"):
        checked_update(table, rule.init(table), ids, rows)


def test_sparse_step_keeps_working_after_donation():
    rule = sparse_ftrl(0.2)
    table = jnp.zeros((6, 3), jnp.float32)
    state = rule.init(table)
    for _ in range(3):
        table, state = rule.step(
            table, state, jnp.asarray([1, 1, 4], jnp.int32), jnp.ones((3, 3), jnp.float32)
        )
    assert float(table[1, 0]) < 0.0 and float(table[0, 0]) == 0.0
    assert float(state.accumulators[1, 0]) == pytest.approx(0.1 + 3 * 4.0)


# ------------------------------------------------------------------------------- bench


def test_sparse_step_bench_runs(capsys):
    from jaxembed.bench.sparse_step import run

    run(log2_small=6, log2_large=8, dense_log2=(6,), features=2, batch=64, steps=2, warmup=1)
    out = capsys.readouterr().out
    assert "machine:" in out and "ratio sparse 2^8 / 2^6" in out and "dense" in out
