r"""DCN-V2 (Wang et al., 2021): a cross network and a deep tower.

The input is :math:`x_0 = [e_1, \dots, e_F, \mathrm{dense}] \in \mathbb R^{D}` (the pooled
fields side by side with the numeric features). A cross layer is

.. math::

    x_{l+1} = x_0 \odot (W_l x_l + b_l) + x_l ,

so :math:`L` layers make a polynomial of degree :math:`L + 1` in :math:`x_0`
(``proofs/proof_dcnv2.py``). ``low_rank = r`` replaces :math:`W_l` (:math:`D \times D`) by a
mixture of ``num_experts`` low-rank experts:

.. math::

    x_{l+1} = \sum_{i=1}^{E} G_i(x_l)\, \big(x_0 \odot (U_{l,i}\, g(C_{l,i}\, g(V_{l,i}^\top
    x_l)) + b_l)\big) + x_l , \qquad G(x_l) = \mathrm{softmax}(\Gamma_l x_l),

with :math:`U, V \in \mathbb R^{D \times r}`; without an ``expert_activation`` :math:`g` (the
default) the expert is the linear :math:`U_{l,i} V_{l,i}^\top x_l` (no :math:`C`), so one
expert is the full layer with :math:`W_l = U_l V_l^\top` (TF Recommenders' ``projection_dim``).

``structure="stacked"``: the deep tower (ReLU layers ``hidden``, then a 1-unit output) on
:math:`x_L`; ``"parallel"``: :math:`[x_L, \mathrm{MLP}(x_0)]` into a 1-unit output.

References:
    Wang, R. et al. (2021). DCN V2: Improved Deep & Cross Network and Practical Lessons for
    Web-scale Learning to Rank Systems. WWW.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxembed.models.inputs import ModelInputs
from jaxembed.models.parts import activation, count, deep_input, deep_width, tower, widths
from jaxembed.nn.ctr import MLP
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows

STRUCTURES = ("stacked", "parallel")


def _glorot(key: jax.Array, shape: tuple[int, ...], fan_in: int, fan_out: int) -> jax.Array:
    return jnp.sqrt(2.0 / (fan_in + fan_out)) * jax.random.normal(key, shape)


class CrossNetwork(nnx.Module):
    r"""``layers`` cross layers :math:`x_{l+1} = x_0 \odot (W_l x_l + b_l) + x_l` over
    :math:`\mathbb R^{\mathrm{width}}`, full rank or a low-rank mixture of experts.

    Parameters: full rank ``w [L, D, D]`` (:math:`W_l`, applied as ``x @ w[l].T``) and
    ``b [L, D]``; low rank ``u, v [L, E, D, r]``, ``c [L, E, r, r]`` (with an activation),
    ``gate [L, E, D]`` (with ``E > 1``) and ``b``.
    """

    def __init__(self, width: int, layers: int, *, rngs: nnx.Rngs, low_rank: int | None = None,
                 num_experts: int = 1, expert_activation: str | None = None) -> None:
        self.width = count(width, "cross width")
        self.layers = count(layers, "cross_layers", low=0)
        self.low_rank = None if low_rank is None else count(low_rank, "low_rank")
        self.num_experts = count(num_experts, "num_experts")
        self.act = activation(expert_activation, "expert_activation")
        if self.low_rank is None and (self.num_experts != 1 or self.act is not None):
            raise ValueError(f"num_experts={num_experts!r} and expert_activation="
                             f"{expert_activation!r} need low_rank (the experts are low rank)")
        d, n = self.width, self.layers
        self.b = nnx.Param(jnp.zeros((n, d)))
        if self.low_rank is None:
            self.w = nnx.Param(_glorot(rngs.params(), (n, d, d), d, d))
            return
        r, e = self.low_rank, self.num_experts
        self.u = nnx.Param(_glorot(rngs.params(), (n, e, d, r), r, d))
        self.v = nnx.Param(_glorot(rngs.params(), (n, e, d, r), d, r))
        self.c = nnx.Param(_glorot(rngs.params(), (n, e, r, r), r, r)
                           if self.act is not None else jnp.zeros((n, e, 0, 0)))
        self.gate = nnx.Param(_glorot(rngs.params(), (n, e, d), d, 1)
                              if e > 1 else jnp.zeros((n, e, 0)))

    def layer(self, l: int, x0: jax.Array, x: jax.Array) -> jax.Array:
        """Cross layer ``l``: :math:`x_{l+1}` from :math:`x_0` and :math:`x_l` (``f[B, D]``)."""
        b = self.b[...][l]
        if self.low_rank is None:
            return x0 * (x @ self.w[...][l].T + b) + x
        h = jnp.einsum("bd,edr->ber", x, self.v[...][l])                 # V_iᵀ x_l
        if self.act is not None:
            h = self.act(jnp.einsum("ber,esr->bes", self.act(h), self.c[...][l]))
        experts = x0[:, None] * (jnp.einsum("ber,edr->bed", h, self.u[...][l]) + b)
        if self.num_experts == 1:
            return experts[:, 0] + x
        gates = jax.nn.softmax(jnp.einsum("bd,ed->be", x, self.gate[...][l]), axis=-1)
        return jnp.einsum("be,bed->bd", gates, experts) + x

    def __call__(self, x0: jax.Array) -> jax.Array:
        x = x0
        for l in range(self.layers):
            x = self.layer(l, x0, x)
        return x


class DCNv2(nnx.Module):
    """DCN-V2; ``cross_layers`` cross layers (``low_rank``, ``num_experts``,
    ``expert_activation`` as in :class:`CrossNetwork`), ``hidden`` the deep tower's widths,
    ``structure`` ``"stacked"`` or ``"parallel"``; the defaults follow DeepCTR-Torch's DCN
    (``cross_num=2``, ``dnn_hidden_units=(128, 128)``, parallel)."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs, cross_layers: int = 2,
                 low_rank: int | None = None, num_experts: int = 1,
                 expert_activation: str | None = None, hidden: Sequence[int] = (128, 128),
                 structure: str = "parallel", init_std: float = 0.01) -> None:
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        self.inputs = inputs
        self.structure = structure
        hidden = widths(hidden, "hidden")
        self.fields = FieldEmbeddings(inputs, rngs=rngs, init_std=init_std)
        width = deep_width(inputs)
        self.cross = CrossNetwork(width, cross_layers, rngs=rngs, low_rank=low_rank,
                                  num_experts=num_experts, expert_activation=expert_activation)
        if structure == "stacked":
            self.deep = tower(width, hidden, rngs=rngs)
            self.out = None
        else:
            self.deep = (MLP(width, hidden, [jax.nn.relu] * len(hidden), rngs=rngs)
                         if hidden else None)
            self.out = nnx.Linear(width + (hidden[-1] if hidden else 0), 1, rngs=rngs)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        x0 = deep_input(self.fields, rows, batch)
        crossed = self.cross(x0)
        if self.out is None:
            return self.deep(crossed)[:, 0]
        parts = [crossed] if self.deep is None else [crossed, self.deep(x0)]
        return self.out(jnp.concatenate(parts, axis=-1))[:, 0]
