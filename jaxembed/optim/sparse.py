"""Row-sparse optimizer steps for big embedding tables: touch only the rows a batch used.

A batch of ``N`` lookups into a ``[V, K]`` table has a gradient that is zero outside at most
``N`` rows. A dense optax step still reads and writes all ``V·K`` weights and every optimizer
slot. A row-sparse rule instead takes ``ids int[N]`` (``-1`` = padding, ignored) and the
gradient rows ``row_grads f[N, K]`` (``∂loss/∂table[ids[i]]`` for each lookup ``i``), and

1. deduplicates the ids, summing the gradient rows of repeated ids
   (sort, segment heads, binary search, ``segment_sum``; fixed shapes: one compile per ``N``);
2. gathers the touched rows of the table and of each optimizer slot;
3. applies the dense rule to those rows only;
4. scatters them back (``.at[rows].set``, padding and unused slots dropped).

:attr:`SparseRule.step` is the update compiled with ``jax.jit(..., donate_argnums=(0, 1))``:
the table and state buffers are donated, so XLA updates them in place and a step costs
``O(N·K)``, not ``O(V·K)``. After ``step`` the arrays passed in are deleted; keep using the
returned ones.

**When sparse equals dense.** The dense gradient is the scatter-add of ``row_grads`` into
zeros (``zeros.at[ids].add(row_grads)``). SGD, Adagrad and FTRL (with ``l2_shrinkage = 0``)
leave a row whose gradient is zero unchanged — SGD adds ``-lr·0``; Adagrad's accumulator adds
``0²`` and its step is ``0·rsqrt(n)``; FTRL's ``n`` and ``z`` stay put, so its weight stays
``-z/q`` — which is why skipping untouched rows gives the dense result. (FTRL's weight is a
function of its slots, so this needs a row that was never touched to hold the weight its
slots give, i.e. 0 for fresh slots; start FTRL tables at 0.) ``proofs/proof_sparse_update.py``
proves these equal to the dense optax steps.

**Lazy rules.** Where a zero gradient still moves a row, the sparse rule is *lazy*: an
untouched row (and its slots) stays exactly as it is, which differs from the dense rule.

* :func:`sparse_adam`: only touched rows' moments advance (dense Adam decays every row's
  moments and keeps moving rows with a zero gradient); the bias correction uses the global
  step count. This is TensorFlow Addons' ``LazyAdam`` and PyTorch's ``SparseAdam``.
* :func:`sparse_ftrl` with ``l2_shrinkage > 0``: dense FTRL adds ``2·l2_shrinkage·w`` to
  ``z`` of every row; the sparse rule only of touched rows (as TensorFlow's
  ``SparseApplyFtrlV2``).

**Ids out of range.** Concrete ids (numpy/jax arrays outside ``jit``) outside ``[-1, V)``
raise ``IndexError`` naming the id and its position. Inside ``jit`` — including
:attr:`SparseRule.step` — such ids are dropped (their rows are neither read nor written);
wrap ``rule.update`` in :func:`jaxembed.checked` to make them raise at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxembed import _validate
from jaxembed.checks import check_ids, checks_enabled
from jaxembed.optim.ftrl import FtrlState, ftrl_hyperparams, ftrl_kernel

__all__ = [
    "SparseAccumulatedState",
    "SparseAdagradState",
    "SparseAdamState",
    "SparseRule",
    "dedupe_rows",
    "sparse_accumulated",
    "sparse_adagrad",
    "sparse_adam",
    "sparse_frozen",
    "sparse_ftrl",
    "sparse_rows_in",
    "sparse_sgd",
]


class SparseAdagradState(NamedTuple):
    """Adagrad accumulators, one per table entry."""

    accumulators: jax.Array


class SparseAdamState(NamedTuple):
    """Lazy Adam: global step count and the first/second moments, one per table entry."""

    count: jax.Array
    mu: jax.Array
    nu: jax.Array


def dedupe_rows(
    ids: jax.Array, row_grads: jax.Array, num_embeddings: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Unique touched rows and their summed gradients, in fixed shapes.

    Returns ``(rows, slots, grads)``: ``rows int[N]`` the distinct valid ids in increasing
    order, then distinct out-of-range fillers ``V, V+1, ...`` (so the scatter indices stay
    unique and sorted, and ``mode="drop"`` discards the fillers); ``slots`` the same with the
    fillers clamped to ``V-1`` for gathering; ``grads f[N, K]`` the gradient rows of each
    distinct id summed in input order (zero for fillers). Padding ``-1`` (and, under ``jit``,
    any id outside ``[0, V)``) contributes nothing.
    """
    n = ids.shape[0]
    valid = (ids >= 0) & (ids < num_embeddings)
    keys = jnp.where(valid, ids, num_embeddings).astype(jnp.int32)
    # One single-operand sort (an argsort's key+payload sort is ~10x slower on XLA:CPU), then
    # each input finds its distinct id by binary search.
    sorted_keys = jnp.sort(keys)
    head = jnp.concatenate([jnp.ones((1,), bool), sorted_keys[1:] != sorted_keys[:-1]])
    segment = jnp.cumsum(head.astype(jnp.int32)) - 1  # distinct-id index of each sorted entry
    unique = (
        jnp.full((n,), num_embeddings, jnp.int32)
        .at[segment]
        .set(sorted_keys, indices_are_sorted=True)
    )
    inverse = segment[jnp.searchsorted(sorted_keys, keys, side="left", method="scan_unrolled")]
    masked = jnp.where(valid[:, None], row_grads, jnp.zeros((), row_grads.dtype))
    grads = jax.ops.segment_sum(masked, inverse, num_segments=n)  # adds in input order
    filler = unique >= num_embeddings
    rows = jnp.where(filler, num_embeddings + jnp.arange(n, dtype=jnp.int32), unique)
    slots = jnp.minimum(unique, num_embeddings - 1)
    return rows, slots, grads


