"""Flax NNX layers and models built on the embedding equation.

* :mod:`jaxembed.nn.embed` — :class:`Embed` (ids), :class:`EmbedBag` (the sparse inner
  product layer over :class:`~jaxembed.Bags`), :class:`FrozenTable`, pretrained tables;
* :mod:`jaxembed.nn.dropout` — embedding dropout (whole vocabulary rows);
* :mod:`jaxembed.nn.regularize` — Keras-style regularizers and constraints;
* :mod:`jaxembed.nn.ctr` — :class:`SearchCTR`, :class:`WideAndDeep` and the CTR loss.
"""

from jaxembed.nn.ctr import (
    DEFAULT_DOMAINS,
    MLP,
    BehaviorNetwork,
    SearchCTR,
    StatsTower,
    WideAndDeep,
    WideLinear,
    sigmoid_cross_entropy,
)
from jaxembed.nn.dropout import drop_rows, embedding_dropout, keep_ids_hashed, keep_rows
from jaxembed.nn.embed import PRETRAINED_FORMATS, Embed, EmbedBag, FrozenTable
from jaxembed.nn.regularize import (
    apply_constraints,
    l2_rows,
    l2_table,
    max_norm,
    max_norm_constraint,
)

__all__ = [
    "DEFAULT_DOMAINS",
    "MLP",
    "PRETRAINED_FORMATS",
    "BehaviorNetwork",
    "Embed",
    "EmbedBag",
    "FrozenTable",
    "SearchCTR",
    "StatsTower",
    "WideAndDeep",
    "WideLinear",
    "apply_constraints",
    "drop_rows",
    "embedding_dropout",
    "keep_ids_hashed",
    "keep_rows",
    "l2_rows",
    "l2_table",
    "max_norm",
    "max_norm_constraint",
    "sigmoid_cross_entropy",
]
