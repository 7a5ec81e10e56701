r"""Wide & Deep (Cheng et al., 2016) over the schema's fields.

:math:`z = z_\mathrm{wide} + z_\mathrm{deep}`:

* wide: :meth:`~jaxembed.nn.fields.FieldEmbeddings.first_order`, a weight per id of every
  field, per numeric feature and per hashed cross (``batch["wide"]``);
* deep: the fields' pooled embeddings side by side with the numeric features, then ReLU
  layers ``hidden`` and a 1-unit output.

References:
    Cheng, H.-T. et al. (2016). Wide & Deep Learning for Recommender Systems. DLRS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxembed.models.inputs import ModelInputs
from jaxembed.nn.ctr import MLP
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


class WideDeep(nnx.Module):
    """Wide & Deep; ``hidden`` the deep tower's widths, ``init_std`` the embeddings' scale."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs,
                 hidden: Sequence[int] = (256, 128, 64), init_std: float = 0.01) -> None:
        self.inputs = inputs
        self.fields = FieldEmbeddings(inputs, rngs=rngs, linear=True, wide=True,
                                      init_std=init_std)
        width = sum(inputs.dim(f.name) for f in inputs.fields) + inputs.num_dense
        hidden = tuple(hidden)
        self.deep = MLP(width, (*hidden, 1), [jax.nn.relu] * len(hidden) + [None], rngs=rngs)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        deep_in = jnp.concatenate([self.fields.concatenated(rows, batch),
                                   jnp.asarray(batch["dense"], jnp.float32)], axis=-1)
        return self.fields.first_order(rows, batch) + self.deep(deep_in)[:, 0]
