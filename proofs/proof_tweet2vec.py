r"""Tweet2Vec's first layer: a convolution of one-hot characters is a gather of kernel rows.

1. For codes :math:`c \in [-1, V)^{B \times T}` (``-1``: a zero one-hot row) and a kernel
   :math:`K \in \mathbb{R}^{w \times V \times F}`, bias :math:`b`,

   .. math::

       \mathrm{conv}(\mathrm{onehot}(c), K)[n, t] = \sum_{d=0}^{w-1} K[d, c_{n,t+d}, :] + b,

   with ``"VALID"`` (:math:`t < T - w + 1`) and ``"SAME"`` padding (:math:`(w-1)/2` rounded
   down zero rows in front, the rest behind). The fast path :func:`char_conv` (a
   ``bag_lookup`` of the ids :math:`d V + c_{t+d}` into ``K.reshape(w·V, F)``) equals both
   ``nnx.Conv`` applied to ``one_hot(c)`` (:func:`char_conv_literal`) and the sum written out
   in numpy; and :math:`\partial L / \partial K` and :math:`\partial L / \partial b` of
   :math:`L = \langle G, \mathrm{conv} \rangle` (random cotangent :math:`G`) agree between the
   gather and ``nnx.Conv``. Even and odd widths, repeated characters, zero rows.
2. The whole encoder: ``Tweet2Vec.embed(c)`` (gather first layer) equals
   ``embed(c, literal=True)`` (``nnx.Conv`` on one-hot), in value and in the gradient with
   respect to every parameter, for ``"VALID"`` and ``"SAME"`` models.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.text.tweet2vec import Tweet2Vec, char_conv, char_conv_literal

# (V, w, F, B, T) buckets: tiny and full alphabets, even and odd widths, a width equal to T.
# Each bucket and padding compiles once (the comparisons run in one jit).
CONV_SHAPES = ((5, 4, 3, 2, 7), (71, 7, 4, 2, 16), (8, 2, 1, 3, 2))
TOL = {"rtol": 1e-5, "atol": 1e-5}


@st.composite
def conv_cases(draw):
    """``(codes, kernel, bias, padding)``: codes in ``[-1, V)`` with repeats and zero rows."""
    v, w, f, b, t = draw(st.sampled_from(CONV_SHAPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    low = -1 if draw(st.booleans()) else 0
    pool = draw(st.integers(1, v))  # a small pool repeats characters
    codes = rng.integers(low, pool, size=(b, t)).astype(np.int32)
    kernel = rng.normal(size=(w, v, f)).astype(np.float32)
    bias = rng.normal(size=(f,)).astype(np.float32)
    return codes, kernel, bias, draw(st.sampled_from(("VALID", "SAME")))


def conv_layer(kernel: jax.Array, bias: jax.Array, padding: str) -> nnx.Conv:
    """An ``nnx.Conv`` holding ``kernel [w, V, F]`` and ``bias [F]``."""
    w, v, f = kernel.shape
    conv = nnx.Conv(v, f, w, padding=padding, rngs=nnx.Rngs(0))
    conv.kernel[...] = kernel
    conv.bias[...] = bias
    return conv


@functools.partial(jax.jit, static_argnums=4)
def gather_and_literal(codes, kernel, bias, g, padding):
    """Values and (kernel, bias) gradients of ``<g, conv>`` by the gather and by nnx.Conv."""
    def fast(k, b):
        return char_conv(codes, k, b, padding)

    def literal(k, b):
        return char_conv_literal(codes, conv_layer(k, b, padding))

    grads = [jax.grad(lambda k, b, f=f: jnp.vdot(g, f(k, b)), argnums=(0, 1))(kernel, bias)
             for f in (fast, literal)]
    return fast(kernel, bias), literal(kernel, bias), grads


def written_out(codes: np.ndarray, kernel: np.ndarray, bias: np.ndarray,
                padding: str) -> np.ndarray:
    """The equation as loops: ``Σ_d K[d, c[t+d]] + b`` over the (padded) codes."""
    w = kernel.shape[0]
    if padding == "SAME":
        left = (w - 1) // 2
        codes = np.pad(codes, ((0, 0), (left, w - 1 - left)), constant_values=-1)
    batch, length = codes.shape
    out = np.zeros((batch, length - w + 1, kernel.shape[2]), np.float64)
    for n in range(batch):
        for t in range(length - w + 1):
            out[n, t] = bias
            for d in range(w):
                if codes[n, t + d] >= 0:
                    out[n, t] += kernel[d, codes[n, t + d]]
    return out


@given(conv_cases(), st.integers(0, 2**32 - 1))
def test_char_conv_is_a_gather_of_kernel_rows(case, seed):
    codes, kernel, bias, padding = case
    if padding == "VALID" and codes.shape[1] < kernel.shape[0]:
        return
    expected = written_out(codes, kernel, bias, padding)
    g = np.random.default_rng(seed).normal(size=expected.shape).astype(np.float32)
    fast, literal, (grad_fast, grad_literal) = gather_and_literal(codes, kernel, bias, g,
                                                                  padding)
    np.testing.assert_allclose(fast, literal, **TOL)
    np.testing.assert_allclose(fast, expected, **TOL)
    for a, b in zip(grad_fast, grad_literal, strict=True):
        np.testing.assert_allclose(a, b, **TOL)


MODELS = {
    padding: Tweet2Vec(alphabet="abcde ", max_length=20, filters=(6, 5), kernel_sizes=(4, 3),
                       pool_sizes=(2, 1), padding=padding, encoder_size=4, decoder_sizes=(3,),
                       rngs=nnx.Rngs(7))
    for padding in ("VALID", "SAME")
}


@functools.partial(jax.jit, static_argnums=(0, 2))
def embed_and_grads(graphdef, params, literal, codes, g):
    def loss(p):
        return jnp.vdot(g, nnx.merge(graphdef, p).embed(codes, literal=literal))

    value = nnx.merge(graphdef, params).embed(codes, literal=literal)
    return value, jax.grad(loss)(params)


@given(st.sampled_from(("VALID", "SAME")), st.integers(0, 2**32 - 1))
def test_model_gather_equals_one_hot_conv(padding, seed):
    model = MODELS[padding]
    rng = np.random.default_rng(seed)
    codes, _ = model.codec.encode(["".join(rng.choice(list("abcdexyz  "), size=rng.integers(
        0, 24))) for _ in range(3)])
    g = jnp.asarray(rng.normal(size=(3, model.embedding_size)), jnp.float32)
    graphdef, params = nnx.split(model, nnx.Param)
    fast, grad_fast = embed_and_grads(graphdef, params, False, codes, g)
    literal, grad_literal = embed_and_grads(graphdef, params, True, codes, g)
    np.testing.assert_allclose(fast, literal, **TOL)
    for a, b in zip(jax.tree.leaves(grad_fast), jax.tree.leaves(grad_literal), strict=True):
        np.testing.assert_allclose(a, b, **TOL)
