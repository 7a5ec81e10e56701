r"""The embedding equation, written twice: the literal product and the fast gather.

For a table :math:`W \in \mathbb{R}^{V \times K}`:

* one-hot: :math:`e_i(V) W = W_{i,:}` — :func:`one_hot` + :func:`dense_lookup` (literal) and
  :func:`lookup` (gather);
* multi-hot: :math:`x W = \sum_j x_j W_{j,:}` — :func:`multi_hot` + :func:`dense_lookup`
  (literal) and :func:`bag_lookup` (gather-sum, never a ``(B, V)`` matrix);
* combiners (TensorFlow ``embedding_lookup_sparse``), with :math:`s_b = \sum_l w_{bl}`:
  ``sum`` :math:`\sum_l w_{bl} W_{i_{bl}}`, ``mean`` that over :math:`s_b`, ``sqrtn`` that over
  :math:`\sqrt{\sum_l w_{bl}^2}`, ``max`` the elementwise maximum of the rows;
* gradient: :math:`\partial L / \partial W_j = \sum_b x_{bj}\, g_b` (a scatter-add), and
  :math:`\partial L / \partial w_{bl} = \langle g_b, W_{i_{bl}} \rangle` for ``sum``.

**Out-of-range policy.** Valid ids are ``0 .. V-1``; ``-1`` is padding and contributes a zero
row. With concrete ids (eager calls) any other id raises ``IndexError`` naming it and its
position. With traced ids (inside ``jit``) the row of an out-of-range id — and, in a bag, the
whole pooled row — is NaN, and its gradient is zero: loud, never a silently wrong row (JAX's
default gather would clamp to the last row). :func:`jaxembed.checked` makes it raise under
``jit`` too. A division by a zero weight sum (an empty bag, or weights that cancel) gives 0,
as TensorFlow's ``div_no_nan``; an empty bag gives a zero row for every combiner.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int

from jaxembed import _validate
from jaxembed.bags import PAD_ID, Bags
from jaxembed.checks import check_ids
from jaxembed.kernels import pallas_pool

Combiner = Literal["sum", "mean", "sqrtn", "max"]
LookupStyle = Literal["gather", "one_hot", "auto"]
COMBINERS: tuple[str, ...] = ("sum", "mean", "sqrtn", "max")

# Widest bag the slot loop unrolls; wider bags use a rolled loop (one compiled body).
_UNROLL_MAX_WIDTH = 64

# `lookup_style="auto"`: the largest vocabulary for which the one-hot matrix product beats the
# gather, per backend, measured by `jaxembed bench lookup` (docs/benchmarks.md): on CPU the
# gather wins at every size measured (V >= 16); on an H200 the one-hot product wins at V = 16
# and loses from V = 64. TPU: not measured here; its matrix unit makes small one-hot products
# cheap, the usual crossover of TPU embedding layers is taken.
ONE_HOT_MAX_VOCAB = {"cpu": 0, "gpu": 16, "cuda": 16, "rocm": 0, "tpu": 2048}


def _accumulator_dtype(dtype: Any) -> Any:
    """Sums run in at least float32 (a bfloat16 table still pools in float32)."""
    return jnp.promote_types(dtype, jnp.float32)


# --- the literal forms -----------------------------------------------------------------------
def one_hot(ids: Any, num_embeddings: int, dtype: Any = jnp.float32) -> Array:
    """``e_i``: the one-hot row of each id, shape ``ids.shape + (num_embeddings,)``.

    Padding (``-1``) gives a zero row. Concrete out-of-range ids raise ``IndexError``; traced
    ones give a NaN row (so ``one_hot(i) @ W`` is NaN, not a wrong row).
    """
    ids = _validate.id_array(ids, "one_hot ids")
    _validate.ids_in_range(ids, num_embeddings, "one_hot ids")
    ids = jnp.asarray(ids)
    valid = (ids >= PAD_ID) & (ids < num_embeddings)
    check_ids(ids, valid, num_embeddings, "one_hot ids")
    hot = jax.nn.one_hot(ids, num_embeddings, dtype=dtype)
    return jnp.where(valid[..., None], hot, jnp.full((), jnp.nan, dtype))


def multi_hot(bags: Bags, num_embeddings: int, dtype: Any = jnp.float32) -> Array:
    """``x``: the multi-hot matrix ``[B, V]`` of a batch of bags,
    ``x[b, j] = Σ_l w[b, l] · [ids[b, l] == j]`` (a duplicated id adds its weights)."""
    hot = one_hot(bags.ids, num_embeddings, dtype)
    return jnp.sum(hot * bags.slot_weights(dtype)[..., None], axis=1)


def dense_lookup(x: Float[Array, "*batch V"], table: Float[Array, "V K"]) -> Array:
    """The literal product ``x @ table`` (full float32 precision on every backend)."""
    table = _validate.table_array(table)
    x = jnp.asarray(x)
    if x.ndim == 0 or x.shape[-1] != table.shape[0]:
        raise ValueError(
            f"dense_lookup: x has shape {tuple(x.shape)}; its last axis must equal the "
            f"table's {table.shape[0]} rows"
        )
    return jnp.matmul(x, table, precision=lax.Precision.HIGHEST)


# --- max_norm (TensorFlow `_clip`: clip_by_norm of each looked-up row) -------------------------
def clip_rows(rows: Float[Array, "... K"], max_norm: float) -> Array:
    """Scale each row to L2 norm ``<= max_norm``: ``r · max_norm / max(‖r‖, max_norm)``.

    As ``tf.clip_by_norm`` (and TF's ``embedding_lookup(max_norm=...)``): applied to the
    looked-up rows, never to the table; differentiable, with a finite gradient at ``r = 0``.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    acc = _accumulator_dtype(rows.dtype)
    r = rows.astype(acc)
    sq = jnp.sum(r * r, axis=-1, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), sq)
    return (r * max_norm / jnp.maximum(norm, max_norm)).astype(rows.dtype)


