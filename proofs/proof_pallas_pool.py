"""The Pallas GPU kernel's gather-sum equals the plain-JAX one: out_b = Σ_l w_bl W[i_bl].

Runs the kernel through Pallas' interpreter, so the proof holds on any machine (CI has no
GPU); ``jaxembed bench lookup`` re-checks the compiled kernel against XLA on a GPU. Weights
of zero mark skipped slots (the kernel does not read their rows), so drawn bags include
padding, duplicates, zero weights and empty bags.
"""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.kernels.pallas_pool import pooled_sum, supports
from jaxembed.lookup import _slot_loop_row_sum
from proofs.strategies import bag_lists


@settings(max_examples=10)  # the interpreter is slow; 10 examples cover the shape buckets
@given(
    features=st.sampled_from([16, 32]),
    vocab=st.sampled_from([5, 40]),
    per_program=st.sampled_from([1, 2, 4]),
    data=st.data(),
)
def test_pallas_pool_equals_slot_loop(features, vocab, per_program, data):
    """pooled_sum(W, ids, w) == Σ_l w[:, l] W[ids[:, l]] (exact in float32 up to rounding)."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    table = jnp.asarray(np.random.default_rng(seed).normal(size=(vocab, features)),
                        jnp.float32)
    lists, weights = data.draw(bag_lists(vocab, max_len=6))
    bags = je.Bags.from_lists(lists, weights, width=8)
    ids = jnp.where(bags.mask, bags.ids, 0)
    w = bags.slot_weights()
    assert supports(table.shape, table.dtype, ids.shape[1])
    got = pooled_sum(table, ids, w, bags_per_program=per_program, interpret=True)
    want = _slot_loop_row_sum(table, ids, w)
    literal = je.dense_lookup(je.multi_hot(bags, vocab), table)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, literal, rtol=1e-5, atol=1e-5)


def test_pallas_pool_supports_only_tileable_shapes():
    """Triton tiles are powers of two: K must be one (and at least 16)."""
    assert supports((10, 64), jnp.float32, 20)
    assert not supports((10, 48), jnp.float32, 20)
    assert not supports((10, 8), jnp.float32, 20)
    assert not supports((10, 64), jnp.int32, 20)
