"""A logged period replayed as a live click stream, joined into training examples.

The online phase of ``jaxembed train`` learns from period 1 of the search log as the
production system learned from its streams: each page view and each click is an event that
arrives after its own log delay (a page view up to ``view_delay`` seconds after it happened,
a click up to ``click_delay``), the :class:`~jaxembed.stream.joiner.PairwiseJoiner` holds
each page view until its clicks arrive or its window closes and emits it whole, and
negatives may be down-sampled at rate ``w`` (every positive kept). :func:`replay` returns the
emitted examples as row numbers of the log in arrival order, with the joiner's labels (a
click that arrived after its window is a negative, as it was for the system), so the update
trains on exactly the examples the stream delivered, in their order.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from jaxembed.data.search_log import SearchLog
from jaxembed.stream.calibration import downsample_negatives
from jaxembed.stream.joiner import Click, JoinStats, PageView, PairwiseJoiner


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """How the stream is replayed: join ``window`` (seconds of event time), the joiner's
    ``max_pending``, the largest arrival delays, the negative rate ``w`` and the seed."""

    window: float = 600.0
    max_pending: int = 100_000
    view_delay: float = 30.0
    click_delay: float = 120.0
    negative_rate: float = 1.0
    seed: int = 0


def stream_events(log: SearchLog, config: StreamConfig) -> list[PageView | Click]:
    """The log as events in arrival order: a page view arrives up to ``view_delay`` seconds
    after it happened, a click up to ``click_delay`` after it happened. Items are the log's
    row numbers, so each emitted example names its row."""
    rng = np.random.default_rng([config.seed, 7])
    starts = np.flatnonzero(np.r_[True, log.pageview_id[1:] != log.pageview_id[:-1]])
    bounds = np.r_[starts, len(log)]
    events: list[PageView | Click] = []
    arrival: list[float] = []
    view_lag = rng.uniform(0, config.view_delay, len(starts))
    for g, (a, b) in enumerate(itertools.pairwise(bounds)):
        events.append(PageView(int(log.pageview_id[a]), float(log.pv_time[a]),
                               int(log.user_id[a]), tuple(range(a, b))))
        arrival.append(float(log.pv_time[a]) + view_lag[g])
    clicked = np.flatnonzero(log.label == 1)
    click_lag = rng.uniform(0, config.click_delay, clicked.shape[0])
    for row, lag in zip(clicked, click_lag, strict=True):
        events.append(Click(int(log.pageview_id[row]), float(log.click_time[row]), int(row)))
        arrival.append(float(log.click_time[row]) + lag)
    order = np.argsort(np.asarray(arrival), kind="stable")
    return [events[i] for i in order]


def replay(log: SearchLog, config: StreamConfig | None = None
           ) -> tuple[np.ndarray, np.ndarray, JoinStats]:
    """``(rows, labels, stats)``: the log rows the joiner emitted, in arrival order, their
    joined labels, and the joiner's counters; negatives are kept with probability
    ``config.negative_rate`` (seeded)."""
    config = config or StreamConfig()
    joiner = PairwiseJoiner(config.window, config.max_pending)
    examples = list(joiner.run(stream_events(log, config)))
    rows = np.fromiter((e.item for e in examples), np.int64, len(examples))
    labels = np.fromiter((e.label for e in examples), np.int8, len(examples))
    if config.negative_rate < 1.0:
        keep = downsample_negatives(labels, config.negative_rate, config.seed)
        rows, labels = rows[keep], labels[keep]
    return rows, labels, joiner.stats
