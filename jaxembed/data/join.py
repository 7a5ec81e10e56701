r"""Join raw event logs: each impression labelled by the clicks that follow it within a window.

``join(impressions, clicks, key="pageview_id", window="30m", out="joined.parquet")`` reads two
logs sorted by time (Parquet, CSV/TSV, or in-memory tables; :mod:`jaxembed.data.event_logs`)
and writes every kept impression row, all its columns, plus a ``label`` column. The rules,
stated literally by :mod:`jaxembed.data.join_literal` (proven equal to the streaming
:func:`join_batches` in ``proofs/proof_join.py``):

* **Match.** A click *c* matches an impression *i* when they have the same key and
  :math:`0 \le t_c - t_i \le w` (the window :math:`w`, both ends included). An impression's
  label is 1 iff at least one click matches it. A click before its impression matches
  nothing (the logs' clocks are taken as aligned).
* **Duplicate impressions.** An impression whose key occurred in an earlier impression row
  (kept or not) at most :math:`w` before it is a duplicate. ``duplicates="error"`` (default)
  rejects the log, naming both rows; ``duplicates="drop"`` keeps the first and drops the
  repeats (``stats.duplicate_impressions``). Two rows of one key more than :math:`w` apart are
  two impressions (an id reused later: no click can match both). So the kept impressions of
  a key are more than :math:`w` apart, and a click matches at most one of them.
* **Clicks, each counted exactly once** in one of: ``matched_clicks`` (the first click that
  matches its impression: it makes the positive, so ``matched_clicks`` equals the positives),
  ``duplicate_clicks`` (a further click on an impression already clicked: the impression
  still counts once), ``late_clicks`` (matches nothing, but follows a kept impression of its
  key by :math:`w < t_c - t_i \le 2w`: the click came after the window closed; it is dropped,
  no row is re-emitted or relabelled, as :class:`jaxembed.stream.joiner.PairwiseJoiner` drops
  a click on a page view already emitted and remembers emitted page views for
  :math:`2w`) and ``unmatched_clicks`` (everything else: no impression of its key in the
  :math:`2w` before it, e.g. a click before its impression or of another log).
* **Negative down-sampling** at rate :math:`w_- \in (0, 1]` (``downsample``): every positive
  is kept and each negative with probability :math:`w_-`, drawn as
  :func:`jaxembed.stream.calibration.downsample_negatives` draws it — one uniform per kept
  impression, in row order, from ``numpy.random.default_rng(seed)`` — so the kept rows do not
  depend on batch boundaries. The file's metadata records :math:`w_-`, and
  :func:`jaxembed.fit` on the file stores it in the run, whose predictions are calibrated by
  :math:`p' = p / (p + (1 - p)/w_-)` (:func:`jaxembed.stream.calibration.calibrate`).

Both logs must be sorted by time (non-decreasing); a row earlier than the row before it is
rejected with its number (rows count from 1, per log, in reading order). A missing key or
time is rejected the same way. Numeric times are seconds; timestamp columns (and ISO text)
are converted to seconds.

**Bounded memory.** The join is a merge of the two time-ordered streams. It reads the
impressions in slices (record batches accumulated until the slice spans :math:`w`, or
``slice_rows`` rows), and the clicks up to the slice's last time :math:`b`. Then it

1. checks the slice for duplicates against the impressions still held,
2. classifies every click with :math:`t_c < b` (all impressions that could match it are
   read) against the held impressions of the clicks' keys: merged with the clicks by time,
   stably sorted by key, each click finds the latest impression of its key at or before it
   (a merge-as-of),
3. writes every held impression with :math:`b - t_i > w` (every click that could match it
   has been classified), and
4. forgets impressions with :math:`b - t_i > 2w` (no later click can be late for them, no
   later impression can repeat them within :math:`w`).

Held at once, therefore: the full rows of the impressions of at most :math:`w` plus one
slice; the key and time of those of at most :math:`2w` plus one slice; the key and time of
the clicks of one slice plus one record batch (``batch_rows``); and the Parquet row group
being read (files are read one row group at a time, without read-ahead).
``stats.held_impressions`` and ``stats.held_clicks`` report the largest counts. Nothing depends
on the logs' length (``jaxembed bench join`` measures the peak RSS at two lengths).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jaxembed import _atomic
from jaxembed.data.event_logs import (
    METADATA_KEY,
    STATS_KEY,
    _check_columns,
    columns_of,
    seconds,
    source_batches,
)
from jaxembed.data.readers import (
    PARQUET_SUFFIXES,
    DataError,
    describe,
)
from jaxembed.stream.calibration import _check_rate

JOIN_FORMAT = 1
DUPLICATES = ("error", "drop")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d)?\s*$")


def parse_window(window: str | float) -> float:
    """A window in seconds: a number of seconds, or text like ``"30m"``, ``"45s"``,
    ``"2h"``, ``"1d"``, ``"500ms"`` (a bare number is seconds). Must be > 0."""
    if isinstance(window, bool):
        raise ValueError(f"window must be a duration like '30m', '45s' or '2h', got {window!r}")
    if isinstance(window, int | float):
        seconds = float(window)
    else:
        match = _WINDOW.match(str(window))
        if match is None:
            raise ValueError(f"window must be a duration like '30m', '45s' or '2h' (units ms, "
                             f"s, m, h, d), got {window!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"window must be > 0 seconds, got {window!r}")
    return seconds


@dataclasses.dataclass
class JoinStats:
    """What the join did with every row of both logs (each row counted once)."""

    impressions: int = 0
    duplicate_impressions: int = 0
    positives: int = 0
    negatives: int = 0
    negatives_dropped: int = 0
    rows: int = 0
    clicks: int = 0
    matched_clicks: int = 0
    duplicate_clicks: int = 0
    late_clicks: int = 0
    unmatched_clicks: int = 0
    held_impressions: int = 0
    held_clicks: int = 0

    def counts(self) -> dict[str, int]:
        """The counters that do not depend on how the logs were batched."""
        out = dataclasses.asdict(self)
        del out["held_impressions"], out["held_clicks"]
        return out


@dataclasses.dataclass(frozen=True)
class JoinConfig:
    """The settings of one join (checked on construction)."""

    key: str
    window: float
    time: str = "time"
    label: str = "label"
    downsample: float | None = None
    seed: int = 0
    duplicates: str = "error"

    def __post_init__(self) -> None:
        for name in ("key", "time", "label"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a column name, got {value!r}")
        if self.key == self.time:
            raise ValueError(f"key and time must be different columns, both are {self.key!r}")
        object.__setattr__(self, "window", parse_window(self.window))
        if self.downsample is not None:
            object.__setattr__(self, "downsample", _check_rate(self.downsample))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.duplicates not in DUPLICATES:
            raise ValueError(f"duplicates must be one of {', '.join(DUPLICATES)}, "
                             f"got {self.duplicates!r}")

    @property
    def negative_rate(self) -> float:
        return 1.0 if self.downsample is None else float(self.downsample)

    def metadata(self) -> dict[str, Any]:
        return {"format": JOIN_FORMAT, "key": self.key, "time": self.time,
                "label": self.label, "window_s": self.window,
                "negative_rate": self.negative_rate, "seed": self.seed,
                "duplicates": self.duplicates}

    def schema(self, batch_schema: pa.Schema) -> pa.Schema:
        """The output file's schema: the rows' columns, with the settings as metadata (the
        impressions' pandas metadata left out: it describes other columns)."""
        metadata = {k: v for k, v in (batch_schema.metadata or {}).items() if k != b"pandas"}
        metadata[METADATA_KEY] = json.dumps(self.metadata()).encode()
        return batch_schema.with_metadata(metadata)


def check_sources(impressions: Any, clicks: Any, config: JoinConfig) -> None:
    """Before any work: both logs exist, are of a known format and have the key and time
    columns; the impressions have no column named like the label."""
    for what, source in (("impressions", impressions), ("clicks", clicks)):
        names = columns_of(source, what)
        where = f"{what} {describe(source)}"
        _check_columns(names, (config.key, config.time), where)
        if what == "impressions" and config.label in names:
            raise DataError(f"{where} already has a column {config.label!r}; name the label "
                            f"column otherwise")


def _key_kind(column_type: pa.DataType) -> str:
    if pa.types.is_dictionary(column_type):
        column_type = column_type.value_type
    return "int" if pa.types.is_integer(column_type) else "text"


def _key_values(column: pa.Array, kind: str) -> pa.Array:
    """A key column as ``int64`` (both logs' keys integers) or ``string`` (otherwise: an
    integer key becomes its decimal text, as the readers do)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    target = pa.int64() if kind == "int" else pa.string()
    return column if column.type == target else pc.cast(column, target)


class _Log:
    """One time-sorted log read batch by batch, each batch checked: time non-decreasing,
    key and time present. Rows are numbered from 1 in reading order."""

    def __init__(self, source: Any, what: str, config: JoinConfig,
                 columns: Sequence[str] | None, batch_rows: int) -> None:
        self.what = (f"{what} {describe(source)}" if isinstance(source, str | os.PathLike)
                     else f"{what} ({describe(source)})")
        self.config = config
        self._batches = source_batches(source, columns, batch_rows, what, config.key)
        self._peeked: pa.RecordBatch | None = None
        self.rows = 0
        self.last_time = -math.inf
        self.exhausted = False
        self.key_kind = "int"
        self.schema: pa.Schema | None = None

    def peek(self, needed: Sequence[str]) -> None:
        """Read the first batch: the log's columns and the kind of its key."""
        self._peeked = next(self._batches, None)
        if self._peeked is None:
            self.exhausted = True
            return
        self.schema = self._peeked.schema
        _check_columns(self.schema.names, needed, self.what)
        self.key_kind = _key_kind(self.schema.field(self.config.key).type)

    def next(self, kind: str) -> tuple[pa.RecordBatch, pa.Array, np.ndarray, int] | None:
        """``(batch, keys, times, first row number)`` of the next non-empty batch, or None."""
        while not self.exhausted:
            batch, self._peeked = (self._peeked, None) if self._peeked is not None else (
                next(self._batches, None), None)
            if batch is None:
                self.exhausted = True
                return None
            if batch.num_rows == 0:
                continue
            first = self.rows + 1
            keys = _key_values(batch.column(self.config.key), kind)
            times = self._times(batch, first)
            if keys.null_count:
                bad = int(np.flatnonzero(np.asarray(keys.is_null()))[0])
                raise DataError(f"{self.what} row {first + bad}: no value in the key column "
                                f"{self.config.key!r}")
            self.rows += batch.num_rows
            self.last_time = float(times[-1])
            return batch, keys, times, first
        return None

    def _times(self, batch: pa.RecordBatch, first: int) -> np.ndarray:
        name = self.config.time
        column = batch.column(name)
        try:
            values = seconds(column, name)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise DataError(f"{self.what}: time column {name!r} of type {column.type} is not "
                            f"a number or a timestamp ({err})") from None
        times = values.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(times))
        if bad.size:
            raise DataError(f"{self.what} row {first + int(bad[0])}: no valid time in column "
                            f"{name!r} (got {batch.column(name)[int(bad[0])].as_py()!r})")
        previous = np.concatenate([[self.last_time], times[:-1]])
        early = np.flatnonzero(times < previous)
        if early.size:
            i = int(early[0])
            raise DataError(f"{self.what} row {first + i}: time {float(times[i])!r} is "
                            f"earlier than the row before it ({float(previous[i])!r}); the log "
                            f"must be sorted by {name!r} (sort it first)")
        return times