def _check_inputs(table: Any, ids: Any, row_grads: Any, what: str) -> None:
    if table.ndim != 2:
        raise ValueError(f"{what}: table must be 2-D [V, K], got shape {tuple(table.shape)}")
    if not jnp.issubdtype(table.dtype, jnp.floating):
        raise TypeError(f"{what}: table must be a float array, got dtype {table.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"{what}: ids must be 1-D int[N], got shape {tuple(ids.shape)}")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"{what}: ids must have an integer dtype, got {ids.dtype}")
    expected = (ids.shape[0], table.shape[1])
    if tuple(row_grads.shape) != expected:
        raise ValueError(
            f"{what}: row_grads has shape {tuple(row_grads.shape)}, expected {expected} "
            "(one gradient row per id)"
        )
    if not jnp.issubdtype(row_grads.dtype, jnp.floating):
        raise TypeError(f"{what}: row_grads must be a float array, got dtype {row_grads.dtype}")
    if table.shape[0] + ids.shape[0] > jnp.iinfo(jnp.int32).max:
        raise ValueError(
            f"{what}: V + N = {table.shape[0] + ids.shape[0]} overflows int32 row indices"
        )
    _validate.ids_in_range(ids, table.shape[0], f"{what}: ids")


RowRule = Callable[
    [jax.Array, tuple[jax.Array, ...], jax.Array], tuple[jax.Array, tuple[jax.Array, ...]]
]


def _sparse_update(
    table: jax.Array,
    slots: tuple[jax.Array, ...],
    ids: Any,
    row_grads: Any,
    rule: RowRule,
    what: str,
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Dedupe, gather the touched rows of ``table`` and ``slots``, apply ``rule``, scatter back.

    ``rule(rows f[N, K], slot_rows, grads f[N, K]) -> (new_rows, new_slot_rows)`` is the dense
    optimizer written for a block of rows.
    """
    if not hasattr(ids, "dtype"):
        ids = _validate.id_array(ids, f"{what}: ids")
    if not hasattr(row_grads, "dtype"):
        row_grads = np.asarray(row_grads, dtype=np.float32)
    _check_inputs(table, ids, row_grads, what)
    v = table.shape[0]
    if checks_enabled():  # inside jaxembed.checked: out-of-range ids raise at run time
        ids = jnp.asarray(ids)
        check_ids(ids, (ids >= -1) & (ids < v), v, f"{what}: ids")
    if ids.shape[0] == 0 or v == 0:
        return table, slots
    rows, gather_at, grads = dedupe_rows(jnp.asarray(ids), jnp.asarray(row_grads), v)
    old_rows = jnp.take(table, gather_at, axis=0)
    old_slots = tuple(jnp.take(s, gather_at, axis=0) for s in slots)
    new_rows, new_slots = rule(old_rows, old_slots, grads.astype(table.dtype))

    def scatter(dest: jax.Array, values: jax.Array) -> jax.Array:
        return dest.at[rows].set(
            values.astype(dest.dtype), mode="drop", indices_are_sorted=True, unique_indices=True
        )

    return scatter(table, new_rows), tuple(
        scatter(s, new) for s, new in zip(slots, new_slots, strict=True)
    )


@dataclasses.dataclass(frozen=True, eq=False)
class SparseRule:
    """A row-sparse optimizer: ``init(table) -> state``, ``update(table, state, ids,
    row_grads) -> (table, state)``; ``step`` is ``update`` jitted with the table and state
    donated (updated in place).

    ``update`` is pure and may be called inside a larger ``jit``; ``step`` deletes the table
    and state passed to it.
    """

    name: str
    init: Callable[[jax.Array], Any]
    update: Callable[[jax.Array, Any, Any, Any], tuple[jax.Array, Any]]
    step: Callable[[jax.Array, Any, Any, Any], tuple[jax.Array, Any]] = dataclasses.field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "step", jax.jit(self.update, donate_argnums=(0, 1)))


def _table(table: Any, what: str) -> jax.Array:
    return jnp.asarray(_validate.table_array(table, f"{what}: table"))


def _positive(name: str, value: float, what: str, *, strict: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what}: {name} must be a real number, got {value!r}") from err
    if not (number > 0.0 if strict else number >= 0.0):  # also rejects NaN
        sign = "> 0" if strict else ">= 0"
        raise ValueError(f"{what}: {name} must be {sign}, got {value}")
    return number


def sparse_sgd(learning_rate: float) -> SparseRule:
    """Row-sparse SGD: ``w[r] ← w[r] + (-lr)·Σ_{i: ids[i]=r} row_grads[i]`` for touched ``r``.

    Equals ``optax.sgd(learning_rate)`` on the dense gradient (the same operations on the
    touched rows; untouched rows add ``-lr·0``): to float rounding, and bit for bit on CPU
    when both are jitted. State: ``optax.EmptyState``.
    """
    lr = _positive("learning_rate", learning_rate, "sparse_sgd")

    def init(table: Any) -> optax.EmptyState:
        _table(table, "sparse_sgd")
        return optax.EmptyState()

    def update(
        table: jax.Array, state: optax.EmptyState, ids: Any, row_grads: Any
    ) -> tuple[jax.Array, optax.EmptyState]:
        def rule(rows: jax.Array, _slots: tuple, grads: jax.Array) -> tuple[jax.Array, tuple]:
            return rows + jnp.asarray(-lr, rows.dtype) * grads, ()

        new_table, _ = _sparse_update(table, (), ids, row_grads, rule, "sparse_sgd")
        return new_table, state

    return SparseRule("sgd", init, update)


def sparse_adagrad(
    learning_rate: float, initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> SparseRule:
    """Row-sparse Adagrad, the same formula as ``optax.adagrad`` on the touched rows::

        n[r] ← n[r] + g²,   w[r] ← w[r] + (-lr)·(g · rsqrt(n[r] + eps))   (0 where n[r] = 0)

    Untouched rows have ``g = 0``: dense Adagrad leaves both ``n`` and ``w`` as they are, so
    the sparse step equals the dense one. State: :class:`SparseAdagradState`.
    """
    what = "sparse_adagrad"
    lr = _positive("learning_rate", learning_rate, what)
    n0 = _positive("initial_accumulator_value", initial_accumulator_value, what, strict=False)
    epsilon = _positive("eps", eps, what, strict=False)

    def init(table: Any) -> SparseAdagradState:
        table = _table(table, what)
        return SparseAdagradState(jnp.full_like(table, n0))

    def update(
        table: jax.Array, state: SparseAdagradState, ids: Any, row_grads: Any
    ) -> tuple[jax.Array, SparseAdagradState]:
        def rule(rows: jax.Array, slots: tuple, grads: jax.Array) -> tuple[jax.Array, tuple]:
            (acc,) = slots
            acc = grads * grads + acc
            scale = jnp.where(
                acc > 0,
                jax.lax.rsqrt(acc + jnp.asarray(epsilon, acc.dtype)),
                jnp.zeros((), acc.dtype),
            )
            return rows + jnp.asarray(-lr, rows.dtype) * (scale * grads), (acc,)

        new_table, (acc,) = _sparse_update(table, (state.accumulators,), ids, row_grads, rule, what)
        return new_table, SparseAdagradState(acc)

    return SparseRule("adagrad", init, update)


def sparse_ftrl(
    learning_rate: float,
    *,
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1: float = 0.0,
    l2: float = 0.0,
    l2_shrinkage: float = 0.0,
    beta: float = 0.0,
) -> SparseRule:
    """Row-sparse FTRL: :func:`jaxembed.optim.ftrl`'s kernel on the touched rows only.

    Same hyperparameters and validation as :func:`jaxembed.optim.ftrl`; state
    :class:`jaxembed.optim.FtrlState` (accumulators, linear) of the table's shape. Equals dense
    FTRL when ``l2_shrinkage = 0`` and untouched rows hold the weight their slots give (0 for
    fresh slots: start the table at 0); with ``l2_shrinkage > 0`` it is lazy, like
    TensorFlow's ``SparseApplyFtrlV2``: only touched rows feel the shrinkage.
    """
    hp = ftrl_hyperparams(
        learning_rate,
        learning_rate_power=learning_rate_power,
        initial_accumulator_value=initial_accumulator_value,
        l1=l1,
        l2=l2,
        l2_shrinkage=l2_shrinkage,
        beta=beta,
    )
    what = "sparse_ftrl"

    def init(table: Any) -> FtrlState:
        table = _table(table, what)
        return FtrlState(
            accumulators=jnp.full_like(table, hp.initial_accumulator_value),
            linear=jnp.zeros_like(table),
        )

    def update(
        table: jax.Array, state: FtrlState, ids: Any, row_grads: Any
    ) -> tuple[jax.Array, FtrlState]:
        def rule(rows: jax.Array, slots: tuple, grads: jax.Array) -> tuple[jax.Array, tuple]:
            n, z = slots
            new_rows, new_n, new_z = ftrl_kernel(rows, n, z, grads, hp)
            return new_rows, (new_n, new_z)

        new_table, (n, z) = _sparse_update(
            table, (state.accumulators, state.linear), ids, row_grads, rule, what
        )
        return new_table, FtrlState(accumulators=n, linear=z)

    return SparseRule("ftrl", init, update)


def sparse_adam(
    learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> SparseRule:
    """Lazy row-sparse Adam: only touched rows' moments advance.

    With ``t`` the global step count (every call counts, even an all-padding batch)::

        m[r] ← (1-b1)·g + b1·m[r],   v[r] ← (1-b2)·g² + b2·v[r]
        w[r] ← w[r] + (-lr)·(m[r]/(1-b1^t)) / (sqrt(v[r]/(1-b2^t)) + eps)

    for touched rows ``r`` only. This is *not* dense Adam: dense Adam decays the moments of
    every row each step and keeps moving rows whose gradient is now zero. The two agree on
    steps where every row is touched (the proofs check this). State: :class:`SparseAdamState`.

    References:
      TensorFlow Addons ``LazyAdam``; PyTorch ``torch.optim.SparseAdam``.
    """
    what = "sparse_adam"
    lr = _positive("learning_rate", learning_rate, what)
    for name, value in (("b1", b1), ("b2", b2)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{what}: {name} must be in [0, 1), got {value}")
    epsilon = _positive("eps", eps, what, strict=False)

    def init(table: Any) -> SparseAdamState:
        table = _table(table, what)
        return SparseAdamState(
            count=jnp.zeros([], jnp.int32), mu=jnp.zeros_like(table), nu=jnp.zeros_like(table)
        )

    def update(
        table: jax.Array, state: SparseAdamState, ids: Any, row_grads: Any
    ) -> tuple[jax.Array, SparseAdamState]:
        count = optax.safe_increment(state.count)
        c1 = 1 - jnp.asarray(b1, jnp.float32) ** count
        c2 = 1 - jnp.asarray(b2, jnp.float32) ** count

        def rule(rows: jax.Array, slots: tuple, grads: jax.Array) -> tuple[jax.Array, tuple]:
            m, v = slots
            m = (1 - b1) * grads + b1 * m
            v = (1 - b2) * (grads * grads) + b2 * v
            m_hat = m / c1.astype(m.dtype)
            v_hat = v / c2.astype(v.dtype)
            step = m_hat / (jnp.sqrt(v_hat) + jnp.asarray(epsilon, v.dtype))
            return rows + jnp.asarray(-lr, rows.dtype) * step, (m, v)

        new_table, (mu, nu) = _sparse_update(
            table, (state.mu, state.nu), ids, row_grads, rule, what
        )
        return new_table, SparseAdamState(count=count, mu=mu, nu=nu)

    return SparseRule("adam", init, update)


def sparse_frozen(inner: SparseRule) -> SparseRule:
    """A table held fixed: ``update`` returns the table and state unchanged; ``init`` is
    ``inner``'s, so the table keeps the optimizer slots it was trained with (the online phase
    freezes embeddings and a later phase may train them on, slots intact)."""

    def update(table: jax.Array, state: Any, ids: Any, row_grads: Any) -> tuple[jax.Array, Any]:
        return table, state

    return SparseRule(f"frozen({inner.name})", inner.init, update)


def sparse_rows_in(inner: SparseRule, lo: int, hi: int) -> SparseRule:
    """``inner`` on the rows ``lo <= r < hi`` only, every other row (and its slots) held
    fixed: the lookups of other rows are dropped as padding (``-1``) before ``inner`` sees
    them. The online phase trains the rows added for new ids this way while the rest of
    the table stays frozen. (A lazy rule's global step count, such as Adam's, still counts
    every call.)"""
    lo, hi = int(lo), int(hi)
    if not 0 <= lo <= hi:
        raise ValueError(f"sparse_rows_in: need 0 <= lo <= hi, got lo={lo}, hi={hi}")

    def update(table: jax.Array, state: Any, ids: Any, row_grads: Any) -> tuple[jax.Array, Any]:
        ids = jnp.asarray(ids)
        kept = jnp.where((ids >= lo) & (ids < hi), ids, -1)
        return inner.update(table, state, kept, row_grads)

    return SparseRule(f"rows_in({inner.name}, {lo}, {hi})", inner.init, update)


class SparseAccumulatedState(NamedTuple):
    """:func:`sparse_accumulated`: the inner rule's state, the gradient summed so far (one
    row per table row), which rows it touches, and the mini-batches held."""

    inner: Any
    grads: jax.Array
    touched: jax.Array
    count: jax.Array


def sparse_accumulated(inner: SparseRule, every: int) -> SparseRule:
    r"""``inner`` applied once per ``every`` calls, on the mean of their gradients — the
    row-sparse twin of ``optax.MultiSteps``::

        G ← G + (1/k) Σ_{i: ids[i]=r} row_grads[i]   for each call (k = every)
        on the k-th call: inner.update(table, state, touched rows, G[touched]); G ← 0

    so ``k`` mini-batches of ``B`` rows whose loss is each batch's mean make the step one
    batch of ``k·B`` rows would make. The sum ``G`` is held densely (``[V, K]``, one more
    slot); between applications the table and the inner state do not move. Untouched rows
    are passed as padding, so lazy rules (Adam) stay lazy; a partial group at the end of
    the data is held, not applied.
    """
    k = int(every)
    if k < 1:
        raise ValueError(f"sparse_accumulated: every must be >= 1, got {every!r}")

    def init(table: Any) -> SparseAccumulatedState:
        table = jnp.asarray(table)
        return SparseAccumulatedState(inner.init(table), jnp.zeros_like(table),
                                      jnp.zeros(table.shape[:1], bool),
                                      jnp.zeros([], jnp.int32))

    def update(table: jax.Array, state: SparseAccumulatedState, ids: Any, row_grads: Any
               ) -> tuple[jax.Array, SparseAccumulatedState]:
        v = table.shape[0]
        ids = jnp.asarray(ids)
        at = jnp.where((ids >= 0) & (ids < v), ids, v)
        grads = state.grads.at[at].add(jnp.asarray(row_grads, table.dtype) / k, mode="drop")
        touched = state.touched.at[at].set(True, mode="drop")
        count = state.count + 1

        def apply(operand: tuple) -> tuple:
            table, inner_state, grads, touched = operand
            rows = jnp.where(touched, jnp.arange(v, dtype=jnp.int32), -1)
            table, inner_state = inner.update(table, inner_state, rows, grads)
            return table, inner_state, jnp.zeros_like(grads), jnp.zeros_like(touched)

        table, inner_state, grads, touched = jax.lax.cond(
            count % k == 0, apply, lambda operand: operand,
            (table, state.inner, grads, touched))
        return table, SparseAccumulatedState(inner_state, grads, touched, count % k)

    return SparseRule(f"accumulated({inner.name}, {k})", init, update)
