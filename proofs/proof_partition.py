r"""Partitioned lookup: ``P`` shards looked up as the whole table (TensorFlow's layouts).

TensorFlow's ``embedding_lookup(params=[shard_0, ..., shard_{P-1}], ids, partition_strategy)``
places id :math:`i` of a :math:`V`-row table

* ``"mod"``: on shard :math:`i \bmod P` at row :math:`\lfloor i / P \rfloor`;
* ``"div"``: with :math:`q = \lfloor V / P \rfloor`, :math:`r = V \bmod P`, on shard
  :math:`p = \max(\lfloor i / (q + 1) \rfloor, \lfloor (i - r) / q \rfloor)` at row
  :math:`i \bmod (q + 1)` if :math:`p < r`, else :math:`(i - r) \bmod q` — so the first
  :math:`r` shards hold :math:`q + 1` rows and the others :math:`q`.

:func:`tf_placement` transcribes those formulas as TensorFlow writes them (``embedding_ops``);
it is not derived from :mod:`jaxembed.partition`. Proven: ``shard_of`` and ``shard_sizes``
agree with it for every :math:`1 \le P \le V \le 70`; ``split_table`` puts each row where it
says; ``join_shards(split_table(W)) == W``; and ``partitioned_lookup(split_table(W, P, s), ids,
strategy=s) == lookup(W, ids)`` exactly (with ``-1`` padding; with ``max_norm`` within 4 ulp).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.partition import shard_of
from proofs import strategies as S
from proofs.proof_max_norm import MAX_NORM
from proofs.proof_multi_hot import EPS32
from proofs.proof_one_hot import CI_ID_SHAPES, ID_BATCH_SHAPES, THOROUGH, lookup

split_table = jax.jit(je.split_table, static_argnames=("num_shards", "strategy"))
join_shards = jax.jit(je.join_shards, static_argnames="strategy")
partitioned_lookup = jax.jit(je.partitioned_lookup, static_argnames=("strategy", "max_norm"))

# (V, K, ids shape, P) cases: in `ci` the id buckets of proofs/proof_one_hot.py (so `lookup`
# compiles are shared) with P = 1, P = V and remainders V mod P of 0, 1 and 3; in `thorough`
# every V, K, ids shape of the strategies and every P in 1..V.
CI_PARTITION_CASES = tuple(
    (v, k, shape, p)
    for (v, k, shape), shards in zip(CI_ID_SHAPES, ((1,), (2, 5), (6,)), strict=True)
    for p in shards
)
PARTITION_CASES = (
    tuple(
        (v, k, shape, p)
        for v, k, shape in itertools.product(S.VOCAB_SIZES, S.FEATURE_SIZES, ID_BATCH_SHAPES)
        for p in range(1, v + 1)
    )
    if THOROUGH
    else CI_PARTITION_CASES
)
EXHAUSTIVE_MAX_V = 70


def tf_placement(i: int, num_ids: int, num_shards: int, strategy: str) -> tuple[int, int]:
    """``(shard, row)`` of id ``i``, as TensorFlow's ``embedding_lookup`` computes it."""
    if strategy == "mod":
        return i % num_shards, i // num_shards
    ids_per_partition = num_ids // num_shards
    extras = num_ids % num_shards
    p = max(i // (ids_per_partition + 1), (i - extras) // ids_per_partition)
    if p < extras:
        return p, i % (ids_per_partition + 1)
    return p, (i - extras) % ids_per_partition


def tf_shard_sizes(num_ids: int, num_shards: int, strategy: str) -> list[int]:
    """Rows on each shard: count the ids :func:`tf_placement` sends there."""
    sizes = [0] * num_shards
    for i in range(num_ids):
        sizes[tf_placement(i, num_ids, num_shards, strategy)[0]] += 1
    return sizes


@st.composite
def partition_case(draw):
    """``(W, ids, P, strategy)`` from a partition case."""
    v, k, shape, p = draw(st.sampled_from(PARTITION_CASES))
    table = draw(S.tables(vocab=st.just(v), features=st.just(k)))
    return table, draw(S.id_arrays(v, shape=shape)), p, draw(st.sampled_from(["mod", "div"]))


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_placement_matches_tensorflow(strategy):
    """For every ``1 <= P <= V <= 70``: ``shard_of(i) == tf_placement(i)`` for every id, and
    ``shard_sizes == tf_shard_sizes`` (``div``: the first ``V mod P`` shards hold one extra
    row); each shard's rows are ``0 .. size-1``, each once."""
    for v in range(1, EXHAUSTIVE_MAX_V + 1):
        ids = np.arange(v)
        for p in range(1, v + 1):
            shard, row = shard_of(ids, v, p, strategy)
            expected = [tf_placement(i, v, p, strategy) for i in range(v)]
            assert list(zip(shard.tolist(), row.tolist(), strict=True)) == expected
            sizes = tf_shard_sizes(v, p, strategy)
            assert je.shard_sizes(v, p, strategy) == sizes
            assert sorted(expected) == [(s, r) for s in range(p) for r in range(sizes[s])]
            if strategy == "div":
                q, extra = divmod(v, p)
                assert sizes == [q + 1] * extra + [q] * (p - extra)


@given(partition_case())
def test_split_places_rows_as_tensorflow(case):
    """``split_table(W, P, s)[shard][row] == W[i]`` with ``(shard, row) = tf_placement(i)``,
    shard shapes follow ``tf_shard_sizes``, and ``join_shards(split_table(W)) == W``."""
    table, _, p, strategy = case
    v = table.shape[0]
    shards = [np.asarray(s) for s in split_table(table, p, strategy)]
    assert [s.shape for s in shards] == [
        (n, table.shape[1]) for n in tf_shard_sizes(v, p, strategy)
    ]
    for i in range(v):
        shard, row = tf_placement(i, v, p, strategy)
        np.testing.assert_array_equal(shards[shard][row], table[i])
    np.testing.assert_array_equal(np.asarray(join_shards(shards, strategy)), table)


@given(partition_case(), st.sampled_from([None, MAX_NORM]))
def test_partitioned_lookup_is_lookup(case, max_norm):
    """``partitioned_lookup(split_table(W, P, s), ids, strategy=s, max_norm=c) ==
    lookup(W, ids, max_norm=c)``, ``-1`` giving zeros: exactly without ``max_norm``; with it
    within 4 ulp (the two programs may compile the norm's sum and square root differently)."""
    table, ids, p, strategy = case
    shards = split_table(table, p, strategy)
    got = np.asarray(partitioned_lookup(shards, ids, strategy=strategy, max_norm=max_norm))
    want = np.asarray(lookup(table, ids, max_norm=max_norm))
    if max_norm is None:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=4 * EPS32, atol=0)
    assert not np.any(got[ids == -1])
