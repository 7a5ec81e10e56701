"""Pairwise sampling of a click stream: join page views with their clicks, emit them together.

A search page view shows several items; a click on one arrives later, often through a slower
log pipeline. Training on the two streams as they come skews each batch (a burst of late
clicks is a burst of positives with no negatives). The joiner holds each page view until its
first click arrives or its time window closes, then emits the whole page view at once: the
clicked items as positives and their sibling impressions as negatives, so every batch keeps
each page's ratio of positives to negatives.

Guarantees (``tests/test_stream.py`` checks them on a million events):

* every impression of every distinct page view is emitted exactly once;
* an impression is labelled 1 iff a click on it arrived while its page view was held;
* memory is bounded: at most ``max_pending`` page views and ``max_pending`` early clicks
  are held; when full, the oldest page view is emitted unclicked (counted in
  ``stats.evicted``) and the oldest early click is dropped (``stats.dropped_clicks``). To
  recognise repeats, the ids of emitted page views are remembered for ``2 · window`` of event
  time, at most ``2 · max_pending`` of them; a repeat arriving later than that is taken for a
  new page view.

Event time drives the windows, not arrival order: the watermark is the largest event time
seen; a page view is emitted unclicked once the watermark passes ``view.time + window``.
Out-of-order events are handled: a click that arrives before its page view (clock skew, a
faster click log) waits up to ``window`` for it; a repeated page view or a repeated click is
ignored (``stats.duplicate_views`` / ``stats.duplicate_clicks``); a click for a page view
already emitted is late (``stats.late_clicks``) and does not re-emit anything; a click on an
item its page view did not show is ``stats.invalid_clicks``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class PageView(NamedTuple):
    """A page view at ``time`` showing ``items`` (one impression each) to ``user``."""

    view_id: int
    time: float
    user: int
    items: Sequence[int]


class Click(NamedTuple):
    """A click at ``time`` on ``item`` of page view ``view_id``."""

    view_id: int
    time: float
    item: int


class Example(NamedTuple):
    """One labelled impression, emitted as part of its page view's group."""

    view_id: int
    time: float
    user: int
    item: int
    position: int
    label: int


@dataclass
class JoinStats:
    """Counters of what the joiner did with each kind of event."""

    views: int = 0
    clicks: int = 0
    emitted_groups: int = 0
    emitted_examples: int = 0
    positives: int = 0
    evicted: int = 0
    late_clicks: int = 0
    dropped_clicks: int = 0
    duplicate_views: int = 0
    duplicate_clicks: int = 0
    invalid_clicks: int = 0
    max_held: int = 0


@dataclass
class _Held:
    view: PageView
    clicked: set[int] = field(default_factory=set)


class PairwiseJoiner:
    """Join page views with clicks inside an event-time ``window``; see the module docstring.

    Args:
        window: seconds a page view waits for its first click (and an early click for its
            page view).
        max_pending: the most page views (and, separately, early clicks) held at once.
        wait_for_all_clicks: if true, a clicked page view is still held until its window
            closes, so several clicks on one page are all labelled; if false (default) it is
            emitted at its first click, as soon as its positive exists.
    """

    def __init__(self, window: float, max_pending: int = 100_000,
                 wait_for_all_clicks: bool = False) -> None:
        if not window > 0:
            raise ValueError(f"window must be > 0 seconds, got {window!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        self.window = float(window)
        self.max_pending = int(max_pending)
        self.wait_for_all_clicks = wait_for_all_clicks
        self.stats = JoinStats()
        self._held: OrderedDict[int, _Held] = OrderedDict()  # by arrival, oldest first
        self._early: OrderedDict[tuple[int, int], float] = OrderedDict()
        self._done: OrderedDict[int, float] = OrderedDict()  # emitted view ids, for dedup
        self._watermark = float("-inf")

    @property
    def held(self) -> int:
        """Page views currently waiting."""
        return len(self._held)

    def push(self, event: PageView | Click) -> list[Example]:
        """Feed one event; return the examples it releases (possibly none)."""
        if not isinstance(event, PageView | Click):
            raise TypeError(f"expected a PageView or a Click, got {type(event).__name__}")
        out: list[Example] = []
        self._watermark = max(self._watermark, float(event.time))
        if isinstance(event, PageView):
            self._on_view(event, out)
        else:
            self._on_click(event, out)
        self._expire(out)
        self.stats.max_held = max(self.stats.max_held, len(self._held))
        return out

    def flush(self) -> list[Example]:
        """Emit every page view still held (end of stream)."""
        out: list[Example] = []
        while self._held:
            _, held = self._held.popitem(last=False)
            self._emit(held, out)
        self._early.clear()
        return out

    def run(self, events: Iterable[PageView | Click]) -> Iterator[Example]:
        """Join a whole stream, flushing at its end."""
        for event in events:
            yield from self.push(event)
        yield from self.flush()

    # --- internals ---------------------------------------------------------------------------
    def _on_view(self, view: PageView, out: list[Example]) -> None:
        if view.view_id in self._held or view.view_id in self._done:
            self.stats.duplicate_views += 1
            return
        self.stats.views += 1
        held = _Held(view)
        for item in set(view.items):
            if self._early.pop((view.view_id, item), None) is not None:
                held.clicked.add(item)
        if held.clicked and not self.wait_for_all_clicks:
            self._emit(held, out)
            return
        if len(self._held) >= self.max_pending:
            _, oldest = self._held.popitem(last=False)
            self.stats.evicted += 1
            self._emit(oldest, out)
        self._held[view.view_id] = held

    def _on_click(self, click: Click, out: list[Example]) -> None:
        held = self._held.get(click.view_id)
        if held is not None:
            if click.item in held.clicked:
                self.stats.duplicate_clicks += 1
                return
            if click.item not in held.view.items:
                self.stats.invalid_clicks += 1  # a click on an item the page did not show
                return
            self.stats.clicks += 1
            held.clicked.add(click.item)
            if not self.wait_for_all_clicks:
                del self._held[click.view_id]
                self._emit(held, out)
            return
        if click.view_id in self._done:
            self.stats.late_clicks += 1
            return
        key = (click.view_id, click.item)
        if key in self._early:
            self.stats.duplicate_clicks += 1
            return
        self.stats.clicks += 1
        if len(self._early) >= self.max_pending:
            self._early.popitem(last=False)
            self.stats.dropped_clicks += 1
        self._early[key] = float(click.time)

    def _expire(self, out: list[Example]) -> None:
        horizon = self._watermark - self.window
        # Held views are in arrival order, which is close to event-time order; scan the
        # front while it has expired (a straggler behind a newer view waits one more event).
        while self._held:
            view_id, held = next(iter(self._held.items()))
            if held.view.time > horizon:
                break
            del self._held[view_id]
            self._emit(held, out)
        while self._early:
            key, time = next(iter(self._early.items()))
            if time > horizon:
                break
            del self._early[key]
            self.stats.dropped_clicks += 1
        while self._done:
            view_id, time = next(iter(self._done.items()))
            if time > horizon - self.window:
                break
            del self._done[view_id]

    def _emit(self, held: _Held, out: list[Example]) -> None:
        view = held.view
        for position, item in enumerate(view.items):
            label = int(item in held.clicked)
            out.append(Example(view.view_id, view.time, view.user, item, position, label))
            self.stats.positives += label
        self.stats.emitted_examples += len(view.items)
        self.stats.emitted_groups += 1
        self._done[view.view_id] = view.time
        if len(self._done) > 2 * self.max_pending:
            self._done.popitem(last=False)
