r"""The ``Bags`` constructors describe the same multi-hot matrix.

A batch of bags is the sparse form of :math:`x_{bj} = \sum_l w_{bl} [i_{bl} = j]`. Four ways
to write it must give the same :math:`x`, hence the same ``bag_lookup`` for every combiner:

* ``from_lists(lists, weights)``;
* ``from_offsets(values, offsets)`` (PyTorch ``EmbeddingBag``): bag :math:`b` holds
  ``values[offsets[b]:offsets[b+1]]``, the last bag running to the end — and the same with
  ``include_last_offset=True``, where ``offsets`` carries the end as a last entry;
* ``from_coo(indices, values, (B, L))`` (``tf.SparseTensor``): entry :math:`n` puts
  ``values[n]`` at slot ``indices[n] = (b, l)``, in any order (a random permutation here).

And ``to_lists`` inverts ``from_lists``. Drawn with duplicates, empty bags (also at the start
and the end of the batch, where offsets repeat), padding and weights.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from proofs.proof_multi_hot import slot_weights, table_and_bag_lists
from proofs.proof_one_hot import bag_lookup


def flat(lists, weights):
    """``(values, offsets with the end appended, flat weights or None)`` of python bags."""
    values = np.array([j for bag in lists for j in bag], np.int64)
    ends = np.cumsum([0] + [len(bag) for bag in lists])
    w = None if weights is None else np.array([x for wbag in weights for x in wbag], np.float32)
    return values, ends, w


def coo(lists, weights, seed: int):
    """``(indices, values, weights or None)`` of python bags, entries randomly permuted."""
    entries = [
        (b, l, j, w)
        for b, (bag, wbag) in enumerate(zip(lists, slot_weights(lists, weights), strict=True))
        for l, (j, w) in enumerate(zip(bag, wbag, strict=True))
    ]
    order = np.random.default_rng(seed).permutation(len(entries))
    entries = [entries[n] for n in order]
    indices = np.array([(b, l) for b, l, _, _ in entries], np.int64).reshape(-1, 2)
    values = np.array([j for _, _, j, _ in entries], np.int64)
    w = None if weights is None else np.array([w for *_, w in entries], np.float32)
    return indices, values, w


def assert_same_bags(got: je.Bags, want: je.Bags) -> None:
    """Same ids, and the same weights on every slot that holds an id."""
    np.testing.assert_array_equal(np.asarray(got.ids), np.asarray(want.ids))
    assert (got.weights is None) == (want.weights is None)
    np.testing.assert_array_equal(np.asarray(got.slot_weights()), np.asarray(want.slot_weights()))


@given(table_and_bag_lists(), st.integers(0, 2**32 - 1))
def test_constructors_agree(data, seed):
    """``from_lists == from_offsets == from_offsets(include_last_offset=True) ==
    from_coo(permuted)``: the same padded ids and weights, and the same ``bag_lookup`` for
    every combiner (``max`` on unweighted bags)."""
    table, lists, weights, bags = data
    width = bags.width
    values, ends, w = flat(lists, weights)
    indices, coo_values, coo_w = coo(lists, weights, seed)
    built = [
        je.Bags.from_offsets(values, ends[:-1], w, width=width),
        je.Bags.from_offsets(values, ends, w, include_last_offset=True, width=width),
        je.Bags.from_coo(indices, coo_values, (len(lists), width), coo_w),
    ]
    combiners = ["sum", "mean", "sqrtn"] if weights is not None else list(je.COMBINERS)
    for other in built:
        assert_same_bags(other, bags)
        for combiner in combiners:
            np.testing.assert_array_equal(
                np.asarray(bag_lookup(table, other, combiner=combiner)),
                np.asarray(bag_lookup(table, bags, combiner=combiner)),
            )


@given(table_and_bag_lists())
def test_to_lists_inverts_from_lists(data):
    """``to_lists(from_lists(lists, weights)) == (lists, weights)``, and ``lengths`` counts
    each bag's ids."""
    _, lists, weights, bags = data
    got_lists, got_weights = bags.to_lists()
    assert got_lists == lists
    assert got_weights == weights
    assert np.asarray(bags.lengths()).tolist() == [len(bag) for bag in lists]


@given(table_and_bag_lists())
def test_default_width_is_power_of_two_bucket(data):
    """Without ``width=``, ``from_lists`` and ``from_offsets`` pad to the power-of-two bucket
    of the longest bag (and agree)."""
    _, lists, weights, _ = data
    longest = max(map(len, lists), default=0)
    expected = 1 << max(longest - 1, 0).bit_length()
    values, ends, w = flat(lists, weights)
    by_lists = je.Bags.from_lists(lists, weights)
    by_offsets = je.Bags.from_offsets(values, ends[:-1], w)
    assert by_lists.width == by_offsets.width == expected >= max(longest, 1)
    assert_same_bags(by_offsets, by_lists)