# --- single ids ------------------------------------------------------------------------------
def _checked_ids(table: Any, ids: Any, what: str) -> tuple[Any, Any]:
    table = _validate.table_array(table)
    ids = _validate.id_array(ids, what)
    _validate.ids_in_range(ids, table.shape[0], what)
    return jnp.asarray(table), jnp.asarray(ids)


def _resolve_style(style: str, num_embeddings: int) -> str:
    if style == "auto":
        limit = ONE_HOT_MAX_VOCAB.get(jax.default_backend(), 0)
        return "one_hot" if num_embeddings <= limit else "gather"
    if style not in ("gather", "one_hot"):
        raise ValueError(f"lookup_style must be 'gather', 'one_hot' or 'auto', got {style!r}")
    return style


def lookup(
    table: Float[Array, "V K"],
    ids: Int[Array, ...],
    *,
    max_norm: float | None = None,
    lookup_style: LookupStyle = "gather",
) -> Array:
    """``W[ids]``: the row of each id, shape ``ids.shape + (K,)`` (TF ``embedding_lookup``).

    ``lookup_style`` picks the computation: ``"gather"`` (indexing), ``"one_hot"`` (the literal
    ``one_hot(ids) @ W``, which TPUs run on the matrix unit) or ``"auto"`` (the faster of the
    two for the backend and vocabulary size, from measurements; see ``ONE_HOT_MAX_VOCAB``).
    ``-1`` gives a zero row; out-of-range ids follow the module's policy.
    """
    table, ids = _checked_ids(table, ids, "lookup ids")
    num_embeddings = table.shape[0]
    style = _resolve_style(lookup_style, num_embeddings)
    valid = (ids >= PAD_ID) & (ids < num_embeddings)
    check_ids(ids, valid, num_embeddings, "lookup ids")
    if style == "one_hot":
        # An out-of-range id multiplies a zero row, then reads NaN: its gradient stays zero.
        hot = one_hot(jnp.where(valid, ids, PAD_ID), num_embeddings, table.dtype)
        rows = dense_lookup(hot, table)
        rows = jnp.where(valid[..., None], rows, jnp.array(jnp.nan, table.dtype))
    else:
        rows = jnp.take(table, jnp.clip(ids, 0, num_embeddings - 1), axis=0)
        fill = jnp.where(ids == PAD_ID, 0.0, jnp.nan).astype(table.dtype)
        in_table = (ids >= 0) & valid
        rows = jnp.where(in_table[..., None], rows, fill[..., None])
    if max_norm is not None:
        rows = clip_rows(rows, max_norm)
    return rows


