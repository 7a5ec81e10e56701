"""Bags: a batch of variable-length id lists, as a JAX pytree.

A bag is the multi-hot vector ``x_b`` of the embedding equation ``e_b = x_b @ W`` written
sparsely: the ids ``j`` with ``x_bj != 0`` and their weights ``x_bj``. A batch of ``B`` bags is
stored padded to a rectangle::

    ids     int32[B, L]   id of each slot, -1 marks padding
    weights f32[B, L]     weight of each slot (``None`` means every weight is 1)

so that ``x_bj = Σ_l weights[b, l] · [ids[b, l] == j]`` (a duplicated id adds up). A bag may
be empty (all padding). The literal ``x`` is :func:`jaxembed.multi_hot`.

**Width buckets.** ``jit`` compiles once per input shape. The constructors that build the
padded rectangle (:meth:`Bags.from_lists`, :meth:`Bags.from_offsets`) round the width ``L``
up to a power of two (at least ``min_width``), so a stream of batches whose longest bag varies
compiles only ``log2(max L)`` times rather than once per batch. Pass ``width=`` to pin it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxembed import _validate

PAD_ID = -1
"""The id that marks an empty slot in a bag."""


def bucket_width(longest: int, min_width: int = 1) -> int:
    """The padded width for bags whose longest has ``longest`` ids: the next power of two
    ``>= max(longest, min_width)``."""
    need = max(int(longest), int(min_width), 1)
    return 1 << (need - 1).bit_length()


@jax.tree_util.register_pytree_node_class
@dataclass(frozen=True, init=False, eq=False)
class Bags:
    """A batch of ``B`` bags of ids, padded to width ``L`` with ``-1``.

    Args:
        ids: integer array ``[B, L]``; ``-1`` marks padding, every other id must be ``>= 0``.
        weights: optional float array ``[B, L]``, one weight per slot; ``None`` means all
            ones. Weights of padding slots are ignored.

    Concrete (non-traced) inputs are validated at once: a float id array, an id below ``-1``,
    a weights array of another shape, or a NaN/inf weight raises, naming the value and its
    position. Upper bounds (``id < num_embeddings``) are checked by the lookup that knows
    ``num_embeddings``.
    """

    ids: jax.Array
    weights: jax.Array | None

    def __init__(self, ids: Any, weights: Any = None) -> None:
        ids = _validate.id_array(ids, "Bags ids")
        if ids.ndim != 2:
            raise ValueError(f"Bags ids must be 2-D [B, L], got shape {tuple(ids.shape)}")
        _validate.ids_at_least(ids, PAD_ID, "Bags ids")
        _validate.ids_fit_index_type(ids, "Bags ids")
        if weights is not None:
            weights = _validate.weight_array(weights, ids.shape, "Bags weights")
        object.__setattr__(self, "ids", jnp.asarray(ids))
        object.__setattr__(self, "weights", None if weights is None else jnp.asarray(weights))

    # --- pytree -----------------------------------------------------------------------------
    def tree_flatten(self):
        return (self.ids, self.weights), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux
        bags = object.__new__(cls)
        object.__setattr__(bags, "ids", children[0])
        object.__setattr__(bags, "weights", children[1])
        return bags

    # --- shape and derived arrays -----------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """``B``, the number of bags."""
        return self.ids.shape[0]

    @property
    def width(self) -> int:
        """``L``, the padded width."""
        return self.ids.shape[1]

    @property
    def mask(self) -> jax.Array:
        """bool[B, L]: true where a slot holds an id (not padding)."""
        return self.ids != PAD_ID

    def slot_weights(self, dtype: Any = jnp.float32) -> jax.Array:
        """f[B, L]: each slot's weight, 0 on padding (1 on ids when ``weights`` is None)."""
        mask = self.mask
        if self.weights is None:
            return mask.astype(dtype)
        return jnp.where(mask, self.weights.astype(dtype), jnp.zeros((), dtype))

    def lengths(self) -> jax.Array:
        """int32[B]: how many ids each bag holds."""
        return jnp.sum(self.mask, axis=1, dtype=jnp.int32)

    def to_lists(self) -> tuple[list[list[int]], list[list[float]] | None]:
        """Back to python lists (host-side; for inspection and tests)."""
        ids = np.asarray(self.ids)
        keep = ids != PAD_ID
        lists = [row[k].tolist() for row, k in zip(ids, keep, strict=True)]
        if self.weights is None:
            return lists, None
        w = np.asarray(self.weights)
        return lists, [row[k].tolist() for row, k in zip(w, keep, strict=True)]

    def __repr__(self) -> str:
        weighted = "weighted" if self.weights is not None else "unweighted"
        return f"Bags(B={self.ids.shape[0]}, L={self.ids.shape[1]}, {weighted})"

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def from_lists(
        cls,
        lists: Sequence[Sequence[int]],
        weights: Sequence[Sequence[float]] | None = None,
        *,
        width: int | None = None,
        min_width: int = 1,
    ) -> Bags:
        """Bags from python lists: ``lists[b]`` holds the ids of bag ``b`` (may be empty).

        ``weights[b][l]`` is the weight of ``lists[b][l]``. The width is ``width`` when given
        (it must fit the longest bag), else the power-of-two bucket of the longest bag.
        """
        lists = [list(bag) for bag in lists]
        longest = max((len(bag) for bag in lists), default=0)
        if width is None:
            width = bucket_width(longest, min_width)
        elif width < longest:
            raise ValueError(f"width={width} is smaller than the longest bag ({longest} ids)")
        ids = np.full((len(lists), width), PAD_ID, dtype=np.int64)
        for b, bag in enumerate(lists):
            for l, value in enumerate(bag):
                if isinstance(value, float | np.floating) or isinstance(value, bool):
                    raise TypeError(f"bag {b}, slot {l}: id {value!r} is not an integer")
                ids[b, l] = int(value)
        w = None
        if weights is not None:
            if len(weights) != len(lists):
                raise ValueError(f"weights has {len(weights)} bags, ids has {len(lists)}")
            w = np.zeros((len(lists), width), dtype=np.float32)
            for b, (bag, wbag) in enumerate(zip(lists, weights, strict=True)):
                wbag = list(wbag)
                if len(wbag) != len(bag):
                    raise ValueError(
                        f"bag {b} has {len(bag)} ids but {len(wbag)} weights"
                    )
                w[b, : len(wbag)] = wbag
        return cls(_validate.narrow_ids(ids), w)

    @classmethod
    def from_offsets(
        cls,
        values: Any,
        offsets: Any,
        weights: Any = None,
        include_last_offset: bool = False,
        *,
        width: int | None = None,
        min_width: int = 1,
    ) -> Bags:
        """Bags from a flat id array and bag start offsets (``torch.nn.EmbeddingBag`` style).

        Bag ``b`` holds ``values[offsets[b]:offsets[b+1]]`` where the last bag runs to the end
        of ``values``; with ``include_last_offset=True`` ``offsets`` has ``B + 1`` entries and
        its last one must equal ``len(values)``. ``weights`` (PyTorch's
        ``per_sample_weights``) has one entry per value. Offsets must start at 0 and never
        decrease.
        """
        values = np.asarray(_validate.id_array(values, "from_offsets values"))
        if values.ndim != 1:
            raise ValueError(f"from_offsets values must be 1-D, got shape {values.shape}")
        offsets = np.asarray(_validate.id_array(offsets, "from_offsets offsets"))
        if offsets.ndim != 1:
            raise ValueError(f"from_offsets offsets must be 1-D, got shape {offsets.shape}")
        n = values.shape[0]
        if include_last_offset:
            if offsets.shape[0] == 0:
                raise ValueError("include_last_offset=True needs at least one offset")
            if int(offsets[-1]) != n:
                raise ValueError(
                    f"include_last_offset=True: last offset {int(offsets[-1])} must equal "
                    f"len(values)={n}"
                )
            bounds = offsets.astype(np.int64)
        else:
            bounds = np.append(offsets.astype(np.int64), n)
        if offsets.shape[0] == 0 and n:
            raise ValueError(f"offsets is empty but values holds {n} ids (one offset per bag)")
        if int(bounds[0]) != 0:
            raise ValueError(f"offsets[0] must be 0, got {int(bounds[0])}")
        past = bounds > n
        if np.any(past):
            b = int(np.argmax(past))
            raise ValueError(f"offsets[{b}]={int(bounds[b])} is past the end of values (len {n})")
        steps = np.diff(bounds)
        if np.any(steps < 0):
            b = int(np.argmax(steps < 0))
            raise ValueError(
                f"offsets must not decrease: offsets[{b}]={int(bounds[b])} > "
                f"offsets[{b + 1}]={int(bounds[b + 1])}"
            )
        num_bags = bounds.shape[0] - 1
        lengths = steps.astype(np.int64)
        longest = int(lengths.max()) if num_bags else 0
        if width is None:
            width = bucket_width(longest, min_width)
        elif width < longest:
            raise ValueError(f"width={width} is smaller than the longest bag ({longest} ids)")
        rows = np.repeat(np.arange(num_bags), lengths)
        cols = np.arange(n) - np.repeat(bounds[:-1], lengths)
        ids = np.full((num_bags, width), PAD_ID, dtype=values.dtype)
        ids[rows, cols] = values[: rows.shape[0]]
        w = None
        if weights is not None:
            weights = _validate.weight_array(np.asarray(weights), (n,), "per-value weights")
            w = np.zeros((num_bags, width), dtype=np.float32)
            w[rows, cols] = weights[: rows.shape[0]]
        return cls(_validate.narrow_ids(ids), w)

    @classmethod
    def from_coo(
        cls,
        indices: Any,
        values: Any,
        dense_shape: Sequence[int],
        weights: Any = None,
    ) -> Bags:
        """Bags from a COO sparse matrix (``tf.SparseTensor`` style).

        ``indices[n] = (b, l)`` places id ``values[n]`` in slot ``l`` of bag ``b`` of a
        ``dense_shape = (B, L)`` rectangle; ``weights[n]`` is its weight (TF's
        ``sp_weights``). Order does not matter; a repeated ``(b, l)`` position is an error.
        Rows with no entry are empty bags (kept: the output always has ``B`` rows).
        """
        indices = np.asarray(_validate.id_array(indices, "from_coo indices"))
        values = np.asarray(_validate.id_array(values, "from_coo values"))
        if len(dense_shape) != 2:
            raise ValueError(f"dense_shape must be (B, L), got {tuple(dense_shape)}")
        num_bags, width = (int(d) for d in dense_shape)
        nnz = values.shape[0] if values.ndim == 1 else -1
        if values.ndim != 1 or indices.shape != (nnz, 2):
            raise ValueError(
                f"from_coo needs indices [nnz, 2] and values [nnz]; got {indices.shape} and "
                f"{values.shape}"
            )
        for axis, limit, name in ((0, num_bags, "row"), (1, width, "column")):
            bad = (indices[:, axis] < 0) | (indices[:, axis] >= limit)
            if np.any(bad):
                n = int(np.argmax(bad))
                raise IndexError(
                    f"from_coo indices[{n}] = {indices[n].tolist()}: {name} outside "
                    f"dense_shape {(num_bags, width)}"
                )
        flat = indices[:, 0].astype(np.int64) * width + indices[:, 1]
        unique, first, counts = np.unique(flat, return_index=True, return_counts=True)
        if np.any(counts > 1):
            n = int(first[np.argmax(counts > 1)])
            raise ValueError(f"from_coo position {indices[n].tolist()} appears more than once")
        del unique
        ids = np.full((num_bags, width), PAD_ID, dtype=values.dtype)
        ids[indices[:, 0], indices[:, 1]] = values
        w = None
        if weights is not None:
            weights = _validate.weight_array(np.asarray(weights), (nnz,), "from_coo weights")
            w = np.zeros((num_bags, width), dtype=np.float32)
            w[indices[:, 0], indices[:, 1]] = weights
        return cls(_validate.narrow_ids(ids), w)
