r"""Multi-hot row sum: :math:`x W = \sum_j x_j W_{j,:}` with
:math:`x_{bj} = \sum_l w_{bl} [i_{bl} = j]`.

The literal product ``dense_lookup(multi_hot(bags, V), W)`` is proven equal to the gather-sum
``bag_lookup(W, bags, combiner='sum')`` and to a python-loop reference, with duplicated ids (a
duplicate counts twice), weights (zero and negative included), empty bags and padding; plus the
two worked examples :math:`(0, 1)\,W = W_1` and :math:`(0, 1, 1)\,W = W_1 + W_2`.

Exactness: when the table holds quarter-integers (half the drawn tables) every weight is
dyadic, so every product and partial sum is exact in float32 and the equality is exact.
Otherwise the bound is the standard one for a sum of ``n`` terms,
:math:`|\Delta| \le (n + 4)\, 2^{-23} \sum_l |w_{bl}| \, |W_{i_{bl}}|`.

The helpers :func:`table_and_bag_lists`, :func:`reference_multi_hot` and
:func:`reference_combine` are the literal references that the other bag proofs reuse.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from proofs import strategies as S
from proofs.proof_one_hot import THOROUGH, bag_lookup, dense_lookup, multi_hot

EPS32 = 2.0**-23

# (V, K, B, L) shape buckets: in the `ci` profile three (each compiles once per run) that
# between them cover V = 1 (every id equal), K = 1, wide bags with much padding and a
# vocabulary larger than the bags; in the `thorough` profile every combination of the sizes
# in proofs/strategies.py (B = 1 and L = 1 included).
CI_BAG_SHAPES = ((1, 3, 3, 2), (5, 1, 8, 4), (33, 8, 3, 8))
BAG_SHAPES = (
    tuple(itertools.product(S.VOCAB_SIZES, S.FEATURE_SIZES, S.BATCH_SIZES, S.WIDTHS))
    if THOROUGH
    else CI_BAG_SHAPES
)


@st.composite
def table_and_bag_lists(draw, dtype=np.float32, shapes=BAG_SHAPES, **bag_kwargs):
    """``(W, lists, weights, bags)``: a ``[V, K]`` table, ``B`` python bags of at most ``L``
    ids (duplicates, empty bags, zero and negative weights when weighted) and the
    :class:`jaxembed.Bags` built from them at width ``L`` (so there is padding)."""
    v, k, b, width = draw(st.sampled_from(shapes))
    table = draw(S.tables(vocab=st.just(v), features=st.just(k), dtype=dtype))
    lists, weights = draw(S.bag_lists(v, batch=st.just(b), max_len=width, **bag_kwargs))
    return table, lists, weights, je.Bags.from_lists(lists, weights, width=width)


def like_bucket(lists, weights, bags: je.Bags) -> je.Bags:
    """Hand-written bags padded with empty bags to the shape ``(B, L)`` of ``bags`` (a drawn
    bucket), so that they reuse that bucket's compiled functions (or to a larger shape where
    they do not fit)."""
    extra = max(bags.batch_size - len(lists), 0)
    lists = [*lists, *[[]] * extra]
    weights = None if weights is None else [*weights, *[[]] * extra]
    width = max(bags.width, max(map(len, lists)))
    return je.Bags.from_lists(lists, weights, width=width)


def slot_weights(lists: list[list[int]], weights: list[list[float]] | None) -> list[list[float]]:
    """Each id's weight (1 when unweighted)."""
    return [[1.0] * len(bag) for bag in lists] if weights is None else weights


def reference_multi_hot(lists, weights, num_embeddings: int) -> np.ndarray:
    """``x[b, j] = Σ_l w[b, l] · [ids[b, l] == j]`` by python loops (float64)."""
    x = np.zeros((len(lists), num_embeddings))
    for b, (bag, wbag) in enumerate(zip(lists, slot_weights(lists, weights), strict=True)):
        for j, w in zip(bag, wbag, strict=True):
            x[b, j] += w
    return x


def reference_combine(table, lists, weights, combiner: str) -> tuple[np.ndarray, np.ndarray]:
    """The literal normalized product in float64, and the magnitude that bounds its rounding.

    ``sum``: ``x @ W``; ``mean``: ``(x @ W) / Σ_l w``; ``sqrtn``: ``(x @ W) / sqrt(Σ_l w²)``;
    a zero denominator gives 0 (``div_no_nan``); ``max``: elementwise max of the rows, 0 for an
    empty bag. Returns ``(out, scale)`` with ``scale[b] = Σ_l |w_bl| |W[i_bl]| / |denominator|``.
    """
    w64 = table.astype(np.float64)
    out = np.zeros((len(lists), table.shape[1]))
    scale = np.zeros_like(out)
    for b, (bag, wbag) in enumerate(zip(lists, slot_weights(lists, weights), strict=True)):
        if combiner == "max":
            if bag:
                out[b] = np.max(w64[bag], axis=0)
            continue
        total = np.zeros(table.shape[1])
        magnitude = np.zeros(table.shape[1])
        for j, w in zip(bag, wbag, strict=True):
            total += w * w64[j]
            magnitude += abs(w) * np.abs(w64[j])
        denom = {
            "sum": 1.0,
            "mean": math.fsum(wbag),
            "sqrtn": math.sqrt(math.fsum(w * w for w in wbag)),
        }[combiner]
        if denom != 0:
            out[b] = total / denom
            scale[b] = magnitude / abs(denom)
    return out, scale