# --- bags ------------------------------------------------------------------------------------
@jax.custom_vjp
def _weighted_row_sum(table: Array, ids: Array, weights: Array) -> Array:
    """``out[b] = Σ_l weights[b, l] · table[ids[b, l]]`` for in-range ``ids``.

    On an NVIDIA GPU this runs the Pallas kernel of :mod:`jaxembed.kernels.pallas_pool` when
    the shape suits it; everywhere else the plain-JAX loop below, which is also its reference.
    The gradient is the explicit scatter-add of ``_weighted_row_sum_bwd``.
    """
    if pallas_pool.ENABLED and pallas_pool.supports(table.shape, table.dtype, ids.shape[1]):
        return lax.platform_dependent(
            table, ids, weights, cuda=pallas_pool.pooled_sum, default=_slot_loop_row_sum
        )
    return _slot_loop_row_sum(table, ids, weights)


def _slot_loop_row_sum(table: Array, ids: Array, weights: Array) -> Array:
    """The plain-JAX gather-sum: one gather of ``B`` rows per slot ``l``, fused with the
    multiply-add, so the ``[B, L, K]`` block of rows is never written out (on a CPU this is
    what makes it match ``torch.nn.EmbeddingBag``)."""
    acc = _accumulator_dtype(table.dtype)
    width = ids.shape[1]

    def slot(l: int | Array) -> Array:
        rows = jnp.take(table, ids[:, l], axis=0, mode="clip").astype(acc)
        return rows * weights[:, l, None].astype(acc)

    out = jnp.zeros((ids.shape[0], table.shape[1]), acc)
    if width <= _UNROLL_MAX_WIDTH:
        for l in range(width):
            out = out + slot(l)
    else:
        out = lax.fori_loop(0, width, lambda l, total: total + slot(l), out)
    return out.astype(table.dtype)


def _weighted_row_sum_fwd(table, ids, weights):
    return _weighted_row_sum(table, ids, weights), (table, ids, weights)


def _weighted_row_sum_bwd(residuals, g):
    """``dW[j] = Σ_{b,l: ids[b,l]=j} w[b,l] g[b]``; ``dw[b,l] = <g[b], W[ids[b,l]]>``."""
    table, ids, weights = residuals
    acc = _accumulator_dtype(table.dtype)
    g = g.astype(acc)
    updates = (weights.astype(acc)[:, :, None] * g[:, None, :]).reshape(-1, table.shape[1])
    d_table = jnp.zeros(table.shape, acc).at[ids.reshape(-1)].add(
        updates, mode="promise_in_bounds"
    )
    rows = jnp.take(table, ids, axis=0, mode="clip").astype(acc)
    d_weights = jnp.einsum("blk,bk->bl", rows, g, precision=lax.Precision.HIGHEST)
    d_ids = jnp.zeros(ids.shape, jax.dtypes.float0)
    return d_table.astype(table.dtype), d_ids, d_weights.astype(weights.dtype)


_weighted_row_sum.defvjp(_weighted_row_sum_fwd, _weighted_row_sum_bwd)


