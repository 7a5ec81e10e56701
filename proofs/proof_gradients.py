r"""Gradients of the embedding equation: the scatter-add.

For pooled rows :math:`y_b = \sum_l \tilde w_{bl} W_{i_{bl}}` (:math:`\tilde w` the weights
after the combiner's normalization) and a cotangent :math:`g = \partial L / \partial y`:

.. math::

    \frac{\partial L}{\partial W_j} = \sum_b \tilde x_{bj}\, g_b
        = \sum_{b, l \,:\, i_{bl} = j} \tilde w_{bl}\, g_b \quad\text{(scatter-add)},

and with respect to the raw weights :math:`w_{bl}` (:math:`s_b = \sum_l w_{bl}`,
:math:`r_b = \sqrt{\sum_l w_{bl}^2}`, ``div_no_nan``: 0 where the denominator is 0):

.. math::

    \text{sum: } \langle g_b, W_{i_{bl}} \rangle, \qquad
    \text{mean: } \frac{\langle g_b, W_{i_{bl}} - y_b \rangle}{s_b}, \qquad
    \text{sqrtn: } \frac{\langle g_b, W_{i_{bl}} - y_b w_{bl} / r_b \rangle}{r_b}.

For ``max``, :math:`\partial L / \partial W_{jk} = \sum_b g_{bk} [j = \arg\max_l W_{i_{bl} k}]`
where the maximum is unique (normal-valued tables have no ties between rows; a duplicated id
ties with itself, and its slots' shares add back up to the one row, up to a rounding).
For ``lookup``, :math:`\partial L / \partial W_j = \sum_{p : i_p = j} g_p`.

Each gradient is computed three ways and compared: ``jax.vjp`` of the fast path, ``jax.vjp``
of the literal product (``one_hot`` / ``multi_hot`` and ``dense_lookup``), and the explicit
numpy loop above. Cotangents are quarter-integers and weights dyadic, so for ``lookup`` and
``sum`` every table-gradient sum is exact and so is the comparison.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from proofs.proof_multi_hot import (
    EPS32,
    reference_combine,
    slot_weights,
    table_and_bag_lists,
)
from proofs.proof_one_hot import table_and_ids


def cotangent(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Quarter-integer cotangents in ``[-2, 2]`` (exact sums), from a numpy seed."""
    return (np.random.default_rng(seed).integers(-8, 9, size=shape) / 4.0).astype(np.float32)


