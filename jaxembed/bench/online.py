"""``jaxembed bench online``: updating a run on a new day's log against refitting it.

A drifting generated search log (:func:`jaxembed.data.search_log.search_log`: item quality
and popularity drift from one period to the next, an AR(1) process renewing ``drift = 0.2``
of their variance per period) read through a schema like a user's own log: day 0 is the
history the run is fitted on, day 1 the new log, day 2 the following period every model is
scored on. Four models, each timed from its data to a written run:

* **(a) stale**: ``je.fit`` on day 0 (``epochs`` passes at most, early stopping on a
  time-split validation tail), never updated;
* **(b) updated**: ``je.update(stale, day1)`` — the online partition: embeddings frozen,
  linear/wide tables FTRL continuing the fit's state, dense layers SGD at
  :data:`~jaxembed.train.update.UPDATE_LEARNING_RATE`, one pass;
* **(c) refit**: ``je.fit`` on day 0 + day 1 from scratch, the same configuration as (a);
* **(d) fine-tuned**: ``je.update(stale, day1, freeze_embeddings=False,
  dense_optimizer="adam")`` at the fit's own rates — every parameter trained, one pass.

The peer of (b) is (c), measured in the same run: the table gives AUC and calibration on day
2, wall seconds (each includes its own compilation: an update's step is a different program
from the fit's), and (c)'s time over (b)'s. Their times are then compared under two more
conditions, each pair alike: run again in the process that compiled them (what a process
updating period after period pays), and each in a new Python process reading Parquet files
with its programs from a persistent compilation cache (what a new day's ``jaxembed update``
or ``jaxembed fit`` pays, imports apart: :func:`fresh_process`). Day 0 is five times day 1.
(With a history fifty times the new log, 1,000,000 rows against 20,000, neither the update
nor the refit moved the day-2 AUC by more than 0.0002: one day among fifty barely changes a
refit, and FTRL's accumulated history keeps its steps small.) Targets: (b) beats (a), is
within 0.005 AUC of (c), and is at least 10x faster than (c).

Then the dense rate of the update is measured as it was chosen: updates on the first 80% of
day 1 at several SGD rates, scored on its last 20% (a validation split of the new log).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa

from jaxembed.bench.timing import machine
from jaxembed.data.schema import Schema
from jaxembed.data.search_log import SearchLog, search_log
from jaxembed.train import runs, scoring
from jaxembed.train.update import UPDATE_LEARNING_RATE, update

SCHEMA = {
    "label": {"column": "label"},
    "feature": [
        {"name": "item", "kind": "attach", "parents": ["shop", "category"], "dim": 8,
         "min_count": 3},
        {"name": "user", "kind": "categorical", "dim": 8, "min_count": 2},
        {"name": "query", "kind": "categorical", "dim": 8, "min_count": 2},
        {"name": "shop", "kind": "categorical", "dim": 8},
        {"name": "category", "kind": "categorical", "dim": 8},
        {"name": "brand", "kind": "categorical", "dim": 8},
        {"name": "ctr_hist", "kind": "dense"},
        {"name": "log_impressions", "kind": "dense"},
        {"name": "price", "kind": "dense", "transform": "log1p"},
        {"name": "position", "kind": "dense"},
        {"name": "rating", "kind": "dense"},
    ],
    "cross": [{"fields": ["query", "category"], "buckets": 50_000},
              {"fields": ["user", "category"], "buckets": 100_000}],
    "options": {"time": "time", "group": "user"},
}
"""The search log read as a user's own log (ids as text, statistics as numbers)."""

FIT = {"epochs": 3, "batch_size": 1024, "hidden": [64, 32]}
"""The fit of (a) and (c)."""

SWEEP = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
"""SGD rates of the dense layers tried on the validation split of the new log."""


def log_table(log: SearchLog) -> pa.Table:
    """A :class:`SearchLog` as the columns of :data:`SCHEMA`."""
    stats = log.stats
    return pa.table({
        "label": log.label.astype(np.int64), "time": log.pv_time,
        "item": log.item_id.astype(str), "user": log.user_id.astype(str),
        "query": log.query.astype(str), "shop": log.shop_id.astype(str),
        "category": log.category_id.astype(str), "brand": log.brand_id.astype(str),
        "ctr_hist": stats[:, 0].astype(np.float64),
        "log_impressions": stats[:, 1].astype(np.float64),
        "price": stats[:, 2].astype(np.float64), "position": stats[:, 3].astype(np.float64),
        "rating": stats[:, 4].astype(np.float64)})


