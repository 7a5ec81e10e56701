"""Joining raw event logs (jaxembed.data.join) and the calibration a down-sampled fit stores:
files, agreement with pandas' merge_asof, bad input, and calibrated predictions on held-out
data (the literal twin's proof is proofs/proof_join.py)."""

from __future__ import annotations

import json
import os
import tomllib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxembed.data.event_logs import join_metadata, negative_rate
from jaxembed.data.join import JoinConfig, join, join_batches, parse_window
from jaxembed.data.readers import DataError
from jaxembed.data.schema import Schema

SCHEMA = """
[label]
column = "label"
[[feature]]
name = "user"
kind = "categorical"
dim = 4
[[feature]]
name = "item"
kind = "categorical"
dim = 4
"""


def event_logs(n: int, seed: int = 0, *, window: float = 60.0, base: float = -3.0
               ) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """``(impressions, clicks, p)``: ``n`` impressions a second apart, each clicked with a
    known probability ``p`` (user and item effects) after a delay within the window; some
    clicks repeated, some late, some of unknown page views."""
    rng = np.random.default_rng(seed)
    user, item = rng.integers(0, 20, n), rng.integers(0, 30, n)
    logit = base + (user % 4) * 0.6 + (item % 3) * 0.5
    p = 1 / (1 + np.exp(-logit))
    times = np.arange(n, dtype=np.float64)
    clicked = rng.random(n) < p
    ids = np.arange(n) * 7 + 1
    at = times[clicked] + rng.uniform(0, window, clicked.sum())
    repeat = rng.random(clicked.sum()) < 0.2
    late = rng.random(n) < 0.02
    click_ids = np.concatenate([ids[clicked], ids[clicked][repeat], ids[late], [2, 4]])
    click_at = np.concatenate([at, at[repeat] + 1.0, times[late] + window + 5, [3.0, 9.0]])
    order = np.argsort(click_at, kind="stable")
    impressions = pa.table({"pageview_id": ids, "ts": times,
                            "user": [f"u{u}" for u in user], "item": [f"i{i}" for i in item]})
    clicks = pa.table({"pageview_id": click_ids[order], "ts": click_at[order]})
    return impressions, clicks, p


def test_windows_parse():
    assert parse_window("30m") == 1800 and parse_window("45s") == 45
    assert parse_window("2h") == 7200 and parse_window("1d") == 86400
    assert parse_window("500ms") == 0.5 and parse_window(90) == 90 and parse_window("1.5h") == 5400
    for bad in ("0m", "-5s", "soon", "5 parsecs", "", True, float("nan")):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad)


def test_join_files_agree_with_merge_asof(tmp_path):
    """Labels equal pandas' merge_asof (forward, by key, tolerance = window); the file is
    written with its metadata; each click is counted once."""
    pd = pytest.importorskip("pandas")
    impressions, clicks, _ = event_logs(3000, 1)
    pq.write_table(impressions, tmp_path / "imp.parquet", row_group_size=700)
    clicks.to_pandas().to_csv(tmp_path / "clk.csv", index=False)  # a CSV: keys read as text
    stats = join(tmp_path / "imp.parquet", tmp_path / "clk.csv", key="pageview_id",
                 window="1m", time="ts", out=tmp_path / "joined.parquet", batch_rows=500)
    joined = pq.read_table(tmp_path / "joined.parquet")
    peer = pd.merge_asof(impressions.to_pandas(), clicks.to_pandas().rename(
        columns={"ts": "click_ts"}).assign(ts=lambda f: f.click_ts), on="ts",
        by="pageview_id", direction="forward", tolerance=60.0)
    np.testing.assert_array_equal(joined["label"].to_numpy(), peer.click_ts.notna())
    assert joined.column_names == ["pageview_id", "ts", "user", "item", "label"]
    assert joined["pageview_id"].type == pa.int64()  # the impressions' columns as they were
    meta = join_metadata(tmp_path / "joined.parquet")
    assert meta["negative_rate"] == 1.0 and meta["window_s"] == 60.0
    assert meta["stats"]["clicks"] == clicks.num_rows == (
        stats.matched_clicks + stats.duplicate_clicks + stats.late_clicks
        + stats.unmatched_clicks)
    assert stats.late_clicks > 0 and stats.duplicate_clicks > 0 and stats.unmatched_clicks == 2
    assert stats.held_impressions < 500 + 3 * 60  # the open window, not the log
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_downsampling_is_seeded_and_recorded(tmp_path):
    impressions, clicks, _ = event_logs(4000, 2)
    out = tmp_path / "j.parquet"
    stats = join(impressions, clicks, key="pageview_id", window=60, time="ts", out=out,
                 downsample=0.25, seed=5)
    again = tmp_path / "k.parquet"
    join(impressions, clicks, key="pageview_id", window=60, time="ts", out=again,
         downsample=0.25, seed=5, batch_rows=333)
    a, b = pq.read_table(out), pq.read_table(again)
    assert a.drop_columns([]).equals(b)  # the same rows whatever the batches
    assert negative_rate(out) == 0.25 and negative_rate(tmp_path / "missing.parquet") is None
    assert stats.rows == a.num_rows and a["label"].to_numpy().sum() == stats.positives
    kept = 1 - stats.negatives_dropped / stats.negatives
    assert abs(kept - 0.25) < 0.05