# ---------------------------------------------------------------------------- the merge
def _codes(*keys: pa.Array) -> np.ndarray:
    """One integer per distinct key value across ``keys`` (concatenated): integer keys are
    their own codes; text keys are dictionary-encoded."""
    merged = pa.concat_arrays(list(keys))
    if pa.types.is_integer(merged.type):
        return merged.to_numpy(zero_copy_only=False)
    return np.asarray(pc.dictionary_encode(merged).indices)


@dataclasses.dataclass
class _Held:
    """Key, time, row number and flags of the impressions held, in time order."""

    keys: pa.Array
    times: np.ndarray
    rows: np.ndarray
    kept: np.ndarray
    clicked: np.ndarray

    @classmethod
    def empty(cls, kind: str) -> _Held:
        return cls(pa.array([], pa.int64() if kind == "int" else pa.string()),
                   np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool))

    def append(self, other: _Held) -> None:
        self.keys = pa.concat_arrays([self.keys, other.keys])
        for name in ("times", "rows", "kept", "clicked"):
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def drop_before(self, count: int) -> None:
        self.keys = self.keys.slice(count)
        for name in ("times", "rows", "kept", "clicked"):
            setattr(self, name, getattr(self, name)[count:])


class _Merge:
    """The state of the streaming join: held impressions, the rows waiting for their label,
    the down-sampling generator and the counters."""

    def __init__(self, config: JoinConfig, kind: str, stats: JoinStats) -> None:
        self.config = config
        self.window = config.window
        self.held = _Held.empty(kind)
        self.waiting: list[pa.RecordBatch] = []  # kept rows not yet written, in order
        self.waiting_rows = 0
        self.rng = np.random.default_rng(config.seed)
        self.stats = stats

    def add(self, slice_: list[tuple[pa.RecordBatch, pa.Array, np.ndarray, int]],
            what: str) -> None:
        """Take a slice of impression batches: find duplicates, hold the kept ones."""
        keys = pa.concat_arrays([k for _, k, _, _ in slice_])
        times = np.concatenate([t for _, _, t, _ in slice_])
        rows = np.concatenate([np.arange(first, first + t.size) for _, _, t, first in slice_])
        # only held impressions within w of the slice can be repeated by it (a suffix)
        start = int(np.sum(times[0] - self.held.times > self.window))
        near = self.held.keys.slice(start)
        n_old = self.held.times.size - start
        codes = _codes(near, keys)
        all_times = np.concatenate([self.held.times[start:], times])
        order = np.argsort(codes, kind="stable")  # by key, then by row (= time order)
        same = codes[order][1:] == codes[order][:-1]
        gap = all_times[order][1:] - all_times[order][:-1]
        repeat = np.zeros(codes.size, bool)
        repeat[order[1:][same & (gap <= self.window)]] = True
        repeat = repeat[n_old:]
        self.stats.impressions += times.size
        if repeat.any():
            if self.config.duplicates == "error":
                i = int(np.flatnonzero(repeat)[0])
                j = int(order[np.flatnonzero(order == n_old + i)[0] - 1])
                earlier = int(np.concatenate([self.held.rows[start:], rows])[j])
                raise DataError(
                    f"{what} row {rows[i]}: key {self.config.key}={keys[i].as_py()!r} repeats "
                    f"row {earlier} ({float(times[i] - all_times[j]):g} s earlier, within the "
                    f"{self.window:g} s window); drop the repeats with duplicates='drop' "
                    f"(--duplicates drop)")
            self.stats.duplicate_impressions += int(repeat.sum())
        kept = ~repeat
        self.held.append(_Held(keys, times, rows, kept, np.zeros(times.size, bool)))
        start = 0
        for batch, _, t, _ in slice_:
            part = kept[start:start + t.size]
            start += t.size
            batch = batch if part.all() else batch.filter(pa.array(part))
            if batch.num_rows:
                self.waiting.append(batch)
                self.waiting_rows += batch.num_rows
        self.stats.held_impressions = max(self.stats.held_impressions, self.held.times.size)

    def classify(self, keys: pa.Array, times: np.ndarray) -> None:
        """Count every click of ``keys``/``times`` as matched, duplicate, late or unmatched,
        and mark the impressions they match as clicked (all impressions that could match
        them must be held)."""
        if times.size == 0:
            return
        self.stats.clicks += times.size
        # only kept impressions at most 2w before the first click can concern the clicks
        start = int(np.sum(times[0] - self.held.times > 2 * self.window))
        candidate = self.held.kept[start:] & np.asarray(
            pc.is_in(self.held.keys.slice(start), value_set=keys))  # of a clicked key
        kept = start + np.flatnonzero(candidate)
        if kept.size == 0:
            self.stats.unmatched_clicks += times.size
            return
        held_keys = self.held.keys.take(pa.array(kept))
        held_times = self.held.times[kept]
        codes = _codes(held_keys, keys)
        n = kept.size
        all_times = np.concatenate([held_times, times])
        is_click = np.arange(codes.size) >= n
        # by key, then time, impressions before clicks at one time (t_c - t_i >= 0 matches):
        # both are sorted by time, so a merge by time and one stable sort by key
        in_time = np.empty(codes.size, np.int64)
        click_slots = np.searchsorted(held_times, times, "right") + np.arange(times.size)
        is_slot = np.zeros(codes.size, bool)
        is_slot[click_slots] = True
        in_time[click_slots] = np.arange(n, codes.size)
        in_time[~is_slot] = np.arange(n)
        order = in_time[np.argsort(codes[in_time], kind="stable")]
        position = np.where(is_click[order], -1, np.arange(order.size))
        latest = np.maximum.accumulate(position)  # the latest impression at or before
        click_at = np.flatnonzero(is_click[order])
        before = latest[click_at]
        found = before >= 0
        found[found] = codes[order][before[found]] == codes[order][click_at[found]]
        impression = np.where(found, order[np.maximum(before, 0)], 0)  # into the held
        gap = all_times[order][click_at] - held_times[impression]
        matched = found & (gap <= self.window)
        late = found & ~matched & (gap <= 2 * self.window)
        hit = kept[impression[matched]]
        new = np.unique(hit)
        new = new[~self.held.clicked[new]]
        self.held.clicked[new] = True
        self.stats.matched_clicks += new.size
        self.stats.duplicate_clicks += hit.size - new.size
        self.stats.late_clicks += int(late.sum())
        self.stats.unmatched_clicks += int((~matched & ~late).sum())

    def release(self, frontier: float) -> Iterator[pa.RecordBatch]:
        """Write the waiting rows whose window has closed (``frontier - t_i > w``), with
        their labels; then forget impressions no later event can concern."""
        kept = np.flatnonzero(self.held.kept)
        waiting = kept[kept.size - self.waiting_rows:]
        ready = int(np.sum(frontier - self.held.times[waiting] > self.window))
        if ready:
            labels = self.held.clicked[waiting[:ready]]
            yield from self._write(labels)
        # impressions with frontier - t_i > 2w form a prefix (times are sorted); none of
        # them is still waiting (those have frontier - t_i <= w)
        forget = int(np.sum(frontier - self.held.times > 2 * self.window))
        self.held.drop_before(min(forget, waiting[ready] if ready < waiting.size
                                  else self.held.times.size))

    def _write(self, labels: np.ndarray) -> Iterator[pa.RecordBatch]:
        positives = int(labels.sum())
        self.stats.positives += positives
        self.stats.negatives += labels.size - positives
        keep = None
        if self.config.downsample is not None:
            keep = labels | (self.rng.random(labels.size) < self.config.downsample)
            self.stats.negatives_dropped += int(labels.size - keep.sum())
        done = 0
        while done < labels.size:
            batch = self.waiting[0]
            take = min(batch.num_rows, labels.size - done)
            part, rest = batch.slice(0, take), batch.slice(take)
            if rest.num_rows:
                self.waiting[0] = rest
            else:
                self.waiting.pop(0)
            self.waiting_rows -= take
            part = part.append_column(self.config.label,
                                      pa.array(labels[done:done + take].astype(np.int8)))
            if keep is not None:
                part = part.filter(pa.array(keep[done:done + take]))
            done += take
            if part.num_rows:
                self.stats.rows += part.num_rows
                yield part


