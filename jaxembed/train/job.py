"""``jaxembed train``: the main job, end to end on built-in (or your) data.

1. data: the generated search log — one world, split by time: period 0's first page views
   to train on and its later ones to evaluate; period 1 (item popularity and quality
   drifted) streamed for the online phase, its later page views to evaluate — or ``--data``
   CSV/Parquet files;
2. encoding layer: :class:`~jaxembed.features.SearchFeaturizer` fitted on the training log;
3. offline fit of :class:`~jaxembed.models.SearchCTR` (row-sparse tables, Adam on dense
   layers), evaluated each epoch, checkpointed with orbax (``--resume`` continues); with
   ``--mesh`` the tables are sharded over a device mesh and each batch split over its devices
   (:mod:`jaxembed.train.sharded`);
4. online phase on period 1's click stream (frozen tables, FTRL wide, SGD deep), evaluated
   on period-1 impressions it has not seen, before and after;
5. a final table (AUC against the Bayes-optimal AUC, logloss, GAUC, calibration,
   examples/s) and training curves as a PNG.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np
from flax import nnx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from jaxembed import data
from jaxembed._progress import progress_bar
from jaxembed.features import SearchFeaturizer
from jaxembed.models import SearchCTR
from jaxembed.stream.calibration import calibrate
from jaxembed.train import offline, online
from jaxembed.train.evaluate import predict, report


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """What ``jaxembed train`` runs (how long the defaults take, and on what machine: the
    block ``jaxembed bench job`` writes into docs/benchmarks.md)."""

    train_size: int = 300_000
    eval_size: int = 60_000
    online_size: int = 150_000
    seed: int = 0
    offline: offline.OfflineConfig = dataclasses.field(default_factory=offline.OfflineConfig)
    online: online.OnlineConfig = dataclasses.field(default_factory=online.OnlineConfig)
    out_dir: str = "jaxembed-run"
    resume: bool = False
    data_paths: tuple[str, ...] = ()
    mesh: Any = None
    """A :class:`jaxembed.train.sharded.MeshConfig` to shard the tables (None: one device)."""


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


def _take(log: data.SearchLog, rows: np.ndarray) -> data.SearchLog:
    fields = {f.name: getattr(log, f.name) for f in dataclasses.fields(log)}
    return data.SearchLog(**{k: (v[rows] if isinstance(v, np.ndarray) else v)
                             for k, v in fields.items()})


def _split_rows(log: data.SearchLog, share: float) -> tuple[data.SearchLog, data.SearchLog]:
    cut = int(len(log) * share)
    while 0 < cut < len(log) and log.pageview_id[cut] == log.pageview_id[cut - 1]:
        cut += 1  # never split a page view
    return _take(log, np.arange(cut)), _take(log, np.arange(cut, len(log)))


def _split_by_time(log: data.SearchLog):
    first, second = _split_rows(log, 0.6)
    train, held = _split_rows(first, 0.85)
    stream, online_eval = _split_rows(second, 0.8)
    return train, held, stream, online_eval


def _progress() -> Progress:
    return progress_bar(transient=True)


def run(config: JobConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the whole job; print the final table; return the figures."""
    console = console or Console(width=120)
    os.makedirs(config.out_dir, exist_ok=True)
    start = time.perf_counter()
    train, held, stream, online_eval = load_logs(config)
    featurizer = SearchFeaturizer.fit(train, seed=config.seed)
    train_x, held_x = featurizer.transform(train), featurizer.transform(held)
    stream_x, online_eval_x = featurizer.transform(stream), featurizer.transform(online_eval)
    console.print(f"data: {len(train):,} train / {len(held):,} eval impressions (period 0), "
                  f"{len(stream):,} streamed + {len(online_eval):,} eval (period 1); "
                  f"encoded in {time.perf_counter() - start:.1f} s")
    model = SearchCTR(featurizer.sizes, featurizer.num_stats, featurizer.wide_size,
                      rngs=nnx.Rngs(config.seed))
    batch = config.offline.batch_size
    if config.mesh is not None:
        import jax

        console.print(f"tables sharded {config.mesh.kind}-wise ({config.mesh.strategy}, "
                      f"{config.mesh.route}) over a {config.mesh.shape} mesh of "
                      f"{jax.default_backend()} devices ({jax.device_count()} present)")

    def on_epoch(epoch: int, trainer: offline.OfflineTrainer, losses: list[float]) -> dict:
        probs = predict(trainer.model(), held_x, 4 * batch)
        figures = report(held_x.labels, probs, held.user_id)
        console.print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  eval AUC "
                      f"{figures['auc']:.4f}  logloss {figures['logloss']:.4f}")
        return figures

    with _progress() as progress:
        trainer, history = offline.fit(
            model, train_x, config.offline, on_epoch=on_epoch, progress=progress,
            checkpoint_dir=os.path.join(config.out_dir, "checkpoints"), resume=config.resume,
            mesh=config.mesh)
    model = trainer.model()
    offline_eval = report(held_x.labels, predict(model, held_x, 4 * batch), held.user_id)
    before = report(online_eval_x.labels, predict(model, online_eval_x, 4 * batch),
                    online_eval.user_id)
    # the online FTRL continues the offline wide rule's slots: same hyperparameters, or the
    # wide weights would jump to another FTRL solution at the first online step
    online_config = dataclasses.replace(
        config.online, ftrl_learning_rate=config.offline.wide_learning_rate,
        ftrl_l1=config.offline.wide_l1, ftrl_l2=config.offline.wide_l2)
    learner = online.OnlineLearner(model, online_config, ftrl_state=trainer.table_state("wide"))
    online_start = time.perf_counter()
    with _progress() as progress:
        streamed = online.run(learner, stream, stream_x, progress=progress)
    online_seconds = time.perf_counter() - online_start
    # a model trained on down-sampled negatives is served through the calibration q(p)
    served = calibrate(predict(learner.model(), online_eval_x, 4 * batch),
                       online_config.negative_rate)
    after = report(online_eval_x.labels, served, online_eval.user_id)
    figures = {
        "bayes_auc_period0": data.bayes_auc(held), "bayes_auc_period1": data.bayes_auc(online_eval),
        "offline": offline_eval, "online_before": before, "online_after": after,
        "history": history, "online_losses": streamed["losses"],
        "train_examples_per_s": float(np.mean([h["examples_per_s"] for h in history])) if history
        else float("nan"),
        "online_examples_per_s": streamed["examples"] / online_seconds,
        "joiner": dataclasses.asdict(streamed["stats"]),
        "seconds": time.perf_counter() - start,
    }
    _print_table(console, figures)
    plot_path = os.path.join(config.out_dir, "training_curves.png")
    _plot(figures, plot_path)
    checkpoints = os.path.join(config.out_dir, "checkpoints")
    console.print(f"total {figures['seconds']:.0f} s; wrote the training curves to "
                  f"{os.path.abspath(plot_path)} and the checkpoints to "
                  f"{os.path.abspath(checkpoints)}")
    return figures


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
    losses = np.asarray(figures["online_losses"])
    if losses.size:
        window = max(1, losses.size // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        right.plot(smooth, label=f"online loss ({window}-step mean)")
    right.set(xlabel="online step", ylabel="log loss", title=(
        f"online: AUC {figures['online_before']['auc']:.4f} → "
        f"{figures['online_after']['auc']:.4f}"))
    right.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