def is_quarter_integer(table: np.ndarray) -> bool:
    """True when every entry is a multiple of 1/4 (then float32 sums here are exact)."""
    return bool(np.all(table * 4 == np.round(table * 4)))


def assert_pooled(got, expected: np.ndarray, scale: np.ndarray, width: int) -> None:
    """``|got - expected| <= (width + 4) 2^-23 scale`` entrywise."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == expected.shape
    err = np.abs(got - expected)
    bound = (width + 4) * EPS32 * scale
    assert np.all(err <= bound), f"max excess {float(np.max(err - bound))}"


@given(table_and_bag_lists())
def test_multi_hot_matches_loop_reference(data):
    """``multi_hot(bags, V)[b, j] == Σ_l w_bl [i_bl = j]`` exactly (duplicates add up, padding
    and empty bags give zeros), and each slot's weight is ``w_bl``, 0 on padding."""
    table, lists, weights, bags = data
    v = table.shape[0]
    x = np.asarray(multi_hot(bags, v))
    assert x.shape == (len(lists), v)
    np.testing.assert_array_equal(x, reference_multi_hot(lists, weights, v))
    slots = np.zeros((len(lists), bags.width))
    for b, wbag in enumerate(slot_weights(lists, weights)):
        slots[b, : len(wbag)] = wbag
    np.testing.assert_array_equal(np.asarray(bags.slot_weights()), slots)  # 0 on padding


@given(table_and_bag_lists())
def test_multi_hot_product_is_gather_sum(data):
    """``dense_lookup(multi_hot(bags, V), W) == bag_lookup(W, bags, combiner='sum') ==
    Σ_l w_bl W[i_bl]`` (exact for quarter-integer tables, else within the sum bound)."""
    table, lists, weights, bags = data
    literal = dense_lookup(multi_hot(bags, table.shape[0]), table)
    fast = bag_lookup(table, bags, combiner="sum")
    expected, scale = reference_combine(table, lists, weights, "sum")
    if is_quarter_integer(table):
        np.testing.assert_array_equal(np.asarray(literal), expected)
        np.testing.assert_array_equal(np.asarray(fast), expected)
    else:
        assert_pooled(literal, expected, scale, max(bags.width, table.shape[0]))
        assert_pooled(fast, expected, scale, bags.width)
    empty = [b for b, bag in enumerate(lists) if not bag]
    assert not np.any(np.asarray(fast)[empty])


@given(
    S.tables(vocab=st.just(2), features=st.just(3)), S.tables(vocab=st.just(3), features=st.just(3))
)
def test_worked_examples(table2, table3):
    """``(0, 1) @ W = W[1]`` and ``(0, 1, 1) @ W = W[1] + W[2]``, exactly: as literal
    vectors, as ``multi_hot`` of the bags ``[1]`` and ``[1, 2]``, and through ``bag_lookup``."""
    x2 = np.array([[0.0, 1.0]], np.float32)
    x3 = np.array([[0.0, 1.0, 1.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(dense_lookup(x2, table2)), table2[1:2])
    np.testing.assert_array_equal(
        np.asarray(dense_lookup(x3, table3)), (table3[1] + table3[2])[None]
    )
    bag2, bag3 = je.Bags.from_lists([[1]]), je.Bags.from_lists([[1, 2]])
    np.testing.assert_array_equal(np.asarray(multi_hot(bag2, 2)), x2)
    np.testing.assert_array_equal(np.asarray(multi_hot(bag3, 3)), x3)
    np.testing.assert_array_equal(np.asarray(bag_lookup(table2, bag2, combiner="sum")), table2[1:2])
    np.testing.assert_array_equal(
        np.asarray(bag_lookup(table3, bag3, combiner="sum")), (table3[1] + table3[2])[None]
    )


@given(table_and_bag_lists(), st.integers(0, 2**16), st.sampled_from([1.0, 0.5, -2.0]))
def test_duplicate_counts_twice(data, pick, weight):
    """A bag ``[j, j]`` with weight ``w`` on each slot is ``x_j = 2w``: ``x W = 2w W[j]``."""
    table, _, _, drawn = data
    j = pick % table.shape[0]
    bags = like_bucket([[j, j]], [[weight, weight]], drawn)
    x = np.asarray(multi_hot(bags, table.shape[0]))
    assert x[0, j] == 2 * weight and np.count_nonzero(x) == 1
    expected = np.zeros((bags.batch_size, table.shape[1]))
    expected[0] = 2 * weight * table[j].astype(np.float64)
    np.testing.assert_allclose(
        np.asarray(bag_lookup(table, bags, combiner="sum")), expected, rtol=2 * EPS32
    )
    np.testing.assert_allclose(np.asarray(dense_lookup(x, table)), expected, rtol=2 * EPS32)