def _sorted_error(impressions, clicks, match, **options):
    config = JoinConfig(key="pageview_id", window=60, time="ts", **options)
    with pytest.raises(DataError, match=match):
        list(join_batches(impressions, clicks, config, batch_rows=7))


def test_bad_logs_are_named_by_row(tmp_path):
    impressions, clicks, _ = event_logs(50, 3)
    times = impressions["ts"].to_numpy().copy()
    times[20] = 3.0
    unsorted = impressions.set_column(1, "ts", pa.array(times))
    _sorted_error(unsorted, clicks, r"impressions .* row 21: time 3.0 is earlier than the row "
                                    r"before it \(19.0\); the log must be sorted by 'ts'")
    ctimes = clicks["ts"].to_numpy().copy()
    ctimes[-1] = 0.0
    _sorted_error(impressions, clicks.set_column(1, "ts", pa.array(ctimes)),
                  f"clicks .* row {clicks.num_rows}: time 0.0 is earlier")
    ids = impressions["pageview_id"].to_numpy().copy()
    ids[30] = ids[10]
    dup = impressions.set_column(0, "pageview_id", pa.array(ids))
    _sorted_error(dup, clicks, r"row 31: key pageview_id=71 repeats row 11 \(20 s earlier")
    config = JoinConfig(key="pageview_id", window=60, time="ts", duplicates="drop")
    kept = pa.Table.from_batches(list(join_batches(dup, clicks, config)))
    assert kept.num_rows == 49 and 30 not in kept["pageview_id"].to_pylist()[30:31]
    ids = impressions["pageview_id"].to_pylist()
    ids[5] = None
    _sorted_error(impressions.set_column(0, "pageview_id", pa.array(ids)), clicks,
                  "row 6: no value in the key column 'pageview_id'")
    _sorted_error(impressions.drop_columns(["ts"]), clicks, "has no column 'ts'")
    _sorted_error(impressions, clicks.drop_columns(["pageview_id"]), "clicks .* has no column")
    _sorted_error(impressions.append_column("label", pa.array([0] * 50)), clicks,
                  "already has a column 'label'")
    _sorted_error(impressions.slice(0, 0), clicks, "has no rows")
    for bad, message in (({"downsample": 0.0}, r"in \(0, 1\]"),
                         ({"duplicates": "keep"}, "duplicates must be one of"),
                         ({"seed": -1}, "seed must be")):
        with pytest.raises(ValueError, match=message):
            JoinConfig(key="pageview_id", window=60, time="ts", **bad)
    with pytest.raises(ValueError, match="key and time"):
        JoinConfig(key="ts", window=60, time="ts")


