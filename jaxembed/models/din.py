r"""Deep Interest Network (Zhou et al., 2018): target attention over a user's histories.

The *target* is a single-valued field (the candidate ``item``); its *histories* are the
multi-valued fields that share its table (``share = "item"`` in the schema, e.g.
``recent_items``). For a history's rows :math:`h_l` (``l`` its slots) and the target's
embedding :math:`t`, an attention MLP scores each position,

.. math::

    a_l = w_l\, \mathrm{MLP}_a\big([h_l,\ t,\ h_l - t,\ h_l \odot t]\big), \qquad
    \mathrm{pool}(h) = \sum_l a_l h_l = \big(\mathrm{multi\_hot}(\mathrm{ids}, a)\big) W,

with :math:`w_l` the slot's weight (1 for an unweighted id, 0 on padding): the weights are
**not** softmax-normalized, as in the paper, so the pooled vector keeps the intensity of the
user's interest. The pool is the embedding equation with weights :math:`a`
(``proofs/proof_din.py``). Every other field is pooled by its combiner; the pooled fields,
the attention pools and the numeric features go side by side into ReLU layers ``hidden`` and
a 1-unit output.

The attention MLP (``att_hidden``, ReLU by default) is shared by all the target's histories.
The paper's code uses sigmoid there (``att_activation="sigmoid"``); on the generated history
log (:mod:`jaxembed.data.history_log`, validation rows) ReLU learned the attention much faster:
best validation AUC 0.7765 against sigmoid's 0.6952 (docs/benchmarks.md). The paper's Dice
activation and mini-batch aware regularization are left out (ReLU in the tower instead).

References:
    Zhou, G. et al. (2018). Deep Interest Network for Click-Through Rate Prediction. KDD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxembed.bags import Bags
from jaxembed.models.inputs import ModelInputs
from jaxembed.models.parts import activation, deep_width, dense, tower, widths
from jaxembed.nn.ctr import MLP
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


def default_target(inputs: ModelInputs) -> str:
    """The first single-valued field that has histories; a ``ValueError`` when none has."""
    for f in inputs.fields:
        if inputs.histories(f.name):
            return f.name
    single = [f.name for f in inputs.fields if not f.multi]
    raise ValueError(
        "din needs a multi-valued field with share = \"<field>\" (a history sharing a "
        f"single-valued field's table); none of the single-valued fields {single} has one")


def check_target(inputs: ModelInputs, target: str) -> tuple[str, ...]:
    """The histories of ``target``; a ``ValueError`` saying which field and why when it is
    not a single-valued field with at least one history."""
    names = [f.name for f in inputs.fields]
    if target not in names:
        raise ValueError(f"din target {target!r} is not a field; fields: {names}")
    if inputs.field(target).multi:
        raise ValueError(f"din target {target!r} is multi-valued; the target must be a "
                         f"single-valued field (the candidate)")
    histories = inputs.histories(target)
    if not histories:
        raise ValueError(
            f"din target {target!r} has no history: din needs a multi-valued field with "
            f"share = \"{target}\" (indexing table {inputs.field(target).table!r})")
    return histories


class AttentionUnit(nnx.Module):
    r"""The attention MLP: :math:`[h, t, h - t, h \odot t] \mapsto` one score per position.

    Its first layer is computed without building the concatenation: with the kernel's four
    blocks :math:`K = [K_h; K_t; K_d; K_p]`,

    .. math::

        [h, t, h - t, h \odot t]\, K + c = [h,\ h \odot t]\,[K_h + K_d;\ K_p]
            + \big(t\,(K_t - K_d) + c\big),

    so the target's part is computed once per row instead of once per position (half the
    first layer's products). The literal concatenation is its twin (``proofs/proof_din.py``).
    """

    def __init__(self, dim: int, hidden: Sequence[int], *, rngs: nnx.Rngs,
                 activation_name: str = "relu") -> None:
        hidden = widths(hidden, "att_hidden")
        act = activation(activation_name, "att_activation")
        self.mlp = MLP(4 * dim, (*hidden, 1), [act] * len(hidden) + [None], rngs=rngs)

    def __call__(self, history: jax.Array, target: jax.Array, bags: Bags) -> jax.Array:
        """:math:`a_l = w_l \\mathrm{MLP}_a(\\ldots)`, ``f[B, L]`` (0 on padding)."""
        first = self.mlp.layers[0]
        kernel, d = first.kernel[...], history.shape[-1]
        k_h, k_t, k_d, k_p = (kernel[i * d:(i + 1) * d] for i in range(4))
        x = (jnp.concatenate([history, history * target[:, None]], -1)
             @ jnp.concatenate([k_h + k_d, k_p], 0)
             + (target @ (k_t - k_d) + first.bias[...])[:, None])
        for i, act in enumerate(self.mlp.activations):
            x = x if i == 0 else self.mlp.layers[i](x)
            x = x if act is None else act(x)
        return x[..., 0] * bags.slot_weights(history.dtype)


def attention_pool(rows: jax.Array, weights: jax.Array) -> jax.Array:
    r""":math:`\sum_l a_l h_l`, ``f[B, d]`` from rows ``f[B, L, d]`` and weights ``f[B, L]``."""
    return jnp.einsum("bl,blk->bk", weights, rows)


class DIN(nnx.Module):
    """DIN; ``target`` the candidate field (default: the first single-valued field with a
    history), ``att_hidden``/``att_activation`` the attention MLP, ``hidden`` the tower."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs, target: str | None = None,
                 att_hidden: Sequence[int] = (80, 40), att_activation: str = "relu",
                 hidden: Sequence[int] = (200, 80), init_std: float = 0.01) -> None:
        self.inputs = inputs
        self.target = default_target(inputs) if target is None else target
        self.histories = check_target(inputs, self.target)
        self.fields = FieldEmbeddings(inputs, rngs=rngs, init_std=init_std)
        self.attention = AttentionUnit(inputs.dim(self.target), att_hidden, rngs=rngs,
                                       activation_name=att_activation)
        self.deep = tower(deep_width(inputs), hidden, rngs=rngs)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def interest(self, rows: Rows, batch: Mapping[str, Any], history: str,
                 target: jax.Array) -> jax.Array:
        """One history's attention pool, ``f[B, d]``."""
        h = self.fields.rows(rows, history)
        return attention_pool(h, self.attention(h, target, batch[history]))

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        target = self.fields.pooled(rows, batch, self.target)
        parts = []
        for f in self.inputs.fields:
            if f.name in self.histories:
                parts.append(self.interest(rows, batch, f.name, target))
            else:
                parts.append(self.fields.pooled(rows, batch, f.name))
        return self.deep(jnp.concatenate([*parts, dense(batch)], axis=-1))[:, 0]
