"""The join of raw event logs written literally: the reference twin of
:func:`jaxembed.data.join.join_batches`.

:func:`join_literal` states each rule of :mod:`jaxembed.data.join`'s docstring as plain loops
over whole in-memory tables (quadratic, for small logs); ``proofs/proof_join.py`` proves the
streaming join equal to it on drawn logs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jaxembed.data.event_logs import seconds
from jaxembed.data.join import JoinConfig, JoinStats, _key_kind, _key_values
from jaxembed.data.readers import DataError
from jaxembed.stream.calibration import downsample_negatives


def join_literal(impressions: pa.Table, clicks: pa.Table, config: JoinConfig
                 ) -> tuple[pa.Table, JoinStats]:
    """The same join, literally: plain loops over whole in-memory tables, each rule of the
    module docstring written as it reads. The reference :func:`join_batches` is proven
    equal to (``proofs/proof_join.py``); quadratic, for small logs."""
    w = config.window
    key_kind = "int" if _key_kind(impressions.schema.field(config.key).type) == _key_kind(
        clicks.schema.field(config.key).type) == "int" else "text"
    imp_keys = _key_values(impressions.column(config.key), key_kind).to_pylist()
    imp_times = seconds(impressions.column(config.time), config.time).to_pylist()
    clk_keys = _key_values(clicks.column(config.key), key_kind).to_pylist()
    clk_times = seconds(clicks.column(config.time), config.time).to_pylist()
    for what, times in (("impressions", imp_times), ("clicks", clk_times)):
        for i in range(1, len(times)):
            if times[i] < times[i - 1]:
                raise DataError(f"{what} row {i + 1}: time {times[i]!r} is earlier than the "
                                f"row before it")
    stats = JoinStats(impressions=len(imp_keys), clicks=len(clk_keys))
    kept = []
    for i in range(len(imp_keys)):
        repeat = any(imp_keys[j] == imp_keys[i] and imp_times[i] - imp_times[j] <= w
                     for j in range(i))
        if repeat and config.duplicates == "error":
            raise DataError(f"impressions row {i + 1}: key {config.key}={imp_keys[i]!r} "
                            f"repeats an earlier row within the window")
        if repeat:
            stats.duplicate_impressions += 1
        else:
            kept.append(i)
    clicked: set[int] = set()
    for c in range(len(clk_keys)):
        same = [i for i in kept if imp_keys[i] == clk_keys[c]]
        gaps = {i: clk_times[c] - imp_times[i] for i in same}
        matches = [i for i in same if 0 <= gaps[i] <= w]
        if matches:
            (i,) = matches  # kept impressions of a key are more than w apart
            if i in clicked:
                stats.duplicate_clicks += 1
            else:
                clicked.add(i)
                stats.matched_clicks += 1
        elif any(w < gaps[i] <= 2 * w for i in same):
            stats.late_clicks += 1
        else:
            stats.unmatched_clicks += 1
    labels = np.array([int(i in clicked) for i in kept], np.int8)
    stats.positives = int(labels.sum())
    stats.negatives = labels.size - stats.positives
    keep = np.ones(labels.size, bool)
    if config.downsample is not None:
        keep = downsample_negatives(labels, config.downsample, config.seed)
    stats.negatives_dropped = int(labels.size - keep.sum())
    rows = [kept[k] for k in range(len(kept)) if keep[k]]
    table = impressions.take(pa.array(rows, pa.int64())).append_column(
        config.label, pa.array(labels[keep], pa.int8()))
    stats.rows = table.num_rows
    return table, stats
