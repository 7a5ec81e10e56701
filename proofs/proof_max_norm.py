r"""``max_norm``: each looked-up row is clipped, :math:`r \mapsto r \cdot c / \max(\lVert r
\rVert_2, c)`.

TensorFlow's ``embedding_lookup(..., max_norm=c)`` applies ``tf.clip_by_norm`` to the rows it
gathered, never to the table. Proven here, for ``lookup`` and for ``bag_lookup`` with every
combiner:

* the clipped rows have :math:`\lVert r' \rVert \le c` and rows already inside the ball are
  unchanged (up to the rounding of :math:`r c / c`);
* the result equals a float64 transcription of ``tf.clip_by_norm`` (including its
  ``l2sum > 0`` guard for the zero row);
* the table is untouched;
* the gradient flows through the clip: ``jax.vjp`` of the lookup equals ``jax.vjp`` of the
  literal numpy-style formula ``W[ids] * c / maximum(norm(W[ids]), c)``; at a zero row (where
  the literal formula's ``norm`` has no derivative) the gradient is the identity.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from proofs.proof_gradients import cotangent
from proofs.proof_multi_hot import EPS32, assert_pooled, reference_combine, table_and_bag_lists
from proofs.proof_one_hot import bag_lookup, lookup, reference_rows, table_and_ids

MAX_NORM = 2.0
# Table scales: rows mostly inside the ball, mixed, mostly outside.
SCALES = (0.05, 0.3, 1.0)


def tf_clip_by_norm(t: np.ndarray, clip_norm: float) -> np.ndarray:
    """``tf.clip_by_norm`` over the last axis, transcribed in float64."""
    t = t.astype(np.float64)
    l2sum = np.sum(t * t, axis=-1, keepdims=True)
    pred = l2sum > 0
    l2sum_safe = np.where(pred, l2sum, np.ones_like(l2sum))
    l2norm = np.where(pred, np.sqrt(l2sum_safe), l2sum)
    intermediate = t * clip_norm
    return intermediate / np.maximum(l2norm, clip_norm)


@partial(jax.jit, static_argnames="max_norm")
def clipped_lookup_vjp(table, ids, g, max_norm):
    """``jax.vjp`` of ``lookup(W, ids, max_norm=c)`` with respect to ``W``."""
    _, vjp = jax.vjp(lambda t: je.lookup(t, ids, max_norm=max_norm), table)
    return vjp(g)[0]


@partial(jax.jit, static_argnames="max_norm")
def literal_clip_vjp(table, ids, g, max_norm):
    """``jax.vjp`` of ``r * c / maximum(norm(r), c)`` with ``r = W[ids]`` (numpy indexing)."""

    def literal(t):
        r = t[ids]
        return r * max_norm / jnp.maximum(jnp.linalg.norm(r, axis=-1, keepdims=True), max_norm)

    _, vjp = jax.vjp(literal, table)
    return vjp(g)[0]


@given(table_and_ids(), st.sampled_from(SCALES))
def test_clipped_rows(data, scale):
    """``‖lookup(W, ids, max_norm=c)[p]‖ <= c``; rows with ``‖W[i]‖ <= c`` are unchanged;
    every row equals ``tf.clip_by_norm(W[i], c)``; ``-1`` gives zeros; ``W`` is untouched."""
    table, ids = data
    table = (table * scale).astype(np.float32)
    before = table.copy()
    out = np.asarray(lookup(table, ids, max_norm=MAX_NORM), np.float64)
    rows = reference_rows(table, ids)
    norms = np.linalg.norm(out, axis=-1)
    assert np.all(norms <= MAX_NORM * (1 + 4 * EPS32))
    inside = np.linalg.norm(rows, axis=-1) <= MAX_NORM
    np.testing.assert_allclose(out[inside], rows[inside], rtol=2 * EPS32, atol=0)
    np.testing.assert_allclose(out, tf_clip_by_norm(rows, MAX_NORM), rtol=4 * EPS32, atol=0)
    assert not np.any(out[ids == -1])
    np.testing.assert_array_equal(table, before)
    np.testing.assert_array_equal(np.asarray(lookup(table, ids)), rows)


@given(table_and_ids(), st.sampled_from(SCALES), st.integers(0, 2**32 - 1))
def test_gradient_through_clip(data, scale, seed):
    """``vjp_W(lookup(W, ids, max_norm=c)) == vjp_W(W[ids] * c / maximum(‖W[ids]‖, c))``.

    Padding rows are constant zeros, so their cotangent is dropped from the literal form (which
    reads row 0 there); zero rows are replaced by ones, the literal ``norm`` having no
    derivative at 0 (that point is :func:`test_gradient_at_zero_row`)."""
    table, ids = data
    table = (table * scale).astype(np.float32)
    table[~np.any(table, axis=1)] = 1.0
    g = cotangent(seed, (*ids.shape, table.shape[1]))
    present = ids >= 0
    fast = clipped_lookup_vjp(table, ids, g, MAX_NORM)
    literal = literal_clip_vjp(table, np.where(present, ids, 0), g * present[..., None], MAX_NORM)
    terms = 16 * (int(np.prod(ids.shape)) + table.shape[1])
    bound = terms * EPS32 * (1 + np.abs(np.asarray(literal)))
    assert np.all(np.abs(np.asarray(fast) - np.asarray(literal)) <= bound)


@given(table_and_ids(), st.integers(0, 2**32 - 1))
def test_gradient_at_zero_row(data, seed):
    """At a zero row the clip is the identity near 0, so ``vjp`` passes ``g`` through
    unchanged (finite, as ``tf.clip_by_norm``'s guarded norm)."""
    table, ids = data
    table = np.zeros_like(table)
    g = cotangent(seed, (*ids.shape, table.shape[1]))
    expected = np.zeros(table.shape)
    for pos in np.ndindex(*ids.shape):
        if ids[pos] >= 0:
            expected[ids[pos]] += g[pos]
    np.testing.assert_array_equal(np.asarray(clipped_lookup_vjp(table, ids, g, MAX_NORM)), expected)


@given(table_and_bag_lists(), st.sampled_from(["sum", "mean", "sqrtn", "max"]), st.data())
def test_bag_lookup_clips_rows_before_pooling(data, combiner, more):
    """``bag_lookup(W, bags, c, max_norm) == combine_c(tf.clip_by_norm(W[i_bl]))``: clipping
    the looked-up rows equals looking up the clipped table, for every combiner."""
    table, lists, weights, bags = data
    scale = more.draw(st.sampled_from(SCALES))
    table = (table * scale).astype(np.float32)
    if combiner == "max" and weights is not None:
        bags = je.Bags.from_lists(lists, width=bags.width)
        weights = None
    clipped = tf_clip_by_norm(table, MAX_NORM)
    expected, magnitude = reference_combine(clipped, lists, weights, combiner)
    if combiner == "max":
        magnitude = np.abs(expected)
    got = bag_lookup(table, bags, combiner=combiner, max_norm=MAX_NORM)
    assert_pooled(got, expected, magnitude, bags.width + 4)
