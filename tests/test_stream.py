"""The pairwise-sampling joiner on a generated million-event stream, and its edge cases."""

import numpy as np
import pytest

from jaxembed.stream.joiner import Click, PageView, PairwiseJoiner

ITEMS_PER_VIEW = 4


def click_stream(num_views: int, seed: int, click_rate: float = 0.3):
    """Page views every 10 ms with 4 impressions; clicks after an exponential delay (mean 2 s).
    Arrival order is event time plus a per-log delay (views up to 1.5 s late, clicks up to
    3 s), so some clicks arrive before their page view; 1% of each log is sent twice."""
    rng = np.random.default_rng(seed)
    view_time = np.arange(num_views) * 0.01
    items = rng.integers(0, 10_000, (num_views, ITEMS_PER_VIEW))
    clicked = rng.random(num_views) < click_rate
    which = rng.integers(0, ITEMS_PER_VIEW, num_views)
    delay = rng.exponential(2.0, num_views)
    views = [PageView(int(v), float(view_time[v]), int(v % 977), tuple(items[v].tolist()))
             for v in range(num_views)]
    clicks = [Click(int(v), float(view_time[v] + delay[v]), int(items[v, which[v]]))
              for v in np.flatnonzero(clicked)]
    arrival = np.concatenate([view_time + rng.uniform(0, 1.5, num_views),
                              np.array([c.time for c in clicks]) + rng.uniform(0, 3, len(clicks))])
    events = views + clicks
    resend = rng.random(len(events)) < 0.01
    events += [events[i] for i in np.flatnonzero(resend)]
    arrival = np.concatenate([arrival, arrival[resend] + 0.5])
    order = np.argsort(arrival, kind="stable")
    truth = {(c.view_id, c.item): c.time - view_time[c.view_id] for c in clicks}
    return [events[i] for i in order], truth


def test_million_events_each_impression_once_with_bounded_memory():
    events, truth = click_stream(num_views=780_000, seed=0)  # ~1.0M events with resends
    assert len(events) > 1_000_000
    cap = 2_000
    joiner = PairwiseJoiner(window=10.0, max_pending=cap)
    seen = set()
    groups_in_order = []
    for event in events:
        for example in joiner.push(event):
            key = (example.view_id, example.position)
            assert key not in seen, f"impression {key} emitted twice"
            seen.add(key)
            if example.label:
                assert (example.view_id, example.item) in truth, "positive without a click"
            groups_in_order.append(example.view_id)
        assert joiner.held <= cap
    for example in joiner.flush():
        seen.add((example.view_id, example.position))
    assert len(seen) == 780_000 * ITEMS_PER_VIEW
    stats = joiner.stats
    assert stats.views == 780_000 and stats.duplicate_views > 0 and stats.max_held <= cap
    assert stats.evicted == 0  # the window, not the cap, bounds memory at this rate
    # a click well inside the window always finds its page view: every such one is a positive
    assert stats.positives >= sum(1 for d in truth.values() if d < 5.0)
    # a page view's impressions leave together, one contiguous group
    changes = np.count_nonzero(np.diff(np.asarray(groups_in_order)))
    assert changes + 1 <= stats.emitted_groups


def test_click_before_its_view_is_joined():
    joiner = PairwiseJoiner(window=5.0)
    assert joiner.push(Click(7, 1.0, item=3)) == []
    out = joiner.push(PageView(7, 0.5, user=1, items=(2, 3, 4)))
    assert [(e.item, e.label) for e in out] == [(2, 0), (3, 1), (4, 0)]


def test_window_closes_unclicked_and_late_click_is_counted():
    joiner = PairwiseJoiner(window=5.0)
    joiner.push(PageView(1, 0.0, user=1, items=(10, 11)))
    out = joiner.push(PageView(2, 6.0, user=1, items=(12,)))  # watermark 6 > 0 + 5
    assert [(e.view_id, e.label) for e in out] == [(1, 0), (1, 0)]
    assert joiner.push(Click(1, 6.5, item=10)) == []
    assert joiner.stats.late_clicks == 1


def test_duplicates_are_ignored():
    joiner = PairwiseJoiner(window=5.0)
    joiner.push(PageView(1, 0.0, user=1, items=(10, 11)))
    joiner.push(PageView(1, 0.0, user=1, items=(10, 11)))
    out = joiner.push(Click(1, 1.0, item=11))
    joiner.push(Click(1, 1.0, item=11))
    assert [(e.item, e.label) for e in out] == [(10, 0), (11, 1)]
    assert joiner.stats.duplicate_views == 1 and joiner.stats.late_clicks == 1


def test_wait_for_all_clicks_labels_every_click():
    joiner = PairwiseJoiner(window=5.0, wait_for_all_clicks=True)
    joiner.push(PageView(1, 0.0, user=1, items=(10, 11, 12)))
    assert joiner.push(Click(1, 1.0, item=10)) == []
    joiner.push(Click(1, 2.0, item=12))
    out = joiner.flush()
    assert [(e.item, e.label) for e in out] == [(10, 1), (11, 0), (12, 1)]


def test_memory_cap_evicts_oldest_unclicked():
    joiner = PairwiseJoiner(window=100.0, max_pending=2)
    joiner.push(PageView(1, 0.0, 1, (1,)))
    joiner.push(PageView(2, 0.1, 1, (2,)))
    out = joiner.push(PageView(3, 0.2, 1, (3,)))
    assert [e.view_id for e in out] == [1] and joiner.stats.evicted == 1 and joiner.held == 2


def test_click_on_item_not_shown_is_invalid():
    joiner = PairwiseJoiner(window=5.0)
    joiner.push(PageView(1, 0.0, 1, (1, 2)))
    assert joiner.push(Click(1, 0.5, item=99)) == []
    assert joiner.stats.invalid_clicks == 1


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"window": 1.0, "max_pending": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be"):
        PairwiseJoiner(**kwargs)


def test_unknown_event_type_is_refused():
    with pytest.raises(TypeError, match="PageView or a Click"):
        PairwiseJoiner(window=1.0).push(("view", 1))
