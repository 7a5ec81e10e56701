r"""Embedding layers (Flax NNX): :class:`Embed` for ids, :class:`EmbedBag` for bags of ids.

Both own one table :math:`W \in \mathbb{R}^{V \times K}` and compute the embedding equation
with the gather forms of :mod:`jaxembed.lookup`:

* :class:`Embed` — :math:`\mathrm{out}_n = e_{i_n} W = W_{i_n}` (:func:`jaxembed.lookup`), with
  optional embedding dropout, a padding mask, and :meth:`Embed.attend` for tied output logits
  :math:`q W^\top`;
* :class:`EmbedBag` — the *sparse inner product layer*: :math:`\mathrm{out}_b = c_b\, x_b W`
  for the multi-hot code :math:`x_b` of bag :math:`b` and the combiner's normalization
  :math:`c_b` (:func:`jaxembed.bag_lookup`), never building :math:`x_b`.

``proofs/proof_embed_layers.py`` proves both equal to the literal ``one_hot(ids) @ W`` and
``multi_hot(bags) @ W`` in values and in gradients with respect to the table.

**Frozen tables.** ``freeze=True`` (the default of :meth:`Embed.from_pretrained`) stores the
table as a :class:`FrozenTable` variable instead of an ``nnx.Param``. Optimizers built with
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and gradients from ``nnx.grad`` (which takes
``nnx.Param`` by default) never see it, and the lookup stops its gradient, so no optimizer can
update it.

**Hooks.** ``embeddings_regularizer`` and ``embeddings_constraint`` follow Keras; see
:mod:`jaxembed.nn.regularize`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from jaxembed import _validate
from jaxembed.bags import PAD_ID, Bags
from jaxembed.lookup import COMBINERS, bag_lookup, lookup
from jaxembed.nn.dropout import DROPOUT_DRAWS, check_rate, embedding_dropout
from jaxembed.nn.regularize import Constraint, Regularizer, regularization
from jaxembed.text.vectors_io import read_glove_text, read_word2vec_binary, read_word2vec_text

__all__ = ["PRETRAINED_FORMATS", "Embed", "EmbedBag", "FrozenTable", "default_embed_init"]

default_embed_init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
"""Rows drawn from :math:`\\mathcal{N}(0, 1/K)` (as ``flax.nnx.Embed``): each row has expected
squared norm 1."""

PRETRAINED_FORMATS: dict[str, Callable[[Any], tuple[list[str], np.ndarray]]] = {
    "word2vec_text": read_word2vec_text,
    "word2vec_binary": read_word2vec_binary,
    "glove_text": read_glove_text,
}
"""The file formats :meth:`Embed.from_pretrained` reads, by ``format=`` name."""


class FrozenTable(nnx.Variable):
    """An embedding table that is not a parameter: no ``nnx.Param`` filter selects it, so
    ``nnx.grad`` and ``nnx.Optimizer(..., wrt=nnx.Param)`` leave it alone."""


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _load_pretrained(source: Any, format: str | None) -> tuple[Any, list[str] | None]:
    """``(table, index_to_key)`` from an array (keys ``None``) or a word-vector file."""
    if isinstance(source, str | os.PathLike):
        if format not in PRETRAINED_FORMATS:
            raise ValueError(
                f"format must be one of {sorted(PRETRAINED_FORMATS)} to read {source!s}, "
                f"got {format!r}"
            )
        keys, vectors = PRETRAINED_FORMATS[format](source)
        if vectors.shape[0] == 0:
            raise ValueError(f"{source}: the file holds no vectors")
        return vectors, keys
    if format is not None:
        raise ValueError(f"format={format!r} is for files; got an array")
    table = _validate.table_array(source, "pretrained table")
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"pretrained table must be non-empty, got shape {tuple(table.shape)}")
    _validate.finite(table, "pretrained table")
    return table, None


class _Given:
    """An initializer that returns a given table (and needs no random key)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __call__(self, key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        del key, shape
        return self.table.astype(dtype)


class _TableLayer(nnx.Module):
    """What :class:`Embed` and :class:`EmbedBag` share: the table and its hooks."""

    embedding: nnx.Variable

    def _init_table(
        self,
        num_embeddings: int,
        features: int,
        *,
        embedding_init: Callable[..., Any],
        param_dtype: Any,
        freeze: bool,
        embeddings_regularizer: Regularizer | None,
        embeddings_constraint: Constraint | None,
        rngs: nnx.Rngs,
    ) -> None:
        self.num_embeddings = _positive_int(num_embeddings, "num_embeddings")
        self.features = _positive_int(features, "features")
        if freeze and embeddings_constraint is not None:
            raise ValueError("a frozen table takes no embeddings_constraint (it never changes)")
        key = None if isinstance(embedding_init, _Given) else rngs.params()
        table = jnp.asarray(
            embedding_init(key, (self.num_embeddings, self.features), param_dtype), param_dtype
        )
        if table.shape != (self.num_embeddings, self.features):
            raise ValueError(
                f"embedding_init returned shape {tuple(table.shape)}, expected "
                f"{(self.num_embeddings, self.features)}"
            )
        self.frozen = bool(freeze)
        self.embedding = FrozenTable(table) if freeze else nnx.Param(table)
        self.embeddings_regularizer = embeddings_regularizer
        self.embeddings_constraint = embeddings_constraint

    @property
    def table(self) -> jax.Array:
        """The table ``W [V, K]`` (gradient stopped when frozen)."""
        table = self.embedding[...]
        return lax.stop_gradient(table) if self.frozen else table

    def regularization(self, ids: Any) -> jax.Array:
        """The ``embeddings_regularizer`` penalty for a batch that looked up ``ids`` (0 if
        none); add it to the loss."""
        return regularization(self.embeddings_regularizer, self.table, ids)

    def apply_constraints(self) -> None:
        """Replace the table by ``embeddings_constraint(table)``; call after each update."""
        if self.embeddings_constraint is not None:
            self.embedding[...] = self.embeddings_constraint(self.embedding[...])

    @classmethod
    def _pretrained(
        cls, source: Any, format: str | None, freeze: bool, rngs: nnx.Rngs | None, options: dict
    ) -> tuple[Any, list[str] | None]:
        table, keys = _load_pretrained(source, format)
        array = jnp.asarray(table)
        if rngs is None:
            if options.get("dropout", 0.0):
                raise ValueError("from_pretrained(dropout=...) needs rngs (a 'dropout' stream)")
            rngs = nnx.Rngs(0)  # never drawn from: the table is given
        layer = cls(
            int(array.shape[0]),
            int(array.shape[1]),
            embedding_init=_Given(array),
            param_dtype=options.pop("param_dtype", array.dtype),
            freeze=freeze,
            rngs=rngs,
            **options,
        )
        return layer, keys


class Embed(_TableLayer):
    r"""Look up one row per id: ``out[..., :] = W[ids[...]]``, shape ``ids.shape + (K,)``.

    Args:
        num_embeddings: ``V``, the number of rows (valid ids ``0 .. V-1``; ``-1`` is padding
            and gives a zero row).
        features: ``K``, the width of a row.
        lookup_style: ``"gather"``, ``"one_hot"`` or ``"auto"`` (see :func:`jaxembed.lookup`).
        max_norm: clip each looked-up row to this L2 norm (TensorFlow style: the table itself
            is not changed; for the Keras/PyTorch habit of renormalizing the table use the
            constraint :func:`jaxembed.nn.regularize.max_norm`).
        mask_zero: reserve id 0 for padding, as Keras: the lookup still returns ``W[0]`` for
            id 0 (exactly as ``keras.layers.Embedding(mask_zero=True)``), and
            :meth:`compute_mask` returns ``ids > 0`` for the caller to apply.
        dropout: embedding dropout rate ``p``: in training mode each vocabulary row is dropped
            with probability ``p`` once per call, every occurrence of a dropped id is zeroed
            together, kept rows are scaled by ``1/(1-p)`` (:mod:`jaxembed.nn.dropout`).
        dropout_draw: ``"hash"`` (per-id draw from ``fold_in(key, id)``, never ``[V]``) or
            ``"table"`` (one ``[V]`` mask); equal in distribution.
        deterministic: ``True`` turns dropout off; ``model.eval()`` / ``model.train()`` set it.
        freeze: store the table as a :class:`FrozenTable` that no optimizer updates.
        embedding_init: ``init(key, (V, K), dtype)``; default :data:`default_embed_init`.
        dtype: dtype of the output (default: the table's).
        param_dtype: dtype of the table.
        embeddings_regularizer: ``penalty(table, ids)`` returned by :meth:`regularization`.
        embeddings_constraint: ``table -> table`` applied by :meth:`apply_constraints`.
        rngs: ``params`` stream for the table; ``dropout`` stream (or the default one) for
            dropout.
    """

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        lookup_style: Literal["gather", "one_hot", "auto"] = "gather",
        max_norm: float | None = None,
        mask_zero: bool = False,
        dropout: float = 0.0,
        dropout_draw: Literal["hash", "table"] = "hash",
        deterministic: bool = False,
        freeze: bool = False,
        embedding_init: Callable[..., Any] = default_embed_init,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        embeddings_regularizer: Regularizer | None = None,
        embeddings_constraint: Constraint | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if lookup_style not in ("gather", "one_hot", "auto"):
            raise ValueError(
                f"lookup_style must be 'gather', 'one_hot' or 'auto', got {lookup_style!r}"
            )
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
        if dropout_draw not in DROPOUT_DRAWS:
            raise ValueError(f"dropout_draw must be one of {DROPOUT_DRAWS}, got {dropout_draw!r}")
        self._init_table(
            num_embeddings,
            features,
            embedding_init=embedding_init,
            param_dtype=param_dtype,
            freeze=freeze,
            embeddings_regularizer=embeddings_regularizer,
            embeddings_constraint=embeddings_constraint,
            rngs=rngs,
        )
        self.lookup_style = lookup_style
        self.max_norm = None if max_norm is None else float(max_norm)
        self.mask_zero = bool(mask_zero)
        self.dropout = check_rate(dropout)
        self.dropout_draw = dropout_draw
        self.deterministic = bool(deterministic)
        self.dtype = dtype
        self.rngs = rngs["dropout"].fork() if self.dropout > 0 else None

    def __call__(
        self,
        ids: Any,
        *,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | jax.Array | None = None,
    ) -> jax.Array:
        """``W[ids]`` (after max_norm, then dropout in training mode), ``ids.shape + (K,)``.

        ``deterministic`` overrides the module's mode for this call; ``rngs`` (an ``nnx.Rngs``
        or a key) overrides its dropout stream.
        """
        rows = lookup(self.table, ids, max_norm=self.max_norm, lookup_style=self.lookup_style)
        deterministic = self.deterministic if deterministic is None else deterministic
        if self.dropout > 0 and not deterministic:
            rows = embedding_dropout(
                self._dropout_key(rngs),
                rows,
                ids,
                self.dropout,
                self.num_embeddings,
                draw=self.dropout_draw,
            )
        return rows if self.dtype is None else rows.astype(self.dtype)

    def _dropout_key(self, rngs: nnx.Rngs | jax.Array | None) -> jax.Array:
        if rngs is None:
            if self.rngs is None:
                raise ValueError("Embed dropout needs rngs (built without a 'dropout' stream)")
            return self.rngs()
        if isinstance(rngs, nnx.Rngs):
            return rngs["dropout"]()
        return rngs

    def compute_mask(self, ids: Any) -> jax.Array:
        """bool ``ids.shape``: true where an id is real data.

        With ``mask_zero`` that is ``ids > 0`` (id 0 and padding ``-1`` masked, as Keras);
        without it ``ids != -1`` (only jaxembed's padding masked).
        """
        ids = jnp.asarray(_validate.id_array(ids, "compute_mask ids"))
        return ids > 0 if self.mask_zero else ids != PAD_ID

    def attend(self, query: Any) -> jax.Array:
        r"""Tied output logits :math:`q W^\top`: ``query [..., K] -> [..., V]``.

        Uses the table as stored (no ``max_norm``, no dropout), in full float32 precision.
        """
        query = jnp.asarray(query)
        if query.ndim == 0 or query.shape[-1] != self.features:
            raise ValueError(
                f"attend: query has shape {tuple(query.shape)}; its last axis must be "
                f"features={self.features}"
            )
        table = self.table
        dtype = self.dtype or jnp.promote_types(query.dtype, table.dtype)
        return jnp.matmul(
            query.astype(dtype), table.astype(dtype).T, precision=lax.Precision.HIGHEST
        )

    def set_view(self, deterministic: bool | None = None) -> None:
        """For ``nnx.view(model, deterministic=...)``: turn dropout off (True) or on."""
        if deterministic is not None:
            self.deterministic = deterministic

    @classmethod
    def from_pretrained(
        cls,
        source: Any,
        *,
        freeze: bool = True,
        format: str | None = None,
        rngs: nnx.Rngs | None = None,
        **options: Any,
    ) -> tuple[Embed, list[str] | None]:
        """An :class:`Embed` holding a given table: ``(layer, index_to_key)``.

        ``source`` is a ``[V, K]`` float array (``index_to_key`` is then ``None``) or the path
        of a word-vector file with ``format`` one of :data:`PRETRAINED_FORMATS`
        (``"word2vec_text"``, ``"word2vec_binary"``, ``"glove_text"``); row ``i`` of the
        table is the vector of ``index_to_key[i]``. ``freeze=True`` stores a
        :class:`FrozenTable`. ``options`` are the other constructor arguments (``max_norm``,
        ``dropout``, ...); ``rngs`` is needed only for dropout.
        """
        return cls._pretrained(source, format, freeze, rngs, options)


class EmbedBag(_TableLayer):
    r"""The sparse inner product layer: ``out[b] = combiner(x_b) @ W`` for a :class:`Bags`.

    :math:`\mathrm{out}_b = c_b \sum_l w_{bl} W_{i_{bl}}` with :math:`c_b = 1` (``sum``),
    :math:`1/\sum_l w_{bl}` (``mean``), :math:`1/\sqrt{\sum_l w_{bl}^2}` (``sqrtn``), or the
    elementwise maximum of the rows (``max``), i.e. the multi-hot code :math:`x_b` times the
    weight matrix, computed by :func:`jaxembed.bag_lookup` without the ``[B, V]`` product.
    Always ``B`` rows; an empty bag gives zeros.

    Args are those of :class:`Embed` (``num_embeddings``, ``features``, ``max_norm``,
    ``freeze``, ``embedding_init``, ``dtype``, ``param_dtype``, the two hooks, ``rngs``) plus
    ``combiner``, one of ``"sum"``, ``"mean"``, ``"sqrtn"``, ``"max"``.
    """

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        combiner: Literal["sum", "mean", "sqrtn", "max"] = "mean",
        max_norm: float | None = None,
        freeze: bool = False,
        embedding_init: Callable[..., Any] = default_embed_init,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        embeddings_regularizer: Regularizer | None = None,
        embeddings_constraint: Constraint | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if combiner not in COMBINERS:
            raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
        self._init_table(
            num_embeddings,
            features,
            embedding_init=embedding_init,
            param_dtype=param_dtype,
            freeze=freeze,
            embeddings_regularizer=embeddings_regularizer,
            embeddings_constraint=embeddings_constraint,
            rngs=rngs,
        )
        self.combiner = combiner
        self.max_norm = None if max_norm is None else float(max_norm)
        self.dtype = dtype

    def __call__(self, bags: Bags) -> jax.Array:
        """The pooled rows ``[B, K]``."""
        out = bag_lookup(self.table, bags, combiner=self.combiner, max_norm=self.max_norm)
        return out if self.dtype is None else out.astype(self.dtype)

    @classmethod
    def from_pretrained(
        cls,
        source: Any,
        *,
        freeze: bool = True,
        format: str | None = None,
        rngs: nnx.Rngs | None = None,
        **options: Any,
    ) -> tuple[EmbedBag, list[str] | None]:
        """An :class:`EmbedBag` over a given table: ``(layer, index_to_key)``; as
        :meth:`Embed.from_pretrained` (e.g. a bag of words pooled from word2vec vectors)."""
        return cls._pretrained(source, format, freeze, rngs, options)
