r"""The gathered rows of a field, pooled, are the bag lookup: the split forward pass of every
model of the zoo (:mod:`jaxembed.nn.fields`).

* ``gather(W, bags)[b, l] = e_{i_{bl}} W`` (the literal one-hot product; padding gives a zero
  row);
* :math:`\mathrm{pool}(R, x)_b = \sum_l \tilde w_{bl} R[b, l]` with :math:`\tilde w` the
  combiner-normalized weights, and
  ``pool_rows(gather(W, bags), bags, c) == bag_lookup(W, bags, c)`` for ``c`` in sum, mean,
  sqrtn, in values and in gradients with respect to ``W`` (``∂/∂W`` of
  :math:`\langle G, \mathrm{pool}\rangle` through the gather is the scatter-add of
  :math:`\tilde w_{bl} G_b`, the gradient of the lookup).
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.nn.fields import gather, pool_rows
from proofs.strategies import table_and_bags


@given(table_and_bags())
def test_gather_is_the_one_hot_product_per_slot(table_bags):
    table, bags = table_bags
    literal = je.dense_lookup(je.one_hot(bags.ids, table.shape[0]), table)
    np.testing.assert_array_equal(gather(table, bags), literal)


@settings(max_examples=10)  # the combiners and shape buckets; proof_row_grads covers more
@given(table_and_bags(), st.sampled_from(["sum", "mean", "sqrtn"]), st.integers(0, 2**31))
def test_pooled_gathered_rows_are_the_bag_lookup(table_bags, combiner, seed):
    table, bags = table_bags
    fast = pool_rows(gather(table, bags), bags, combiner)
    lookup = je.bag_lookup(table, bags, combiner=combiner)
    np.testing.assert_allclose(fast, lookup, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(np.random.default_rng(seed).normal(size=fast.shape), jnp.float32)
    d_fast = jax.grad(lambda t: jnp.sum(g * pool_rows(gather(t, bags), bags, combiner)))(table)
    d_lookup = jax.grad(lambda t: jnp.sum(g * je.bag_lookup(t, bags, combiner=combiner)))(table)
    np.testing.assert_allclose(d_fast, d_lookup, rtol=1e-5, atol=1e-5)
