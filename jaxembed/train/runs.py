"""Fit a model on a user's own log: ``je.fit`` (a fitted run is scored by
:mod:`jaxembed.train.scoring`).

:func:`fit` runs the one data path: schema → reader (:mod:`jaxembed.data.readers`; a CSV/TSV
log is parsed once, :mod:`jaxembed.data.spool`) → vocabularies built on the training rows
(:mod:`jaxembed.data.vocabularies`) → an encoded store (:mod:`jaxembed.data.loader`) → Grain
batches → a model by name (:mod:`jaxembed.models`) → the row-sparse step
(:mod:`jaxembed.train.field_trainer`). Each epoch ends with the validation metrics; training
stops when the validation AUC has not improved for ``patience`` epochs, and the run keeps the
parameters of its best epoch.

A run is a folder::

    schema.toml          the schema it was fitted with
    vocabularies.json    every table's vocabulary and the dense fields' statistics
    model.json           model name, hyperparameters, fit configuration
    params/              the best epoch's parameters (orbax)
    optimizer/           the optimizer state that goes with them (FTRL's z and n, Adam's
                         moments; ``jaxembed.update`` continues it)
    checkpoints/         the whole training state after each epoch (``resume=True``)
    fit.json             per-epoch validation metrics, examples_per_s, wall_s
    cache/               the encoded training and validation stores (and, while they are
                         written, the spool of a CSV/TSV log's parsed batches)
    lineage.json         (an updated run) its parent run, the data, rows, metrics

Nothing in it is pickled; every file is written atomically, and a run folder that already
holds another schema's run is refused rather than overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np
import pyarrow as pa

from jaxembed import _atomic
from jaxembed.data.encode import Encoder, model_inputs
from jaxembed.data.loader import (
    EpochSource,
    Store,
    epoch_iterator,
    sequential_batches,
    write_store,
)
from jaxembed.data.readers import DataError, record_batches, source_types
from jaxembed.data.schema import Schema
from jaxembed.data.split import Split
from jaxembed.data.spool import Spool
from jaxembed.data.vocabularies import Vocabularies
from jaxembed.models import registry
from jaxembed.train import checkpoint
from jaxembed.train.evaluate import report
from jaxembed.train.field_trainer import (
    FieldTrainer,
    FitConfig,
    auto_batch_size,
    scoring_batch,
)

RUN_FORMAT = 3
_FORMAT_DEFAULTS: dict[int, dict[str, dict[str, Any]]] = {
    1: {"fm": {"dense_interactions": True}, "deepfm": {"dense_interactions": True},
        "autoint": {"dense_interactions": True, "hidden": ()}},
    2: {},
    3: {},
}
"""Per readable run format, the hyperparameters whose default changed since it was written
(``model.json`` keeps only those given): format 1 runs of ``fm``, ``deepfm`` and ``autoint``
had the numeric features in their interactions (and ``autoint`` no deep tower)."""
_FORMAT_CONFIG_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"linear_initial_accumulator": 0.1}, 2: {"linear_initial_accumulator": 0.1}, 3: {}}
"""Per readable run format, the fit options it did not store (``model.json`` keeps every
option it knew) at the value its fit used: before format 3, FTRL's linear tables started
their accumulators at 0.1."""
_CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(FitConfig))


@dataclasses.dataclass
class Run:
    """A fitted model and everything needed to encode new data for it."""

    path: str
    schema: Schema
    vocabularies: Vocabularies
    model_name: str
    hyper: dict[str, Any]
    config: FitConfig
    trainer: FieldTrainer
    history: list[dict] = dataclasses.field(default_factory=list)

    @property
    def encoder(self) -> Encoder:
        return Encoder(self.schema, self.vocabularies, seed=self.config.seed)

    def model(self):
        """The fitted Flax NNX model (``model(batch) -> logits``)."""
        return self.trainer.model()

    @classmethod
    def load(cls, path: str | os.PathLike) -> Run:
        """Open a fitted run folder (its best parameters)."""
        path = os.fspath(path)
        if not os.path.isfile(os.path.join(path, "model.json")):
            raise FileNotFoundError(f"{path!r} is not a fitted run (no model.json)")
        schema = Schema.from_toml(os.path.join(path, "schema.toml"))
        vocabularies = Vocabularies.load(os.path.join(path, "vocabularies.json"))
        meta = _read_json(os.path.join(path, "model.json"))
        if meta.get("format") not in _FORMAT_DEFAULTS:
            raise ValueError(f"run {path!r} has format {meta.get('format')!r}, this jaxembed "
                             f"reads {', '.join(map(str, _FORMAT_DEFAULTS))}")
        hyper = {**_FORMAT_DEFAULTS[meta["format"]].get(meta["model"], {}), **meta["hyper"]}
        config = FitConfig(**{**_FORMAT_CONFIG_DEFAULTS[meta["format"]], **meta["config"]})
        trainer = _trainer(schema, vocabularies, meta["model"], hyper, config, abstract=True)
        found = checkpoint.restore_latest(os.path.join(path, "params"), trainer.params())
        if found is None:
            raise FileNotFoundError(f"run {path!r} has no saved parameters (params/)")
        trainer.set_params(found[1])
        history = _read_json(os.path.join(path, "fit.json")).get("epochs", []) \
            if os.path.isfile(os.path.join(path, "fit.json")) else []
        return cls(path, schema, vocabularies, meta["model"], hyper, config, trainer, history)


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _trainer(schema: Schema, vocabularies: Vocabularies, model: str, hyper: Mapping,
             config: FitConfig, mesh: Any = None, abstract: bool = False) -> FieldTrainer:
    """The run's trainer: one device, or ``mesh = (MeshSpec, jax Mesh)`` sharded;
    ``abstract``: without initial values (every parameter is restored next)."""
    inputs = Encoder(schema, vocabularies, seed=config.seed).inputs
    built = registry.build(model, inputs, seed=config.seed, abstract=abstract, **hyper)
    if mesh is None:
        return FieldTrainer(built, config)
    from jaxembed.train.field_sharding import ShardedFieldTrainer

    spec, devices = mesh
    return ShardedFieldTrainer(built, config, devices, kind=spec.kind, strategy=spec.strategy,
                               route=spec.route)


def _mesh(mesh: Any, config: FitConfig) -> Any:
    """``(MeshSpec, jax Mesh)`` of ``fit(mesh=...)``, checked before any data is read."""
    if mesh is None:
        return None
    from jaxembed.train.field_sharding import MeshSpec, make_mesh

    spec = MeshSpec.of(mesh)
    devices = make_mesh(spec.shape)
    if config.batch_size != "auto":
        _check_split(config.batch_size, devices)
    return spec, devices


def _check_split(batch_size: int, devices: Any) -> None:
    """A batch splits evenly over the mesh's devices and the processes."""
    if batch_size % devices.size:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the mesh's "
                         f"{devices.size} devices (the batch is split over all of them)")
    if batch_size % jax.process_count():
        raise ValueError(f"batch_size {batch_size} must be a multiple of the "
                         f"{jax.process_count()} processes (each reads its share of a batch)")


