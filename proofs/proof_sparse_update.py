r"""Row-sparse updates equal dense optax updates on the scatter-added gradient.

For ids :math:`i_1..i_N` (``-1`` = padding) and gradient rows :math:`r_1..r_N`, the dense
gradient of the table is

.. math:: G = \sum_{j:\, i_j \ge 0} e_{i_j} r_j^\top \qquad (\texttt{zeros.at[ids].add(rows)})

and it is also ``jax.grad`` of any loss that reads the table through ``table[ids]`` (checked
below with ``jax.vjp``). Proven, with duplicate ids, padding, all-padding batches and several
steps:

* ``sparse_sgd``      == ``optax.sgd``      on :math:`G` (float rounding; bitwise on CPU so far)
* ``sparse_adagrad``  == ``optax.adagrad``  on :math:`G`
* ``sparse_ftrl``     == dense :func:`jaxembed.optim.ftrl` on :math:`G`, table from 0,
  ``l2_shrinkage = 0`` (float rounding: the dense transform's ``params + (new - params)``);
  and == the dense FTRL kernel on every row, bitwise on CPU (same operations, same values).

They agree because each dense rule leaves a row with :math:`G_r = 0` unchanged: SGD adds
:math:`-\alpha\cdot 0`, Adagrad adds :math:`0^2` to :math:`n` and steps
:math:`0\cdot n^{-1/2}`, FTRL keeps :math:`n, z` and so :math:`w = -z/q`.

Lazy rules, where a zero gradient still moves a dense row, are proven *lazy*: untouched rows
and their slots are bitwise unchanged, touched rows get the dense rule —
``sparse_ftrl`` with ``l2_shrinkage > 0`` (dense kernel on touched rows only) and
``sparse_adam`` (equals ``optax.adam`` when every row is touched at every step).

The online phase's wrappers: ``sparse_rows_in(rule, lo, hi)`` == the dense rule on the
gradient with the rows outside ``[lo, hi)`` zeroed (those rows and slots never move), and
``sparse_frozen(rule)`` is the identity, and ``sparse_accumulated(rule, k)`` is the rule on
``k`` batches at once with their gradients divided by ``k`` (``optax.MultiSteps``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.optim.ftrl import FtrlState, ftrl, ftrl_hyperparams, ftrl_kernel
from jaxembed.optim.sparse import (
    dedupe_rows,
    sparse_accumulated,
    sparse_adagrad,
    sparse_adam,
    sparse_frozen,
    sparse_ftrl,
    sparse_rows_in,
    sparse_sgd,
)

# (V, K, N) buckets: each compiles once per rule.
SHAPES = ((5, 3, 12), (33, 2, 7))
STEPS = 3

FTRL_KW = {
    "learning_rate": 0.3,
    "learning_rate_power": -0.5,
    "initial_accumulator_value": 0.1,
    "l1": 0.05,
    "l2": 0.2,
    "beta": 0.1,
}
FTRL_POWER_KW = {
    "learning_rate": 1.5,
    "learning_rate_power": -0.3,
    "initial_accumulator_value": 0.0,
    "l1": 0.0,
    "l2": 0.5,
}
SHRINK_KW = {**FTRL_KW, "l2_shrinkage": 0.3}

# rule name -> (sparse rule, dense optax transform, start the table at 0)
PAIRS = {
    "sgd": (sparse_sgd(0.25), optax.sgd(0.25), False),
    "adagrad": (
        sparse_adagrad(0.5, initial_accumulator_value=0.1, eps=1e-7),
        optax.adagrad(0.5, initial_accumulator_value=0.1, eps=1e-7),
        False,
    ),
    "adagrad_n0": (
        sparse_adagrad(0.5, initial_accumulator_value=0.0, eps=0.0),
        optax.adagrad(0.5, initial_accumulator_value=0.0, eps=0.0),
        False,
    ),
    "ftrl": (sparse_ftrl(**FTRL_KW), ftrl(**FTRL_KW), True),
    "ftrl_power": (sparse_ftrl(**FTRL_POWER_KW), ftrl(**FTRL_POWER_KW), True),
}


@st.composite
def sparse_batches(draw, v: int, k: int, n: int, steps: int = STEPS):
    """``steps`` batches ``(ids int[N], rows f[N, K])`` over a ``V``-row table.

    Ids come from a small window of rows (duplicates), with ``-1`` padding; a batch is all padding
    about one time in six. Rows are multiples of 1/4 (sums exact) or normal draws.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    exact = draw(st.booleans())
    batches = []
    for _ in range(steps):
        pool = draw(st.integers(1, v))
        start = draw(st.integers(0, v - pool))  # pools at both ends reach rows 0 and V-1
        ids = start + rng.integers(0, pool, size=n)
        ids[rng.random(n) < 0.25] = -1
        if draw(st.integers(0, 5)) == 0:
            ids[:] = -1
        if exact:
            rows = rng.integers(-8, 9, size=(n, k)) / 4.0
        else:
            rows = rng.normal(0.0, 1.0, size=(n, k))
        batches.append((ids.astype(np.int32), rows.astype(np.float32)))
    return batches


