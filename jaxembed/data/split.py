"""Train/validation splits of one log: ``time:0.8`` (the earliest 80% by the schema's time
column train, the rest validate) or ``random:0.9`` (each row trains with probability 0.9,
drawn from a hash of its row number and the seed, so the split is the same in every pass).

A split is a pair of row selectors ``keep(batch, start) -> bool[n]`` for the record batches of
:func:`jaxembed.data.readers.record_batches` (``start``: the batch's first row number).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from jaxembed.data.readers import DataError, record_batches, time_values
from jaxembed.data.schema import Schema
from jaxembed.encoding.hashing import mix64, seed_key

Selector = Callable[[pa.RecordBatch, int], np.ndarray]


@dataclass(frozen=True)
class Split:
    """``how`` ("time" or "random") and the training share ``share`` in (0, 1)."""

    how: str
    share: float

    @classmethod
    def parse(cls, text: str) -> Split:
        how, _, value = str(text).partition(":")
        try:
            share = float(value)
        except ValueError:
            share = float("nan")
        if how not in ("time", "random") or not 0.0 < share < 1.0:
            raise ValueError(f"split {text!r}: expected 'time:F' or 'random:F' with F in "
                             f"(0, 1), e.g. time:0.8")
        return cls(how, share)

    def selectors(self, data: Any, schema: Schema, seed: int = 0) -> tuple[Selector, Selector]:
        """``(train, valid)`` selectors; a time split reads the time column once first."""
        if self.how == "random":
            def train(batch: pa.RecordBatch, start: int) -> np.ndarray:
                return _uniform(start, batch.num_rows, seed) < self.share
        else:
            cut = time_cut(data, schema, self.share)
            column = schema.options.time

            def train(batch: pa.RecordBatch, start: int) -> np.ndarray:
                return np.asarray(time_values(batch.column(column), column)
                                  .fill_null(np.inf)) <= cut

        return train, lambda batch, start: ~train(batch, start)


def _uniform(start: int, n: int, seed: int) -> np.ndarray:
    rows = np.arange(start, start + n, dtype=np.uint64)
    return (mix64(rows ^ seed_key(seed)) >> np.uint64(11)).astype(np.float64) / 2.0**53


def time_cut(data: Any, schema: Schema, share: float) -> float:
    """The time at or before which ``share`` of the rows fall (missing times count as last)."""
    column = schema.options.time
    if not column:
        raise DataError("split time:F needs the schema's [options] time = \"<column>\"")
    times = np.concatenate([np.asarray(time_values(b.column(column), column).fill_null(np.inf))
                            for b in record_batches(data, schema)])
    if times.size < 2:
        raise DataError(f"split time:{share}: the data has {times.size} row(s)")
    return float(np.quantile(times[np.isfinite(times)] if np.isfinite(times).any() else times,
                             share, method="lower"))
