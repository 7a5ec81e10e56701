"""``jaxembed bench join``: the streaming join of raw logs against pandas ``merge_asof``.

A generated pair of logs (:func:`write_logs`): ``rows`` impressions arriving as a Poisson
stream of ``rate`` per second (``pageview_id`` unique, ``user``, ``item``, ``position``), and
their clicks (about 5% of impressions; delays exponential with a mean of 5 minutes, so a few
fall after the 30-minute window; 10% repeated), both sorted by ``ts`` and written to Parquet.

Each side runs in a child process, which reports its wall time and peak RSS (``VmHWM`` of
``/proc/self/status``; ``ru_maxrss`` is kept across ``exec`` on Linux, so a child started by
this process would report the parent's peak, the generated logs included):

* **jaxembed**: :func:`jaxembed.data.join.join` from the two files to a joined Parquet file
  (record batches of 65,536 rows; the merge holds the open window only);
* **pandas** (the peer): ``pandas.read_parquet`` of both files, ``pandas.merge_asof(imp,
  clk, on="ts", by="pageview_id", direction="forward", tolerance=window)`` (the first click
  at or after each impression within the window), the label column, ``to_parquet``. It
  holds both logs in memory; it counts no late or repeated clicks and checks neither order
  nor duplicates.

Throughput is events (impressions + clicks) per second of the child's join (reading and
writing included, interpreter start-up excluded); the two joined files' labels are
compared. jaxembed's peak RSS is also measured on a log a quarter as long: a bounded join's
peak does not grow with the log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

WINDOW = 1800.0

_OURS = r"""
import json, sys, time
from jaxembed.data.join import join
imp, clk, out, window = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def peak():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
imported = peak()  # jax is imported too
tick = time.perf_counter()
stats = join(imp, clk, key="pageview_id", window=window, time="ts", out=out)
seconds = time.perf_counter() - tick
print(json.dumps({"seconds": seconds, "rows": stats.rows, "late": stats.late_clicks,
                  "held_impressions": stats.held_impressions,
                  "held_clicks": stats.held_clicks, "import_rss_mb": imported,
                  "peak_rss_mb": peak()}))
"""

_PANDAS = r"""
import json, sys, time
import numpy as np, pandas as pd
def peak():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
imp_path, clk_path, out, window = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
tick = time.perf_counter()
imp = pd.read_parquet(imp_path)
clk = pd.read_parquet(clk_path).rename(columns={"ts": "click_ts"})
clk["ts"] = clk["click_ts"]
joined = pd.merge_asof(imp, clk, on="ts", by="pageview_id", direction="forward",
                       tolerance=window)
joined["label"] = joined.pop("click_ts").notna().astype(np.int8)
joined.to_parquet(out, index=False)
seconds = time.perf_counter() - tick
print(json.dumps({"seconds": seconds, "rows": len(joined), "peak_rss_mb": peak()}))
"""


def write_logs(folder: str, rows: int, seed: int = 0, rate: float = 100.0,
               piece: int = 1 << 17) -> dict[str, str]:
    """Write ``impressions.parquet`` and ``clicks.parquet`` (generated, sorted by ``ts``) into
    ``folder``; return their paths. ``rate``: impressions per second; ``piece``: rows per
    Parquet row group of the impressions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0 / rate, rows))
    ids = rng.permutation(rows).astype(np.int64) * 13 + 1_000_003
    clicked = rng.random(rows) < 0.05
    at = times[clicked] + rng.exponential(300.0, clicked.sum())
    repeat = rng.random(at.size) < 0.1
    click_ids = np.concatenate([ids[clicked], ids[clicked][repeat]])
    click_at = np.concatenate([at, at[repeat] + rng.exponential(30.0, repeat.sum())])
    order = np.argsort(click_at, kind="stable")
    paths = {"impressions": os.path.join(folder, "impressions.parquet"),
             "clicks": os.path.join(folder, "clicks.parquet")}
    with pq.ParquetWriter(paths["impressions"], pa.schema([
            ("pageview_id", pa.int64()), ("ts", pa.float64()), ("user", pa.string()),
            ("item", pa.int64()), ("position", pa.int8())])) as writer:
        for lo in range(0, rows, piece):
            n = min(piece, rows - lo)
            writer.write_table(pa.table({
                "pageview_id": ids[lo:lo + n], "ts": times[lo:lo + n],
                "user": pa.array(np.char.add("u", rng.integers(0, 50_000, n).astype(str))),
                "item": rng.integers(0, 200_000, n), "position": rng.integers(0, 10, n)
                .astype(np.int8)}))
    pq.write_table(pa.table({"pageview_id": click_ids[order], "ts": click_at[order]}),
                   paths["clicks"])
    return paths


