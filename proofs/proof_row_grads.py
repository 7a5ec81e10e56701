"""Row-sparse gradient of the gather-sum: ∂L/∂W = Σ_{b,l} [i_bl = j] w̃_bl g_b, scattered.

``bag_row_grads(bags, g, combiner)`` gives the rows ``w̃_bl g_b`` (w̃ the combiner-normalized
weights) and their ids; scatter-added into zeros they equal ``jax.grad`` of
``<g, bag_lookup(W, bags)>`` w.r.t. ``W``, and that of the literal ``(x @ W) / norm``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.lookup import bag_row_grads
from proofs.strategies import table_and_bags


@settings(max_examples=10)  # each example differentiates three forms; 10 cover the buckets
@given(table_and_bags(), st.sampled_from(["sum", "mean", "sqrtn"]), st.integers(0, 2**31))
def test_row_grads_scatter_to_the_dense_gradient(table_bags, combiner, seed):
    table, bags = table_bags
    g = np.random.default_rng(seed).normal(size=(bags.batch_size, table.shape[1]))
    g = jnp.asarray(g, jnp.float32)
    dense = jax.grad(lambda t: jnp.sum(g * je.bag_lookup(t, bags, combiner=combiner)))(table)
    ids, rows = bag_row_grads(bags, g, combiner)
    assert ids.shape == (bags.batch_size * bags.width,)
    scattered = jnp.zeros_like(table).at[ids].add(rows, mode="drop")
    np.testing.assert_allclose(scattered, dense, rtol=1e-5, atol=1e-5)
    # and the literal product's gradient, normalized per bag as the combiner does
    w = np.asarray(bags.slot_weights())
    norm = {"sum": np.ones(len(w)), "mean": w.sum(1), "sqrtn": np.sqrt((w * w).sum(1))}[combiner]
    scale = jnp.asarray(np.where(norm == 0, 0.0, 1.0 / np.where(norm == 0, 1.0, norm)))
    literal = jax.grad(lambda t: jnp.sum(
        g * scale[:, None] * je.dense_lookup(je.multi_hot(bags, t.shape[0]), t)))(table)
    np.testing.assert_allclose(scattered, literal, rtol=1e-4, atol=1e-4)
    assert np.all(np.asarray(ids)[~np.asarray(bags.mask).reshape(-1)] == -1)