def split_options(model: str, options: Mapping[str, Any]) -> tuple[dict, dict]:
    """``(model hyperparameters, fit configuration)`` of a mixed mapping (the schema's
    ``[model]`` table and keyword arguments); an unknown key is an error naming it."""
    accepted = registry.hyperparameters(model)
    hyper, config = {}, {}
    for key, value in options.items():
        if key in _CONFIG_KEYS:
            config[key] = value
        elif key in accepted:
            hyper[key] = value
        else:
            raise ValueError(f"unknown option {key!r} for model {model!r}; model "
                             f"hyperparameters: {', '.join(sorted(accepted)) or 'none'}; "
                             f"fit options: {', '.join(_CONFIG_KEYS)}")
    return hyper, config


def check_model(schema: Schema, model: str, options: Mapping[str, Any]
                ) -> tuple[dict, FitConfig]:
    """``(hyperparameters, fit configuration)`` after checking, before any data is read, that
    the model exists and builds with them on the schema's fields (tables of stand-in size)."""
    hyper, config_kwargs = split_options(model, options)
    if schema.options.domains and "domains" in registry.hyperparameters(model):
        hyper.setdefault("domains", {k: list(v) for k, v in schema.options.domains.items()})
    config = FitConfig(**config_kwargs)
    try:
        registry.build(model, model_inputs(schema, lambda f: 2), seed=config.seed,
                       abstract=True, **hyper)
    except (ValueError, TypeError) as err:
        if not hyper or str(err).startswith(f"model {model!r}"):
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in hyper.items())
        raise ValueError(f"model {model!r} with {given}: {err}") from None
    return hyper, config