def _child(code: str, *argv: str) -> dict:
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(rows: int = 3_000_000, seed: int = 0, repeats: int = 1) -> dict:
    """Print jaxembed's and pandas' events/s and peak RSS on one generated pair of logs of
    ``rows`` impressions (best of ``repeats`` runs each); return the figures."""
    import pyarrow.parquet as pq

    from jaxembed.bench.timing import machine

    folder = tempfile.mkdtemp(prefix="jaxembed-bench-join-")
    paths = write_logs(folder, rows, seed)
    clicks = pq.ParquetFile(paths["clicks"]).metadata.num_rows
    events = rows + clicks
    ours_out, theirs_out = os.path.join(folder, "ours.parquet"), os.path.join(folder,
                                                                               "pandas.parquet")
    args = (paths["impressions"], paths["clicks"])
    ours = min((_child(_OURS, *args, ours_out, str(WINDOW)) for _ in range(repeats)),
               key=lambda r: r["seconds"])
    theirs = min((_child(_PANDAS, *args, theirs_out, str(WINDOW)) for _ in range(repeats)),
                 key=lambda r: r["seconds"])
    small = write_logs(os.path.join(folder, "small"), rows // 4, seed)
    ours_small = _child(_OURS, small["impressions"], small["clicks"],
                        os.path.join(folder, "small", "ours.parquet"), str(WINDOW))
    same = np.array_equal(pq.read_table(ours_out, columns=["label"])["label"].to_numpy(),
                          pq.read_table(theirs_out, columns=["label"])["label"].to_numpy())
    ours_rate, theirs_rate = events / ours["seconds"], events / theirs["seconds"]
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    print(f"logs: {rows:,} impressions + {clicks:,} clicks = {events:,} events, window "
          f"{WINDOW:g} s ({os.path.getsize(paths['impressions']) / 2**20:.0f} + "
          f"{os.path.getsize(paths['clicks']) / 2**20:.0f} MiB Parquet)")
    print(f"  jaxembed join:      {ours_rate:>12,.0f} events/s ({ours['seconds']:.2f} s), peak "
          f"RSS {ours['peak_rss_mb']:,.0f} MiB ({ours['import_rss_mb']:,.0f} MiB after "
          f"importing jaxembed; {ours_small['peak_rss_mb']:,.0f} MiB on a log 1/4 as long); "
          f"held at most {ours['held_impressions']:,} impressions and "
          f"{ours['held_clicks']:,} clicks; {ours['late']:,} late clicks")
    print(f"  pandas merge_asof:  {theirs_rate:>12,.0f} events/s ({theirs['seconds']:.2f} s), "
          f"peak RSS {theirs['peak_rss_mb']:,.0f} MiB")
    print(f"  ratio (jaxembed events/s / pandas events/s): {ours_rate / theirs_rate:.2f}; "
          f"labels equal: {same}")
    return {"rows": rows, "clicks": clicks, "ours": ours, "ours_quarter": ours_small,
            "pandas": theirs,
            "ratio": ours_rate / theirs_rate, "labels_equal": bool(same)}
