r"""Combiners: each pooled row is the literal multi-hot product, normalized.

With :math:`x_b = \sum_l w_{bl} e_{i_{bl}}` (the multi-hot row) and ``div_no_nan`` division
(:math:`a / 0 := 0`):

.. math::

    \text{sum}_b = x_b W, \qquad
    \text{mean}_b = \frac{x_b W}{\sum_l w_{bl}}, \qquad
    \text{sqrtn}_b = \frac{x_b W}{\sqrt{\sum_l w_{bl}^2}}, \qquad
    \text{max}_{bk} = \max_l W_{i_{bl} k}

(``max``: 0 for an empty bag). The ``sqrtn`` denominator runs over *slots*, so a duplicated id
counts twice there too: the bag ``[j, j]`` gives :math:`2 W_j / \sqrt 2`, not :math:`2 W_j / 2`.
An empty bag gives a zero row for every combiner, and the output always has ``B`` rows.

The fast ``bag_lookup`` and the literal ``dense_lookup(multi_hot(bags), W) / denominator`` are
both checked against a float64 python reference within the rounding bound of
:mod:`proofs.proof_multi_hot`; ``max`` is exact (a maximum does not round).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from proofs.proof_multi_hot import (
    assert_pooled,
    like_bucket,
    reference_combine,
    slot_weights,
    table_and_bag_lists,
)
from proofs.proof_one_hot import bag_lookup, dense_lookup, multi_hot


def denominators(lists, weights, combiner: str) -> np.ndarray:
    """``Σ_l w_bl`` (mean) or ``sqrt(Σ_l w_bl²)`` (sqrtn) of each bag, by python loops."""
    out = []
    for wbag in slot_weights(lists, weights):
        if combiner == "mean":
            out.append(math.fsum(wbag))
        else:
            out.append(math.sqrt(math.fsum(w * w for w in wbag)))
    return np.array(out)


@given(table_and_bag_lists(), st.sampled_from(["mean", "sqrtn"]))
def test_normalized_combiner_is_normalized_product(data, combiner):
    """``bag_lookup(W, bags, c) == (multi_hot(bags) @ W) / d_c`` with ``d_mean = Σ_l w`` and
    ``d_sqrtn = sqrt(Σ_l w²)`` (0 where ``d_c = 0``), and both equal the python reference."""
    table, lists, weights, bags = data
    expected, scale = reference_combine(table, lists, weights, combiner)
    fast = bag_lookup(table, bags, combiner=combiner)
    assert fast.shape == (len(lists), table.shape[1])
    assert_pooled(fast, expected, scale, bags.width)

    product = np.asarray(dense_lookup(multi_hot(bags, table.shape[0]), table), np.float64)
    denom = denominators(lists, weights, combiner)[:, None]
    literal = np.divide(product, denom, out=np.zeros_like(product), where=denom != 0)
    assert_pooled(literal, expected, scale, table.shape[0])

    empty = [b for b, bag in enumerate(lists) if not bag]
    assert not np.any(np.asarray(fast)[empty])


@given(table_and_bag_lists(weighted=st.just(False)))
def test_max_combiner_is_elementwise_max(data):
    """``bag_lookup(W, bags, 'max')[b, k] == max_l W[i_bl, k]`` exactly (0 for an empty bag),
    against a python loop over each bag's rows."""
    table, lists, _, bags = data
    expected, _ = reference_combine(table, lists, None, "max")
    fast = np.asarray(bag_lookup(table, bags, combiner="max"))
    assert fast.shape == expected.shape
    np.testing.assert_array_equal(fast, expected)


@given(
    table_and_bag_lists(),
    st.sampled_from(["sum", "mean", "sqrtn"]),
    st.sampled_from([(2.0, -2.0), (0.0, 0.0), (0.5, -0.5)]),
)
def test_zero_denominator_gives_zero_row(data, combiner, pair):
    """``div_no_nan``: a bag whose weights sum to 0 gives a zero ``mean`` row; a bag whose
    weights are all 0 gives zero for every combiner; an empty bag gives zeros; the output
    keeps all ``B`` rows. (``sqrtn`` of ``(a, -a)`` is ``(W_i - W_j) a / (a√2)``.)"""
    table, _, _, drawn = data
    i, j = 0, table.shape[0] - 1
    lists, weights = [[i, j], [], [j]], [list(pair), [], [1.0]]
    bags = like_bucket(lists, weights, drawn)
    out = np.asarray(bag_lookup(table, bags, combiner=combiner), np.float64)
    assert out.shape == (bags.batch_size, table.shape[1])
    expected, scale = reference_combine(table, bags.to_lists()[0], bags.to_lists()[1], combiner)
    assert_pooled(out, expected, scale, bags.width)
    assert not np.any(out[1])
    if combiner == "mean" or pair == (0.0, 0.0):
        assert not np.any(out[0])