def padded(lists, weights, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids (``-1`` padding) and weights (0 on padding) as ``[B, width]`` numpy arrays."""
    ids = np.full((len(lists), width), -1, np.int32)
    w = np.zeros((len(lists), width), np.float32)
    for b, (bag, wbag) in enumerate(zip(lists, slot_weights(lists, weights), strict=True)):
        ids[b, : len(bag)] = bag
        w[b, : len(bag)] = wbag
    return ids, w


def normalizer(wbag: list[float], combiner: str) -> float:
    """``1 / d`` for the combiner's denominator ``d`` (1 for sum), and 0 where ``d = 0``."""
    if combiner == "sum":
        return 1.0
    d = sum(wbag) if combiner == "mean" else float(np.sqrt(sum(w * w for w in wbag)))
    return 0.0 if d == 0 else 1.0 / d


# --- the three forms, compiled once per shape bucket -------------------------------------------
@partial(jax.jit, static_argnames="combiner")
def fast_table_vjp(table, bags, g, combiner):
    """``jax.vjp`` of ``bag_lookup`` with respect to the table."""
    _, vjp = jax.vjp(lambda t: je.bag_lookup(t, bags, combiner=combiner), table)
    return vjp(g)[0]


@jax.jit
def literal_table_vjp(table, bags, inverse_denominator, g):
    """``jax.vjp`` of ``(multi_hot(bags) @ W) / d`` with respect to ``W``."""

    def literal(t):
        x = je.multi_hot(bags, t.shape[0])
        return je.dense_lookup(x, t) * inverse_denominator[:, None]

    _, vjp = jax.vjp(literal, table)
    return vjp(g)[0]


@jax.jit
def literal_max_vjp(table, ids, g):
    """``jax.vjp`` of the literal max: ``max_l (one_hot(i_bl) @ W)``, 0 for an empty bag."""

    def literal(t):
        rows = je.dense_lookup(je.one_hot(ids, t.shape[0]), t)
        present = ids >= 0
        top = jnp.max(jnp.where(present[..., None], rows, -jnp.inf), axis=1)
        return jnp.where(jnp.any(present, axis=1)[:, None], top, 0.0)

    _, vjp = jax.vjp(literal, table)
    return vjp(g)[0]


@partial(jax.jit, static_argnames="combiner")
def weight_vjps(table, ids, weights, g, combiner):
    """``jax.vjp`` with respect to the weights of ``bag_lookup`` and of the literal
    ``(multi_hot(ids, w) @ W) / d(w)`` (one compile for both)."""

    def fast(w):
        return je.bag_lookup(table, je.Bags(ids, w), combiner=combiner)

    def literal(w):
        product = je.dense_lookup(je.multi_hot(je.Bags(ids, w), table.shape[0]), table)
        if combiner == "sum":
            return product
        w = jnp.where(ids >= 0, w, 0.0)
        d = jnp.sum(w, axis=1) if combiner == "mean" else jnp.sum(w * w, axis=1)
        zero = d == 0
        safe = jnp.where(zero, 1.0, d)
        safe = safe if combiner == "mean" else jnp.sqrt(safe)
        return jnp.where(zero[:, None], 0.0, product / safe[:, None])

    return tuple(jax.vjp(f, weights)[1](g)[0] for f in (fast, literal))


@partial(jax.jit, static_argnames="style")
def lookup_vjp(table, ids, g, style):
    """``jax.vjp`` of ``lookup`` with respect to the table."""
    _, vjp = jax.vjp(lambda t: je.lookup(t, ids, lookup_style=style), table)
    return vjp(g)[0]


@jax.jit
def literal_lookup_vjp(table, ids, g):
    """``jax.vjp`` of ``one_hot(ids) @ W`` with respect to ``W``."""
    _, vjp = jax.vjp(lambda t: je.dense_lookup(je.one_hot(ids, t.shape[0]), t), table)
    return vjp(g)[0]


def assert_within(got, expected: np.ndarray, magnitude: np.ndarray, terms: int) -> None:
    """``|got - expected| <= terms · 2^-23 · magnitude`` entrywise."""
    err = np.abs(np.asarray(got, np.float64) - expected)
    bound = terms * EPS32 * magnitude
    assert np.all(err <= bound), f"max excess {float(np.max(err - bound))}"


# --- proofs ------------------------------------------------------------------------------------
@given(table_and_bag_lists(), st.sampled_from(["sum", "mean", "sqrtn"]), st.integers(0, 2**32 - 1))
def test_table_gradient_is_scatter_add(data, combiner, seed):
    """``vjp_W(bag_lookup) == vjp_W(multi_hot @ W / d) == dW``, ``dW[j] = Σ_{b,l: i_bl = j}
    (w_bl / d_b) g_b`` by a numpy loop (exact for ``sum`` over quarter-integer tables)."""
    table, lists, weights, bags = data
    g = cotangent(seed, (len(lists), table.shape[1]))
    expected = np.zeros(table.shape)
    magnitude = np.zeros(table.shape)
    inverse = []
    for b, (bag, wbag) in enumerate(zip(lists, slot_weights(lists, weights), strict=True)):
        inv = normalizer(wbag, combiner)
        inverse.append(inv)
        for j, w in zip(bag, wbag, strict=True):
            expected[j] += w * inv * g[b]
            magnitude[j] += abs(w * inv * g[b])
    fast = fast_table_vjp(table, bags, g, combiner)
    literal = literal_table_vjp(table, bags, np.array(inverse, np.float32), g)
    assert fast.shape == literal.shape == table.shape
    if combiner == "sum":  # dyadic weights times quarter-integer cotangents: exact
        np.testing.assert_array_equal(np.asarray(fast), expected)
        np.testing.assert_array_equal(np.asarray(literal), expected)
    terms = 4 * (bags.width * len(lists) + 4)
    assert_within(fast, expected, magnitude, terms)
    assert_within(literal, expected, magnitude, terms)


@given(table_and_bag_lists(weighted=st.just(False)), st.integers(0, 2**32 - 1))
def test_max_gradient_routes_to_argmax(data, seed):
    """``max``: ``vjp_W(bag_lookup) == vjp_W(literal max of one_hot products) == dW`` with
    ``dW[j, k] = Σ_b g_bk [j = argmax_{i in bag b} W_ik]``, on a tie-free (normal) table."""
    table, lists, _, bags = data
    rng = np.random.default_rng(seed)
    table = rng.normal(size=table.shape).astype(np.float32)  # distinct entries: no ties
    g = cotangent(seed, (len(lists), table.shape[1]))
    expected = np.zeros(table.shape)
    for b, bag in enumerate(lists):
        for k in range(table.shape[1]):
            if bag:
                expected[max(bag, key=lambda j: table[j, k]), k] += g[b, k]
    ids, _ = padded(lists, None, bags.width)
    # A bag holding id j n times splits g into n shares of g/n that add back up: a rounding.
    tolerance = 4 * EPS32 * float(np.max(np.abs(g), initial=0.0))
    for got in (fast_table_vjp(table, bags, g, "max"), literal_max_vjp(table, ids, g)):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=tolerance)