def _timed(work: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def measure(old_rows: int = 200_000, new_rows: int = 40_000, test_rows: int = 50_000,
            seed: int = 0, folder: str | None = None, sweep: tuple[float, ...] = SWEEP
            ) -> dict[str, Any]:
    """The figures of the module docstring, as a dict."""
    folder = folder or tempfile.mkdtemp(prefix="jaxembed-bench-online-")
    schema = Schema.from_dict(SCHEMA)
    day0 = log_table(search_log(old_rows, seed, period=0))
    day1 = log_table(search_log(new_rows, seed, period=1))
    day2 = log_table(search_log(test_rows, seed, period=2))
    figures: dict[str, Any] = {"rows": {"day0": old_rows, "day1": new_rows, "day2": test_rows}}
    stale, figures["stale_s"] = _timed(lambda: runs.fit(
        schema, day0, model="wide_deep", out=os.path.join(folder, "stale"), **FIT))
    updated, figures["updated_s"] = _timed(lambda: update(
        stale, day1, out=os.path.join(folder, "updated")))
    _, figures["updated_warm_s"] = _timed(lambda: update(
        stale, day1, out=os.path.join(folder, "updated-again")))
    figures["updated_cached_s"] = _from_persistent_cache(
        lambda name: update(stale, day1, out=os.path.join(folder, name)),
        os.path.join(folder, "xla-cache"))
    refit, figures["refit_s"] = _timed(lambda: runs.fit(
        schema, pa.concat_tables([day0, day1]), model="wide_deep",
        out=os.path.join(folder, "refit"), **FIT))
    _, figures["refit_warm_s"] = _timed(lambda: runs.fit(
        schema, pa.concat_tables([day0, day1]), model="wide_deep",
        out=os.path.join(folder, "refit-again"), **FIT))
    tuned, figures["tuned_s"] = _timed(lambda: update(
        stale, day1, out=os.path.join(folder, "tuned"), freeze_embeddings=False,
        dense_optimizer="adam", learning_rate=stale.config.learning_rate))
    figures["fresh"] = fresh_process(stale, day0, day1, folder)
    figures["stale_epochs"], figures["refit_epochs"] = stale.history, refit.history
    for name, run in (("stale", stale), ("updated", updated), ("refit", refit),
                      ("tuned", tuned)):
        figures[name] = scoring.evaluate(run, day2)
    cut = int(new_rows * 0.8)
    figures["sweep"] = {}
    for rate in sweep:
        swept = update(stale, day1.slice(0, cut), out=os.path.join(folder, f"sweep-{rate:g}"),
                       learning_rate=rate)
        figures["sweep"][rate] = scoring.evaluate(swept, day1.slice(cut))["auc"]
    figures["sweep_stale"] = scoring.evaluate(stale, day1.slice(cut))["auc"]
    return figures


def _from_persistent_cache(work: Any, folder: str) -> float:
    """Seconds of ``work("cached-1")`` run again as ``work("cached-2")`` with its compiled
    programs dropped from memory but kept in a persistent compilation cache in ``folder``:
    what a new process pays for the daily update once ``jaxembed`` has compiled it (the
    command line keeps XLA's programs in ``~/.cache/jaxembed/xla``; :mod:`jaxembed._cache`),
    minus the interpreter's start-up and imports."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    from jaxembed.train import field_trainer

    options = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = [getattr(jax.config, name) for name in options]
    jax.config.update(options[0], folder)
    jax.config.update(options[1], 0.0)
    compilation_cache.reset_cache()
    try:
        for name in ("cached-1", "cached-2"):
            jax.clear_caches()
            field_trainer._compiled_step.cache_clear()
            field_trainer._compiled_predict.cache_clear()
            _, seconds = _timed(lambda n=name: work(n))
    finally:
        for name, value in zip(options, before, strict=True):
            jax.config.update(name, value)
        compilation_cache.reset_cache()
    return seconds


_CHILD = """
import sys, time
start = time.perf_counter()
from jaxembed.data.schema import Schema
from jaxembed.train import runs
from jaxembed.train.update import update
imported = time.perf_counter()
folder, name, what = sys.argv[1:4]
if what == "update":
    update(f"{folder}/stale", f"{folder}/day1.parquet", out=f"{folder}/{name}")
else:
    from jaxembed.bench.online import FIT, SCHEMA
    runs.fit(Schema.from_dict(SCHEMA), f"{folder}/day01.parquet", model="wide_deep",
             out=f"{folder}/{name}", **FIT)
print(imported - start, time.perf_counter() - imported)
"""


def fresh_process(stale: Any, day0: pa.Table, day1: pa.Table, folder: str) -> dict[str, float]:
    """What a new day costs from the command line: the update of ``stale`` on day 1 and the
    refit on day 0 + day 1 (from Parquet files), each in a **new Python process** with a
    persistent compilation cache that one earlier process of the same command has filled
    (the cache a second day's ``jaxembed update`` finds). ``{"update_s", "refit_s",
    "imports_s"}``: seconds of the call itself, and of the imports before it."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    pq.write_table(day1, os.path.join(folder, "day1.parquet"))
    pq.write_table(pa.concat_tables([day0, day1]), os.path.join(folder, "day01.parquet"))
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": os.path.join(folder, "xla-fresh"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    figures: dict[str, float] = {}
    for what in ("update", "refit"):
        for attempt in ("fill", "timed"):
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, folder, f"fresh-{what}-{attempt}", what],
                env=env, capture_output=True, text=True, check=True)
            imported, seconds = map(float, done.stdout.split()[-2:])
        figures[f"{what}_s"] = seconds
        figures.setdefault("imports_s", imported)
    return figures