def fit(schema: Schema | str | os.PathLike, train: Any, *, valid: Any = None,
        split: str | None = None, model: str = "wide_deep", out: str | os.PathLike | None = None,
        resume: bool = False, progress: bool = False, process: int = 0, processes: int = 1,
        checkpoint_every: int = 0, mesh: Any = None, **options: Any) -> Run:
    """Fit ``model`` on ``train`` (a CSV/TSV/Parquet path or a pandas/polars/pyarrow table).

    Validation data is ``valid``, else ``split`` of ``train`` (``"time:0.8"``,
    ``"random:0.9"``; default ``time:0.9`` when the schema names a time column, else
    ``random:0.9``). ``options``: model hyperparameters and :class:`FitConfig` fields, over
    the schema's ``[model]`` table. ``out``: the run folder (a temporary one if None);
    ``resume=True`` continues its newest checkpoint. ``process``/``processes``: this
    process's share of the training chunks in a multi-process run. ``checkpoint_every``:
    also save the whole state (loader position included) every that many steps.

    ``mesh``: shard the tables over a device mesh and split each batch over its devices
    (:mod:`jaxembed.train.field_sharding`): a shape (``8``, ``"2x4"``) or a
    :class:`~jaxembed.train.field_sharding.MeshSpec` (layout kind, row strategy, route). The
    run's parameters and checkpoints stay logical: it resumes, predicts and exports on any
    number of devices. In a multi-process JAX run (:func:`jaxembed.sharding.launch.
    initialize`) with a mesh, every process calls ``fit`` with the same arguments and ``out``
    (a folder they share); process 0 writes the vocabularies and encoded stores, each process
    reads ``batch_size / processes`` rows a step from its own chunks, and the global batch is
    ``batch_size``.
    """
    started = time.perf_counter()
    if not isinstance(schema, Schema):
        schema = Schema.from_toml(schema)
    options = {**schema.model, **options}
    resolve_negative_rate(train, options)
    hyper, config = check_model(schema, model, options)
    placed = _mesh(mesh, config)
    if placed is not None and jax.process_count() > 1:
        process, processes = jax.process_index(), jax.process_count()
    follower = placed is not None and jax.process_count() > 1 and jax.process_index() > 0
    out = os.fspath(out) if out is not None else tempfile.mkdtemp(prefix="jaxembed-run-")
    if follower:  # process 0 claims the folder and writes the stores; the others read them
        _sync("jaxembed-fit-stores")
    else:
        _claim(out, schema, model, resume)
    console, bar = _console(progress and not follower)
    vocab_path = os.path.join(out, "vocabularies.json")
    stores = os.path.join(out, "cache")
    if follower or (resume and os.path.isfile(vocab_path)
                    and _complete(os.path.join(stores, "valid"))):
        vocabularies = Vocabularies.load(vocab_path)
        config = _resolved(config, vocabularies.rows, placed)
        train_store = Store.open(os.path.join(stores, "train"))
        valid_store = Store.open(os.path.join(stores, "valid"))
    else:
        if valid is None:
            chosen = Split.parse(split or ("time:0.9" if schema.options.time else "random:0.9"))
            keep_train, keep_valid = chosen.selectors(train, schema, config.seed)
        elif split is not None:
            raise ValueError("give either valid data or a split, not both")
        else:
            keep_train = keep_valid = None
        with Spool(train, schema, stores) as source:
            vocabularies = Vocabularies.build(source.batches(), schema, seed=config.seed,
                                              keep=keep_train)
            config = _resolved(config, vocabularies.rows, placed)
            if vocabularies.rows < config.batch_size:
                raise DataError(f"{vocabularies.rows} training rows make no batch of "
                                f"{config.batch_size} (lower batch_size)")
            vocabularies.save(vocab_path)
            encoder = Encoder(schema, vocabularies, seed=config.seed)
            console(f"vocabularies: {vocabularies.rows:,} training rows, "
                    f"{sum(v.size for v in vocabularies.tables.values()):,} table rows")
            train_store = write_store(_selected(source.batches(), keep_train), encoder,
                                      os.path.join(stores, "train"))
            valid_batches = (source.batches() if valid is None
                             else record_batches(valid, schema, dictionary=True))
            valid_store = write_store(_selected(valid_batches, keep_valid), encoder,
                                      os.path.join(stores, "valid"))
    if placed is not None and jax.process_count() > 1 and not follower:
        _sync("jaxembed-fit-stores")
    if train_store.num_rows < config.batch_size:
        raise DataError(f"{train_store.num_rows} training rows make no batch of "
                        f"{config.batch_size}")
    local_batch = (config.batch_size // processes
                   if placed is not None and jax.process_count() > 1 else config.batch_size)
    trainer = _trainer(schema, vocabularies, model, hyper, config, placed)
    if not follower:
        _atomic.write_text(os.path.join(out, "model.json"), json.dumps(
            {"format": RUN_FORMAT, "model": model, "hyper": hyper,
             "config": dataclasses.asdict(config), "columns": source_types(train, schema)},
            indent=1))
    if placed is not None:
        console(f"tables sharded {placed[0].describe()} of {placed[1].size} devices"
                f"{f' in {processes} processes' if processes > 1 else ''}")
    run = Run(out, schema, vocabularies, model, hyper, config, trainer)
    history = _train(run, train_store, valid_store, resume=resume, console=console,
                     progress=bar, process=process, processes=processes,
                     checkpoint_every=checkpoint_every, batch_size=local_batch,
                     even_steps=placed is not None and jax.process_count() > 1)
    wall = time.perf_counter() - started
    trained = [h for h in history if "examples_per_s" in h]
    best = max(history, key=lambda h: h["auc"]) if history else {}
    summary = {"model": model, "epochs": history, "best_epoch": best.get("epoch"),
               "best": {k: v for k, v in best.items() if k != "epoch"},
               "examples_per_s": float(np.mean([h["examples_per_s"] for h in trained]))
               if trained else None,
               "train_rows": train_store.num_rows, "valid_rows": valid_store.num_rows,
               "wall_s": wall}
    if placed is not None:
        summary["mesh"] = {**dataclasses.asdict(placed[0]), "devices": placed[1].size,
                           "processes": processes}
    if not follower:
        _atomic.write_text(os.path.join(out, "fit.json"), json.dumps(summary, indent=1))
    run.history = history
    return run