@st.composite
def problems(draw):
    v, k, n = draw(st.sampled_from(SHAPES))
    table = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=(v, k))
    return table.astype(np.float32), draw(sparse_batches(v, k, n))


def dense_gradient(v: int, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The literal scatter-add ``G[ids[j]] += rows[j]`` over non-padding j (numpy, in order)."""
    grad = np.zeros((v, rows.shape[1]), np.float32)
    for j, i in enumerate(ids):
        if i >= 0:
            grad[i] += rows[j]
    return grad


@functools.cache
def _dense_step(name: str):
    tx = PAIRS[name][1]

    @jax.jit
    def step(table, state, grad):
        updates, state = tx.update(grad, state, table)
        return optax.apply_updates(table, updates), state

    return step


def _close(a, b, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-6, atol=2e-6, err_msg=what)


def _run_pair(name, table, batches):
    rule, dense_tx, from_zero = PAIRS[name]
    if from_zero:
        table = np.zeros_like(table)
    v = table.shape[0]
    sparse_table, sparse_state = jnp.array(table), rule.init(jnp.array(table))
    dense_table, dense_state = jnp.array(table), dense_tx.init(jnp.array(table))
    for t, (ids, rows) in enumerate(batches):
        sparse_table, sparse_state = rule.step(
            sparse_table, sparse_state, jnp.asarray(ids), jnp.asarray(rows)
        )
        dense_table, dense_state = _dense_step(name)(
            dense_table, dense_state, jnp.asarray(dense_gradient(v, ids, rows))
        )
        _close(sparse_table, dense_table, f"{name}: table after step {t}")
    return sparse_state, dense_state


@given(problems())
def test_sparse_sgd_equals_dense(problem):
    """sparse_sgd == optax.sgd on the scatter-added gradient."""
    _run_pair("sgd", *problem)


@given(problems())
def test_sparse_adagrad_equals_dense(problem):
    """sparse_adagrad == optax.adagrad, accumulators included (also n0 = 0, eps = 0)."""
    for name in ("adagrad", "adagrad_n0"):
        sparse_state, dense_state = _run_pair(name, *problem)
        _close(sparse_state.accumulators, dense_state[0].sum_of_squares, f"{name}: accumulators")


@given(problems())
def test_sparse_ftrl_equals_dense(problem):
    """sparse_ftrl == dense ftrl from a zero table (two hyperparameter sets), slots too."""
    for name in ("ftrl", "ftrl_power"):
        sparse_state, dense_state = _run_pair(name, *problem)
        _close(sparse_state.accumulators, dense_state.accumulators, f"{name}: accumulators")
        _close(sparse_state.linear, dense_state.linear, f"{name}: linear")


@jax.jit
def _dense_kernel_step(table, accumulators, linear, grad):
    hp = ftrl_hyperparams(**FTRL_KW)
    return ftrl_kernel(table, accumulators, linear, grad, hp)


_FTRL_UPDATE = jax.jit(PAIRS["ftrl"][0].update)  # not donated: the test keeps old arrays


@given(problems())
def test_sparse_ftrl_equals_dense_kernel_bitwise(problem):
    """From a zero table, sparse_ftrl == the FTRL kernel on every row, bit for bit on CPU (no
    ``params + (new - params)`` round trip on either side; XLA:CPU adds duplicate rows in input
    order on both sides). On GPU, whose scatter-add order is unspecified and whose fusions may
    differ between the two programs, to float rounding."""
    table, batches = problem
    rule = PAIRS["ftrl"][0]
    v = table.shape[0]
    table = jnp.zeros(table.shape, jnp.float32)
    state = rule.init(table)
    dense = (jnp.array(table), state.accumulators, state.linear)
    for t, (ids, rows) in enumerate(batches):
        table, state = _FTRL_UPDATE(table, state, jnp.asarray(ids), jnp.asarray(rows))
        dense = _dense_kernel_step(*dense, jnp.asarray(dense_gradient(v, ids, rows)))
        for ours, theirs, what in zip(
            (table, state.accumulators, state.linear),
            dense,
            ("table", "accumulators", "linear"),
            strict=True,
        ):
            if jax.default_backend() == "cpu":
                np.testing.assert_array_equal(
                    np.asarray(ours), np.asarray(theirs), err_msg=f"step {t}: {what}"
                )
            else:
                _close(ours, theirs, f"step {t}: {what}")


SHRINK_RULE = sparse_ftrl(**SHRINK_KW)
_SHRINK_UPDATE = jax.jit(SHRINK_RULE.update)


@jax.jit
def _shrink_kernel_step(table, accumulators, linear, grad):
    return ftrl_kernel(table, accumulators, linear, grad, ftrl_hyperparams(**SHRINK_KW))


@given(problems())
def test_sparse_ftrl_shrinkage_is_lazy(problem):
    """With l2_shrinkage > 0: touched rows get the dense kernel, untouched rows (and their
    n, z) are bitwise unchanged — TensorFlow's SparseApplyFtrlV2 semantics."""
    table, batches = problem
    table = jnp.asarray(table)
    state = SHRINK_RULE.init(table)
    for t, (ids, rows) in enumerate(batches):
        grad = jnp.asarray(dense_gradient(table.shape[0], ids, rows))
        want = _shrink_kernel_step(table, state.accumulators, state.linear, grad)
        touched = np.zeros(table.shape[0], bool)
        touched[ids[ids >= 0]] = True
        old = (table, state.accumulators, state.linear)
        table, state = _SHRINK_UPDATE(table, state, jnp.asarray(ids), jnp.asarray(rows))
        for new, before, dense, what in zip(
            (table, state.accumulators, state.linear),
            old,
            want,
            ("table", "accumulators", "linear"),
            strict=True,
        ):
            new, before, dense = np.asarray(new), np.asarray(before), np.asarray(dense)
            np.testing.assert_array_equal(
                new[~touched], before[~touched], err_msg=f"step {t}: untouched {what} moved"
            )
            _close(new[touched], dense[touched], f"step {t}: touched {what}")


ADAM_RULE = sparse_adam(0.05)
ADAM_DENSE = optax.adam(0.05)
_ADAM_UPDATE = jax.jit(ADAM_RULE.update)


@jax.jit
def _adam_dense_step(table, state, grad):
    updates, state = ADAM_DENSE.update(grad, state, table)
    return optax.apply_updates(table, updates), state


@given(problems())
def test_sparse_adam_is_lazy_adam(problem):
    """sparse_adam: untouched rows and moments are bitwise unchanged; when every row is
    touched every step (ids ⊇ 0..V-1), it equals optax.adam on the scatter-added gradient."""
    table, batches = problem
    v = table.shape[0]
    sparse_table, dense_table = jnp.asarray(table), jnp.asarray(table)
    state, dense_state = ADAM_RULE.init(sparse_table), ADAM_DENSE.init(dense_table)
    update = _ADAM_UPDATE
    lazy_table, lazy_state = jnp.asarray(table), ADAM_RULE.init(jnp.asarray(table))
    for t, (ids, rows) in enumerate(batches):
        # every row touched: append one (possibly zero) gradient row per table row
        all_ids = np.concatenate([ids, np.arange(v, dtype=np.int32)])
        all_rows = np.concatenate([rows, np.zeros((v, rows.shape[1]), np.float32)])
        sparse_table, state = update(
            sparse_table, state, jnp.asarray(all_ids), jnp.asarray(all_rows)
        )
        dense_table, dense_state = _adam_dense_step(
            dense_table, dense_state, jnp.asarray(dense_gradient(v, ids, rows))
        )
        _close(sparse_table, dense_table, f"step {t}: all rows touched")

        touched = np.zeros(v, bool)
        touched[ids[ids >= 0]] = True
        before = (np.asarray(lazy_table), np.asarray(lazy_state.mu), np.asarray(lazy_state.nu))
        lazy_table, lazy_state = update(lazy_table, lazy_state, jnp.asarray(ids), jnp.asarray(rows))
        after = (np.asarray(lazy_table), np.asarray(lazy_state.mu), np.asarray(lazy_state.nu))
        for b, a, what in zip(before, after, ("table", "mu", "nu"), strict=True):
            np.testing.assert_array_equal(
                a[~touched], b[~touched], err_msg=f"step {t}: untouched {what} moved"
            )
        assert int(lazy_state.count) == t + 1


@jax.jit
def _gather_gradients(table, ids, target):
    """(row gradients, their vjp through table[ids], jax.grad w.r.t. the table)."""
    mask = (ids >= 0).astype(jnp.float32)[:, None]
    safe = jnp.maximum(ids, 0)

    def loss_of_rows(rows):
        return jnp.sum(mask * (jnp.tanh(rows) - target) ** 2)

    rows, vjp = jax.vjp(lambda w: w[safe], table)
    row_grads = jax.grad(loss_of_rows)(rows)
    (through_vjp,) = vjp(row_grads)
    return row_grads, through_vjp, jax.grad(lambda w: loss_of_rows(w[safe]))(table)


@given(problems())
def test_row_grads_are_the_vjp_of_the_gather(problem):
    """The dense gradient G (scatter-add of the rows' gradients) is jax.grad of a loss that
    reads table[ids]; the row gradients are its vjp w.r.t. the gathered rows; and
    dedupe_rows sums them per distinct id exactly as G does."""
    table, batches = problem
    v = table.shape[0]
    ids, target = batches[0]
    row_grads, through_vjp, full_grad = _gather_gradients(
        jnp.asarray(table), jnp.asarray(ids), jnp.asarray(target)
    )
    dense = dense_gradient(v, ids, np.asarray(row_grads))
    np.testing.assert_allclose(through_vjp, dense, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(full_grad, dense, rtol=1e-6, atol=1e-6)

    unique_rows, _, summed = _dedupe(jnp.asarray(ids), row_grads, v)
    unique_rows, summed = np.asarray(unique_rows), np.asarray(summed)
    touched = sorted(set(ids[ids >= 0].tolist()))
    assert unique_rows[: len(touched)].tolist() == touched
    assert np.all(unique_rows[len(touched) :] >= v)  # fillers are out of range (dropped)
    np.testing.assert_allclose(summed[: len(touched)], dense[touched], rtol=1e-6, atol=1e-6)
    assert np.all(summed[len(touched) :] == 0.0)


_dedupe = jax.jit(dedupe_rows, static_argnums=2)


def test_step_donates_table_and_state():
    """``rule.step`` updates in place: the table and state passed in are deleted."""
    rule = PAIRS["ftrl"][0]
    table = jnp.zeros((8, 2), jnp.float32)
    state = rule.init(table)
    new_table, new_state = rule.step(
        table, state, jnp.asarray([1, -1, 1], jnp.int32), jnp.ones((3, 2), jnp.float32)
    )
    assert table.is_deleted() and state.accumulators.is_deleted() and state.linear.is_deleted()
    assert isinstance(new_state, FtrlState) and not new_table.is_deleted()


@given(problems(), st.data())
def test_rows_in_is_the_rule_on_the_masked_gradient_and_frozen_is_the_identity(problem, data):
    r"""``sparse_rows_in(sparse_adagrad, lo, hi)`` == ``optax.adagrad`` on
    :math:`M G` with :math:`M = \mathrm{diag}([lo \le r < hi])` (the rows outside the range
    and their slots never move); ``sparse_frozen(rule)`` returns table and state unchanged
    (the online phase's frozen embeddings, grown rows trained)."""
    table, batches = problem
    v = table.shape[0]
    lo = data.draw(st.integers(0, v), label="lo")
    hi = data.draw(st.integers(lo, v), label="hi")
    inner = PAIRS["adagrad"][0]
    rule, frozen = sparse_rows_in(inner, lo, hi), sparse_frozen(inner)
    sparse_table, sparse_state = jnp.array(table), rule.init(jnp.array(table))
    dense_table, dense_state = jnp.array(table), PAIRS["adagrad"][1].init(jnp.array(table))
    still, still_state = jnp.array(table), frozen.init(jnp.array(table))
    inside = ((np.arange(v) >= lo) & (np.arange(v) < hi))[:, None]
    for t, (ids, rows) in enumerate(batches):
        sparse_table, sparse_state = rule.update(sparse_table, sparse_state, ids, rows)
        masked = np.where(inside, dense_gradient(v, ids, rows), 0.0).astype(np.float32)
        dense_table, dense_state = _dense_step("adagrad")(dense_table, dense_state,
                                                          jnp.asarray(masked))
        _close(sparse_table, dense_table, f"rows_in: table after step {t}")
        still, still_state = frozen.update(still, still_state, ids, rows)
    outside = ~inside[:, 0]
    np.testing.assert_array_equal(np.asarray(sparse_table)[outside], table[outside])
    np.testing.assert_array_equal(np.asarray(sparse_state.accumulators)[outside],
                                  np.asarray(inner.init(jnp.array(table)).accumulators)[outside])
    np.testing.assert_array_equal(np.asarray(still), table)


@functools.cache
def _accumulated_pair(name: str, k: int):
    """``(rule, sparse_accumulated(rule, k))`` and their jitted updates, built once per
    name so that the drawn examples (fixed shape buckets) reuse the compiled programs."""
    rule = {"adagrad": PAIRS["adagrad"][0], "ftrl": sparse_ftrl(**FTRL_KW),
            "adam": sparse_adam(0.1)}[name]
    accumulated = sparse_accumulated(rule, k)
    return rule, accumulated, jax.jit(rule.update), jax.jit(accumulated.update)


@given(problems(), st.sampled_from(["adagrad", "ftrl", "adam"]))
def test_accumulated_rule_is_the_rule_on_k_batches_at_once(problem, name):
    r"""``sparse_accumulated(rule, k)`` over batches :math:`b_1 .. b_{2k}` == ``rule`` over
    the two concatenations :math:`(b_1 \Vert .. \Vert b_k)/k`, :math:`(b_{k+1} \Vert ..)/k`
    (``optax.MultiSteps``'s mean of ``k`` gradients at the same parameters), the table and
    the inner state unchanged in between; lazy Adam stays lazy."""
    table, batches = problem
    k = 2
    batches = (batches * 2)[: 2 * k]
    rule, accumulated, rule_update, accumulated_update = _accumulated_pair(name, k)
    if name == "ftrl":
        table = np.zeros_like(table)
    a_table, a_state = jnp.array(table), accumulated.init(jnp.array(table))
    r_table, r_state = jnp.array(table), rule.init(jnp.array(table))
    for start in range(0, len(batches), k):
        group = batches[start:start + k]
        for j, (ids, rows) in enumerate(group):
            held = a_table
            a_table, a_state = accumulated_update(a_table, a_state, ids, rows)
            if j < k - 1:
                np.testing.assert_array_equal(np.asarray(a_table), np.asarray(held))
        ids = np.concatenate([g[0] for g in group])
        rows = np.concatenate([g[1] for g in group]) / k
        r_table, r_state = rule_update(r_table, r_state, ids, rows.astype(np.float32))
        _close(a_table, r_table, f"accumulated {name}: table after group {start // k}")
        for a, b in zip(jax.tree.leaves(a_state.inner), jax.tree.leaves(r_state), strict=True):
            _close(a, b, f"accumulated {name}: state after group {start // k}")
