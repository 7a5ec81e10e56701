"""The generated search log: determinism, format, realism checks, file round trips, bad files."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import fields, replace

import numpy as np
import pytest

from jaxembed import metrics
from jaxembed.data import (
    COLUMN_DTYPES,
    CSV_COLUMNS,
    STAT_NAMES,
    SearchLog,
    SearchLogConfig,
    bayes_auc,
    read_csv,
    read_parquet,
    search_log,
    search_log_io,
    write_csv,
    write_parquet,
)

SMALL = SearchLogConfig(num_users=2_000, num_items=10_000, num_shops=500, num_categories=40,
                        num_brands=200, history_impressions=200_000)


@pytest.fixture(scope="module")
def log() -> SearchLog:
    return search_log(50_000, 1, config=SMALL)


def _head(log: SearchLog, rows: int) -> SearchLog:
    """The first ``rows`` impressions of ``log``."""
    return SearchLog(**{f.name: getattr(log, f.name)[:rows] if f.name in COLUMN_DTYPES
                        else getattr(log, f.name) for f in fields(log)})


@pytest.fixture(scope="module")
def small_log(log) -> SearchLog:
    return _head(log, 5_000)


@pytest.fixture(scope="module")
def tiny_csv_lines(log, tmp_path_factory) -> list[str]:
    path = tmp_path_factory.mktemp("tiny") / "tiny.csv"
    write_csv(_head(log, 30), path)
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def default_log() -> SearchLog:
    return search_log(200_000, 0)


def _same(a: SearchLog, b: SearchLog) -> bool:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                return False
        elif x != y:
            return False
    return True


def test_deterministic_for_a_seed(log):
    assert _same(log, search_log(50_000, 1, config=SMALL))
    other = search_log(50_000, 2, config=SMALL)
    assert not np.array_equal(log.item_id, other.item_id)
    assert not np.array_equal(log.true_prob, other.true_prob)


def test_shapes_dtypes_and_page_structure(log):
    n = len(log)
    assert n == 50_000
    for name, dtype in COLUMN_DTYPES.items():
        value = getattr(log, name)
        assert value.dtype == dtype, name
        assert value.shape == ((n, len(STAT_NAMES)) if name == "stats" else (n,)), name
    assert log.cardinalities == {"num_users": 2_000, "num_items": 10_000, "num_shops": 500,
                                 "num_categories": 40, "num_brands": 200}
    k = SMALL.page_size
    assert np.array_equal(log.pageview_id, np.arange(n) // k)
    pages = log.item_id.reshape(-1, k)
    assert all(len(set(row)) == k for row in pages.tolist())  # no item twice on a page
    for column in ("user_id", "query", "pv_time"):
        per_page = getattr(log, column).reshape(-1, k)
        assert (per_page == per_page[:, :1]).all(), column
    position = log.stats[:, STAT_NAMES.index("position")]
    assert np.array_equal(position, np.tile(np.arange(1, k + 1), n // k).astype(np.float32))
    assert np.all(np.diff(log.pv_time) >= 0)
    assert 0 <= log.pv_time.min() and log.pv_time.max() < SMALL.period_seconds
    clicked = log.label == 1
    assert np.all(log.click_time[clicked] > log.pv_time[clicked])
    assert np.isnan(log.click_time[~clicked]).all()
    assert np.isfinite(log.stats).all()
    price = log.stats[:, STAT_NAMES.index("price")]
    rating = log.stats[:, STAT_NAMES.index("shop_rating")]
    ctr_hist = log.stats[:, STAT_NAMES.index("item_ctr_hist")]
    assert (price > 0).all() and (rating >= 1).all() and (rating <= 5).all()
    assert ((ctr_hist > 0) & (ctr_hist < 1)).all()


def test_queries_are_plain_words(log):
    words = re.compile(r"^[a-z]+( [a-z]+){0,2}$")
    assert all(words.match(q) for q in set(log.query.tolist()))
    assert len(set(log.query.tolist())) > 100


def test_fixed_hierarchy(log):
    """Every item has one shop, category and brand, the same in every period."""
    later = search_log(20_000, 1, period=2, config=SMALL)
    for column in ("shop_id", "category_id", "brand_id"):
        parent = np.full(SMALL.num_items, -1)
        for part in (log, later):
            items, parents = part.item_id, getattr(part, column)
            seen = parent[items]
            assert np.all((seen == -1) | (seen == parents)), column
            parent[items] = parents
        first = np.unique(np.stack([log.item_id, getattr(log, column)], 1), axis=0)
        assert first.shape[0] == np.unique(log.item_id).size


def test_zipf_tail(log):
    counts = log.item_impressions
    assert counts.shape == (SMALL.num_items,) and counts.sum() == len(log)
    assert (counts < 5).mean() > 0.5  # a real cold tail: most items are seen < 5 times
    assert (counts == 0).mean() > 0.1
    ranked = np.sort(counts)[::-1]
    assert ranked[: SMALL.num_items // 100].sum() / len(log) > 0.15  # top 1% of items
    rank = np.arange(1, ranked.size + 1)
    tail = (rank >= 10 * SMALL.num_categories) & (rank <= 100 * SMALL.num_categories)
    slope = np.polyfit(np.log(rank[tail]), np.log(np.maximum(ranked[tail], 0.5)), 1)[0]
    assert -1.3 < slope < -0.7  # rank-frequency slope of Zipf with exponent 1


def test_base_ctr_and_bayes_auc(default_log, record_property):
    ctr = float(default_log.label.mean())
    mean_p = float(default_log.true_prob.mean())
    best = bayes_auc(default_log)
    record_property("ctr", ctr)
    record_property("bayes_auc", best)
    print(f"\nsearch_log(200_000, seed=0): CTR {ctr:.4f}, mean p {mean_p:.4f}, "
          f"Bayes AUC {best:.4f}")
    assert 0.05 < ctr < 0.15
    assert abs(mean_p - SearchLogConfig().base_ctr) < 0.01
    assert 0.70 < best < 0.85
    assert best == metrics.auc(default_log.label, default_log.true_prob)


def test_cold_items_inherit_from_their_shop(log):
    """The ground truth of a cold item correlates with its shop's warm items (attach helps)."""
    seen = log.item_impressions[log.item_id]
    warm, cold = seen >= 5, seen < 5
    shops = SMALL.num_shops
    count = np.bincount(log.shop_id[warm], minlength=shops)
    shop_logit = np.bincount(log.shop_id[warm], weights=np.log(log.true_prob[warm]),
                             minlength=shops) / np.maximum(count, 1)
    use = cold & (count[log.shop_id] >= 20)
    assert use.sum() > 1_000
    r = np.corrcoef(np.log(log.true_prob[use]), shop_logit[log.shop_id[use]])[0, 1]
    assert r > 0.2