def _resolved(config: FitConfig, rows: int, placed: Any) -> FitConfig:
    """``config`` with ``batch_size="auto"`` replaced by :func:`~jaxembed.train.
    field_trainer.auto_batch_size` of the ``rows`` training rows (checked against the mesh)."""
    if config.batch_size != "auto":
        return config
    config = dataclasses.replace(config, batch_size=auto_batch_size(rows))
    if placed is not None:
        _check_split(config.batch_size, placed[1])
    return config


def resolve_negative_rate(train: Any, options: dict[str, Any]) -> None:
    """Take ``negative_rate`` from a training file written by ``jaxembed join
    --downsample`` (its metadata records the rate) unless given; a given rate that differs
    from the recorded one is an error naming both."""
    from jaxembed.data.event_logs import negative_rate

    if options.get("negative_rate", 0) is None:
        del options["negative_rate"]
    recorded = negative_rate(train)
    if recorded is None:
        return
    given = options.get("negative_rate")
    if given is None:
        options["negative_rate"] = recorded
    elif not np.isclose(float(given), recorded, rtol=1e-12, atol=0.0):
        raise ValueError(f"negative_rate={given!r}, but the training log was joined with "
                         f"negatives kept at {recorded!r} (its jaxembed.join metadata); drop "
                         f"the option to use the recorded rate")


def _console(progress: bool) -> tuple[Any, Any]:
    """``(print, bar)``: messages and a progress bar (examples/s, ETA) on stderr, or
    nothing when ``progress`` is false."""
    import contextlib

    if not progress:
        @contextlib.contextmanager
        def silent(description: str, total: int, done: int) -> Iterator[Any]:
            yield lambda examples: None

        return (lambda message: None), silent
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)

    @contextlib.contextmanager
    def bar(description: str, total: int, done: int) -> Iterator[Any]:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:>9,.0f} examples/s"), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as p:
            task = p.add_task(description, total=total, completed=done, rate=0.0)
            start, seen = time.perf_counter(), [0]

            def advance(examples: int) -> None:
                seen[0] += examples
                rate = seen[0] / max(time.perf_counter() - start, 1e-9)
                p.update(task, advance=1, rate=rate)

            yield advance

    return console.print, bar


def _complete(store: str) -> bool:
    return os.path.isfile(os.path.join(store, "index.json"))


