"""The search log's derived statistics: the user category preference (intent model, leave-one-out),
and the derived table the search schema reads."""

import dataclasses

import numpy as np
import pytest

from jaxembed import data
from jaxembed.data.schema import Schema
from jaxembed.data.search_schema import search_schema, search_table
from jaxembed.data.search_stats import (
    _UNKNOWN,
    STAT_FEATURES,
    IntentModel,
    SearchStatistics,
    _keys,
    head_words,
)

WORLD = data.SearchLogConfig(num_users=40, num_items=800, num_shops=80, num_categories=12,
                             num_brands=40, history_impressions=20_000)


@pytest.fixture(scope="module")
def fitted():
    log = data.search_log(6_000, seed=0, config=WORLD)
    return log, SearchStatistics.fit(log, profile_rank=3)


def _preference(statistics, log):
    return statistics.columns(log)["user_category_preference"]


def test_fit_rows_leave_their_own_page_view_out(fitted):
    log, statistics = fitted
    intent, counts = statistics.intent, statistics.search_counts
    qcat = statistics.query_category.get(_keys(head_words(log)), _UNKNOWN).astype(int)
    got = _preference(statistics, log)
    for row in (0, 7, 1234, 5999):  # rows of the fit log: their page view is removed
        user, category = log.user_id[row], log.category_id[row]
        assert qcat[row] != _UNKNOWN
        left_out = counts[user].copy()
        left_out[qcat[row]] -= 1.0
        vector = intent.user_vectors(left_out[None], intent.users[user][None])[0]
        np.testing.assert_allclose(got[row], vector @ intent.categories[category], atol=1e-6)
        assert not np.isclose(got[row], intent.users[user] @ intent.categories[category])
    # the same impressions as new page views (not fitted on) read the full-count vector
    later = dataclasses.replace(log, pageview_id=log.pageview_id + 10**6)
    full = np.einsum("nk,nk->n", intent.users[log.user_id], intent.categories[log.category_id])
    np.testing.assert_allclose(_preference(statistics, later), full, atol=1e-6)


def test_user_vectors_maximize_the_likelihood(fitted):
    _, statistics = fitted
    intent, counts = statistics.intent, statistics.search_counts
    a = intent.users
    logits = intent.offsets + a @ intent.categories.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad = (counts - counts.sum(axis=1, keepdims=True) * p) @ intent.categories - intent.l2 * a
    assert np.abs(grad).max() < 1e-4
    best = intent.log_likelihood(counts, a)
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert np.all(intent.log_likelihood(counts, a + 0.05 * rng.normal(size=a.shape)) < best)


def test_intent_model_recovers_a_planted_low_rank_preference():
    rng = np.random.default_rng(1)
    users, categories = rng.normal(size=(150, 3)), rng.normal(size=(30, 3))
    truth = users @ categories.T
    p = np.exp(truth)
    p /= p.sum(axis=1, keepdims=True)
    counts = np.stack([rng.multinomial(200, row) for row in p]).astype(float)
    model = IntentModel.fit(counts, 3, 1.0)
    estimate = model.users @ model.categories.T
    centred = [x - x.mean(axis=1, keepdims=True) for x in (estimate, truth)]
    assert np.corrcoef(centred[0].ravel(), centred[1].ravel())[0, 1] > 0.95


@pytest.mark.parametrize(("name", "value"), [("profile_rank", 0), ("profile_rank", 2.5),
                                             ("profile_l2", 0.0), ("profile_l2", "1")])
def test_bad_intent_settings_name_the_value(fitted, name, value):
    log, _ = fitted
    with pytest.raises(ValueError, match=name):
        SearchStatistics.fit(log, **{name: value})


def test_the_search_table_has_every_column_its_schema_reads(fitted):
    log, statistics = fitted
    table = search_table(log, statistics)
    schema = search_schema()
    assert set(schema.columns) <= set(table.column_names)
    assert table.num_rows == len(log)
    assert [f.name for f in schema.features if f.kind == "dense"] == list(STAT_FEATURES)
    unknown = np.asarray(table.column("query_category").is_null())
    derived = statistics.columns(log)
    np.testing.assert_array_equal(unknown, derived["query_category"] == _UNKNOWN)
    np.testing.assert_array_equal(np.asarray(table.column("clicked")), log.label)


def test_the_search_schema_round_trips_through_toml(tmp_path):
    schema = search_schema()
    schema.to_toml(tmp_path / "search.toml")
    assert Schema.from_toml(tmp_path / "search.toml") == schema
