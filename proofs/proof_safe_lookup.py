r"""``safe_bag_lookup``: TensorFlow's ``safe_embedding_lookup_sparse``.

TensorFlow's rule, per bag: drop the ids :math:`< 0`; for every combiner but ``sum``, also
drop the slots whose weight is :math:`\le 0`; pool what is left with the combiner (as
``bag_lookup``, ``max_norm`` clipping each row first). A bag left with nothing gets the pooled
row of the one-id bag ``[default_id]`` with weight 1 (so ``max_norm`` applies to it) or, with
``default_id=None``, a zero row.

Proven against a python transcription of that rule over the float64 reference of
:mod:`proofs.proof_multi_hot`, with duplicates, padding, empty bags and zero/negative weights;
plus the worked difference from ``bag_lookup``: a ``mean`` bag ``[a, b]`` with weights
``(2, -2)`` is ``W_a`` here (the ``-2`` is pruned) and ``0`` in ``bag_lookup``
(``div_no_nan``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from proofs.proof_max_norm import MAX_NORM, tf_clip_by_norm
from proofs.proof_multi_hot import (
    BAG_SHAPES,
    CI_BAG_SHAPES,
    assert_pooled,
    like_bucket,
    reference_combine,
    slot_weights,
    table_and_bag_lists,
)
from proofs.proof_one_hot import THOROUGH, bag_lookup, safe_bag_lookup

# Pruning and filling do not depend on the width: in `ci` two buckets (fewer compiles).
SAFE_SHAPES = BAG_SHAPES if THOROUGH else CI_BAG_SHAPES[:2]


@st.composite
def safe_case(draw, combiner: str):
    """``(W, lists, weights, bags)`` from a bucket; when weighted, often one bag has only
    weights ``<= 0`` (all pruned: the bag is filled) besides the zero and negative weights
    of :func:`proofs.strategies.bag_lists`."""
    weighted = st.just(False) if combiner == "max" else st.booleans()
    table, lists, weights, bags = draw(table_and_bag_lists(shapes=SAFE_SHAPES, weighted=weighted))
    if weights is not None and any(lists) and draw(st.booleans()):
        b = draw(st.sampled_from([b for b, bag in enumerate(lists) if bag]))
        weights = [list(w) for w in weights]
        weights[b] = [draw(st.sampled_from([0.0, -1.0])) for _ in lists[b]]
        bags = je.Bags.from_lists(lists, weights, width=bags.width)
    return table, lists, weights, bags


def reference_safe(table, lists, weights, combiner, default_id, max_norm):
    """TF's safe lookup by python loops: prune, fill empty bags, pool (float64)."""
    rows = table if max_norm is None else tf_clip_by_norm(table, max_norm)
    kept_lists, kept_weights, filled = [], [], []
    for bag, wbag in zip(lists, slot_weights(lists, weights), strict=True):
        keep = [
            (j, w)
            for j, w in zip(bag, wbag, strict=True)
            if j >= 0 and (combiner == "sum" or weights is None or w > 0)
        ]
        filled.append(not keep)
        if not keep and default_id is not None:
            keep = [(default_id, 1.0)]
        kept_lists.append([j for j, _ in keep])
        kept_weights.append([w for _, w in keep])
    out, scale = reference_combine(
        rows, kept_lists, None if weights is None else kept_weights, combiner
    )
    if combiner == "max":
        scale = np.abs(out)
    return out, scale, np.array(filled)


@given(
    st.sampled_from(["sum", "mean", "sqrtn", "max"]),
    st.booleans(),
    st.sampled_from([None, MAX_NORM]),
    st.data(),
)
def test_safe_lookup_is_tf_rule(combiner, with_default, max_norm, data):
    """``safe_bag_lookup(W, bags, c, default_id, max_norm) == prune → fill → pool`` (TF)."""
    table, lists, weights, bags = data.draw(safe_case(combiner))
    default_id = table.shape[0] - 1 if with_default else None
    expected, scale, filled = reference_safe(table, lists, weights, combiner, default_id, max_norm)
    got = safe_bag_lookup(table, bags, combiner=combiner, default_id=default_id, max_norm=max_norm)
    assert got.shape == (len(lists), table.shape[1])
    assert_pooled(got, expected, scale, bags.width + 4)
    if default_id is None:
        assert not np.any(np.asarray(got)[filled])


@given(table_and_bag_lists(shapes=SAFE_SHAPES), st.sampled_from(["mean", "sqrtn"]))
def test_pruning_differs_from_bag_lookup(data, combiner):
    """``mean``/``sqrtn`` of ``[a, b]`` with weights ``(2, -2)``: ``safe_bag_lookup`` prunes
    the ``-2`` and gives ``W_a``; ``bag_lookup`` keeps it (``mean``: 0 by ``div_no_nan``). A
    bag ``[a]`` of weight 0 is emptied by pruning: it gets ``W[default_id]``, where
    ``bag_lookup`` gives 0."""
    table, _, _, drawn = data
    a, b = 0, table.shape[0] - 1
    bags = like_bucket([[a, b], [a]], [[2.0, -2.0], [0.0]], drawn)
    safe = np.asarray(safe_bag_lookup(table, bags, combiner=combiner, default_id=b), np.float64)
    np.testing.assert_allclose(safe[0], table[a], rtol=2**-22)
    np.testing.assert_array_equal(safe[1:], np.broadcast_to(table[b], safe[1:].shape))
    plain = np.asarray(bag_lookup(table, bags, combiner=combiner), np.float64)
    expected, _ = reference_combine(table, [[a, b]], [[2.0, -2.0]], combiner)
    atol = 2**-20 * np.abs(table).max()
    np.testing.assert_allclose(plain[:1], expected, rtol=2**-20, atol=atol)
    assert not np.any(plain[1:])