def _claim(out: str, schema: Schema, model: str, resume: bool) -> None:
    """Create the run folder, or accept an existing one only if it is this schema's run (a
    fresh fit into another run's folder is refused, so nothing saved is lost)."""
    os.makedirs(out, exist_ok=True)
    schema_path = os.path.join(out, "schema.toml")
    if os.path.isfile(schema_path):
        saved = Schema.from_toml(schema_path)
        if saved.to_dict() != schema.to_dict():
            raise ValueError(f"{out!r} holds a run of another schema; choose a new --out")
        if not resume and os.path.isfile(os.path.join(out, "model.json")):
            raise ValueError(f"{out!r} already holds a fitted run; pass resume to continue "
                             f"it, or choose a new --out")
    elif resume:
        raise ValueError(f"nothing to resume in {out!r} (no run there)")
    schema.to_toml(schema_path)


def _selected(batches: Iterator[pa.RecordBatch], keep: Any) -> Iterator[pa.RecordBatch]:
    start = 0
    for batch in batches:
        n = batch.num_rows
        yield batch if keep is None else batch.filter(pa.array(keep(batch, start)))
        start += n




def _encode_state(state: Mapping) -> np.ndarray:
    """JSON (the loader's position, the history) as ``uint8[n]`` for a checkpoint; restored
    from an empty template leaf, which takes the stored length."""
    return np.frombuffer(json.dumps(state).encode(), np.uint8).copy()


def _decode_state(array: np.ndarray) -> dict:
    raw = bytes(np.asarray(array, np.uint8)).rstrip(b"\0")
    return json.loads(raw.decode()) if raw else {}


def iterator_source(store: Store, config: FitConfig, epoch: int, process: int,
                    processes: int, batch_size: int | None = None) -> EpochSource:
    """The epoch's batches of this process (their count sizes the progress bar);
    ``batch_size`` the rows this process reads a step (default ``config.batch_size``)."""
    return EpochSource(store, batch_size=batch_size or config.batch_size, seed=config.seed,
                       epoch=epoch, window=config.window, process=process, processes=processes)


def _sync(name: str) -> None:
    """Wait until every process of a multi-process JAX run reaches this point."""
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


class _padded:
    """An epoch iterator followed by ``extra`` copies of a padding batch (its loader state is
    the epoch iterator's)."""

    def __init__(self, iterator: Any, extra: int, empty: Mapping[str, np.ndarray]) -> None:
        self.iterator, self.extra, self.empty = iterator, extra, empty

    def __iter__(self) -> Iterator[Mapping[str, np.ndarray]]:
        yield from self.iterator
        for _ in range(self.extra):
            yield self.empty

    def get_state(self) -> Any:
        return self.iterator.get_state()


def _empty_batch(store: Store, batch_size: int) -> dict[str, np.ndarray]:
    """A batch of padding only (no ids, mask 0): what a process whose chunks ran out feeds
    while the others finish the epoch (every process must take every step)."""
    chunk = store.chunk(0)
    batch = {k: np.full((batch_size, *v.shape[1:]), -1 if k.startswith("ids/") or k == "wide"
                        else 0, v.dtype) for k, v in chunk.items()}
    batch["mask"] = np.zeros(batch_size, np.float32)
    return batch