@given(
    table_and_bag_lists(weighted=st.just(True)),
    st.sampled_from(["sum", "mean", "sqrtn"]),
    st.integers(0, 2**32 - 1),
)
def test_weight_gradient(data, combiner, seed):
    """``vjp_w(bag_lookup) == vjp_w(literal) ==`` the closed forms ``<g_b, W_i>``,
    ``<g_b, W_i - y_b> / s_b``, ``<g_b, W_i - y_b w_bl / r_b> / r_b`` (0 on padding and where
    the denominator is 0)."""
    table, lists, weights, bags = data
    g = cotangent(seed, (len(lists), table.shape[1]))
    ids, w = padded(lists, weights, bags.width)
    pooled, scale = reference_combine(table, lists, weights, combiner)
    w64 = table.astype(np.float64)
    expected = np.zeros(ids.shape)
    magnitude = np.zeros(ids.shape)
    for b, (bag, wbag) in enumerate(zip(lists, weights, strict=True)):
        inv = normalizer(wbag, combiner)
        for l, (j, wl) in enumerate(zip(bag, wbag, strict=True)):
            if combiner == "sum":
                direction, size = w64[j], np.abs(w64[j])
            elif combiner == "mean":
                direction = (w64[j] - pooled[b]) * inv
                size = (np.abs(w64[j]) + scale[b]) * abs(inv)
            else:
                direction = (w64[j] - pooled[b] * wl * inv) * inv
                size = (np.abs(w64[j]) + scale[b] * abs(wl * inv)) * abs(inv)
            expected[b, l] = direction @ g[b]
            magnitude[b, l] = size @ np.abs(g[b])
    fast, literal = weight_vjps(table, ids, w, g, combiner)
    terms = 8 * (bags.width + table.shape[0] + table.shape[1] + 4)
    assert_within(fast, expected, magnitude, terms)
    assert_within(literal, expected, magnitude, terms)


@given(table_and_ids(), st.sampled_from(["gather", "one_hot"]), st.integers(0, 2**32 - 1))
def test_lookup_gradient_is_scatter_add(data, style, seed):
    """``vjp_W(lookup) == vjp_W(one_hot(ids) @ W) == dW``, ``dW[j] = Σ_{p: i_p = j} g_p``
    (numpy loop; padding contributes nothing), exactly."""
    table, ids = data
    g = cotangent(seed, (*ids.shape, table.shape[1]))
    expected = np.zeros(table.shape)
    for pos in np.ndindex(*ids.shape):
        if ids[pos] >= 0:
            expected[ids[pos]] += g[pos]
    np.testing.assert_array_equal(np.asarray(lookup_vjp(table, ids, g, style)), expected)
    np.testing.assert_array_equal(np.asarray(literal_lookup_vjp(table, ids, g)), expected)
