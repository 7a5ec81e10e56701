r"""Logistic regression over the schema's fields: :math:`z = c + \sum_f \sum_{i \in x_f} w_i
\tilde x_{fi} + \langle u, \mathrm{dense} \rangle + \sum_{j \in \mathrm{wide}} v_j`.

Every id of every field has one weight (a :class:`~jaxembed.nn.fields.LinearTable` per
table, row-sparse FTRL by default), the numeric features a dense weight, and the hashed
crosses of the schema their own weights: the wide part of Wide & Deep on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx

from jaxembed.models.inputs import ModelInputs
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


class LR(nnx.Module):
    """Logistic regression: :meth:`FieldEmbeddings.first_order` (with the wide crosses)."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs) -> None:
        self.inputs = inputs
        self.fields = FieldEmbeddings(inputs, rngs=rngs, embed=False, linear=True, wide=True)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        return self.fields.first_order(rows, batch)