def test_later_period_drifts(log):
    later = search_log(50_000, 1, period=1, config=SMALL)
    day = SMALL.period_seconds
    assert day <= later.pv_time.min() and later.pv_time.max() < 2 * day
    assert not set(later.pageview_id.tolist()) & set(log.pageview_id.tolist())
    r = np.corrcoef(log.item_impressions, later.item_impressions)[0, 1]
    assert 0.3 < r < 0.95  # popularity moved but is not redrawn from scratch
    frozen = replace(SMALL, drift=0.0)
    same = search_log(50_000, 1, config=frozen)
    still = search_log(50_000, 1, period=1, config=frozen)
    assert np.corrcoef(same.item_impressions, still.item_impressions)[0, 1] > 0.95


def test_csv_round_trip(small_log, tmp_path):
    log = small_log
    path = tmp_path / "log.csv"
    write_csv(log, path)
    with open(path, encoding="utf-8") as f:
        assert f.readline().strip() == ",".join(CSV_COLUMNS)
    assert _same(read_csv(path, cardinalities=log.cardinalities), log)
    inferred = read_csv(path)
    assert inferred.num_items == int(log.item_id.max()) + 1
    assert np.array_equal(inferred.stats, log.stats)
    assert os.listdir(tmp_path) == ["log.csv"]  # no temporary file left behind


def test_parquet_round_trip(small_log, tmp_path):
    log = small_log
    pytest.importorskip("pyarrow")
    path = tmp_path / "log.parquet"
    write_parquet(log, path)
    assert _same(read_parquet(path), log)  # cardinalities come back from the metadata


