r"""xDeepFM (Lian et al., 2018): linear terms, a compressed interaction network, a deep tower.

The fields' pooled embeddings stack to :math:`X^0 \in \mathbb R^{m \times D}` (one row per
field; all fields one dim). CIN layer :math:`k` has :math:`H_k` feature maps,

.. math::

    X^k_{h,:} = \sum_{i=1}^{H_{k-1}} \sum_{j=1}^{m} W^{k,h}_{ij}\,
                \big(X^{k-1}_{i,:} \circ X^0_{j,:}\big),

one ``einsum`` (``proofs/proof_xdeepfm.py`` checks it against the literal sum of Hadamard
products). With ``split_half`` (as in the paper's code) each layer but the last sends half
its maps on to the next layer and half to the output; otherwise every map does both. The
output maps are sum-pooled over :math:`D`, :math:`p^+ = [\sum_d X^k_{h,d}]_{k,h}`. A linear
map (no ``cin_activation``) that only goes to the output is never built: its pooled sum is
the kernel against a Gram matrix,

.. math::

    \sum_d X^k_{h,d} = \sum_{i,j} W^{k,h}_{ij}\, G^k_{ij}, \qquad
    G^k_{ij} = \langle X^{k-1}_{i,:},\ X^0_{j,:} \rangle ,

which costs :math:`D` times less than the maps (the same network, checked against the
literal loop in the proof). Then

.. math::

    z = \underbrace{c + \sum_i w_i x_i}_{\text{linear}} + w_{\mathrm{cin}}^\top p^+
      + \mathrm{MLP}([e_1, \dots, e_F, \mathrm{dense}]).

References:
    Lian, J. et al. (2018). xDeepFM: Combining Explicit and Implicit Feature Interactions for
    Recommender Systems. KDD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxembed.models.inputs import ModelInputs
from jaxembed.models.parts import activation, common_dim, deep_input, deep_width, tower, widths
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


class CIN(nnx.Module):
    r"""The compressed interaction network over ``m`` fields: ``kernels[k] f[H_k, H_{k-1}, m]``
    (:math:`W^{k,h}_{ij}` = ``kernels[k][h, i, j]``); ``__call__(X0 f[B, m, D]) ->
    p^+ f[B, output_width]``."""

    def __init__(self, num_fields: int, layers: Sequence[int], *, rngs: nnx.Rngs,
                 split_half: bool = True, activation_name: str | None = None) -> None:
        self.layer_sizes = widths(layers, "cin_layers", allow_empty=False)
        self.split_half = bool(split_half)
        self.act = activation(activation_name, "cin_activation")
        if self.split_half:
            for k, size in enumerate(self.layer_sizes[:-1]):
                if size % 2:
                    raise ValueError(f"cin_layers[{k}] = {size} must be even with split_half "
                                     f"(half its maps go on, half to the output)")
        kernels, previous, out = [], num_fields, 0
        for k, size in enumerate(self.layer_sizes):
            std = (2.0 / (previous * num_fields + size)) ** 0.5
            kernels.append(nnx.Param(std * jax.random.normal(
                rngs.params(), (size, previous, num_fields))))
            last = k == len(self.layer_sizes) - 1
            keep = size // 2 if self.split_half and not last else size
            out += size - keep if self.split_half and not last else size
            previous = keep
        self.kernels = nnx.List(kernels)
        self.output_width = out

    def layer(self, k: int, x0: jax.Array, x: jax.Array) -> jax.Array:
        """:math:`X^k = \\sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i \\circ X^0_j)`, ``f[B, H_k, D]``."""
        return self.maps(self.kernels[k][...], x0, x)

    def maps(self, kernel: jax.Array, x0: jax.Array, x: jax.Array) -> jax.Array:
        """The feature maps of ``kernel f[H, H_{k-1}, m]`` (some of a layer's), ``f[B, H, D]``."""
        out = jnp.einsum("bid,bjd,hij->bhd", x, x0, kernel, optimize=True)
        return out if self.act is None else self.act(out)

    @staticmethod
    def pooled_linear(kernel: jax.Array, x0: jax.Array, x: jax.Array) -> jax.Array:
        """:math:`\\sum_d X^k_{h,d} = \\sum_{i,j} W^{k,h}_{ij} G_{ij}` of linear maps, by the
        Gram matrix :math:`G_{ij} = \\langle X^{k-1}_i, X^0_j \\rangle`, ``f[B, H]``."""
        gram = jnp.einsum("bid,bjd->bij", x, x0)
        return gram.reshape(gram.shape[0], -1) @ kernel.reshape(kernel.shape[0], -1).T

    def __call__(self, x0: jax.Array) -> jax.Array:
        x, pooled = x0, []
        for k, size in enumerate(self.layer_sizes):
            kernel = self.kernels[k][...]
            last = k == len(self.layer_sizes) - 1
            keep = 0 if last else size // 2 if self.split_half else size
            out = keep if self.split_half and not last else 0   # maps[out:] go to the output
            if self.act is None and out == keep:   # the output maps only as their sums
                nxt = self.maps(kernel[:keep], x0, x) if keep else None
                pooled.append(self.pooled_linear(kernel[out:], x0, x))
            else:
                maps = self.maps(kernel, x0, x)
                nxt = maps[:, :keep]
                pooled.append(maps[:, out:].sum(axis=-1))
            x = nxt
        return jnp.concatenate(pooled, axis=-1)


class XDeepFM(nnx.Module):
    """xDeepFM; ``cin_layers`` the CIN's feature maps per layer, ``split_half``,
    ``cin_activation`` (``None``: linear, as the paper's equation), ``hidden`` the deep
    tower's widths."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs,
                 cin_layers: Sequence[int] = (128, 128), split_half: bool = True,
                 cin_activation: str | None = None, hidden: Sequence[int] = (256, 128),
                 init_std: float = 0.01) -> None:
        self.inputs = inputs
        self.dim = common_dim(inputs, "xdeepfm")
        self.fields = FieldEmbeddings(inputs, rngs=rngs, linear=True, wide=True,
                                      init_std=init_std)
        self.cin = CIN(len(inputs.fields), cin_layers, rngs=rngs, split_half=split_half,
                       activation_name=cin_activation)
        self.cin_out = nnx.Linear(self.cin.output_width, 1, use_bias=False, rngs=rngs)
        self.deep = (tower(deep_width(inputs), hidden, rngs=rngs)
                     if widths(hidden, "hidden") else None)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        logit = self.fields.first_order(rows, batch)
        logit = logit + self.cin_out(self.cin(self.fields.stacked(rows, batch)))[:, 0]
        if self.deep is not None:
            logit = logit + self.deep(deep_input(self.fields, rows, batch))[:, 0]
        return logit