def _normalized_weights(weights: Array, combiner: str) -> Array:
    """Per-slot weights after the combiner's normalization (``div_no_nan`` semantics)."""
    if combiner == "sum":
        return weights
    if combiner == "mean":
        denom = jnp.sum(weights, axis=1, keepdims=True)
    else:  # sqrtn
        denom = jnp.sqrt(jnp.sum(weights * weights, axis=1, keepdims=True))
    safe = jnp.where(denom == 0, 1.0, denom)
    return jnp.where(denom == 0, 0.0, weights / safe)


def _check_bag_inputs(table: Any, bags: Bags, combiner: str, what: str) -> Any:
    if not isinstance(bags, Bags):
        raise TypeError(f"{what} takes a jaxembed.Bags, got {type(bags).__name__}")
    if combiner not in COMBINERS:
        raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}")
    table = jnp.asarray(_validate.table_array(table))
    _validate.ids_in_range(bags.ids, table.shape[0], f"{what} ids")
    if combiner == "max" and bags.weights is not None:
        raise ValueError(
            "combiner='max' takes no weights (as torch.nn.EmbeddingBag); drop bags.weights"
        )
    return table


def _max_pool(table: Array, ids: Array, present: Array, max_norm: float | None) -> Array:
    """``out[b, k] = max_l W[ids[b, l], k]`` over the bag's ids; 0 for an empty bag."""
    rows = jnp.take(table, ids, axis=0, mode="clip")
    if max_norm is not None:
        rows = clip_rows(rows, max_norm)
    lowest = jnp.array(-jnp.inf, rows.dtype)
    pooled = jnp.max(jnp.where(present[..., None], rows, lowest), axis=1)
    return jnp.where(jnp.any(present, axis=1)[:, None], pooled, jnp.zeros((), rows.dtype))


def bag_lookup(
    table: Float[Array, "V K"],
    bags: Bags,
    *,
    combiner: Combiner = "mean",
    max_norm: float | None = None,
) -> Float[Array, "B K"]:
    """Pool each bag's rows: TensorFlow's ``embedding_lookup_sparse``, as a gather-sum.

    ``sum``: ``Σ_l w·W[i]``; ``mean``: that ``/ Σ_l w``; ``sqrtn``: that ``/ √Σ_l w²``;
    ``max``: elementwise maximum of the rows (no weights, as ``torch.nn.EmbeddingBag``; the
    gradient of a tie is shared by the tied rows). ``max_norm`` clips each looked-up row first.
    Always ``B`` rows; an empty bag gives zeros. Never builds the ``(B, V)`` multi-hot matrix.
    """
    table = _check_bag_inputs(table, bags, combiner, "bag_lookup")
    num_embeddings = table.shape[0]
    ids = bags.ids
    valid = (ids >= PAD_ID) & (ids < num_embeddings)
    check_ids(ids, valid, num_embeddings, "bag_lookup ids")
    present = (ids >= 0) & valid
    safe_ids = jnp.where(present, ids, 0)
    if combiner == "max":
        out = _max_pool(table, safe_ids, present, max_norm)
    else:
        acc = _accumulator_dtype(table.dtype)
        weights = jnp.where(present, bags.slot_weights(acc), 0.0)
        weights = _normalized_weights(weights, combiner)
        if max_norm is None:
            out = _weighted_row_sum(table, safe_ids, weights)
        else:
            rows = clip_rows(jnp.take(table, safe_ids, axis=0, mode="clip"), max_norm)
            out = jnp.einsum(
                "blk,bl->bk", rows.astype(acc), weights, precision=lax.Precision.HIGHEST
            ).astype(table.dtype)
    poisoned = jnp.any(~valid, axis=1)
    return jnp.where(poisoned[:, None], jnp.array(jnp.nan, out.dtype), out)


def pooling_weights(bags: Bags, combiner: Combiner, dtype: Any = jnp.float32) -> Array:
    """``w̃[b, l]``: the weight slot ``l`` of bag ``b`` carries into the pooled row, after the
    combiner's normalization (0 on padding), so that ``bag_lookup(W, bags) = Σ_l w̃ W[i]``
    for ``sum``, ``mean`` and ``sqrtn`` (without ``max_norm``)."""
    if combiner not in ("sum", "mean", "sqrtn"):
        raise ValueError(f"pooling weights exist for sum, mean and sqrtn, not {combiner!r}")
    return _normalized_weights(bags.slot_weights(dtype), combiner)


