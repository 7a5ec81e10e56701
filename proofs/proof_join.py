r"""The streaming join of raw event logs equals its literal twin.

For impressions :math:`(k_i, t_i)` and clicks :math:`(k_c, t_c)`, both sorted by time, and a
window :math:`w`: an impression repeating a key seen at most :math:`w` before it is a duplicate
(dropped, or the log rejected); a kept impression is labelled

.. math:: y_i = \mathbb{1}\big[\exists c:\ k_c = k_i,\ 0 \le t_c - t_i \le w\big];

each click is counted once, as matched (the first on its impression), duplicate, late
(:math:`w < t_c - t_i \le 2w` for a kept impression of its key) or unmatched; and with
down-sampling at rate :math:`w_-` a negative is kept iff ``default_rng(seed).random()`` drawn
in row order is below :math:`w_-` (:func:`jaxembed.stream.calibration.downsample_negatives`).

:func:`jaxembed.data.join_literal.join_literal` states these rules as plain loops over whole tables;
:func:`jaxembed.data.join.join_batches` is the bounded-memory merge. Proven: on drawn logs
(random integer times, small key pools so that keys repeat within and beyond the window,
clicks before, inside, just after and long after their impression's window, repeated clicks,
clicks of unknown keys), integer or text keys, windows, down-sampling rates and seeds, and
record-batch boundaries and merge slices at arbitrary places, the streaming join writes the
same rows, in the same order, with the same labels, and the same counts; with
``duplicates="error"`` both reject the same row. Times are integers, so every difference is
exact and the twin's and the merge's comparisons see the same numbers.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.data.join import JoinConfig, JoinStats, join_batches
from jaxembed.data.join_literal import join_literal
from jaxembed.data.readers import DataError


@st.composite
def event_logs(draw):
    """``(impressions, clicks, window)``: two time-sorted tables in drawn record batches."""
    window = draw(st.integers(1, 20))
    n = draw(st.integers(1, 30))
    pool = draw(st.integers(1, 12))  # small pools: keys repeat, inside and beyond the window
    # gaps of exactly 0, w, 2w are frequent: the window's edges meet the merge's frontiers
    gap = st.sampled_from([0, window, 2 * window, 1]) | st.integers(0, 2 * window + 1)
    imp_times = np.cumsum(draw(st.lists(gap, min_size=n, max_size=n))).tolist()
    imp_keys = draw(st.lists(st.integers(0, pool - 1), min_size=n, max_size=n))
    clicks = []
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.booleans()) or not n:
            key = draw(st.integers(0, pool + 2))  # any key, some no impression has
            at = draw(st.integers(0, imp_times[-1] + 2 * window))
        else:
            i = draw(st.integers(0, n - 1))
            key = imp_keys[i]
            at = imp_times[i] + draw(st.sampled_from([0, window, window + 1, 2 * window,
                                                      2 * window + 1, -1]) | st.integers(
                                                          -3, 3 * window))
        clicks.append((max(at, 0), key))
    clicks.sort(key=lambda c: c[0])
    text = draw(st.booleans())

    def keys(values):
        return pa.array([f"k{v}" for v in values]) if text else pa.array(values, pa.int64())

    impressions = _batched(draw, pa.table({"view": keys(imp_keys),
                                           "time": pa.array(imp_times, pa.float64()),
                                           "row": pa.array(range(n), pa.int32())}))
    clicks_table = _batched(draw, pa.table({"view": keys([k for _, k in clicks]),
                                            "time": pa.array([t for t, _ in clicks],
                                                             pa.int64())}))
    return impressions, clicks_table, window


def _batched(draw, table: pa.Table) -> pa.Table:
    """The table re-chunked at drawn boundaries (its record batches are those chunks)."""
    cuts = sorted(set(draw(st.lists(st.integers(1, max(table.num_rows - 1, 1)),
                                    max_size=6))))
    edges = [0, *[c for c in cuts if c < table.num_rows], table.num_rows]
    batches = [table.slice(a, b - a).combine_chunks().to_batches()[0]
               for a, b in itertools.pairwise(edges) if b > a]
    return pa.Table.from_batches(batches, schema=table.schema)


def _streamed(impressions, clicks, config, slice_rows, batch_rows=1_000
              ) -> tuple[pa.Table, JoinStats]:
    stats = JoinStats()
    batches = list(join_batches(impressions, clicks, config, batch_rows=batch_rows,
                                slice_rows=slice_rows, stats=stats))
    return _table(batches, impressions, config), stats


def _table(batches, impressions, config) -> pa.Table:
    schema = impressions.schema.append(pa.field(config.label, pa.int8()))
    return pa.Table.from_batches(batches, schema=schema)


@given(logs=event_logs(), rate=st.sampled_from([None, 0.5, 0.2, 1.0]),
       seed=st.integers(0, 2**16), slice_rows=st.sampled_from([1, 2, 5, 1 << 20]),
       batch_rows=st.sampled_from([1, 2, 3, 1_000]))
def test_streaming_join_equals_the_literal_join(logs, rate, seed, slice_rows, batch_rows):
    """Same rows, order, labels and counts as the twin, whatever the batch boundaries."""
    impressions, clicks, window = logs
    config = JoinConfig(key="view", window=window, downsample=rate, seed=seed,
                        duplicates="drop")
    expected, expected_stats = join_literal(impressions, clicks, config)
    got, stats = _streamed(impressions, clicks, config, slice_rows, batch_rows)
    assert got.equals(expected), (got.to_pydict(), expected.to_pydict())
    assert stats.counts() == expected_stats.counts()
    counted = (stats.matched_clicks + stats.duplicate_clicks + stats.late_clicks
               + stats.unmatched_clicks)
    assert counted == stats.clicks == clicks.num_rows  # each click counted exactly once
    assert stats.matched_clicks == stats.positives
    assert stats.rows == stats.positives + stats.negatives - stats.negatives_dropped


@given(logs=event_logs(), slice_rows=st.sampled_from([1, 3, 1 << 20]))
def test_duplicates_are_rejected_at_the_same_row(logs, slice_rows):
    """With duplicates='error', the merge rejects the log iff the twin does, at its row."""
    impressions, clicks, window = logs
    config = JoinConfig(key="view", window=window)
    try:
        join_literal(impressions, clicks, config)
        expected = None
    except DataError as err:
        expected = re.search(r"row (\d+)", str(err)).group(1)
    if expected is None:
        _streamed(impressions, clicks, config, slice_rows)
        return
    with pytest.raises(DataError, match=rf"row {expected}: key view=") as info:
        _streamed(impressions, clicks, config, slice_rows)
    assert "repeats row" in str(info.value)


@given(rate=st.sampled_from([0.1, 0.5]), seed=st.integers(0, 2**16),
       sizes=st.lists(st.integers(1, 50), min_size=1, max_size=6))
def test_downsampling_does_not_depend_on_batches(rate, seed, sizes):
    """One uniform per kept impression in row order: batches of any sizes keep the rows
    ``downsample_negatives`` keeps on the whole log."""
    from jaxembed.stream.calibration import downsample_negatives

    n = sum(sizes)
    rng = np.random.default_rng(seed + 1)
    times = np.arange(n, dtype=np.float64) * 10.0
    clicked = rng.random(n) < 0.3
    impressions = pa.Table.from_batches([
        pa.record_batch({"view": pa.array(np.arange(a, a + s)), "time": times[a:a + s]})
        for a, s in zip(np.cumsum([0, *sizes[:-1]]), sizes, strict=True)])
    clicks = pa.table({"view": pa.array(np.flatnonzero(clicked)),
                       "time": times[clicked] + 1.0})
    config = JoinConfig(key="view", window=5, downsample=rate, seed=seed)
    got, _ = _streamed(impressions, clicks, config, 1 << 20)
    keep = downsample_negatives(clicked.astype(np.int8), rate, seed)
    np.testing.assert_array_equal(got.column("view").to_numpy(), np.flatnonzero(keep))
    np.testing.assert_array_equal(got.column("label").to_numpy(), clicked[keep])
