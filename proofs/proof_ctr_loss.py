r"""The CTR loss: sigmoid cross-entropy equals the 2-class softmax cross-entropy over ``[0, z]``.

A two-output CTR network scores an impression with the logits :math:`(0, z)` (the "no click"
logit fixed at 0) and minimizes the softmax cross-entropy
:math:`-y \log \mathrm{softmax}(0, z)_1 - (1-y) \log \mathrm{softmax}(0, z)_0`. Since
:math:`\log \mathrm{softmax}(0, z)_1 = z - \log(1 + e^z)` and
:math:`\log \mathrm{softmax}(0, z)_0 = -\log(1 + e^z)`,

.. math::

    \ell(z, y) = \log(1 + e^{z}) - y z, \qquad \frac{\partial \ell}{\partial z} = \sigma(z) - y,

which :func:`jaxembed.nn.sigmoid_cross_entropy` computes as
:math:`\max(z, 0) - y z + \log(1 + e^{-|z|})`. The proof draws logits from ``±1e-3`` to
``±1e30`` (where a naive :math:`\log \sigma(z)` overflows to ``inf``) and labels in
``{0, 1}`` and in ``[0, 1]``, and compares the value and the gradient with

* the literal softmax written out in float64 numpy (max-shifted exponentials, then the
  log of the picked probability), and
* ``jax.grad`` of the 2-class softmax cross-entropy built from ``jax.nn.log_softmax``.

Tolerance: the float32 loss carries the rounding of :math:`y z`, so the value bound is
:math:`4 \cdot 2^{-23} (1 + |z|)`; the gradient lies in :math:`[-1, 1]` and must agree to
:math:`10^{-6}`. Every value and gradient must be finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.nn import sigmoid_cross_entropy

N = 16  # one shape: one compile
EPS32 = 2.0**-23


@st.composite
def logits_and_labels(draw):
    """float32 logits from tiny to huge magnitude, either sign; hard or soft labels."""
    small = st.floats(-50.0, 50.0, width=32)
    big = float(np.float32(1e30))
    huge = st.floats(-big, big, width=32)
    z = draw(
        st.lists(
            st.one_of(small, huge, st.sampled_from([0.0, 88.8, -88.8, big, -big])),
            min_size=N,
            max_size=N,
        )
    )
    if draw(st.booleans()):
        y = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=N, max_size=N))
    else:
        y = draw(st.lists(st.floats(0.0, 1.0, width=32), min_size=N, max_size=N))
    return np.array(z, np.float32), np.array(y, np.float32)


def literal_softmax_ce(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-y log p_1 - (1-y) log p_0`` for ``p = softmax([0, z])`` and its derivative
    ``p_1 - y``, in float64 with the usual max shift."""
    logits = np.stack([np.zeros_like(z, np.float64), z.astype(np.float64)], axis=-1)
    shift = logits.max(axis=-1, keepdims=True)
    e = np.exp(logits - shift)
    log_p = logits - shift - np.log(e.sum(axis=-1, keepdims=True))
    y64 = y.astype(np.float64)
    loss = -(y64 * log_p[:, 1] + (1.0 - y64) * log_p[:, 0])
    p1 = e[:, 1] / e.sum(axis=-1)
    return loss, p1 - y64


def softmax_ce_jax(z: jax.Array, y: jax.Array) -> jax.Array:
    logits = jnp.stack([jnp.zeros_like(z), z], axis=-1)
    targets = jnp.stack([1.0 - y, y], axis=-1)
    return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)


@jax.jit
def ours_and_peer(z, y):
    ours = sigmoid_cross_entropy(z, y)
    d_ours = jax.grad(lambda z: jnp.sum(sigmoid_cross_entropy(z, y)))(z)
    d_peer = jax.grad(lambda z: jnp.sum(softmax_ce_jax(z, y)))(z)
    return ours, d_ours, d_peer


@given(logits_and_labels())
def test_sigmoid_ce_equals_two_class_softmax_ce(case):
    z, y = case
    ours, d_ours, d_peer = (np.asarray(a, np.float64) for a in ours_and_peer(z, y))
    loss, grad = literal_softmax_ce(z, y)
    assert np.all(np.isfinite(ours)) and np.all(np.isfinite(d_ours)), (z, ours, d_ours)
    bound = 4 * EPS32 * (1.0 + np.abs(z.astype(np.float64)))
    np.testing.assert_array_less(np.abs(ours - loss), bound, err_msg="loss value")
    np.testing.assert_allclose(d_ours, grad, rtol=0, atol=1e-6, err_msg="dℓ/dz vs literal")
    np.testing.assert_allclose(d_ours, d_peer, rtol=0, atol=1e-6, err_msg="dℓ/dz vs softmax")


def test_worked_examples():
    """ℓ(0, y) = log 2 for any y; ℓ(z, 1) → 0 and ℓ(z, 0) → z as z → +∞."""
    z = np.array([0.0, 0.0, 1e30, 1e30, -1e30], np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0, 0.0], np.float32)
    np.testing.assert_allclose(
        np.asarray(sigmoid_cross_entropy(z, y)),
        [np.log(2), np.log(2), 0.0, 1e30, 0.0],
        rtol=1e-6,
    )