def test_parquet_without_pyarrow_says_how_to_install(small_log, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        write_parquet(small_log, tmp_path / "x.parquet")
    with pytest.raises(ImportError, match="pip install pyarrow"):
        read_parquet(tmp_path / "x.parquet")


def test_failed_write_keeps_the_old_file(small_log, tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    path.write_text("old contents\n")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(search_log_io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_csv(small_log, path)
    assert path.read_text() == "old contents\n"
    assert os.listdir(tmp_path) == ["log.csv"]


def _tiny_csv(tmp_path, lines, edit=None):
    path = tmp_path / "tiny.csv"
    lines = list(lines)
    if edit is not None:
        edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _set(lines, line_number, column, value):
    fields_ = lines[line_number - 1].split(",")
    fields_[CSV_COLUMNS.index(column)] = value
    lines[line_number - 1] = ",".join(fields_)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda ls: ls.__setitem__(0, "a,b,c"), r"line 1: the columns do not match .*missing"),
        (lambda ls: ls.__setitem__(4, ls[4] + ",7"), r"line 5: expected 16 fields, got 17"),
        (lambda ls: ls.__setitem__(3, ""), r"line 4: expected 16 fields, got 0"),
        (lambda ls: _set(ls, 6, "item_id", "12x"), r"line 6: column 'item_id': cannot read '12x'"),
        (lambda ls: _set(ls, 7, "price", "cheap"), r"line 7: column 'price': cannot read"),
        (lambda ls: _set(ls, 8, "label", "2"), r"line 8: column 'label': label is not 0 or 1"),
        (lambda ls: _set(ls, 9, "true_prob", "1.5"), r"line 9: column 'true_prob'"),
        (lambda ls: _set(ls, 10, "user_id", "-3"), r"line 10: column 'user_id': id outside"),
        (lambda ls: _set(ls, 11, "price", "nan"), r"line 11: column 'price': a statistic"),
        (lambda ls: (_set(ls, 12, "label", "0"), _set(ls, 12, "click_time", "5.0")),
         r"line 12: column 'click_time'"),
    ],
)
def test_malformed_csv_names_the_line(tmp_path, tiny_csv_lines, edit, match):
    with pytest.raises(ValueError, match=match):
        read_csv(_tiny_csv(tmp_path, tiny_csv_lines, edit))


def test_csv_ids_beyond_given_cardinality(tmp_path, tiny_csv_lines):
    path = _tiny_csv(tmp_path, tiny_csv_lines)
    match = r"line \d+: column 'item_id': id outside \[0, num_items=1"
    with pytest.raises(ValueError, match=match):
        read_csv(path, cardinalities={"num_items": 1})
    with pytest.raises(ValueError, match="unknown cardinalities"):
        read_csv(path, cardinalities={"num_things": 1})


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        read_csv(path)
    path.write_text(",".join(CSV_COLUMNS) + "\n")
    assert len(read_csv(path)) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "n must be a positive int"),
        ({"n": 10, "seed": -1}, ValueError, "seed"),
        ({"n": 10, "period": -1}, ValueError, "period"),
        ({"n": 10, "config": {"num_items": 5}}, TypeError, "SearchLogConfig"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        search_log(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_items": 10}, ValueError, "num_items=10 must be >= num_categories"),
        ({"num_brands": 3}, ValueError, "num_brands >= num_categories"),
        ({"drift": 1.5}, ValueError, "drift must be in"),
        ({"base_ctr": 0.0}, ValueError, "base_ctr"),
        ({"num_users": 2.5}, TypeError, "must be an int"),
        ({"affinity": float("nan")}, ValueError, "finite"),
    ],
)
def test_bad_config(kwargs, error, match):
    with pytest.raises(error, match=match):
        SearchLogConfig(**kwargs)


def test_grouped_sampler_draws_in_proportion_to_weight():
    """The within-group inverse-CDF sampler behind every categorical draw of the generator."""
    from jaxembed.data.search_log import _GroupedSampler

    group_of = np.array([2, 0, 1, 0, 2, 0, 2])
    weight = np.array([1.0, 1.0, 5.0, 2.0, 3.0, 7.0, 4.0])
    sampler = _GroupedSampler(group_of, weight, 3)
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 3, 300_000)
    drawn = sampler.draw(groups, rng)
    assert np.array_equal(group_of[drawn], groups)
    counts = np.bincount(drawn, minlength=7)
    expected = weight / np.bincount(group_of, weights=weight)[group_of]
    expected = expected * np.bincount(groups, minlength=3)[group_of]
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected) + 1)


def test_catalogue_as_small_as_a_page():
    tiny = SearchLogConfig(num_users=5, num_items=10, num_shops=2, num_categories=2,
                           num_brands=2, history_impressions=100)
    pages = search_log(1_000, 0, config=tiny).item_id.reshape(-1, 10)
    assert all(sorted(row) == list(range(10)) for row in pages.tolist())


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        ("item_id", np.arange(30, dtype=np.float64), "'item_id' has type double"),
        ("item_id", np.full(30, 2**40, dtype=np.int64), "row 0: column 'item_id': 1099511627776"),
        ("label", np.full(30, 3, dtype=np.int8), "row 0: column 'label': label is not 0 or 1"),
        ("query", [None] + ["x"] * 29, "row 0: column 'query' is null"),
        ("price", None, r"missing \['price'\]"),
    ],
)
def test_malformed_parquet_names_the_row(log, tmp_path, column, values, match):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "log.parquet"
    write_parquet(_head(log, 30), path)
    table = pq.read_table(path)
    if values is None:
        table = table.drop_columns([column])
    else:
        table = table.set_column(CSV_COLUMNS.index(column), column, pa.array(values))
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=match):
        read_parquet(path)
    path.write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        read_parquet(path)
