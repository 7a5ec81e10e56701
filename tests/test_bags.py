"""Bags: padding, widths, derived arrays, pytree behaviour, and constructor errors that name
the bad value and where it is."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxembed as je

TABLE = np.arange(15, dtype=np.float32).reshape(5, 3)


# --- layout ------------------------------------------------------------------------------------
def test_from_lists_pads_with_minus_one_to_a_power_of_two():
    bags = je.Bags.from_lists([[1, 2, 3], [], [4]])
    assert bags.batch_size == 3 and bags.width == 4
    np.testing.assert_array_equal(
        np.asarray(bags.ids), [[1, 2, 3, -1], [-1, -1, -1, -1], [4, -1, -1, -1]]
    )
    assert bags.ids.dtype == jnp.int32
    assert bags.weights is None
    np.testing.assert_array_equal(np.asarray(bags.lengths()), [3, 0, 1])
    np.testing.assert_array_equal(np.asarray(bags.mask), np.asarray(bags.ids) != -1)


@pytest.mark.parametrize(("longest", "width"), [(0, 1), (1, 1), (2, 2), (3, 4), (5, 8), (8, 8)])
def test_bucket_width(longest, width):
    assert je.bucket_width(longest) == width
    assert je.bucket_width(longest, min_width=16) == 16


def test_width_and_min_width():
    assert je.Bags.from_lists([[1]], width=3).width == 3
    assert je.Bags.from_lists([[1]], min_width=4).width == 4
    assert je.Bags.from_offsets([1, 2], [0], min_width=8).width == 8


def test_slot_weights_are_zero_on_padding():
    ids = np.array([[1, -1], [2, 3]], np.int32)
    weights = np.array([[2.0, 9.0], [0.5, -1.0]], np.float32)
    bags = je.Bags(ids, weights)
    np.testing.assert_array_equal(np.asarray(bags.slot_weights()), [[2.0, 0.0], [0.5, -1.0]])
    np.testing.assert_array_equal(np.asarray(je.Bags(ids).slot_weights()), [[1, 0], [1, 1]])
    # the weight stored on a padding slot changes nothing
    np.testing.assert_array_equal(
        np.asarray(je.bag_lookup(TABLE, bags, combiner="mean")),
        np.asarray(je.bag_lookup(TABLE, je.Bags(ids, weights * (ids != -1)), combiner="mean")),
    )


def test_integer_weights_become_float():
    bags = je.Bags([[1, 2]], [[1, 2]])
    assert jnp.issubdtype(bags.weights.dtype, jnp.floating)


def test_to_lists_round_trip_with_weights():
    lists, weights = [[3, 3, 0], [], [4]], [[1.0, 0.5, -2.0], [], [0.0]]
    assert je.Bags.from_lists(lists, weights).to_lists() == (lists, weights)
    assert je.Bags.from_lists(lists).to_lists() == (lists, None)


def test_repr():
    assert repr(je.Bags.from_lists([[1], [2, 3]], [[1.0], [1.0, 2.0]])) == (
        "Bags(B=2, L=2, weighted)"
    )
    assert repr(je.Bags.from_lists([[1]])) == "Bags(B=1, L=1, unweighted)"


def test_empty_batch_and_all_empty_bags():
    none = je.Bags.from_lists([])
    assert none.batch_size == 0
    assert je.bag_lookup(TABLE, none, combiner="sum").shape == (0, 3)
    empty = je.Bags.from_lists([[], []])
    assert empty.width == 1
    for combiner in je.COMBINERS:
        out = np.asarray(je.bag_lookup(TABLE, empty, combiner=combiner))
        np.testing.assert_array_equal(out, np.zeros((2, 3)))
    assert je.Bags.from_offsets(np.zeros(0, np.int32), np.zeros(0, np.int32)).batch_size == 0


def test_from_offsets_empty_bags_at_the_ends():
    bags = je.Bags.from_offsets([7, 8, 9], [0, 0, 2, 3])
    assert bags.to_lists() == ([[], [7, 8], [9], []], None)
    same = je.Bags.from_offsets([7, 8, 9], [0, 0, 2, 3, 3], include_last_offset=True)
    assert same.to_lists() == bags.to_lists()


def test_from_coo_keeps_empty_rows():
    bags = je.Bags.from_coo([[2, 1], [0, 0]], [4, 1], (4, 2), weights=[0.5, 2.0])
    assert bags.to_lists() == ([[1], [], [4], []], [[2.0], [], [0.5], []])
    assert bags.batch_size == 4


# --- pytree ------------------------------------------------------------------------------------
def test_bags_is_a_pytree():
    bags = je.Bags.from_lists([[1, 2], [3]], [[1.0, 2.0], [3.0]])
    leaves, treedef = jax.tree.flatten(bags)
    assert len(leaves) == 2
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, je.Bags)
    np.testing.assert_array_equal(np.asarray(again.ids), np.asarray(bags.ids))
    assert len(jax.tree.leaves(je.Bags.from_lists([[1]]))) == 1  # weights None: no leaf
    doubled = jax.tree.map(lambda x: x * 2 if x.dtype == jnp.float32 else x, bags)
    np.testing.assert_array_equal(np.asarray(doubled.weights), 2 * np.asarray(bags.weights))


def test_bags_cross_jit():
    bags = je.Bags.from_lists([[1, 2], [3]], [[1.0, 2.0], [3.0]])
    out = jax.jit(lambda b: b)(bags)
    assert isinstance(out, je.Bags)
    np.testing.assert_array_equal(np.asarray(out.weights), np.asarray(bags.weights))


# --- bad input: Bags(...) ----------------------------------------------------------------------
def test_float_ids_raise_type_error():
    with pytest.raises(TypeError, match="Bags ids must have an integer dtype, got float32"):
        je.Bags(np.array([[1.0, 2.0]], np.float32))


def test_ids_below_minus_one_raise():
    with pytest.raises(IndexError, match=r"id -2 at position \(1, 0\) is below -1"):
        je.Bags(np.array([[1, 2], [-2, 0]]))


def test_ragged_ids_raise():
    with pytest.raises(ValueError, match="ragged"):
        je.Bags([[1, 2], [3]])


def test_ids_must_be_2d():
    with pytest.raises(ValueError, match=r"2-D \[B, L\], got shape \(3,\)"):
        je.Bags(np.array([1, 2, 3]))


def test_weights_shape_mismatch():
    with pytest.raises(ValueError, match=r"Bags weights has shape \(1, 3\), expected \(1, 2\)"):
        je.Bags(np.array([[1, 2]]), np.ones((1, 3), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_raise(bad):
    weights = np.array([[1.0, 2.0], [3.0, bad]], np.float32)
    with pytest.raises(ValueError, match=rf"value {bad} at position \(1, 1\) is not finite"):
        je.Bags(np.array([[1, 2], [3, 4]]), weights)


def test_non_numeric_weights_raise():
    with pytest.raises(ValueError, match="ragged or not numeric"):
        je.Bags(np.array([[1, 2]]), [["a", "b"]])


def test_ids_beyond_int32_raise():
    with pytest.raises(IndexError, match=r"id 4294967299 at position \(0, 0\) does not fit"):
        je.Bags(np.array([[2**32 + 3, -1]], np.int64))


# --- bad input: from_lists ---------------------------------------------------------------------
def test_from_lists_float_id():
    with pytest.raises(TypeError, match=r"bag 1, slot 0: id 1.5 is not an integer"):
        je.Bags.from_lists([[1], [1.5]])


def test_from_lists_bool_id():
    with pytest.raises(TypeError, match=r"bag 0, slot 1: id True is not an integer"):
        je.Bags.from_lists([[1, True]])


def test_from_lists_negative_id():
    with pytest.raises(IndexError, match=r"id -3 at position \(0, 1\) is below -1"):
        je.Bags.from_lists([[1, -3]])


def test_from_lists_width_too_small():
    with pytest.raises(ValueError, match=r"width=2 is smaller than the longest bag \(3 ids\)"):
        je.Bags.from_lists([[1, 2, 3]], width=2)


def test_from_lists_weights_count_mismatch():
    with pytest.raises(ValueError, match="weights has 1 bags, ids has 2"):
        je.Bags.from_lists([[1], [2]], [[1.0]])
    with pytest.raises(ValueError, match="bag 1 has 2 ids but 1 weights"):
        je.Bags.from_lists([[1], [2, 3]], [[1.0], [1.0]])


def test_from_lists_nan_weight():
    with pytest.raises(ValueError, match=r"value nan at position \(1, 0\) is not finite"):
        je.Bags.from_lists([[1], [2]], [[1.0], [float("nan")]])


# --- bad input: from_offsets -------------------------------------------------------------------
def test_offsets_must_start_at_zero():
    with pytest.raises(ValueError, match="offsets\\[0\\] must be 0, got 1"):
        je.Bags.from_offsets([1, 2, 3], [1, 2])


def test_offsets_must_not_decrease():
    with pytest.raises(ValueError, match=r"must not decrease: offsets\[1\]=3 > offsets\[2\]=2"):
        je.Bags.from_offsets([1, 2, 3, 4], [0, 3, 2])


def test_offset_past_the_end():
    with pytest.raises(ValueError, match=r"offsets\[1\]=5 is past the end of values \(len 3\)"):
        je.Bags.from_offsets([1, 2, 3], [0, 5])


def test_include_last_offset_mismatch():
    with pytest.raises(ValueError, match=r"last offset 2 must equal len\(values\)=3"):
        je.Bags.from_offsets([1, 2, 3], [0, 2], include_last_offset=True)
    with pytest.raises(ValueError, match="needs at least one offset"):
        je.Bags.from_offsets([1, 2, 3], [], include_last_offset=True)
    with pytest.raises(ValueError, match="offsets\\[0\\] must be 0, got 3"):
        je.Bags.from_offsets([1, 2, 3], [3], include_last_offset=True)


def test_empty_offsets_with_values():
    with pytest.raises(ValueError, match="offsets is empty but values holds 3 ids"):
        je.Bags.from_offsets([1, 2, 3], np.zeros(0, np.int64))


def test_offsets_and_values_types_and_shapes():
    with pytest.raises(TypeError, match="from_offsets offsets must have an integer dtype"):
        je.Bags.from_offsets([1, 2], [0.0, 1.0])
    with pytest.raises(TypeError, match="from_offsets values must have an integer dtype"):
        je.Bags.from_offsets([1.0, 2.0], [0])
    with pytest.raises(ValueError, match=r"values must be 1-D, got shape \(1, 2\)"):
        je.Bags.from_offsets([[1, 2]], [0])
    with pytest.raises(ValueError, match=r"per-value weights has shape \(2,\), expected \(3,\)"):
        je.Bags.from_offsets([1, 2, 3], [0, 1], weights=[1.0, 2.0])


def test_from_offsets_bad_id_named_by_slot():
    with pytest.raises(IndexError, match=r"id -4 at position \(1, 0\) is below -1"):
        je.Bags.from_offsets([1, -4], [0, 1])


# --- bad input: from_coo -----------------------------------------------------------------------
def test_coo_duplicate_position():
    with pytest.raises(ValueError, match=r"position \[0, 1\] appears more than once"):
        je.Bags.from_coo([[0, 1], [1, 0], [0, 1]], [1, 2, 3], (2, 2))


def test_coo_position_outside_dense_shape():
    with pytest.raises(IndexError, match=r"indices\[1\] = \[3, 0\]: row outside dense_shape"):
        je.Bags.from_coo([[0, 0], [3, 0]], [1, 2], (2, 2))
    with pytest.raises(IndexError, match=r"indices\[0\] = \[0, 2\]: column outside"):
        je.Bags.from_coo([[0, 2]], [1], (2, 2))


def test_coo_shapes():
    with pytest.raises(ValueError, match=r"indices \[nnz, 2\] and values \[nnz\]"):
        je.Bags.from_coo([[0, 0, 0]], [1], (2, 2))
    with pytest.raises(ValueError, match=r"dense_shape must be \(B, L\)"):
        je.Bags.from_coo([[0, 0]], [1], (2, 2, 2))
    with pytest.raises(ValueError, match=r"from_coo weights has shape \(2,\), expected \(1,\)"):
        je.Bags.from_coo([[0, 0]], [1], (2, 2), weights=[1.0, 2.0])
    with pytest.raises(TypeError, match="from_coo values must have an integer dtype"):
        je.Bags.from_coo([[0, 0]], [1.0], (2, 2))
