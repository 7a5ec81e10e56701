r"""DeepFM (Guo et al., 2017): a factorization machine and a deep tower on shared embeddings.

.. math::

    z = \underbrace{c + \sum_i w_i x_i + \sum_{i<j} \langle v_i, v_j \rangle x_i x_j}_{
        \text{FM (:mod:`jaxembed.models.fm`)}}
      + \mathrm{MLP}\big([e_1, \dots, e_F, \mathrm{dense}]\big),

with :math:`e_f` field :math:`f`'s pooled embedding, read from the same tables as the FM's
:math:`v_i`. The tower is ReLU layers ``hidden`` and a 1-unit output; the defaults follow
DeepCTR-Torch (``dnn_hidden_units=(256, 128)``). The numeric features reach the FM's first
order and the tower; ``dense_interactions=True`` adds them to the FM's pairwise sum too
(:mod:`jaxembed.models.fm`).

References:
    Guo, H. et al. (2017). DeepFM: A Factorization-Machine based Neural Network for CTR
    Prediction. IJCAI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx

from jaxembed.models.fm import pairwise
from jaxembed.models.inputs import ModelInputs
from jaxembed.models.parts import common_dim, deep_input, deep_width, numeric_vectors, tower
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


class DeepFM(nnx.Module):
    """DeepFM; ``hidden`` the deep tower's widths, ``init_std`` the embeddings' scale,
    ``dense_interactions`` the numeric features in the FM's pairwise sum."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs,
                 hidden: Sequence[int] = (256, 128), init_std: float = 0.01,
                 dense_interactions: bool = False) -> None:
        self.inputs = inputs
        self.dim = common_dim(inputs, "deepfm")
        self.fields = FieldEmbeddings(inputs, rngs=rngs, linear=True, wide=True,
                                      init_std=init_std)
        self.dense_fields = numeric_vectors(inputs, self.dim, dense_interactions, rngs=rngs,
                                            init_std=init_std)
        self.deep = tower(deep_width(inputs), hidden, rngs=rngs)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        fm = (self.fields.first_order(rows, batch)
              + pairwise(self.fields, rows, batch, self.dense_fields))
        return fm + self.deep(deep_input(self.fields, rows, batch))[:, 0]