def test_a_failed_join_leaves_the_previous_file(tmp_path):
    impressions, clicks, _ = event_logs(50, 4)
    out = tmp_path / "joined.parquet"
    out.write_bytes(b"keep me")
    ids = impressions["pageview_id"].to_numpy().copy()
    ids[40] = ids[39]
    with pytest.raises(DataError, match="repeats"):
        join(impressions.set_column(0, "pageview_id", pa.array(ids)), clicks,
             key="pageview_id", window=60, time="ts", out=out, batch_rows=8)
    assert out.read_bytes() == b"keep me" and os.listdir(tmp_path) == ["joined.parquet"]
    with pytest.raises(ValueError, match=r"expected a \.parquet"):
        join(impressions, clicks, key="pageview_id", window=60, time="ts",
             out=tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        join(tmp_path / "none.parquet", clicks, key="pageview_id", window=60, time="ts",
             out=tmp_path / "y.parquet")


def test_a_downsampled_fit_predicts_the_true_rate(tmp_path):
    """Join with negatives kept at w = 0.1, fit on the joined file: the run takes w from the
    file's metadata, and its predictions (calibrated) on held-out raw impressions average
    the true click rate; uncalibrated they would average the down-sampled rate. The served
    function applies the same calibration."""
    from jaxembed.serving import export, load
    from jaxembed.train import runs, scoring

    impressions, clicks, _ = event_logs(30_000, 6, base=-4.5)  # about 5% clicked
    joined = tmp_path / "joined.parquet"
    join(impressions, clicks, key="pageview_id", window="1m", time="ts", out=joined,
         downsample=0.1, seed=1)
    schema = Schema.from_dict(tomllib.loads(SCHEMA))
    run = runs.fit(schema, joined, model="lr", out=tmp_path / "run", epochs=4,
                   batch_size=256, patience=0, learning_rate=0.01)
    assert run.config.negative_rate == 0.1
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["config"]["negative_rate"] == 0.1
    test_imp, test_clk, p_true = event_logs(10_000, 7, base=-4.5)
    truth = pa.Table.from_batches(list(join_batches(
        test_imp, test_clk, JoinConfig(key="pageview_id", window=60, time="ts"))))
    probs = scoring.predict(tmp_path / "run", test_imp)
    rate = p_true.mean()  # the expected click rate of the held-out impressions
    assert abs(probs.mean() - rate) < 0.15 * rate, (probs.mean(), rate)
    raw = pq.read_table(joined)["label"].to_numpy().mean()
    assert raw > 4 * rate  # the rate an uncalibrated model is fitted to
    figures = scoring.evaluate(tmp_path / "run", truth)
    assert abs(figures["calibration"] - 1) < 0.2 and figures["auc"] > 0.65
    served = load(export(run, tmp_path / "served", platforms=("cpu",)))
    np.testing.assert_allclose(served(test_imp.slice(0, 500)), probs[:500], rtol=1e-4)
    with pytest.raises(ValueError, match=r"joined with negatives kept at 0\.1"):
        runs.fit(schema, joined, model="lr", out=tmp_path / "run2", negative_rate=0.5)
    with pytest.raises(ValueError, match=r"negative_rate must be a number in \(0, 1\]"):
        runs.fit(schema, test_imp, model="lr", out=tmp_path / "run3", negative_rate=2.0)


def test_a_folder_of_parquet_with_timestamps_and_an_empty_result(tmp_path):
    """A folder of Parquet files is one log in file order; timestamp columns are seconds; a
    join whose every row is down-sampled away writes an empty file with the columns."""
    impressions, clicks, _ = event_logs(400, 8)
    stamps = pa.array((impressions["ts"].to_numpy() * 1e6).astype("int64"),
                      pa.timestamp("us"))
    impressions = impressions.set_column(1, "ts", stamps)
    clicks = clicks.set_column(1, "ts", pa.array(
        (clicks["ts"].to_numpy() * 1e6).astype("int64"), pa.timestamp("us")))
    (tmp_path / "imp").mkdir()
    pq.write_table(impressions.slice(0, 150), tmp_path / "imp" / "part-0.parquet")
    pq.write_table(impressions.slice(150), tmp_path / "imp" / "part-1.parquet")
    whole = join(impressions, clicks, key="pageview_id", window="1m", time="ts",
                 out=tmp_path / "a.parquet")
    parts = join(tmp_path / "imp", clicks, key="pageview_id", window="1m", time="ts",
                 out=tmp_path / "b.parquet", batch_rows=64)
    assert whole.counts() == parts.counts()
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    none = join(impressions.slice(0, 5), clicks.slice(0, 0), key="pageview_id", window=60,
                time="ts", out=tmp_path / "c.parquet", downsample=1e-12)
    empty = pq.read_table(tmp_path / "c.parquet")
    assert none.rows == 0 and empty.num_rows == 0 and empty.column_names[-1] == "label"
    assert negative_rate(tmp_path / "c.parquet") == 1e-12