def bag_row_grads(
    bags: Bags, pooled_grads: Float[Array, "B K"], combiner: Combiner
) -> tuple[Int[Array, " N"], Float[Array, "N K"]]:
    """The row-sparse gradient of :func:`bag_lookup` w.r.t. its table.

    Given ``g = ∂L/∂bag_lookup(W, bags)``, returns ``ids int[B·L]`` (``-1`` on padding) and
    ``rows f[B·L, K]`` with ``rows[b·L + l] = w̃[b, l] · g[b]``, so that
    ``∂L/∂W = zeros.at[ids].add(rows)`` (duplicates add up) — the input of the row-sparse
    optimizers in :mod:`jaxembed.optim.sparse`, without the dense ``[V, K]`` gradient.
    """
    weights = pooling_weights(bags, combiner, _accumulator_dtype(pooled_grads.dtype))
    rows = weights[:, :, None] * pooled_grads[:, None, :]
    ids = jnp.where(bags.mask, bags.ids, PAD_ID)
    return ids.reshape(-1), rows.reshape(-1, pooled_grads.shape[-1]).astype(pooled_grads.dtype)


def safe_bag_lookup(
    table: Float[Array, "V K"],
    bags: Bags,
    *,
    combiner: Combiner = "mean",
    default_id: int | None = None,
    max_norm: float | None = None,
) -> Float[Array, "B K"]:
    """TensorFlow's ``safe_embedding_lookup_sparse``.

    Prunes padding and, for every combiner but ``sum``, slots with weight ``<= 0``; then
    pools as :func:`bag_lookup`. A bag left empty gets the row of ``default_id`` (looked up
    as a bag of that one id, so ``max_norm`` applies) or, with ``default_id=None``, zeros.
    An id outside ``[-1, V)`` is never pruned: it raises, or under ``jit`` makes its row NaN,
    as in :func:`bag_lookup`.
    """
    if not isinstance(bags, Bags):
        raise TypeError(f"safe_bag_lookup takes a jaxembed.Bags, got {type(bags).__name__}")
    table = jnp.asarray(_validate.table_array(table))
    num_embeddings = table.shape[0]
    if default_id is not None and not 0 <= int(default_id) < num_embeddings:
        raise IndexError(
            f"default_id {default_id} is out of range for a table of {num_embeddings} rows"
        )
    _validate.ids_in_range(bags.ids, num_embeddings, "safe_bag_lookup ids")
    keep = bags.ids >= 0
    if combiner != "sum" and bags.weights is not None:
        keep = keep & (bags.weights > 0)
    # An invalid id (only a traced one gets here) is never pruned: it poisons its row.
    keep = keep | (bags.ids < PAD_ID) | (bags.ids >= num_embeddings)
    ids = jnp.where(keep, bags.ids, PAD_ID)
    weights = None if bags.weights is None else jnp.where(keep, bags.weights, 0.0)
    if default_id is not None:
        if ids.shape[1] == 0:
            ids = jnp.full((ids.shape[0], 1), PAD_ID, ids.dtype)
            weights = None if weights is None else jnp.zeros(ids.shape, weights.dtype)
        empty = ~jnp.any(keep, axis=1) if keep.shape[1] else jnp.ones(ids.shape[0], bool)
        ids = ids.at[:, 0].set(jnp.where(empty, default_id, ids[:, 0]))
        if weights is not None:
            weights = weights.at[:, 0].set(jnp.where(empty, 1.0, weights[:, 0]))
    pruned = Bags.tree_unflatten(None, (ids, weights))
    return bag_lookup(table, pruned, combiner=combiner, max_norm=max_norm)
