r"""Attach encoding: a cold (long-tail) id borrows the code of the entity it belongs to.

Most ids of a large catalogue are rare: an item seen twice gets an embedding row that is
never trained. Attach encoding gives a row only to **warm** ids (seen at least ``min_count``
times) and lets a **cold** id take the code of its first warm ancestor along a chain
(item → shop → category → brand, most specific first). For a record
:math:`r = (x_0, x_1, \dots, x_{m-1})` (its values along the chain) and warm sets
:math:`W_\ell` with ranks :math:`\mathrm{rank}_\ell`,

.. math::

    \mathrm{code}(r) = \begin{cases}
      S_\ell + \mathrm{rank}_\ell(x_\ell) & \ell = \min\{\ell' : x_{\ell'} \in W_{\ell'}\}
        \text{ exists} \\
      S_m + (h_s(x_0) \bmod B) & \text{no level is warm (OOV/default buckets)}
    \end{cases}

with level offsets :math:`S_0 = 0`, :math:`S_{\ell+1} = S_\ell + |W_\ell|`, so the table has
:math:`S_m + B` rows: one per warm item, per warm shop, ..., plus ``B`` default rows
(``num_oov_buckets=1`` is a single default code). A warm id keeps its own code; a cold item of
a warm shop is embedded as that shop, so the long tail shares the rows of the entities that
have data, and a new item is useful on day one. Negative values mean "missing" and are never
warm. Ranks are positions in the sorted warm ids, so codes do not depend on record order.

Every step is vectorized: level :math:`\ell` resolves the still-unresolved records by one
``searchsorted`` in the sorted :math:`W_\ell`, :math:`O(N \log |W_\ell|)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxembed.bags import Bags
from jaxembed.encoding.hashing import bags_from_values, hash_ints, seed_key


class AttachCodes(NamedTuple):
    """Codes of a batch of records and the chain level each came from (-1: OOV/default)."""

    ids: np.ndarray
    level: np.ndarray


def _int_column(records: Mapping[str, Any], name: str) -> np.ndarray:
    if name not in records:
        raise KeyError(f"records have no column {name!r} (columns: {sorted(records)})")
    col = np.asarray(records[name])
    if col.ndim != 1:
        raise ValueError(f"column {name!r} must be 1-D, got shape {col.shape}")
    if col.size == 0 and col.dtype == np.float64:
        col = col.astype(np.int64)
    if col.dtype == np.bool_ or not np.issubdtype(col.dtype, np.integer):
        raise TypeError(f"column {name!r} must hold integer ids, got dtype {col.dtype}")
    return col.astype(np.int64)


def _columns(records: Mapping[str, Any], chain: Sequence[str]) -> list[np.ndarray]:
    cols = [_int_column(records, name) for name in chain]
    for name, col in zip(chain, cols, strict=True):
        if col.shape != cols[0].shape:
            raise ValueError(f"column {name!r} has {col.shape[0]} rows, column {chain[0]!r} "
                             f"has {cols[0].shape[0]}")
    return cols


def _min_counts(chain: Sequence[str], min_count: int | Mapping[str, int]) -> list[int]:
    if isinstance(min_count, Mapping):
        unknown = set(min_count) - set(chain)
        if unknown:
            raise KeyError(f"min_count names {sorted(unknown)}, not in the chain {list(chain)}")
        values = [min_count.get(name, 1) for name in chain]
    else:
        values = [min_count] * len(chain)
    for name, value in zip(chain, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"min_count for {name!r} must be an integer >= 1, got {value!r}")
    return [int(v) for v in values]


class AttachEncoder:
    """Warm ids keep their code; cold ids take the code of their first warm ancestor.

    Args:
        chain: column names, most specific first, e.g. ``("item", "shop", "category")``.
        warm: for each level, its warm ids (non-negative, unique, any order).
        num_oov_buckets: ``B >= 1`` default codes for records with no warm level (hashed by
            the first column's id).
        seed: seed of that hash.
    """

    def __init__(
        self,
        chain: Sequence[str],
        warm: Mapping[str, Any],
        *,
        num_oov_buckets: int = 1,
        seed: int = 0,
    ) -> None:
        chain = tuple(chain)
        if not chain or any(not isinstance(name, str) for name in chain):
            raise ValueError(f"chain must be a non-empty sequence of column names, got {chain!r}")
        if len(set(chain)) != len(chain):
            raise ValueError(f"chain {chain!r} names a column twice")
        missing = [name for name in chain if name not in warm]
        if missing:
            raise KeyError(f"warm has no ids for level {missing[0]!r}")
        if isinstance(num_oov_buckets, bool) or not isinstance(num_oov_buckets, int | np.integer):
            raise TypeError(f"num_oov_buckets must be an integer, got {num_oov_buckets!r}")
        if num_oov_buckets < 1:
            raise ValueError(f"num_oov_buckets must be >= 1, got {num_oov_buckets}")
        seed_key(seed)
        sorted_warm = []
        for name in chain:
            ids = _int_column({name: warm[name]}, name)
            ids = np.sort(ids)
            if ids.size and ids[0] < 0:
                raise ValueError(f"warm ids of {name!r} must be >= 0, got {int(ids[0])}")
            dup = np.flatnonzero(ids[1:] == ids[:-1])
            if dup.size:
                raise ValueError(f"warm ids of {name!r}: id {int(ids[dup[0]])} appears twice")
            sorted_warm.append(ids)
        self.chain: tuple[str, ...] = chain
        self.warm: tuple[np.ndarray, ...] = tuple(sorted_warm)
        self.num_oov_buckets = int(num_oov_buckets)
        self.seed = int(seed)
        sizes = [w.shape[0] for w in sorted_warm]
        self.starts: tuple[int, ...] = tuple(int(s) for s in np.cumsum([0, *sizes]))

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_counts(
        cls,
        chain: Sequence[str],
        counts: Mapping[str, tuple[Any, Any]],
        min_count: int | Mapping[str, int],
        **kwargs: Any,
    ) -> AttachEncoder:
        """Warm = ids whose count is ``>= min_count`` (one value, or one per level name).

        ``counts[name] = (ids, counts)``: two arrays of one length, ids unique.
        """
        thresholds = _min_counts(chain, min_count)
        warm = {}
        for name, threshold in zip(chain, thresholds, strict=True):
            if name not in counts:
                raise KeyError(f"counts has no entry for level {name!r}")
            ids, cnt = (np.asarray(a) for a in counts[name])
            if ids.shape != cnt.shape or ids.ndim != 1:
                raise ValueError(f"counts[{name!r}]: ids {ids.shape} and counts {cnt.shape} "
                                 "must be 1-D of one length")
            warm[name] = ids[cnt >= threshold]
        return cls(chain, warm, **kwargs)

    @classmethod
    def fit(
        cls,
        records: Mapping[str, Any],
        chain: Sequence[str],
        min_count: int | Mapping[str, int],
        **kwargs: Any,
    ) -> AttachEncoder:
        """Count each level's ids over ``records`` (a training log), then :meth:`from_counts`.

        A shop's count is the number of records of any of its items.
        """
        cols = _columns(records, tuple(chain))
        counts = {}
        for name, col in zip(chain, cols, strict=True):
            counts[name] = np.unique(col[col >= 0], return_counts=True)
        return cls.from_counts(chain, counts, min_count, **kwargs)

    # --- sizes -------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Rows of the code table: all warm ids of all levels plus the OOV buckets."""
        return self.starts[-1] + self.num_oov_buckets

    def level_range(self, name: str) -> tuple[int, int]:
        """``[start, stop)`` of the codes of level ``name``; ``"oov"`` for the default codes."""
        if name == "oov":
            return self.starts[-1], self.size
        if name not in self.chain:
            raise KeyError(f"{name!r} is not a level of the chain {self.chain}")
        i = self.chain.index(name)
        return self.starts[i], self.starts[i + 1]

    def __repr__(self) -> str:
        levels = ", ".join(f"{n}: {w.shape[0]}" for n, w in zip(self.chain, self.warm, strict=True))
        return f"AttachEncoder(warm {{{levels}}}, num_oov_buckets={self.num_oov_buckets})"

    # --- encoding ----------------------------------------------------------------------------
    def encode(self, records: Mapping[str, Any]) -> AttachCodes:
        """Codes of a batch of records (a dict of equal-length id columns, one per level)."""
        cols = _columns(records, self.chain)
        n = cols[0].shape[0]
        ids = np.full(n, -1, dtype=np.int64)
        level = np.full(n, -1, dtype=np.int64)
        todo = np.arange(n)
        for lvl, (col, warm) in enumerate(zip(cols, self.warm, strict=True)):
            if todo.size == 0 or warm.size == 0:
                continue
            values = col[todo]
            pos = np.searchsorted(warm, values)
            hit = (values >= 0) & (warm[np.minimum(pos, warm.size - 1)] == values)
            ids[todo[hit]] = self.starts[lvl] + pos[hit]
            level[todo[hit]] = lvl
            todo = todo[~hit]
        if todo.size:
            bucket = hash_ints(cols[0][todo], self.seed) % np.uint64(self.num_oov_buckets)
            ids[todo] = self.starts[-1] + bucket.astype(np.int64)
        return AttachCodes(ids, level)

    def ids(self, records: Mapping[str, Any]) -> np.ndarray:
        """``int64[N]``: the code of each record (see :meth:`encode`)."""
        return self.encode(records).ids

    def bags(
        self,
        records: Mapping[str, Any],
        offsets: Any = None,
        weights: Any = None,
        *,
        min_width: int = 1,
    ) -> Bags:
        """Bags of codes: one per record, or, for a multi-valued feature (e.g. a click history
        of items, each row of ``records`` one value), ``codes[offsets[b]:offsets[b+1]]`` per
        record ``b``; ``weights`` gives one weight per value."""
        return bags_from_values(self.ids(records), offsets, weights, min_width=min_width)
