r"""AutoInt (Song et al., 2019): multi-head self-attention over the field embeddings.

The fields' pooled embeddings stack to :math:`E \in \mathbb R^{N \times d}`; with
``dense_interactions=True`` the numeric features join them, each embedded as a field
(:math:`e_j = u_j \cdot \mathrm{dense}_j`), otherwise they are first order
(:math:`\langle w, \mathrm{dense} \rangle` added to the logit) and reach the deep tower.
An interacting layer, per head :math:`h` (``att_dim`` :math:`d'`):

.. math::

    \alpha^{h}_{m,k} = \operatorname{softmax}_k \big\langle W^{h}_Q e_m,\ W^{h}_K e_k \big\rangle,
    \qquad
    \tilde e^{h}_m = \sum_{k=1}^{N} \alpha^{h}_{m,k}\, W^{h}_V e_k ,

    e'_m = \mathrm{ReLU}\big([\tilde e^{1}_m, \dots, \tilde e^{H}_m] + W_{\mathrm{res}} e_m\big)

(the residual term with ``residual=True``). After ``layers`` such layers the outputs are
flattened into a 1-unit output; a deep tower ``hidden`` on
:math:`[e_1, \dots, e_F, \mathrm{dense}]` adds its logit (AutoInt+; ``hidden=()`` for none).
The attention (:func:`attend`) equals a per-head, per-field loop (``proofs/proof_autoint.py``).
The defaults follow DeepCTR-Torch's ``AutoInt`` (3 layers, 2 heads, ``att_dim`` 8, a
(256, 128) tower, the numeric features out of the attention), measured on validation rows
(docs/benchmarks.md, "Numeric features in the interactions"): against the paper's form (the
numeric features in the attention, no tower) 0.8571 → 0.8556 on the generated Criteo-format
log and 0.6739 → 0.7039 on the history log, whose numeric feature carries no interaction, and
the attention over 26 fields instead of 39 halves the step.

References:
    Song, W. et al. (2019). AutoInt: Automatic Feature Interaction Learning via
    Self-Attentive Neural Networks. CIKM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxembed.models.inputs import ModelInputs
from jaxembed.models.parts import (
    common_dim,
    count,
    deep_input,
    deep_width,
    numeric_vectors,
    tower,
    widths,
)
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


def _bdot(a: jax.Array, b: jax.Array, a_axis: int, b_axis: int) -> jax.Array:
    """``a[g] · b[g]`` contracting ``a_axis`` with ``b_axis``, batched over the leading axis."""
    return jax.lax.dot_general(a, b, (((a_axis,), (b_axis,)), ((0,), (0,))))


@jax.custom_vjp
def attend(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    r"""Softmax attention over ``G`` independent groups, ``q, k, v f[G, N, d']`` ->
    ``o f[G, N, d']``:

    .. math::

        o_m = \sum_n A_{mn} v_n, \qquad A_{mn} = \frac{P_{nm}}{\ell_m}, \quad
        P_{nm} = e^{\langle k_n, q_m \rangle - \max_{n'} \langle k_{n'}, q_m \rangle},
        \quad \ell_m = \sum_n P_{nm} ,

    i.e. ``softmax(q kᵀ) v`` row by row (the per-field loop of ``proofs/proof_autoint.py``).
    The scores are held transposed (``P[g, n, m]``) and the backward pass is written out,

    .. math::

        \bar v = A^\top \bar o, \quad
        \bar S_{mn} = A_{mn} \big(\langle \bar o_m, v_n \rangle
                      - \langle \bar o_m, o_m \rangle\big), \quad
        \bar q = \bar S k, \quad \bar k = \bar S^\top q ,

    so that no ``N x N`` array is divided, broadcast or passed through a softmax Jacobian:
    the normalization :math:`1/\ell` goes on the ``N x d'`` side, and the ``N x N`` arrays
    meet only the batched matmuls, one ``exp`` and one fused product (``autodiff`` of
    ``jax.nn.softmax`` took about twice as long on XLA:CPU; the proof checks values and
    gradients against it)."""
    return _attend_forward(q, k, v)[0]


def _attend_forward(q: jax.Array, k: jax.Array, v: jax.Array) -> tuple:
    scores = _bdot(k, q, 2, 2)                                        # [g, n, m]
    p = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=1, keepdims=True)))
    total = p.sum(axis=1)                                             # ℓ [g, m]
    o = (_bdot(v.transpose(0, 2, 1), p, 2, 1) / total[:, None, :]).transpose(0, 2, 1)
    return o, (q, k, v, p, total, o)


def _attend_backward(saved: tuple, do: jax.Array) -> tuple:
    q, k, v, p, total, o = saved
    g = do / total[:, :, None]                                        # ō_m / ℓ_m
    centre = (do * o).sum(axis=-1) / total                            # ⟨ō_m, o_m⟩ / ℓ_m
    dv = _bdot(p, g, 2, 1)
    ds = p * (_bdot(v, g, 2, 2) - centre[:, None, :])                 # S̄ᵀ [g, n, m]
    dk = _bdot(ds, q, 2, 1)
    dq = _bdot(k.transpose(0, 2, 1), ds, 2, 1).transpose(0, 2, 1)
    return dq, dk, dv


attend.defvjp(_attend_forward, _attend_backward)


class InteractingLayer(nnx.Module):
    r"""One multi-head self-attention layer over ``f[B, N, d_in]`` -> ``f[B, N, H d']``:
    ``query``, ``key``, ``value`` ``f[d_in, H, d']`` and ``res`` ``f[d_in, H d']``."""

    def __init__(self, d_in: int, heads: int, att_dim: int, *, rngs: nnx.Rngs,
                 residual: bool = True) -> None:
        std = (2.0 / (d_in + heads * att_dim)) ** 0.5
        shape = (d_in, heads, att_dim)
        self.query = nnx.Param(std * jax.random.normal(rngs.params(), shape))
        self.key = nnx.Param(std * jax.random.normal(rngs.params(), shape))
        self.value = nnx.Param(std * jax.random.normal(rngs.params(), shape))
        self.residual = bool(residual)
        self.res = nnx.Param(std * jax.random.normal(rngs.params(), (d_in, heads * att_dim))
                             if residual else jnp.zeros((d_in, 0)))

    def attention(self, e: jax.Array) -> jax.Array:
        r""":math:`\tilde e^h_m = \sum_k \alpha^h_{m,k} W^h_V e_k`, ``f[B, N, H, d']``: the
        three projections as one matmul, then :func:`attend` over the ``B H`` (example,
        head) pairs."""
        b, n, d = e.shape
        heads, att = self.query.shape[1:]
        w = jnp.concatenate([self.query[...], self.key[...], self.value[...]], axis=1)
        qkv = (e.reshape(b * n, d) @ w.reshape(d, 3 * heads * att)).reshape(
            b, n, 3, heads, att).transpose(2, 0, 3, 1, 4).reshape(3, b * heads, n, att)
        out = attend(qkv[0], qkv[1], qkv[2])
        return out.reshape(b, heads, n, att).transpose(0, 2, 1, 3)

    def __call__(self, e: jax.Array) -> jax.Array:
        out = self.attention(e)
        out = out.reshape(*out.shape[:2], -1)
        if self.residual:
            out = out + e @ self.res[...]
        return jax.nn.relu(out)


class AutoInt(nnx.Module):
    """AutoInt; ``layers`` interacting layers of ``heads`` heads of width ``att_dim``,
    ``residual`` connections, ``hidden`` the deep tower (AutoInt+; ``()`` for none),
    ``dense_interactions`` the numeric features as fields of the attention."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs, layers: int = 3,
                 heads: int = 2, att_dim: int = 8, residual: bool = True,
                 hidden: Sequence[int] = (256, 128), init_std: float = 0.01,
                 dense_interactions: bool = False) -> None:
        self.inputs = inputs
        self.dim = common_dim(inputs, "autoint")
        layers, heads = count(layers, "layers"), count(heads, "heads")
        att_dim = count(att_dim, "att_dim")
        self.fields = FieldEmbeddings(inputs, rngs=rngs, init_std=init_std)
        self.dense_fields = numeric_vectors(inputs, self.dim, dense_interactions, rngs=rngs,
                                            init_std=init_std)
        # without them in the attention, the numeric features are first order: a weight each
        self.dense_weights = (None if dense_interactions
                              else nnx.Param(jnp.zeros((inputs.num_dense,))))
        sizes = [self.dim] + [heads * att_dim] * layers
        self.interacting = nnx.List([
            InteractingLayer(sizes[i], heads, att_dim, rngs=rngs, residual=residual)
            for i in range(layers)])
        n = len(inputs.fields) + (inputs.num_dense if dense_interactions else 0)
        self.out = nnx.Linear(n * sizes[-1], 1, rngs=rngs)
        self.deep = (tower(deep_width(inputs), hidden, rngs=rngs)
                     if widths(hidden, "hidden") else None)

    def embeddings(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """:math:`E`: the fields' pooled embeddings then (with ``dense_interactions``) the
        numeric ones, ``f[B, N, d]``."""
        fields = self.fields.stacked(rows, batch)
        if self.dense_fields is None:
            return fields
        return jnp.concatenate([fields, self.dense_fields(batch)], axis=1)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        e = self.embeddings(rows, batch)
        for layer in self.interacting:
            e = layer(e)
        logit = self.out(e.reshape(e.shape[0], -1))[:, 0]
        if self.dense_weights is not None:
            logit = logit + jnp.asarray(batch["dense"]) @ self.dense_weights[...]
        if self.deep is not None:
            logit = logit + self.deep(deep_input(self.fields, rows, batch))[:, 0]
        return logit