def _train(run: Run, train: Store, valid: Store, *, resume: bool, console: Any,
           progress: Any, process: int, processes: int, checkpoint_every: int = 0,
           batch_size: int | None = None, even_steps: bool = False) -> list[dict]:
    """The epoch loop: batches from Grain, validation after each epoch, early stopping,
    checkpoints (whole state, loader position included) and the best parameters.

    ``batch_size``: the rows this process reads a step. ``even_steps``: every process takes
    as many steps as the process with the most batches (a process whose chunks ran out feeds
    padding), as the collectives of a multi-process sharded step need."""
    batch_size = batch_size or run.config.batch_size
    config, trainer = run.config, run.trainer
    ckpt_dir = os.path.join(run.path, "checkpoints")
    params_dir = os.path.join(run.path, "params")
    history: list[dict] = []
    epoch, loader_state, best_auc, stale = 0, None, -np.inf, 0
    if resume:
        template = {"trainer": trainer.payload(), "epoch": np.int64(0),
                    "loader": np.zeros(0, np.uint8), "meta": np.zeros(0, np.uint8)}
        found = checkpoint.restore_latest(ckpt_dir, template)
        if found is not None:
            saved = found[1]
            trainer.load(saved["trainer"])
            epoch = int(saved["epoch"])
            loader_state = _decode_state(saved["loader"]) or None
            meta = _decode_state(saved["meta"])
            history, best_auc, stale = meta["history"], meta["best_auc"], meta["stale"]
    while epoch < config.epochs and not (config.patience and stale >= config.patience):
        iterator = epoch_iterator(train, batch_size=batch_size, seed=config.seed,
                                  epoch=epoch, window=config.window, process=process,
                                  processes=processes, state=loader_state)
        first = int(loader_state.get("next_index", 0)) if loader_state else 0
        loader_state = None
        total = len(iterator_source(train, config, epoch, process, processes, batch_size))
        if even_steps:
            most = max(len(iterator_source(train, config, epoch, p, processes, batch_size))
                       for p in range(processes))
            iterator = _padded(iterator, most - total, _empty_batch(train, batch_size))
            total = most
        losses, examples = [], 0
        tick = time.perf_counter()
        with progress(f"epoch {epoch + 1}", total, first) as advance:
            for i, batch in enumerate(iterator, start=first):
                losses.append(trainer.step(batch))
                if i == first:  # the rate leaves out the first step (it compiles)
                    jax.block_until_ready(losses[-1])
                    tick = time.perf_counter()
                else:
                    examples += int(batch["mask"].sum())
                advance(int(batch["mask"].sum()))
                if checkpoint_every and (i + 1) % checkpoint_every == 0:
                    _save(ckpt_dir, trainer, epoch, iterator.get_state(), history, best_auc,
                          stale)
            jax.block_until_ready(trainer.tables)
        seconds = time.perf_counter() - tick
        figures = evaluate_store(trainer, valid, scoring_batch(config.batch_size))
        record = {"epoch": epoch + 1, "loss": float(np.mean([float(x) for x in losses])),
                  "examples_per_s": examples / max(seconds, 1e-9), **figures}
        history.append(record)
        improved = figures["auc"] > best_auc
        if improved:
            best_auc, stale = figures["auc"], 0
            checkpoint.save(params_dir, epoch, trainer.params())  # newest step = the best
            checkpoint.save(os.path.join(run.path, "optimizer"), epoch,
                            optimizer_state(trainer))  # the state of those parameters
        else:
            stale += 1
        console(f"epoch {epoch + 1}: loss {record['loss']:.4f}  valid AUC {figures['auc']:.4f}"
                f"  logloss {figures['logloss']:.4f}  {record['examples_per_s']:,.0f} "
                f"examples/s{'' if improved else '  (no better: the best epoch is kept)'}")
        epoch += 1
        _save(ckpt_dir, trainer, epoch, None, history, best_auc, stale)
    found = checkpoint.restore_latest(params_dir, trainer.params())
    if found is not None:
        trainer.set_params(found[1])
    return history


def optimizer_state(trainer: FieldTrainer) -> dict:
    """The optimizer state of a trainer's parameters (what ``optimizer/`` holds), in the
    logical layout (a sharded trainer's slots gathered to whole tables, as in its payload)."""
    payload = trainer.payload()
    return {"table_states": list(payload["table_states"]),
            "dense_state": payload["dense_state"]}


def _save(directory: str, trainer: FieldTrainer, epoch: int, loader: Mapping | None,
          history: list[dict], best_auc: float, stale: int) -> None:
    meta = {"history": history, "best_auc": float(best_auc), "stale": stale}
    checkpoint.save(directory, _step_id(epoch, loader), {
        "trainer": trainer.payload(), "epoch": np.int64(epoch),
        "loader": _encode_state(loader or {}), "meta": _encode_state(meta)})


def _step_id(epoch: int, loader: Mapping | None) -> int:
    position = int((loader or {}).get("next_index", 0))
    return epoch * 10_000_000 + position


def evaluate_store(trainer: FieldTrainer, store: Store, batch_size: int) -> dict[str, float]:
    """The metrics of the trainer's model on every row of a store."""
    labels, probs, groups = [], [], []
    for batch in sequential_batches(store, batch_size):
        keep = batch["mask"] > 0
        probs.append(trainer.probabilities(batch)[keep])
        labels.append(batch["label"][keep])
        groups.append(batch["group"][keep])
    return report(np.concatenate(labels), np.concatenate(probs), np.concatenate(groups))
