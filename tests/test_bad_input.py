"""Bad input to the lookups raises at once, naming the bad value and where it is — never a
silently wrong row. (Bags constructor errors are in tests/test_bags.py; the traced, ``jit``
policy and checked mode in tests/test_checked.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import jaxembed as je

TABLE = np.arange(15, dtype=np.float32).reshape(5, 3)
BAGS = je.Bags.from_lists([[0, 1], [4]])
OUT_OF_RANGE = r"id 5 at position \(1, 0\) is out of range for a table of 5 rows"


# --- ids out of range -------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["gather", "one_hot", "auto"])
def test_lookup_id_too_large(style):
    with pytest.raises(IndexError, match="lookup ids: " + OUT_OF_RANGE):
        je.lookup(TABLE, np.array([[0, 1], [5, 2]]), lookup_style=style)


def test_lookup_id_below_minus_one():
    with pytest.raises(IndexError, match=r"lookup ids: id -2 at position 1 is out of range"):
        je.lookup(TABLE, [0, -2, 1])


def test_lookup_scalar_id():
    with pytest.raises(IndexError, match=r"id 9 at position \(\) is out of range"):
        je.lookup(TABLE, 9)


def test_one_hot_and_multi_hot_ids():
    with pytest.raises(IndexError, match="one_hot ids: " + OUT_OF_RANGE):
        je.one_hot(np.array([[0, 1], [5, 2]]), 5)
    with pytest.raises(IndexError, match=r"one_hot ids: id 7 at position \(0, 1\)"):
        je.multi_hot(je.Bags.from_lists([[1, 7]]), 5)


def test_bag_lookup_id_too_large():
    bags = je.Bags.from_lists([[0, 1], [5]])
    for combiner in je.COMBINERS:
        with pytest.raises(IndexError, match="bag_lookup ids: " + OUT_OF_RANGE):
            je.bag_lookup(TABLE, bags, combiner=combiner)


def test_safe_bag_lookup_id_too_large_even_when_pruned():
    """An out-of-range id is an error even where its weight would have pruned it."""
    bags = je.Bags.from_lists([[0, 1], [5]], [[1.0, 1.0], [0.0]])
    with pytest.raises(IndexError, match="safe_bag_lookup ids: " + OUT_OF_RANGE):
        je.safe_bag_lookup(TABLE, bags, combiner="mean")


def test_partitioned_lookup_id_too_large():
    shards = je.split_table(TABLE, 2, "div")
    with pytest.raises(IndexError, match="partitioned_lookup ids: " + OUT_OF_RANGE):
        je.partitioned_lookup(shards, np.array([[0, 1], [5, 2]]), strategy="div")


# --- id dtype and shape -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "what"),
    [
        (lambda ids: je.lookup(TABLE, ids), "lookup ids"),
        (lambda ids: je.one_hot(ids, 5), "one_hot ids"),
        (lambda ids: je.partitioned_lookup([TABLE], ids), "partitioned_lookup ids"),
    ],
)
def test_float_ids(call, what):
    with pytest.raises(TypeError, match=f"{what} must have an integer dtype, got float64"):
        call(np.array([0.0, 1.0]))


def test_bool_ids():
    with pytest.raises(TypeError, match="lookup ids must have an integer dtype, got bool"):
        je.lookup(TABLE, np.array([True, False]))


def test_ragged_ids():
    with pytest.raises(ValueError, match="lookup ids is ragged"):
        je.lookup(TABLE, [[0, 1], [2]])


# --- tables and products ----------------------------------------------------------------------
def test_table_must_be_2d_float():
    with pytest.raises(ValueError, match=r"table must be 2-D \[num_embeddings, features\]"):
        je.lookup(np.zeros(5, np.float32), [0])
    with pytest.raises(TypeError, match="table must be a float array, got dtype int64"):
        je.lookup(np.zeros((5, 2), np.int64), [0])
    with pytest.raises(ValueError, match=r"table must be 2-D"):
        je.bag_lookup(np.zeros((2, 2, 2), np.float32), BAGS)


def test_dense_lookup_shape_mismatch():
    with pytest.raises(ValueError, match=r"x has shape \(2, 4\); its last axis must equal"):
        je.dense_lookup(np.zeros((2, 4), np.float32), TABLE)


def test_bag_lookup_takes_bags():
    with pytest.raises(TypeError, match=r"bag_lookup takes a jaxembed\.Bags, got ndarray"):
        je.bag_lookup(TABLE, np.array([[0, 1]]))
    with pytest.raises(TypeError, match=r"safe_bag_lookup takes a jaxembed\.Bags, got list"):
        je.safe_bag_lookup(TABLE, [[0, 1]])


# --- options ----------------------------------------------------------------------------------
@pytest.mark.parametrize("combiner", ["avg", "Sum", "", "sqrt"])
def test_bad_combiner(combiner):
    with pytest.raises(ValueError, match=f"combiner must be one of .* got '{combiner}'"):
        je.bag_lookup(TABLE, BAGS, combiner=combiner)
    with pytest.raises(ValueError, match=f"combiner must be one of .* got '{combiner}'"):
        je.safe_bag_lookup(TABLE, BAGS, combiner=combiner)


def test_bad_lookup_style():
    with pytest.raises(ValueError, match=r"lookup_style must be .* got 'dense'"):
        je.lookup(TABLE, [0], lookup_style="dense")


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan")])
def test_max_norm_must_be_positive(max_norm):
    with pytest.raises(ValueError, match=f"max_norm must be > 0, got {max_norm}"):
        je.lookup(TABLE, [0], max_norm=max_norm)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        je.bag_lookup(TABLE, BAGS, combiner="sum", max_norm=max_norm)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        je.bag_lookup(TABLE, BAGS, combiner="max", max_norm=max_norm)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        je.partitioned_lookup([TABLE], [0], max_norm=max_norm)


@pytest.mark.parametrize("default_id", [5, -1, 100])
def test_default_id_out_of_range(default_id):
    with pytest.raises(IndexError, match=f"default_id {default_id} is out of range for a table"):
        je.safe_bag_lookup(TABLE, BAGS, default_id=default_id)


def test_max_combiner_takes_no_weights():
    weighted = je.Bags.from_lists([[0, 1]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="combiner='max' takes no weights"):
        je.bag_lookup(TABLE, weighted, combiner="max")


# --- partitions -------------------------------------------------------------------------------
def test_shard_layout_must_match_strategy():
    # 5 rows over 2 shards: TF's layout is [3, 2] (the extra row on the first shard)
    with pytest.raises(ValueError, match=r"shard sizes \[2, 3\] do not match strategy 'div'"):
        je.partitioned_lookup([TABLE[:2], TABLE[2:]], [0], strategy="div")
    with pytest.raises(ValueError, match=r"shard sizes \[1, 4\] do not match strategy 'mod'"):
        je.partitioned_lookup([TABLE[:1], TABLE[1:]], [0], strategy="mod")
    with pytest.raises(ValueError, match=r"expected \[3, 2\]"):
        je.join_shards([TABLE[:2], TABLE[2:]], "div")


def test_shards_must_agree():
    with pytest.raises(ValueError, match=r"different feature sizes \[2, 3\]"):
        je.partitioned_lookup([TABLE[:3], TABLE[3:, :2]], [0])
    with pytest.raises(TypeError, match="different dtypes"):
        je.partitioned_lookup([TABLE[:3], TABLE[3:].astype(np.float16)], [0])
    with pytest.raises(ValueError, match="at least one shard"):
        je.partitioned_lookup([], [0])
    with pytest.raises(ValueError, match=r"shard 1 must be 2-D"):
        je.partitioned_lookup([TABLE[:3], TABLE[3]], [0])


def test_bad_strategy_and_shard_count():
    with pytest.raises(ValueError, match="strategy must be 'mod' or 'div', got 'range'"):
        je.partitioned_lookup([TABLE], [0], strategy="range")
    with pytest.raises(ValueError, match=r"num_shards must be in 1..5 \(the table's rows\), got 6"):
        je.split_table(TABLE, 6)
    with pytest.raises(ValueError, match=r"num_shards must be in 1..5 .* got 0"):
        je.split_table(TABLE, 0)
    with pytest.raises(ValueError, match="num_shards must be >= 1, got 0"):
        je.shard_sizes(5, 0, "mod")
