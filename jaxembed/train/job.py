"""``jaxembed train``: the main job, end to end on built-in (or your) data.

Everything goes through the one data path that ``jaxembed fit`` uses on a user's own log:

1. data: the generated search log — one world, split by time: period 0's first page views
   to train on and its later ones to evaluate; period 1 (item popularity and quality
   drifted) streamed for the online phase, its later page views to evaluate — or ``--data``
   CSV/Parquet search logs;
2. derived statistics (:class:`~jaxembed.data.search_stats.SearchStatistics`) fitted on the
   training log, and every log laid out as a table of its columns
   (:func:`~jaxembed.data.search_schema.search_table`) that the search schema describes
   (:func:`~jaxembed.data.search_schema.search_schema`: attach encoding, word segmentation,
   vocabularies, hashed crosses, standardized statistics);
3. offline fit of ``search_ctr`` by :func:`jaxembed.fit` (vocabularies, Grain loader,
   row-sparse tables, early stopping, orbax checkpoints; ``--resume`` continues; ``--mesh``
   shards the tables over a device mesh), the run in ``OUT/offline``;
4. online phase: period 1 replayed as a click stream through the pairwise joiner
   (:mod:`jaxembed.stream.replay`), the joined examples in arrival order given to
   :func:`jaxembed.update` (frozen tables, FTRL on the linear and wide weights continuing the
   offline slots, SGD on the dense layers), the updated run in ``OUT/online``; evaluated on
   period-1 impressions it has not seen, before and after;
5. a final table (AUC against the Bayes-optimal AUC, logloss, GAUC, calibration,
   examples/s) and training curves as a PNG.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from jaxembed import data
from jaxembed.data.search_schema import search_schema, search_table
from jaxembed.data.search_stats import SearchStatistics
from jaxembed.stream.replay import StreamConfig, replay
from jaxembed.train import runs, scoring
from jaxembed.train.update import update


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What ``jaxembed train`` runs (how long the defaults take, and on what machine: the
    block ``jaxembed bench job`` writes into docs/benchmarks.md). ``fit`` and ``online`` are
    options of :func:`jaxembed.fit` and :func:`jaxembed.update` over their defaults."""

    train_size: int = 300_000
    eval_size: int = 60_000
    online_size: int = 150_000
    seed: int = 0
    epochs: int = 3
    batch_size: int = 1024
    fit: dict[str, Any] = dataclasses.field(default_factory=dict)
    online: dict[str, Any] = dataclasses.field(default_factory=lambda: {"batch_size": 256})
    stream: StreamConfig = dataclasses.field(default_factory=StreamConfig)
    out_dir: str = "jaxembed-run"
    resume: bool = False
    data_paths: tuple[str, ...] = ()
    mesh: Any = None
    """A :class:`~jaxembed.train.field_sharding.MeshSpec` or a mesh shape such as ``"8"`` or
    ``"2x4"`` to shard the tables (None: one device)."""


def world() -> data.SearchLogConfig:
    """The built-in data's world: sized so a few hundred thousand impressions cover it, with
    few users (300) who search often, so that each user's category preference can be learned
    from the user's own searches (with 5,000 users the gap to the Bayes AUC was 0.026, with
    300 it is 0.018)."""
    return data.SearchLogConfig(num_users=300, num_items=20_000, num_shops=1_000,
                                num_categories=100, num_brands=500)


def load_logs(config: JobConfig) -> tuple[data.SearchLog, data.SearchLog, data.SearchLog,
                                          data.SearchLog]:
    """(train, eval, online stream, online eval) logs: generated, or read from files."""
    if config.data_paths:
        logs = [_read(path) for path in config.data_paths]
        if len(logs) == 1:
            return _split_by_time(logs[0])
        if len(logs) != 2:
            raise ValueError("--data takes one log (split by time) or two: offline, online")
        train, held = _split_rows(logs[0], 0.85)
        stream, online_eval = _split_rows(logs[1], 0.8)
        return train, held, stream, online_eval
    # One world (the seed draws catalogue, users and effects), split by time: period 0's
    # first page views train, its later ones evaluate; period 1 (the same world, drifted)
    # is streamed, then its later page views evaluate the online model.
    w = world()
    period0 = data.search_log(config.train_size + config.eval_size, seed=config.seed, config=w)
    period1 = data.search_log(config.online_size + config.eval_size, seed=config.seed,
                              period=1, config=w)
    train, held = _split_rows(period0, config.train_size / len(period0))
    stream, online_eval = _split_rows(period1, config.online_size / len(period1))
    return train, held, stream, online_eval


def _read(path: str) -> data.SearchLog:
    if path.endswith(".parquet"):
        return data.read_parquet(path)
    if path.endswith(".csv"):
        return data.read_csv(path)
    raise ValueError(f"--data {path!r}: expected a .csv or .parquet search log")


def _split_rows(log: data.SearchLog, share: float) -> tuple[data.SearchLog, data.SearchLog]:
    cut = int(len(log) * share)
    while 0 < cut < len(log) and log.pageview_id[cut] == log.pageview_id[cut - 1]:
        cut += 1  # never split a page view
    return log.take(np.arange(cut)), log.take(np.arange(cut, len(log)))


def _split_by_time(log: data.SearchLog):
    first, second = _split_rows(log, 0.6)
    train, held = _split_rows(first, 0.85)
    stream, online_eval = _split_rows(second, 0.8)
    return train, held, stream, online_eval


