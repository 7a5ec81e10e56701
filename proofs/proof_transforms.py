r"""The lookups commute with JAX's transformations.

* ``jit``: :math:`\mathrm{jit}(f)(x) = f(x)` for ``lookup`` (every style), ``bag_lookup``
  (every combiner), ``safe_bag_lookup`` and ``partitioned_lookup`` — eager calls run the same
  code after the input checks, so this carries the other proofs (which call compiled wrappers)
  over to eager calls;
* ``vmap`` over a leading batch of tables: :math:`\mathrm{vmap}(f(\cdot, b))(W_{1..N}) =
  [f(W_n, b)]_n`;
* ``vmap`` over a leading batch of ``Bags`` (a pytree): :math:`\mathrm{vmap}(f(W, \cdot))
  (b_{1..N}) = [f(W, b_n)]_n`;
* batching: bags are independent rows, so splitting a batch, looking up the parts and
  concatenating gives the whole: :math:`f(W, b_{1:c} \Vert b_{c:B}) = f(W, b_{1:c}) \Vert
  f(W, b_{c:B})`.

Compared within the rounding of one pooled sum (XLA may fuse a compiled multiply-add
differently from an eager one); the batching split is exact.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from proofs import strategies as S
from proofs.proof_multi_hot import BAG_SHAPES, CI_BAG_SHAPES, EPS32, table_and_bag_lists
from proofs.proof_one_hot import (
    CI_ID_SHAPES,
    ID_SHAPES,
    THOROUGH,
    bag_lookup,
    lookup,
    safe_bag_lookup,
    table_and_ids,
)
from proofs.proof_partition import partitioned_lookup, split_table

COMBINERS = st.sampled_from(je.COMBINERS)
# An eager call compiles each of its operations per shape (far more than one jit compile), so
# in `ci` the eager comparisons use one bucket; `thorough` uses them all.
EAGER_BAG_SHAPES = BAG_SHAPES if THOROUGH else CI_BAG_SHAPES[1:2]
EAGER_ID_SHAPES = ID_SHAPES if THOROUGH else CI_ID_SHAPES[1:2]


def bags_for(combiner: str):
    """Bags strategy: unweighted for ``max`` (which takes no weights)."""
    weighted = st.just(False) if combiner == "max" else st.booleans()
    return table_and_bag_lists(shapes=EAGER_BAG_SHAPES, weighted=weighted)


def assert_close(got, want, width: int) -> None:
    """Equal within ``(width + 4) 2^-23`` relative to the magnitude of ``want`` (+ 1)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    bound = (width + 4) * EPS32 * (1 + np.abs(want))
    assert np.all(np.abs(got - want) <= bound)


@given(COMBINERS, st.data())
def test_jit_equals_eager_bags(combiner, data):
    """``jit(bag_lookup) == bag_lookup`` and ``jit(safe_bag_lookup) == safe_bag_lookup`` for
    every combiner."""
    table, _, _, bags = data.draw(bags_for(combiner))
    width = bags.width
    assert_close(
        bag_lookup(table, bags, combiner=combiner),
        je.bag_lookup(table, bags, combiner=combiner),
        width,
    )
    assert_close(
        safe_bag_lookup(table, bags, combiner=combiner, default_id=0),
        je.safe_bag_lookup(table, bags, combiner=combiner, default_id=0),
        width,
    )


@given(
    table_and_ids(shapes=EAGER_ID_SHAPES),
    st.sampled_from(["gather", "one_hot", "auto"]),
    st.integers(1, 2),
)
def test_jit_equals_eager_ids(data, style, num_shards):
    """``jit(lookup) == lookup`` (every style) and ``jit(partitioned_lookup) ==
    partitioned_lookup``, exactly."""
    table, ids = data
    np.testing.assert_array_equal(
        np.asarray(lookup(table, ids, lookup_style=style)),
        np.asarray(je.lookup(table, ids, lookup_style=style)),
    )
    p = min(num_shards, table.shape[0])
    shards = split_table(table, p, "div")
    np.testing.assert_array_equal(
        np.asarray(partitioned_lookup(shards, ids, strategy="div")),
        np.asarray(je.partitioned_lookup(shards, ids, strategy="div")),
    )


@partial(jax.jit, static_argnames="combiner")
def lookup_each_table(tables, bags, combiner):
    """``vmap`` of ``bag_lookup`` over a leading axis of tables."""
    return jax.vmap(lambda t: je.bag_lookup(t, bags, combiner=combiner))(tables)


@partial(jax.jit, static_argnames="combiner")
def lookup_each_batch(table, stacked, combiner):
    """``vmap`` of ``bag_lookup`` over a leading axis of a stacked ``Bags``."""
    return jax.vmap(lambda b: je.bag_lookup(table, b, combiner=combiner))(stacked)


@given(COMBINERS, st.integers(0, 2**32 - 1), st.data())
def test_vmap_over_tables(combiner, seed, data):
    """``vmap(W ↦ bag_lookup(W, bags))(W_1..3) == [bag_lookup(W_n, bags)]``."""
    table, _, _, bags = data.draw(bags_for(combiner))
    rng = np.random.default_rng(seed)
    tables = np.stack([table, rng.normal(size=table.shape), -table]).astype(np.float32)
    got = lookup_each_table(tables, bags, combiner)
    for n in range(3):
        assert_close(got[n], bag_lookup(tables[n], bags, combiner=combiner), bags.width)


@given(COMBINERS, st.data())
def test_vmap_over_bags(combiner, data):
    """``vmap(b ↦ bag_lookup(W, b))(b_1, b_2) == [bag_lookup(W, b_n)]`` for a stacked
    ``Bags`` pytree."""
    table, _, _, first = data.draw(bags_for(combiner))
    v = table.shape[0]
    weighted = st.just(first.weights is not None)
    lists, weights = data.draw(
        S.bag_lists(v, batch=st.just(first.batch_size), max_len=first.width, weighted=weighted)
    )
    second = je.Bags.from_lists(lists, weights, width=first.width)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), first, second)
    got = lookup_each_batch(table, stacked, combiner)
    for n, bags in enumerate((first, second)):
        assert_close(got[n], bag_lookup(table, bags, combiner=combiner), bags.width)


@given(COMBINERS, st.data())
def test_split_batch_concatenates(combiner, data):
    """``bag_lookup(W, bags) == bag_lookup(W, bags[:c]) ‖ bag_lookup(W, bags[c:])`` exactly,
    for the cut ``c = B / 2`` of a batch of 8."""
    weighted = st.just(False) if combiner == "max" else st.booleans()
    table, _, _, bags = data.draw(table_and_bag_lists(shapes=CI_BAG_SHAPES[1:2], weighted=weighted))
    cut = bags.batch_size // 2  # both parts share one shape, so one compile
    parts = [
        je.Bags(bags.ids[part], None if bags.weights is None else bags.weights[part])
        for part in (slice(0, cut), slice(cut, None))
    ]
    whole = np.asarray(bag_lookup(table, bags, combiner=combiner))
    pieces = np.concatenate([np.asarray(bag_lookup(table, p, combiner=combiner)) for p in parts])
    np.testing.assert_array_equal(pieces, whole)
