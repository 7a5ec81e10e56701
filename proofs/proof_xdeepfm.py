r"""xDeepFM's compressed interaction network: the ``einsum`` is the sum of Hadamard products.

Layer :math:`k` of the CIN has feature maps

.. math::

    X^k_{h,:} = \sum_{i=1}^{H_{k-1}} \sum_{j=1}^{m} W^{k,h}_{ij}\,
                \big(X^{k-1}_{i,:} \circ X^0_{j,:}\big),

computed by :meth:`~jaxembed.models.xdeepfm.CIN.layer` as one ``einsum``; the literal side
loops over :math:`h, i, j` and adds the outer (Hadamard) products. The whole network (with
and without ``split_half``: half of each layer's maps but the last go on, the other half to
the output, where every map is sum-pooled over :math:`D`) equals its literal loop too.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxembed.models.xdeepfm import CIN
from proofs.strategies import ANY_BATCH


def literal_layer(x0: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:math:`\\sum_{i,j} W_{hij} (X_i \\circ X^0_j)` per example, by loops."""
    out = np.zeros((x.shape[0], w.shape[0], x.shape[2]))
    for b in range(x.shape[0]):
        for h in range(w.shape[0]):
            for i in range(w.shape[1]):
                for j in range(w.shape[2]):
                    out[b, h] += w[h, i, j] * (x[b, i] * x0[b, j])
    return out


def literal_cin(x0: np.ndarray, kernels: list[np.ndarray], split_half: bool) -> np.ndarray:
    x, pooled = x0, []
    for k, w in enumerate(kernels):
        maps = literal_layer(x0, x, w)
        if split_half and k < len(kernels) - 1:
            half = w.shape[0] // 2
            x, out = maps[:, :half], maps[:, half:]
        else:
            x, out = maps, maps
        pooled.append(out.sum(axis=2))
    return np.concatenate(pooled, axis=1)


@settings(max_examples=10)
@given(ANY_BATCH, st.sampled_from([1, 3]), st.sampled_from([2, 4]),
       st.sampled_from([(2,), (4, 3), (2, 2, 2)]), st.booleans(), st.integers(0, 2**31))
def test_cin_is_the_sum_of_hadamard_products(batch, fields, dim, layers, split_half, seed):
    rng = np.random.default_rng(seed)
    cin = CIN(fields, layers, rngs=nnx.Rngs(0), split_half=split_half)
    kernels = []
    for kernel in cin.kernels:
        kernel.value = jnp.asarray(rng.normal(size=kernel.value.shape), jnp.float32)
        kernels.append(np.asarray(kernel.value, np.float64))
    x0 = rng.normal(size=(batch, fields, dim))
    x0_32 = jnp.asarray(x0, jnp.float32)
    x1 = rng.normal(size=(batch, kernels[0].shape[1], dim))
    np.testing.assert_allclose(cin.layer(0, x0_32, jnp.asarray(x1, jnp.float32)),
                               literal_layer(x0, x1, kernels[0]), rtol=1e-4, atol=1e-4)
    out = cin(x0_32)
    assert out.shape == (batch, cin.output_width)
    np.testing.assert_allclose(out, literal_cin(x0, kernels, split_half), rtol=1e-4, atol=1e-4)
