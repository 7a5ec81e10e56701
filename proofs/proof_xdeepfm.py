r"""xDeepFM's compressed interaction network: the ``einsum`` is the sum of Hadamard products.

Layer :math:`k` of the CIN has feature maps

.. math::

    X^k_{h,:} = \sum_{i=1}^{H_{k-1}} \sum_{j=1}^{m} W^{k,h}_{ij}\,
                \big(X^{k-1}_{i,:} \circ X^0_{j,:}\big),

computed by :meth:`~jaxembed.models.xdeepfm.CIN.layer` as one ``einsum``; the literal side
loops over :math:`h, i, j` and adds the outer (Hadamard) products. The whole network (with
and without ``split_half``: half of each layer's maps but the last go on, the other half to
the output, where every map is sum-pooled over :math:`D`) equals its literal loop too; the
linear output maps are pooled through their Gram matrix :math:`\sum_{ij} W_{hij} \langle
X^{k-1}_i, X^0_j \rangle` without being built, and the network's values and gradients equal
those of every map built from its outer products (linear, ReLU, tanh).
"""

from __future__ import annotations

import jax
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


def outer_product_cin(x0, kernels, split_half: bool, act):
    """The CIN in jnp straight from the equation: every map built as the weighted sum of
    all Hadamard products (broadcast, no einsum), then sum-pooled (differentiable)."""
    x, pooled = x0, []
    for k, w in enumerate(kernels):
        maps = (w[None, :, :, :, None] * x[:, None, :, None, :]
                * x0[:, None, None, :, :]).sum(axis=(2, 3))
        maps = maps if act is None else act(maps)
        if split_half and k < len(kernels) - 1:
            half = w.shape[0] // 2
            x, out = maps[:, :half], maps[:, half:]
        else:
            x, out = maps, maps
        pooled.append(out.sum(axis=2))
    return jnp.concatenate(pooled, axis=1)


@settings(max_examples=10)
@given(ANY_BATCH, st.sampled_from([1, 3]), st.sampled_from([2, 4]),
       st.sampled_from([(2,), (4, 3), (2, 2, 2)]), st.booleans(),
       st.sampled_from([None, "relu", "tanh"]), st.integers(0, 2**31))
def test_cin_values_and_gradients_are_the_outer_products(batch, fields, dim, layers,
                                                          split_half, act, seed):
    """Pooling linear output maps through their Gram matrix changes neither the values nor
    the gradients (nor does a nonlinear CIN, which builds every map)."""
    rng = np.random.default_rng(seed)
    cin = CIN(fields, layers, rngs=nnx.Rngs(0), split_half=split_half, activation_name=act)
    for kernel in cin.kernels:
        kernel.value = jnp.asarray(rng.normal(size=kernel.value.shape), jnp.float32)
    graphdef, state = nnx.split(cin)
    kernels = [kernel[...] for kernel in cin.kernels]
    x0 = jnp.asarray(rng.normal(size=(batch, fields, dim)), jnp.float32)
    cotangent = jnp.asarray(rng.normal(size=(batch, cin.output_width)), jnp.float32)
    fn = {"relu": jax.nn.relu, "tanh": jnp.tanh, None: None}[act]
    fast, fast_pullback = jax.vjp(lambda x, st: nnx.merge(graphdef, st)(x), x0, state)
    slow, slow_pullback = jax.vjp(lambda x, ws: outer_product_cin(x, ws, split_half, fn),
                                  x0, kernels)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)
    (d_x_fast, d_state), (d_x_slow, d_kernels) = fast_pullback(cotangent), \
        slow_pullback(cotangent)
    scale = 1e-4 * (1 + float(jnp.abs(d_x_slow).max()))
    np.testing.assert_allclose(d_x_fast, d_x_slow, rtol=1e-4, atol=scale)
    for k, want in enumerate(d_kernels):
        got = d_state["kernels"][k][...]
        np.testing.assert_allclose(got, want, rtol=1e-4,
                                   atol=1e-4 * (1 + float(jnp.abs(want).max())))