def join_batches(impressions: Any, clicks: Any, config: JoinConfig, *,
                 batch_rows: int = 65_536, slice_rows: int = 1 << 20,
                 stats: JoinStats | None = None) -> Iterator[pa.RecordBatch]:
    """The streaming join (the module docstring's rules and bound): the kept impression rows,
    in their order, with the label column; ``stats`` (if given) is filled as it runs."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be an integer >= 1, got {batch_rows!r}")
    stats = stats if stats is not None else JoinStats()
    imp = _Log(impressions, "impressions", config, None, batch_rows)
    clk = _Log(clicks, "clicks", config, (config.key, config.time), batch_rows)
    imp.peek((config.key, config.time))
    clk.peek((config.key, config.time))
    if imp.exhausted:
        raise DataError(f"{imp.what} has no rows")
    if config.label in imp.schema.names:
        raise DataError(f"{imp.what} already has a column {config.label!r}; name the label "
                        f"column otherwise (label=...)")
    kind = "int" if imp.key_kind == clk.key_kind == "int" else "text"
    merge = _Merge(config, kind, stats)
    click_keys: list[pa.Array] = []
    click_times: list[np.ndarray] = []
    while True:
        slice_: list = []
        rows = 0
        while not slice_ or (slice_[-1][2][-1] - slice_[0][2][0] < config.window
                             and rows < slice_rows):
            got = imp.next(kind)
            if got is None:
                break
            slice_.append(got)
            rows += got[2].size
        if not slice_:
            break
        merge.add(slice_, imp.what)
        frontier = imp.last_time
        while not clk.exhausted and (not click_times or click_times[-1][-1] < frontier):
            got = clk.next(kind)
            if got is not None:
                click_keys.append(got[1])
                click_times.append(got[2])
        if click_times:
            keys = pa.concat_arrays(click_keys)
            times = np.concatenate(click_times)
            stats.held_clicks = max(stats.held_clicks, times.size)
            cut = int(np.searchsorted(times, frontier, "left"))  # classify t_c < frontier
            merge.classify(keys.slice(0, cut), times[:cut])
            click_keys, click_times = ([keys.slice(cut)], [times[cut:]]) if cut < times.size \
                else ([], [])
        yield from merge.release(frontier)
    for keys, times in zip(click_keys, click_times, strict=True):
        merge.classify(keys, times)
    while (got := clk.next(kind)) is not None:
        merge.classify(got[1], got[2])
    yield from merge.release(math.inf)


def join(impressions: Any, clicks: Any, *, key: str, window: str | float,
         out: str | os.PathLike, time: str = "time", downsample: float | None = None,
         seed: int = 0, duplicates: str = "error", label: str = "label",
         batch_rows: int = 65_536) -> JoinStats:
    """Join ``impressions`` with ``clicks`` (paths to Parquet/CSV/TSV, or tables; both sorted
    by ``time``) on ``key`` within ``window`` (seconds, or ``"30m"``, ``"45s"``, ``"2h"``)
    and write the labelled impressions to the Parquet file ``out`` atomically (a failed join
    leaves nothing there). ``downsample``: keep each negative with this probability
    (``seed``-ed; positives always); the file's metadata records it (:func:`negative_rate`).
    ``duplicates``: ``"error"`` or ``"drop"`` (the module docstring). Returns the counts."""
    config = JoinConfig(key=key, window=window, time=time, label=label,
                        downsample=downsample, seed=seed, duplicates=duplicates)
    out = os.fspath(out)
    if not out.lower().endswith(PARQUET_SUFFIXES):
        raise ValueError(f"out {out!r}: expected a .parquet file name")
    for name, source in (("impressions", impressions), ("clicks", clicks)):
        if isinstance(source, str | os.PathLike) and os.path.exists(out) and \
                os.path.samefile(os.fspath(source), out):
            raise ValueError(f"out {out!r} is the {name} file itself; choose another")
    stats = JoinStats()
    with _atomic.atomic_path(out) as tmp:
        writer = None
        try:
            for batch in join_batches(impressions, clicks, config, batch_rows=batch_rows,
                                      stats=stats):
                if writer is None:
                    writer = pq.ParquetWriter(tmp, config.schema(batch.schema))
                writer.write_batch(batch)
            if writer is None:  # every row down-sampled away: an empty file with the columns
                schema = _output_schema(impressions, config, batch_rows)
                writer = pq.ParquetWriter(tmp, config.schema(schema))
            writer.add_key_value_metadata({STATS_KEY: json.dumps(stats.counts())})
        finally:
            if writer is not None:
                writer.close()
    return stats


def _output_schema(impressions: Any, config: JoinConfig, batch_rows: int) -> pa.Schema:
    first = next(source_batches(impressions, None, batch_rows, "impressions", config.key))
    return first.schema.append(pa.field(config.label, pa.int8()))
