r"""The embedding equation with symbolic entries (sympy): exact algebra, no rounding.

With :math:`W` a matrix of free symbols :math:`w_{jk}`:

* every one-hot row is a row selection, :math:`e_i W = W_{i,:}` (the vectors come from
  ``jaxembed.one_hot``), for a generic :math:`V \times K = 4 \times 3` case and a square
  :math:`3 \times 3` one (where a transposed ``dense_lookup`` would still have the right
  shape), and ``dense_lookup`` equals the product evaluated at numbers;
* the worked examples: :math:`(0, 1) W = W_1` and :math:`(0, 1, 1) W = W_1 + W_2`;
* a multi-hot row is a row sum: ``multi_hot`` of bags with duplicates and integer weights
  gives :math:`x` with :math:`x W = \sum_l w_l W_{i_l}` symbolically;
* with symbolic :math:`X`, :math:`\partial / \partial W_{jk}` of
  :math:`\langle G, X W \rangle` is :math:`(X^\top G)_{jk}`, the scatter-add, which
  ``jax.grad`` of ``bag_lookup`` matches at ``X = multi_hot(bags)``; and the
  ``mean`` / ``sqrtn`` weight derivatives obtained by ``sympy.diff`` agree with
  ``jax.grad`` of ``bag_lookup`` at numeric points;
* the symbolic expressions, evaluated at the table's numbers, equal ``bag_lookup``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from proofs import strategies as S


def symbolic_table(v: int, k: int) -> sp.Matrix:
    """A ``V x K`` matrix of free symbols ``w_j_k``."""
    return sp.Matrix(v, k, lambda j, c: sp.Symbol(f"w_{j}_{c}"))


def as_sympy(x) -> sp.Matrix:
    """A small numeric array (exact binary values) as a sympy matrix of rationals."""
    rows = np.atleast_2d(np.asarray(x, np.float64))
    return sp.Matrix([[sp.Rational(float(val)) for val in row] for row in rows])


def is_zero(m: sp.Matrix) -> bool:
    """True when every entry expands to 0 (the entries here are polynomials)."""
    return all(sp.expand(e) == 0 for e in m)


def test_one_hot_selects_rows():
    """``one_hot(i, V) · W == W[i]`` symbolically for every ``i``, for ``V x K`` = ``4 x 3``
    and ``3 x 3``; ``one_hot(-1) · W == 0``; and ``dense_lookup`` equals the symbolic product
    evaluated at numbers."""
    for v, k in ((4, 3), (3, 3)):
        w = symbolic_table(v, k)
        hot = as_sympy(je.one_hot(np.arange(-1, v), v))
        product = hot * w
        assert product.row(0) == sp.zeros(1, k)
        for i in range(v):
            assert product.row(i + 1) == w.row(i)
        numbers = np.arange(v * k, dtype=np.float32).reshape(v, k) / 4 - 1
        values = {w[j, c]: sp.Rational(float(numbers[j, c])) for j in range(v) for c in range(k)}
        np.testing.assert_array_equal(
            np.asarray(je.dense_lookup(je.one_hot(np.arange(-1, v), v), numbers)),
            np.array(product.subs(values), dtype=np.float64),
        )


def test_worked_examples():
    """``(0, 1) · W == W[1]`` and ``(0, 1, 1) · W == W[1] + W[2]``, with the vectors as
    ``multi_hot`` builds them from the bags ``[1]`` and ``[1, 2]``."""
    w2, w3 = symbolic_table(2, 3), symbolic_table(3, 3)
    x2 = as_sympy(je.multi_hot(je.Bags.from_lists([[1]]), 2))
    x3 = as_sympy(je.multi_hot(je.Bags.from_lists([[1, 2]]), 3))
    assert x2 == sp.Matrix([[0, 1]]) and x3 == sp.Matrix([[0, 1, 1]])
    assert x2 * w2 == w2.row(1)
    assert x3 * w3 == w3.row(1) + w3.row(2)


BAGS_4 = st.lists(st.lists(st.integers(0, 3), max_size=4), min_size=3, max_size=3)


@given(BAGS_4, st.data())
def test_multi_hot_sums_rows(lists, data):
    """``multi_hot(bags) · W == Σ_l w_l W[i_l]`` symbolically (``V x K = 4 x 3``;
    duplicates and integer weights), and ``bag_lookup(W_num, bags, 'sum')`` equals the
    expression evaluated at the numbers."""
    weights = [[data.draw(st.sampled_from([-2, 1, 3])) for _ in bag] for bag in lists]
    bags = je.Bags.from_lists(lists, weights, width=4)
    w = symbolic_table(4, 3)
    product = as_sympy(je.multi_hot(bags, 4)) * w
    for b, (bag, wbag) in enumerate(zip(lists, weights, strict=True)):
        row_sum = sp.zeros(1, 3)
        for j, a in zip(bag, wbag, strict=True):
            row_sum += a * w.row(j)
        assert is_zero(product.row(b) - row_sum)
    numbers = data.draw(S.tables(vocab=st.just(4), features=st.just(3)))
    values = {w[j, c]: sp.Rational(float(numbers[j, c])) for j in range(4) for c in range(3)}
    evaluated = np.array(product.subs(values), dtype=np.float64)
    fast = np.asarray(je.bag_lookup(numbers, bags, combiner="sum"), np.float64)
    np.testing.assert_allclose(fast, evaluated, rtol=2**-20, atol=2**-20 * np.abs(numbers).max())


def test_table_gradient_is_scatter_add():
    """``∂/∂W_jk <G, X W> == (Xᵀ G)_jk`` with symbolic ``X``, ``W`` and ``G``: the gradient
    routes each bag's cotangent to its ids, times their weights. Then ``X = multi_hot`` of
    weighted bags with duplicates, and ``jax.grad`` of ``<G, bag_lookup(W, bags, 'sum')>``
    equals ``Xᵀ G`` evaluated there, exactly (dyadic numbers)."""
    v, k, b = 3, 2, 3
    w = symbolic_table(v, k)
    x = sp.Matrix(b, v, lambda i, j: sp.Symbol(f"x_{i}_{j}"))
    g = sp.Matrix(b, k, lambda i, c: sp.Symbol(f"g_{i}_{c}"))
    loss = sum(g.multiply_elementwise(x * w))
    grad = sp.Matrix(v, k, lambda j, c: sp.diff(loss, w[j, c]))
    assert is_zero(grad - x.T * g)

    bags = je.Bags.from_lists([[0, 2, 2], [1], []], [[1.0, -2.0, 0.5], [3.0], []])
    x_num = as_sympy(je.multi_hot(bags, v))
    g_num = np.array([[0.5, -1.0], [2.0, 0.25], [1.0, 1.0]], np.float32)
    subs = {x[i, j]: x_num[i, j] for i in range(b) for j in range(v)}
    subs |= {g[i, c]: sp.Rational(float(g_num[i, c])) for i in range(b) for c in range(k)}
    expected = np.array(grad.subs(subs), dtype=np.float64)
    table = np.arange(v * k, dtype=np.float32).reshape(v, k) / 4
    got = jax.grad(lambda t: jnp.sum(je.bag_lookup(t, bags, combiner="sum") * g_num))(table)
    np.testing.assert_array_equal(np.asarray(got), expected)


WEIGHT_IDS = (0, 2, 2, 3)
COTANGENT = (sp.Rational(1, 2), -1, 2)


@functools.cache
def symbolic_weight_gradient(combiner: str):
    """``∂/∂a_l`` of ``<g, (Σ_l a_l W_il) / d(a)>`` for the bag ``[0, 2, 2, 3]`` by
    ``sympy.diff``, as a numeric function of ``(a, W)``."""
    a = sp.symbols("a0:4")
    w = symbolic_table(4, 3)
    pooled = sum((a[l] * w.row(j) for l, j in enumerate(WEIGHT_IDS)), sp.zeros(1, 3))
    denom = sum(a) if combiner == "mean" else sp.sqrt(sum(x**2 for x in a))
    loss = sum(COTANGENT[c] * pooled[c] for c in range(3)) / denom
    return sp.lambdify([a, list(w)], [sp.diff(loss, x) for x in a], "math")


@functools.partial(jax.jit, static_argnames="combiner")
def weight_gradient(table, weights, combiner):
    """``jax.grad`` of ``<g, bag_lookup(W, [0, 2, 2, 3], weights)>`` w.r.t. the weights."""
    ids = jnp.array([WEIGHT_IDS], jnp.int32)
    g = jnp.array([float(c) for c in COTANGENT], jnp.float32)

    def objective(w):
        return je.bag_lookup(table, je.Bags(ids, w[None]), combiner=combiner)[0] @ g

    return jax.grad(objective)(weights)


@given(
    S.tables(vocab=st.just(4), features=st.just(3)),
    st.sampled_from(["mean", "sqrtn"]),
    st.lists(st.sampled_from([1.5, 1.0, -0.25, 2.0, 0.5]), min_size=4, max_size=4),
)
def test_weight_gradient_matches_sympy(numbers, combiner, point):
    """``jax.grad`` of ``<g, bag_lookup(W, [0, 2, 2, 3], a, c)>`` with respect to the weights
    ``a`` equals ``sympy.diff`` of the symbolic ``(Σ_l a_l W_il) / d(a)``, ``d = Σ a`` (mean)
    or ``sqrt(Σ a²)`` (sqrtn), at numeric points (where ``d != 0``)."""
    if combiner == "mean" and sum(point) == 0:
        point = [*point[:3], point[3] + 1.0]
    expected = np.array(symbolic_weight_gradient(combiner)(point, numbers.ravel().tolist()))
    got = np.asarray(weight_gradient(numbers, np.array(point, np.float32), combiner))
    scale = np.abs(numbers).max() * 8
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)
