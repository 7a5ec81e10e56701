"""Out-of-range ids under ``jit``: NaN rows (never a wrong row) with zero gradient, and
``je.checked`` turning them into a ``JaxRuntimeError`` that names the id."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.checkify import JaxRuntimeError

import jaxembed as je

TABLE = np.arange(15, dtype=np.float32).reshape(5, 3) - 7.0
G_IDS = np.ones((4, 3), np.float32)


def scatter(ids, g) -> np.ndarray:
    """``dW[j] = Σ_{p: ids[p] = j} g[p]`` over the in-range ids only."""
    out = np.zeros(TABLE.shape)
    for i, row in zip(ids, g, strict=True):
        if 0 <= i < TABLE.shape[0]:
            out[i] += row
    return out


# --- jit: NaN rows, zero gradients -------------------------------------------------------------
@partial(jax.jit, static_argnames="style")
def lookup_and_vjp(table, ids, g, style):
    out, vjp = jax.vjp(lambda t: je.lookup(t, ids, lookup_style=style), table)
    return out, vjp(g)[0]


@pytest.mark.parametrize("style", ["gather", "one_hot"])
@pytest.mark.parametrize("bad", [5, 99, -2])
def test_jit_lookup_out_of_range_is_nan_with_zero_gradient(style, bad):
    ids = np.array([0, bad, -1, 4], np.int32)
    out, grad = lookup_and_vjp(TABLE, ids, G_IDS, style)
    out = np.asarray(out)
    assert np.all(np.isnan(out[1]))
    np.testing.assert_array_equal(out[[0, 3]], TABLE[[0, 4]])
    np.testing.assert_array_equal(out[2], 0.0)
    np.testing.assert_array_equal(np.asarray(grad), scatter(ids, G_IDS))


@partial(jax.jit, static_argnames="combiner")
def bag_lookup_and_vjp(table, bags, g, combiner):
    out, vjp = jax.vjp(lambda t: je.bag_lookup(t, bags, combiner=combiner), table)
    return out, vjp(g)[0]


@pytest.mark.parametrize("combiner", je.COMBINERS)
def test_jit_bag_with_out_of_range_id_is_nan_with_zero_gradient(combiner):
    """Only the bag holding the bad id is NaN; its slots send no gradient; others are exact."""
    bags = je.Bags(np.array([[1, 7, -1], [2, 2, 3]], np.int32))  # 7 >= V, only traced
    g = np.ones((2, 3), np.float32)
    out, grad = bag_lookup_and_vjp(TABLE, bags, g, combiner)
    clean = je.Bags(np.array([[-1, -1, -1], [2, 2, 3]], np.int32))
    want_out, want_grad = bag_lookup_and_vjp(TABLE, clean, g, combiner)
    out = np.asarray(out)
    assert np.all(np.isnan(out[0]))
    np.testing.assert_array_equal(out[1], np.asarray(want_out)[1])
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(want_grad))
    assert np.all(np.isfinite(np.asarray(grad)))
    assert not np.any(np.asarray(grad)[1])  # row 1 belongs to the poisoned bag only


def test_jit_other_lookups_out_of_range_are_nan():
    ids = jnp.array([[0, 5], [-1, 2]], jnp.int32)
    hot = np.asarray(jax.jit(je.one_hot, static_argnums=1)(ids, 5))
    assert np.all(np.isnan(hot[0, 1])) and not np.any(np.isnan(hot[[0, 1, 1], [0, 0, 1]]))
    multi = np.asarray(jax.jit(je.multi_hot, static_argnums=1)(je.Bags(ids), 5))
    assert np.all(np.isnan(multi[0])) and not np.any(np.isnan(multi[1]))
    shards = je.split_table(TABLE, 2, "mod")
    rows = np.asarray(jax.jit(je.partitioned_lookup)(shards, ids))
    assert np.all(np.isnan(rows[0, 1]))
    np.testing.assert_array_equal(rows[[0, 1, 1], [0, 0, 1]], [TABLE[0], 0 * TABLE[0], TABLE[2]])


def test_jit_safe_lookup_keeps_out_of_range_id_whatever_its_weight():
    """Pruning (weight <= 0) must not hide an out-of-range id: the bag is NaN."""
    bags = je.Bags(np.array([[1, 8], [2, 3]], np.int32), np.array([[1.0, 0.0], [1.0, -1.0]]))
    out = np.asarray(jax.jit(je.safe_bag_lookup)(TABLE, bags))
    assert np.all(np.isnan(out[0]))
    np.testing.assert_array_equal(out[1], TABLE[2])


# --- checked mode ------------------------------------------------------------------------------
CHECKED_CALLS = {
    "lookup": (lambda t, ids: je.lookup(t, ids), "lookup ids"),
    "one_hot_style": (lambda t, ids: je.lookup(t, ids, lookup_style="one_hot"), "lookup ids"),
    "bag_lookup": (lambda t, ids: je.bag_lookup(t, je.Bags(ids)), "bag_lookup ids"),
    "max": (lambda t, ids: je.bag_lookup(t, je.Bags(ids), combiner="max"), "bag_lookup ids"),
    "safe": (lambda t, ids: je.safe_bag_lookup(t, je.Bags(ids)), "bag_lookup ids"),
    "one_hot": (lambda t, ids: je.one_hot(ids, t.shape[0]) @ t, "one_hot ids"),
    "partitioned": (
        lambda t, ids: je.partitioned_lookup(je.split_table(t, 2, "div"), ids, strategy="div"),
        "partitioned_lookup ids",
    ),
}


@pytest.mark.parametrize("name", sorted(CHECKED_CALLS))
def test_checked_raises_naming_the_id(name):
    fn, what = CHECKED_CALLS[name]
    run = je.checked(fn)
    good = np.array([[0, 1], [-1, 4]], np.int32)
    np.testing.assert_array_equal(np.asarray(run(TABLE, good)), np.asarray(fn(TABLE, good)))
    bad = np.array([[0, 1], [9, 4]], np.int32)
    with pytest.raises(
        JaxRuntimeError,
        match=rf"{what}: id 9 at flat position 2 is out of range for a table of 5 rows",
    ):
        run(TABLE, bad)
    with pytest.raises(JaxRuntimeError, match=r"id -3 at flat position 1"):
        run(TABLE, np.array([[0, -3], [1, 2]], np.int32))


def test_checked_empty_ids():
    run = je.checked(lambda t, ids: je.lookup(t, ids))
    assert run(TABLE, np.zeros((0,), np.int32)).shape == (0, 3)


def test_checked_leaves_unchecked_calls_alone():
    """Outside ``checked`` the same compiled lookup stays silent (NaN, no error)."""
    je.checked(lambda t, ids: je.lookup(t, ids))(TABLE, np.array([1], np.int32))
    out = jax.jit(je.lookup)(TABLE, jnp.array([7], jnp.int32))
    assert np.all(np.isnan(np.asarray(out)))
