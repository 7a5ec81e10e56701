"""The loader: encoded chunks on disk, shuffled and batched by Grain with a checkpointable
position.

:func:`write_store` encodes a log once into a *store*: a folder of ``chunk-NNNNN.npz`` files
of ``chunk_rows`` rows each (numpy arrays, loaded with ``allow_pickle=False``) and an
``index.json``. A store is read, never rewritten, so every epoch reads the same bytes.

An epoch (:class:`EpochSource`, a Grain random-access source of whole batches) is drawn from
``(seed, epoch)``:

1. the process's chunks (chunk ``c`` belongs to process ``c mod P``, so ``P`` processes read
   disjoint parts of the data) in a permuted order;
2. consecutive groups of ``window`` chunks: each group's rows are permuted and cut into
   batches of ``batch_size``; a group's last batch is padded to full size and carries a
   ``mask`` (0 for padding rows), so every example is seen once per epoch and every batch has
   one shape (``jit`` compiles once).

Memory stays at about ``window`` chunks whatever the size of the file. ``grain.MapDataset``
over an :class:`EpochSource` gives an iterator whose ``get_state()`` (the next batch index) is
saved in the checkpoint with the model, so a resumed run continues at the same batch, bit for
bit.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grain
import numpy as np
import pyarrow as pa

from jaxembed import _atomic
from jaxembed.data.encode import Encoder

CHUNK_ROWS = 65_536
STORE_FORMAT = 1


@dataclass(frozen=True)
class Store:
    """An encoded log on disk: ``rows[c]`` rows in chunk ``c``."""

    path: str
    rows: tuple[int, ...]

    @property
    def num_rows(self) -> int:
        return int(sum(self.rows))

    def chunk(self, c: int) -> dict[str, np.ndarray]:
        """The arrays of chunk ``c``."""
        with np.load(os.path.join(self.path, f"chunk-{c:05d}.npz"), allow_pickle=False) as z:
            return {key: z[key] for key in z.files}

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        """Every chunk, in order."""
        for c in range(len(self.rows)):
            yield self.chunk(c)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        path = os.fspath(path)
        with open(os.path.join(path, "index.json"), encoding="utf-8") as handle:
            index = json.load(handle)
        if index.get("format") != STORE_FORMAT:
            raise ValueError(f"store {path!r} has format {index.get('format')!r}, expected "
                             f"{STORE_FORMAT}")
        return cls(path, tuple(int(r) for r in index["rows"]))


def write_store(batches: Iterable[pa.RecordBatch], encoder: Encoder, path: str | os.PathLike,
                *, chunk_rows: int = CHUNK_ROWS, labels: bool = True,
                progress: Any = None) -> Store:
    """Encode ``batches`` into a store at ``path`` (chunks of ``chunk_rows`` rows; the last may
    be shorter); ``index.json`` is written last, so a store without it is incomplete."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    rows: list[int] = []
    pending: list[dict[str, np.ndarray]] = []
    held = 0
    start = 0

    def flush(final: bool) -> None:
        nonlocal pending, held
        while held >= chunk_rows or (final and held):
            merged = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
            take = min(chunk_rows, held)
            chunk = {k: v[:take] for k, v in merged.items()}
            rest = {k: v[take:] for k, v in merged.items()}
            with _atomic.atomic_path(os.path.join(path, f"chunk-{len(rows):05d}.npz")) as tmp, \
                    open(tmp, "wb") as handle:
                np.savez(handle, **chunk)
            rows.append(take)
            held -= take
            pending = [rest] if held else []

    for batch in batches:
        encoded = encoder.encode(batch, labels=labels, start=start)
        start += batch.num_rows
        if batch.num_rows:
            pending.append(encoded)
            held += batch.num_rows
        flush(final=False)
        if progress is not None:
            progress(start)
    flush(final=True)
    if not rows:
        raise ValueError("the data has no rows to encode")
    _atomic.write_text(os.path.join(path, "index.json"),
                       json.dumps({"format": STORE_FORMAT, "rows": rows}))
    return Store(path, tuple(rows))


class EpochSource:
    """One epoch's batches of a store, by index (a Grain random-access data source).

    ``source[i]`` is ``{"label", "ids/<field>", "dense", "wide", "group", "mask"}`` of batch
    ``i``, each with ``batch_size`` rows.
    """

    def __init__(self, store: Store, *, batch_size: int, seed: int, epoch: int,
                 window: int = 4, process: int = 0, processes: int = 1) -> None:
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be >= 1, got {batch_size}, {window}")
        if not 0 <= process < processes:
            raise ValueError(f"process {process} is not in [0, {processes})")
        self.store = store
        self.batch_size = batch_size
        self.seed, self.epoch = seed, epoch
        mine = np.arange(process, len(store.rows), processes)
        order = mine[np.random.default_rng([seed, epoch, 1]).permutation(mine.size)]
        self.windows = [order[i:i + window] for i in range(0, order.size, window)]
        sizes = [int(sum(store.rows[c] for c in w)) for w in self.windows]
        counts = [-(-s // batch_size) for s in sizes]
        self.first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._cached: tuple[int, dict[str, np.ndarray]] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self.first[-1])

    def _window(self, w: int) -> dict[str, np.ndarray]:
        with self._lock:
            if self._cached is not None and self._cached[0] == w:
                return self._cached[1]
            chunks = [self.store.chunk(int(c)) for c in self.windows[w]]
            merged = {k: np.concatenate([ch[k] for ch in chunks]) for k in chunks[0]}
            n = next(iter(merged.values())).shape[0]
            order = np.random.default_rng([self.seed, self.epoch, 2, w]).permutation(n)
            merged = {k: v[order] for k, v in merged.items()}
            self._cached = (w, merged)
            return merged

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of an epoch of {len(self)}")
        w = int(np.searchsorted(self.first, i, side="right") - 1)
        rows = self._window(w)
        start = (i - int(self.first[w])) * self.batch_size
        n = next(iter(rows.values())).shape[0]
        take = np.arange(start, start + self.batch_size)
        mask = (take < n).astype(np.float32)
        take = np.where(take < n, take, start)  # padding repeats the batch's first row
        out = {k: v[take] for k, v in rows.items()}
        out["mask"] = mask
        return out


def epoch_iterator(store: Store, *, batch_size: int, seed: int, epoch: int, window: int = 4,
                   process: int = 0, processes: int = 1, state: dict | None = None,
                   prefetch: int = 2) -> grain.DatasetIterator:
    """A Grain iterator over one epoch's batches; ``state`` (from ``get_state()``) resumes it
    at the batch it had reached."""
    source = EpochSource(store, batch_size=batch_size, seed=seed, epoch=epoch, window=window,
                         process=process, processes=processes)
    dataset = grain.MapDataset.source(source).to_iter_dataset(
        grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
    iterator = iter(dataset)
    if state is not None:
        iterator.set_state(state)
    return iterator


def sequential_batches(store: Store, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Every row of a store once, in order, in padded batches with a ``mask`` (evaluation)."""
    for chunk in store.chunks():
        n = next(iter(chunk.values())).shape[0]
        for start in range(0, n, batch_size):
            take = np.arange(start, start + batch_size)
            mask = (take < n).astype(np.float32)
            take = np.where(take < n, take, start)
            out = {k: v[take] for k, v in chunk.items()}
            out["mask"] = mask
            yield out