def render(figures: dict[str, Any], where: str) -> str:
    """The Markdown tables of a :func:`measure` result."""
    rows = figures["rows"]
    lines = [f"day 0: {rows['day0']:,} rows (fit), day 1: {rows['day1']:,} rows (the new log),"
             f" day 2: {rows['day2']:,} rows (scored); {where}", "",
             "| model | AUC on day 2 | calibration | wall s | refit time / this |",
             "| --- | --- | --- | --- | --- |"]
    names = (("stale", "(a) stale: fit on day 0", "stale_s"),
             ("updated", "(b) `update` on day 1 (online partition)", "updated_s"),
             ("refit", "(c) refit on day 0 + day 1", "refit_s"),
             ("tuned", "(d) fine-tune everything on day 1", "tuned_s"))
    for key, label, seconds in names:
        m = figures[key]
        lines.append(f"| {label} | {m['auc']:.4f} | {m['calibration']:.3f} | "
                     f"{figures[seconds]:.1f} | {figures['refit_s'] / figures[seconds]:.1f}x |")
    b, a, c = figures["updated"]["auc"], figures["stale"]["auc"], figures["refit"]["auc"]
    warm, fresh = figures["updated_warm_s"], figures["fresh"]
    lines += ["", f"(b) - (a) = {b - a:+.4f} AUC; (b) - (c) = {b - c:+.4f} AUC. "
              f"Epochs run by early stopping: (a) {len(figures['stale_epochs'])}, (c) "
              f"{len(figures['refit_epochs'])}.", "",
              "Refit time over update time, each pair under the same conditions:", "",
              "| condition | update s | refit s | refit / update |", "| --- | --- | --- | --- |"]
    for label, u, r in (
            ("cold: in one process, XLA compiling (the table above)", figures["updated_s"],
             figures["refit_s"]),
            ("warm: run again in the process that compiled it", warm,
             figures["refit_warm_s"]),
            ("a new process from Parquet files, programs from a persistent compilation "
             f"cache (after imports of {fresh['imports_s']:.1f} s)", fresh["update_s"],
             fresh["refit_s"])):
        lines.append(f"| {label} | {u:.2f} | {r:.2f} | **{r / u:.1f}x** |")
    lines += ["", f"(The update with its programs read from a persistent cache in this process: "
              f"{figures['updated_cached_s']:.2f} s.)", "",
              "| dense SGD rate of the update | " + " | ".join(
                  f"{r:g}" for r in figures["sweep"]) + " |",
              "| --- |" + " --- |" * len(figures["sweep"]),
              "| AUC on the last 20% of day 1 | " + " | ".join(
                  f"{v:.4f}" for v in figures["sweep"].values()) + " |", "",
              f"(the stale model scores {figures['sweep_stale']:.4f} there; the default is "
              f"{UPDATE_LEARNING_RATE:g})"]
    return "\n".join(lines)


def run() -> None:
    """Print the tables (the sizes are :func:`measure`'s defaults)."""
    figures = measure()
    print(render(figures, machine()))
