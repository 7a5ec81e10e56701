r"""Factorization machine (Rendle, 2010) over the schema's fields.

The features are every (field, id) of the batch and every numeric feature: a row's feature
vector :math:`x` is the multi-hot of each field's bag, normalized by the field's combiner
(:math:`x_{fj} = \sum_l \tilde w_{fl} [i_{fl} = j]`, so a duplicated id adds up), followed by
the numeric values. Each feature has a first-order weight :math:`w_i` and a vector
:math:`v_i` (a field's table row; a numeric feature's :math:`u_j`):

.. math::

    z = c + \sum_i w_i x_i + \sum_{i<j} \langle v_i, v_j \rangle x_i x_j ,
    \qquad
    \sum_{i<j} \langle v_i, v_j \rangle x_i x_j
      = \tfrac12 \Big( \big\lVert \textstyle\sum_i x_i v_i \big\rVert^2
                       - \textstyle\sum_i x_i^2 \lVert v_i \rVert^2 \Big).

The interactions run over *all* active features, so the ids of one multi-valued field
interact with each other too, with their weights. The fast form works on the gathered rows:
:math:`\sum_i x_i v_i = \sum_f \sum_l \tilde w_{fl} R_f[l]`, and, since a duplicated id is
one feature, :math:`\sum_i x_i^2 \lVert v_i\rVert^2 = \sum_f \sum_l \tilde w_{fl}\,
x_{f i_{fl}} \lVert R_f[l] \rVert^2` with :math:`x_{f i_{fl}} = \sum_m \tilde w_{fm}
[i_{fm} = i_{fl}]` (an ``L x L`` id comparison per multi-valued bag, fused into its sum).
It equals the literal double sum over pairs in values and gradients (``proofs/proof_fm.py``).

With ``dense_interactions=False`` (the default) the numeric features keep their first-order
weights but leave the pairwise sum: :math:`i, j` run over the (field, id) features only, as in
DeepCTR's FM and DeepFM. Measured on validation rows (docs/benchmarks.md, "Numeric features in
the interactions"): with a numeric feature that carries no interaction (the history log's
price) their vectors let ``fm`` fit noise (validation AUC 0.7014 with them, 0.7212 without);
on the Criteo-format log they are worth 0.005 to ``fm`` and nothing to ``deepfm``.

All fields must share one embedding dim (a ``ValueError`` names the field that does not).

References:
    Rendle, S. (2010). Factorization Machines. ICDM.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxembed.bags import Bags
from jaxembed.lookup import pooling_weights
from jaxembed.models.inputs import ModelInputs
from jaxembed.models.parts import DenseFields, common_dim, numeric_vectors
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


def feature_sums(rows: jax.Array, bags: Bags, combiner: str) -> tuple[jax.Array, jax.Array]:
    r"""One field's share of the sum-square form: :math:`(\sum_i x_i v_i,\
    \sum_i x_i^2 \lVert v_i \rVert^2)` over the field's features, ``(f[B, K], f[B])``.

    ``rows`` are the field's gathered rows ``f[B, L, K]`` (zero on padding); ``x`` its
    combiner-normalized multi-hot; a bag of width 1 needs no duplicate-id comparison.
    """
    weights = pooling_weights(bags, combiner, rows.dtype)            # w̃[b, l], 0 on padding
    linear = jnp.einsum("bl,blk->bk", weights, rows)
    if bags.width > 1:
        # x of the slot's id, Σ_m w̃_m [i_m = i_l]: a compare-and-reduce that XLA fuses, so
        # the [B, L, L] comparison is never stored
        same = bags.ids[:, :, None] == bags.ids[:, None, :]
        x = jnp.sum(jnp.where(same, weights[:, None, :], 0.0), axis=-1)
    else:
        x = weights
    squares = jnp.einsum("bl,bl,blk,blk->b", weights, x, rows, rows)
    return linear, squares


def pairwise(fields: FieldEmbeddings, rows: Rows, batch: Mapping[str, Any],
             dense_fields: DenseFields | None = None) -> jax.Array:
    r""":math:`\sum_{i<j} \langle v_i, v_j \rangle x_i x_j` over every field's ids (and the
    numeric features when ``dense_fields``), ``f[B]``, by the sum-square form."""
    total, squares = 0.0, 0.0
    for f in fields.inputs.fields:
        s, q = feature_sums(fields.rows(rows, f.name), batch[f.name], f.combiner)
        total, squares = total + s, squares + q
    if dense_fields is not None and dense_fields.num_dense:
        vectors = dense_fields(batch)                                # x_j u_j, [B, D, K]
        total = total + vectors.sum(axis=1)
        squares = squares + jnp.sum(vectors * vectors, axis=(1, 2))
    return 0.5 * (jnp.sum(total * total, axis=-1) - squares)


class FM(nnx.Module):
    """Factorization machine: first order (with the wide crosses when the schema has them)
    plus the pairwise interactions of every field's ids (and of the numeric features with
    ``dense_interactions``).

    Args:
        inputs: the tables and fields (all tables one ``dim``).
        init_std: scale of the initial embeddings (and numeric features' vectors).
        dense_interactions: the numeric features take part in the pairwise sum, each with a
            vector :math:`u_j` (default False: first order only).
    """

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs, init_std: float = 0.01,
                 dense_interactions: bool = False) -> None:
        self.inputs = inputs
        self.dim = common_dim(inputs, "fm")
        self.fields = FieldEmbeddings(inputs, rngs=rngs, linear=True, wide=True,
                                      init_std=init_std)
        self.dense_fields = numeric_vectors(inputs, self.dim, dense_interactions, rngs=rngs,
                                            init_std=init_std)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        return (self.fields.first_order(rows, batch)
                + pairwise(self.fields, rows, batch, self.dense_fields))