def run(config: JobConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the whole job; print the final table; return the figures."""
    console = console or Console(width=120)
    os.makedirs(config.out_dir, exist_ok=True)
    start = time.perf_counter()
    train, held, stream, online_eval = load_logs(config)
    statistics = SearchStatistics.fit(train)
    train_t, held_t = search_table(train, statistics), search_table(held, statistics)
    stream_t = search_table(stream, statistics)
    online_eval_t = search_table(online_eval, statistics)
    console.print(f"data: {len(train):,} train / {len(held):,} eval impressions (period 0), "
                  f"{len(stream):,} streamed + {len(online_eval):,} eval (period 1); "
                  f"derived statistics in {time.perf_counter() - start:.1f} s")
    fit_options = {"epochs": config.epochs, "batch_size": config.batch_size,
                   "seed": config.seed, **config.fit}
    if config.mesh is not None:
        fit_options["mesh"] = config.mesh
    offline = runs.fit(search_schema(), train_t, valid=held_t, model="search_ctr",
                       out=os.path.join(config.out_dir, "offline"), resume=config.resume,
                       progress=True, **fit_options)
    offline_eval = scoring.evaluate(offline, held_t)
    before = scoring.evaluate(offline, online_eval_t)

    online_start = time.perf_counter()
    rows, _, joined = replay(stream, dataclasses.replace(config.stream, seed=config.seed))
    # The joiner emits a page view at its first click, so a second click on the same page
    # arrives late (``joined["late_clicks"]``) and its impression was emitted as a negative;
    # the update trains on the log's label of each emitted row, i.e. with late clicks
    # patched into the examples they belong to.
    examples = stream_t.take(pa.array(rows))
    online_out = os.path.join(config.out_dir, "online")
    if os.path.isdir(online_out):  # the online phase is redone from the offline run
        shutil.rmtree(online_out)
    # a model updated on down-sampled negatives records the rate, and its predictions are
    # calibrated q = p / (p + (1 - p) / w) wherever the run is used
    updated = update(offline, examples, out=online_out,
                     **{"negative_rate": config.stream.negative_rate, **config.online})
    online_seconds = time.perf_counter() - online_start
    after = scoring.evaluate(updated, online_eval_t)
    figures = {
        "bayes_auc_period0": data.bayes_auc(held), "bayes_auc_period1": data.bayes_auc(online_eval),
        "offline": offline_eval, "online_before": before, "online_after": after,
        "history": offline.history, "online_history": updated.history,
        "train_examples_per_s": _mean_rate(offline.history),
        "online_examples_per_s": len(rows) / online_seconds,
        "joiner": dataclasses.asdict(joined),
        "seconds": time.perf_counter() - start,
    }
    _print_table(console, figures)
    plot_path = os.path.join(config.out_dir, "training_curves.png")
    _plot(figures, plot_path)
    console.print(f"total {figures['seconds']:.0f} s; wrote the training curves to "
                  f"{os.path.abspath(plot_path)}, the offline run to "
                  f"{os.path.abspath(offline.path)} and the updated run to "
                  f"{os.path.abspath(updated.path)}")
    return figures


def _mean_rate(history: list[dict]) -> float:
    rates = [h["examples_per_s"] for h in history if "examples_per_s" in h]
    return float(np.mean(rates)) if rates else float("nan")


def _print_table(console: Console, f: dict) -> None:
    table = Table(title="jaxembed train: SearchCTR on the generated search log")
    for column in ("phase", "AUC", "Bayes AUC", "gap", "logloss", "GAUC", "calibration", "NE"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    rows = [("offline (period 0 eval)", f["offline"], f["bayes_auc_period0"]),
            ("period 1, before online", f["online_before"], f["bayes_auc_period1"]),
            ("period 1, after online", f["online_after"], f["bayes_auc_period1"])]
    for name, r, bayes in rows:
        table.add_row(name, f"{r['auc']:.4f}", f"{bayes:.4f}", f"{bayes - r['auc']:.4f}",
                      f"{r['logloss']:.4f}", f"{r['gauc']:.4f}", f"{r['calibration']:.3f}",
                      f"{r['ne']:.4f}")
    console.print(table)
    console.print(f"offline training: {f['train_examples_per_s']:,.0f} examples/s; online: "
                  f"{f['online_examples_per_s']:,.0f} examples/s (joiner included)")


def _plot(figures: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxembed._atomic import atomic_path

    history = figures["history"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    left.plot(epochs, [h.get("auc", np.nan) for h in history], "o-", label="eval AUC")
    left.axhline(figures["bayes_auc_period0"], ls="--", c="gray", label="Bayes-optimal AUC")
    left.set(xlabel="epoch", ylabel="AUC", title="offline")
    left.legend()
    phases = ("before online", "after online")
    values = [figures["online_before"]["auc"], figures["online_after"]["auc"]]
    right.bar(phases, values, color=["tab:gray", "tab:blue"])
    right.axhline(figures["bayes_auc_period1"], ls="--", c="gray", label="Bayes-optimal AUC")
    low = min([*values, figures["bayes_auc_period1"]])
    right.set(ylim=(low - 0.02, None), ylabel="AUC", title="period 1 (drifted)")
    right.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
