r"""Keep a fitted run fresh with a new log: ``je.update(run, data)``, the seed's online phase.

The production system this project comes from trained offline, then kept learning from each
new day's log with a partition of its parameters by kind. :func:`update` applies that
partition to any run written by :func:`jaxembed.fit` (or by an earlier update):

=========================  ===========================================  ========================
parameters                 rule                                         option
=========================  ===========================================  ========================
embedding tables           frozen (slots kept); rows grown for new      ``freeze_embeddings``
                           ids train with the fit's rule
linear / wide tables       row-sparse FTRL, **continuing** the fit's    ``linear_learning_rate``
                           accumulators ``z, n``
everything else (dense)    SGD at ``learning_rate`` (default            ``dense_optimizer``,
                           :data:`UPDATE_LEARNING_RATE`)                ``learning_rate``
=========================  ===========================================  ========================

The new log is read once (``epochs = 1``), in its own row order — not shuffled, as a stream
arrives — in mini-batches of the run's ``batch_size``. ``accumulate = k`` makes one update
of ``k`` mini-batches (``optax.MultiSteps`` on the dense layers,
:func:`~jaxembed.optim.sparse.sparse_accumulated` on the tables: the mean of ``k`` gradients
taken at the same parameters, the seed's remedy for stale asynchronous updates).
Every option of :class:`~jaxembed.train.field_trainer.FitConfig` can be overridden
(``freeze_embeddings=False, dense_optimizer="adam"`` fine-tunes everything); a learning rate
of 0 holds its group fixed.

FTRL continues exactly: its weight is a function of its slots,
:math:`w = -(z - \mathrm{sgn}(z)\,\lambda_1) / ((\beta + \sqrt n)/\alpha + 2\lambda_2)`
(0 where :math:`|z| \le \lambda_1`), so the run keeps, beside its best parameters
(``params/``), the optimizer state of that same epoch (``optimizer/``), and the update
restores both: fitting on A then updating on B gives the linear tables one continuous FTRL
pass over A then B would give (``tests/test_update.py``).

The new log is read through the run's schema and vocabularies: an id the vocabulary has not
seen goes to its field's OOV bucket. With ``grow=True`` an unseen id seen at least
``min_count`` times in the new log (default: the field's ``min_count``) gets its own row:
the table grows (rows are inserted after the vocabulary's, before the OOV buckets; every
existing row keeps its values and optimizer slots) and the run's ``vocabularies.json`` is
extended. A new row starts as a copy of **the row the id used before it grew**: for an
``attach`` field the row of its first warm ancestor (a new item starts from its shop's or
category's row, the seed's answer to cold items), for the other vocabulary fields the OOV
bucket it hashed to (with ``oov_buckets = 0``, the model's initialisation). So growing alone
changes no prediction. Linear rows copy their FTRL slots with the weight (FTRL's weight is
a function of them); embedding rows start with fresh slots and, although embeddings are
frozen, train (``grown_rows``).

The update writes a **new** run (``out``): schema, vocabularies, ``model.json`` with the
update's configuration, ``params/``, ``optimizer/``, ``fit.json`` and ``lineage.json`` (the
parent run, the data, its rows, the options, the parent's and the updated model's metrics on
``eval``). The parent is only read. The run is built in a temporary folder beside ``out``
and renamed at the end (:func:`jaxembed._atomic.atomic_dir`): an interrupted update leaves no
half-written run. A log whose columns do not match the run's schema (a missing column, or a
column stored with another type than the log the run was fitted on) is refused before
anything is read, naming the column.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pyarrow as pa
import pyarrow.compute as pc

from jaxembed import _atomic
from jaxembed.data.encode import Encoder
from jaxembed.data.loader import sequential_batches, write_store
from jaxembed.data.readers import DataError, check_source, describe, record_batches, source_types
from jaxembed.data.schema import Schema
from jaxembed.data.vocabularies import MISSING, FieldVocab, Vocabularies, split_values
from jaxembed.models import registry
from jaxembed.nn.fields import LinearTable
from jaxembed.optim.sparse import SparseAccumulatedState
from jaxembed.train import checkpoint
from jaxembed.train.field_trainer import FieldTrainer, FitConfig, dense_transform
from jaxembed.train.runs import (
    RUN_FORMAT,
    Run,
    _console,
    optimizer_state,
)
from jaxembed.train.scoring import labelled_scores, metrics_of

__all__ = ["UPDATE_LEARNING_RATE", "Growth", "check_log", "online_config", "plan_growth",
           "update"]

UPDATE_LEARNING_RATE = 1e-3
"""SGD rate of the dense layers in an update (measured: ``jaxembed bench online``, see
``docs/benchmarks.md``)."""

_FIXED = ("embedding_optimizer", "seed", "linear_initial_accumulator")
"""Options an update cannot change: the embedding slots' layout, the encoding's hash seed and
FTRL's starting accumulator (the linear slots continue from the run's)."""


# --------------------------------------------------------------------------- configuration
def online_config(parent: FitConfig, options: dict[str, Any]) -> FitConfig:
    """The update's :class:`FitConfig`: the parent's, with the online partition (frozen
    embeddings, dense SGD at :data:`UPDATE_LEARNING_RATE`, one pass, no early stopping), then
    ``options``. An unknown option, or one an update cannot change, is an error naming it."""
    known = {f.name for f in dataclasses.fields(FitConfig)} - {"grown_rows"}
    for key in options:
        if key in _FIXED and options[key] != getattr(parent, key):
            raise ValueError(f"an update cannot change {key!r} (the run was fitted with "
                             f"{getattr(parent, key)!r})")
        if key not in known:
            raise ValueError(f"unknown update option {key!r}; options: "
                             f"{', '.join(sorted(known))}")
    online = {"freeze_embeddings": True, "dense_optimizer": "sgd",
              "learning_rate": UPDATE_LEARNING_RATE, "epochs": 1, "patience": 0,
              "accumulate": 1, **options}
    return dataclasses.replace(parent, **online)


# --------------------------------------------------------------------------- checks
def _family(kind: str) -> str:
    """A coarse family of an Arrow type name: widths and dictionary encoding do not count."""
    kind = kind.lower()
    if kind.startswith("dictionary<values="):
        kind = kind[len("dictionary<values="):]
    for family, prefixes in (("integer", ("int", "uint")), ("floating", ("float", "double",
                             "halffloat", "decimal")), ("text", ("string", "large_string",
                             "utf8", "large_utf8")), ("boolean", ("bool",)),
                             ("time", ("timestamp", "date", "time", "duration"))):
        if kind.startswith(prefixes):
            return family
    return kind


def check_log(run: Run, data: Any, what: str = "data") -> None:
    """Refuse ``data`` for ``run`` before any work: every column the schema reads must be
    there (named when missing) and, where both the fitted log and ``data`` carry types
    (Parquet, data frames), of the same family (an id column that became floating point
    would turn every id into an unseen one)."""
    check_source(data, run.schema)
    fitted = _read_meta(run.path).get("columns") or {}
    given = source_types(data, run.schema) or {}
    for name, kind in given.items():
        if name in fitted and _family(fitted[name]) != _family(kind):
            raise DataError(f"{what} {describe(data)}: column {name!r} is {kind}, the run was "
                            f"fitted on a log where it is {fitted[name]} (retyped column)")


def _read_meta(path: str) -> dict:
    try:
        with open(os.path.join(path, "model.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {}


# --------------------------------------------------------------------------- growth
@dataclasses.dataclass
class Growth:
    """New rows per table: ``tables[name] = (at, init)``, the rows inserted at ``at`` (the
    vocabulary's end, before the OOV buckets) starting as copies of the old rows ``init``
    (``-1``: the model's initialisation); ``vocabularies`` extended with the new ids."""

    vocabularies: Vocabularies
    tables: dict[str, tuple[int, np.ndarray]]
    ids: dict[str, list[str]]

    @property
    def rows(self) -> dict[str, int]:
        return {name: int(init.size) for name, (_, init) in self.tables.items()}


def plan_growth(run: Run, data: Any, min_count: int | None = None) -> Growth:
    """Count the ids of ``data`` the run's vocabularies have not seen; those seen at least
    ``min_count`` times (default: each field's ``min_count``) become new rows (at most the
    field's ``max_size`` in all), most frequent first, ties in code-point order."""
    schema, vocab = run.schema, run.vocabularies
    encoder = run.encoder
    counts: dict[str, Counter] = {}
    attach_rows: dict[str, dict[str, int]] = {}
    owners = {f.table: f for f in schema.vocab_owners}
    for f in schema.features:
        if f.kind in ("categorical", "multi", "segment"):
            counts.setdefault(f.table, Counter())
        elif f.kind == "attach":
            counts[f.name] = Counter()
            attach_rows[f.name] = {}
    start = 0
    for batch in record_batches(data, schema):
        for f in schema.features:
            if f.kind not in ("categorical", "multi", "segment", "attach"):
                continue
            column = batch.column(f.column)
            if f.missing == "category":
                column = column.fill_null(MISSING)
            if f.kind == "attach":
                known = vocab.levels[f.name][0]
                unseen = pa.array(known.index(column) < 0) if len(column) else None
                if unseen is None:
                    continue
                values = column.filter(pc.and_(unseen, pc.is_valid(column)))
                if len(values):
                    old = encoder._ids(batch, f, start)[:, 0]
                    rows = old[np.asarray(pc.and_(unseen, pc.is_valid(column)))]
                    first = attach_rows[f.name]
                    for value, row in zip(values.to_pylist(), rows.tolist(), strict=True):
                        first.setdefault(value, int(row))
                counts[f.name].update(_value_counts(values))
                continue
            values = column if f.kind == "categorical" else pc.list_flatten(
                split_values(column, f, encoder.segmenter))
            if f.missing == "category":
                values = values.fill_null(MISSING)
            known = vocab.tables[f.table]
            values = values.drop_null()
            counts[f.table].update(_value_counts(values.filter(pa.array(known.index(values)
                                                                         < 0))))
        start += batch.num_rows
    tables: dict[str, FieldVocab] = dict(vocab.tables)
    levels = {k: list(v) for k, v in vocab.levels.items()}
    growth: dict[str, tuple[int, np.ndarray]] = {}
    new_ids: dict[str, list[str]] = {}
    for name, counter in counts.items():
        f = owners.get(name) if name in vocab.tables else schema.field(name)
        old = vocab.tables[name] if name in vocab.tables else vocab.levels[name][0]
        threshold = f.min_count if min_count is None else min_count
        room = None if f.max_size is None or f.kind == "attach" else max(
            f.max_size - len(old.tokens), 0)
        grown = FieldVocab.from_counts(counter, min_count=threshold, max_size=room)
        if not grown.tokens:
            continue
        extended = FieldVocab(old.tokens + grown.tokens, old.counts + grown.counts,
                              old.oov_buckets, old.seed)
        at = len(old.tokens)
        if f.kind == "attach":
            levels[name][0] = extended
            init = np.array([attach_rows[name][t] for t in grown.tokens], np.int64)
        else:
            tables[name] = extended
            init = (old.ids(pa.array(grown.tokens, pa.string()), f"field {f.name!r}")
                    if old.oov_buckets else np.full(len(grown.tokens), -1, np.int64))
        growth[name] = (at, init)
        new_ids[name] = grown.tokens
    grown_vocab = Vocabularies(tables, vocab.dense, levels, vocab.rows, vocab.positives)
    return Growth(grown_vocab, growth, new_ids)


def _value_counts(values: pa.Array) -> dict[str, int]:
    if len(values) == 0:
        return {}
    counted = pc.value_counts(values)
    return dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(),
                    strict=True))


def _grow_array(old: np.ndarray, fresh: np.ndarray, at: int, init: np.ndarray,
                copy: bool) -> np.ndarray:
    """``fresh`` (the grown shape) filled with ``old``'s rows around the inserted block
    ``[at, at + k)``, whose rows are ``old[init]`` where ``copy`` and ``init >= 0``, else
    ``fresh``'s own."""
    k = init.size
    out = np.array(fresh, copy=True)
    out[:at] = old[:at]
    out[at + k:] = old[at:]
    if copy:
        take = init >= 0
        out[at:at + k][take] = old[init[take]]
    return out


def _grow_state(old_table: Any, old_state: Any, fresh_state: Any, at: int, init: np.ndarray,
                copy_slots: bool) -> Any:
    """A table's optimizer state grown like its table: row-shaped slots get the old rows
    around the new block (the new rows copied from ``init`` when ``copy_slots``, else fresh);
    other leaves (a step count) stay the parent's."""
    shape = tuple(np.shape(old_table))

    def leaf(old: Any, fresh: Any) -> Any:
        if tuple(np.shape(old)) == shape:
            return _grow_array(np.asarray(old), np.asarray(fresh), at, init, copy_slots)
        return old

    return jax.tree.map(leaf, old_state, fresh_state)


# --------------------------------------------------------------------------- the update
def _dense_state(fresh: Any, parent: Any, parent_config: FitConfig, config: FitConfig) -> Any:
    """The dense optimizer state to continue: the parent's when the rule is the same kind
    (inside ``optax.MultiSteps`` when accumulating), else the fresh one. ``fresh()`` makes
    the update's initial state (called only when needed)."""
    if config.learning_rate == 0 or parent_config.learning_rate == 0 \
            or config.dense_optimizer != parent_config.dense_optimizer:
        return fresh()
    inner = parent.inner_opt_state if isinstance(parent, optax.MultiStepsState) else parent
    if config.accumulate > 1:
        return fresh()._replace(inner_opt_state=inner)
    return inner


def _restored_trainer(parent: Run, vocabularies: Vocabularies, config: FitConfig,
                      growth: Growth | None) -> tuple[FieldTrainer, str]:
    """The update's trainer holding the parent's parameters and optimizer state (grown).

    Nothing is initialised only to be overwritten: the optimizer state's template is
    abstract, and so is the model unless rows grow (a grown row may start from the model's
    initialisation). Every array the trainer holds is its own (a host copy of the parent's
    live parameters, or read from the parent's checkpoint): its step donates its buffers."""
    # the parent's logical parameters, on this process's default device: a run fitted on a
    # mesh holds its tables sharded and the rest replicated (an update runs on one device)
    params = jax.device_put(jax.tree.map(np.array, parent.trainer.params()))
    parent_tables = list(params["tables"])

    def initial(tables: list, rest: Any) -> dict:
        # the rules' initial state, not the trainer's live one (a Run returned by fit holds
        # its last epoch's, not its best's)
        table_states, dense_state = parent.trainer.initial_states(tables, rest)
        return {"table_states": table_states, "dense_state": dense_state}

    folder = os.path.join(parent.path, "optimizer")
    epoch = checkpoint.latest_step(folder)
    found = None
    if epoch is None:
        restored = "fresh (the parent run kept no optimizer state)"
    elif epoch != checkpoint.latest_step(os.path.join(parent.path, "params")):
        # a fit interrupted between its two saves: the state belongs to other parameters
        restored = "fresh (the parent's optimizer state is of another epoch than its params)"
    else:
        found = checkpoint.restore_latest(
            folder, jax.eval_shape(initial, parent_tables, params["rest"]))
        restored = "continued"
    state = found[1] if found is not None else initial(parent_tables, params["rest"])
    inputs = Encoder(parent.schema, vocabularies, seed=config.seed).inputs
    trainer = FieldTrainer(registry.build(parent.model_name, inputs, seed=config.seed,
                                          abstract=growth is None, **parent.hyper), config)
    tables, states = [], []
    for i, key in enumerate(trainer.layout.keys):
        # the rule's own slots, out of (and back into) an accumulating wrapper, whose
        # partial sum of gradients, if the parent held one, is dropped
        old_table, old_state = parent_tables[i], _inner(state["table_states"][i])
        name = key.split(":", 1)[1] if ":" in key else None
        if growth is not None and name in growth.tables:
            at, init = growth.tables[name]
            linear = issubclass(trainer.layout.kinds[i], LinearTable)
            tables.append(jnp.asarray(_grow_array(
                np.asarray(old_table), np.asarray(trainer.tables[i]), at, init, True)))
            old_state = jax.tree.map(jnp.asarray, _grow_state(
                old_table, old_state, _inner(trainer.table_states[i]), at, init, linear))
        else:
            tables.append(old_table)
        if isinstance(trainer.table_states[i], SparseAccumulatedState):
            # a fresh (concrete) wrapper around the continued slots
            states.append(trainer.rules[i].init(tables[-1])._replace(inner=old_state))
        else:
            states.append(old_state)
    trainer.tables, trainer.table_states = tables, states
    trainer.rest = params["rest"]
    trainer.dense_state = _dense_state(lambda: dense_transform(config).init(params["rest"]),
                                       state["dense_state"], parent.config, config)
    return trainer, restored


def _inner(state: Any) -> Any:
    return state.inner if isinstance(state, SparseAccumulatedState) else state


def _grown_rows(growth: Growth | None, schema: Schema) -> tuple[tuple[str, int, int], ...]:
    if growth is None:
        return ()
    return tuple((f"embedding:{name}", at, at + int(init.size))
                 for name, (at, init) in sorted(growth.tables.items()))


def _data_record(data: Any) -> dict[str, Any]:
    if isinstance(data, str | os.PathLike):
        path = os.path.abspath(os.fspath(data))
        stat = os.stat(path)
        return {"path": path, "bytes": stat.st_size,
                "modified": datetime.datetime.fromtimestamp(
                    stat.st_mtime, datetime.UTC).isoformat(timespec="seconds")}
    return {"in_memory": describe(data)}


def update(run: Run | str | os.PathLike, data: Any, *, out: str | os.PathLike | None = None,
           eval: Any = None, grow: bool = False, min_count: int | None = None,
           progress: bool = False, **options: Any) -> Run:
    """Update a fitted run on a new log ``data`` and write the result as a new run ``out``
    (a fresh temporary folder if None); returns it. ``eval``: labelled data on which the
    parent's and the updated model's metrics are recorded side by side in
    ``lineage.json``. ``grow``: new rows for ids seen at least ``min_count`` times.
    ``options``: :class:`FitConfig` fields over the online partition (module docstring).
    """
    started = time.perf_counter()
    parent = run if isinstance(run, Run) else Run.load(run)
    parent_path = os.path.abspath(parent.path)
    out = os.path.abspath(os.fspath(out)) if out is not None else os.path.join(
        tempfile.mkdtemp(prefix="jaxembed-update-"), "run")
    if out == parent_path or parent_path.startswith(out + os.sep):
        raise ValueError(f"--out {out!r} would overwrite the parent run; choose a new folder")
    if os.path.exists(out) and not (os.path.isdir(out) and not os.listdir(out)):
        raise FileExistsError(f"{out!r} exists; an update writes a new run (choose a new "
                              f"folder)")
    config = online_config(parent.config, options)
    if min_count is not None and (isinstance(min_count, bool) or int(min_count) < 1):
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    check_log(parent, data)
    if eval is not None:
        check_log(parent, eval, "eval")
    console, bar = _console(progress)
    with _atomic.atomic_dir(out) as tmp:
        growth = plan_growth(parent, data, min_count) if grow else None
        vocabularies = growth.vocabularies if growth is not None else parent.vocabularies
        if growth is not None:
            console(f"grow: {sum(growth.rows.values()):,} new rows "
                    f"({', '.join(f'{k} +{v}' for k, v in growth.rows.items()) or 'none'})")
            config = dataclasses.replace(config, grown_rows=_grown_rows(growth, parent.schema))
        encoder = Encoder(parent.schema, vocabularies, seed=config.seed)
        store_dir = os.path.join(tmp, "cache", "update")
        store = write_store(record_batches(data, parent.schema), encoder, store_dir)
        before = metrics_of(*labelled_scores(parent, eval)) if eval is not None else None
        trainer, restored = _restored_trainer(parent, vocabularies, config, growth)
        history, steps = [], 0
        for epoch in range(config.epochs):
            losses, examples, tick = [], 0, time.perf_counter()
            total = -(-store.num_rows // config.batch_size)
            with bar(f"update pass {epoch + 1}", total, 0) as advance:
                for batch in sequential_batches(store, config.batch_size):
                    losses.append(trainer.step(batch))
                    examples += int(batch["mask"].sum())
                    steps += 1
                    advance(int(batch["mask"].sum()))
                jax.block_until_ready(trainer.tables)
            seconds = time.perf_counter() - tick
            history.append({"epoch": epoch + 1,
                            "loss": float(np.mean([float(x) for x in losses])),
                            "examples_per_s": examples / max(seconds, 1e-9)})
        positives = int(sum(float(c["label"].sum()) for c in store.chunks()))
        shutil.rmtree(os.path.join(tmp, "cache"))
        result = Run(tmp, parent.schema, vocabularies, parent.model_name, parent.hyper,
                     config, trainer, history)
        after = metrics_of(*labelled_scores(result, eval)) if eval is not None else None
        if after is not None:
            history[-1].update({k: v for k, v in after.items()
                                if k not in ("rows", "positives")})
        parent.schema.to_toml(os.path.join(tmp, "schema.toml"))
        vocabularies.save(os.path.join(tmp, "vocabularies.json"))
        meta = _read_meta(parent_path)
        _atomic.write_text(os.path.join(tmp, "model.json"), json.dumps(
            {"format": RUN_FORMAT, "model": parent.model_name, "hyper": parent.hyper,
             "config": dataclasses.asdict(config), "columns": meta.get("columns")},
            indent=1))
        checkpoint.save(os.path.join(tmp, "params"), 0, trainer.params())
        checkpoint.save(os.path.join(tmp, "optimizer"), 0, optimizer_state(trainer))
        wall = time.perf_counter() - started
        _atomic.write_text(os.path.join(tmp, "fit.json"), json.dumps(
            {"model": parent.model_name, "update": True, "epochs": history,
             "best_epoch": len(history), "train_rows": store.num_rows, "wall_s": wall},
            indent=1))
        changed = {k: v for k, v in dataclasses.asdict(config).items()
                   if getattr(parent.config, k) != v}
        lineage = {
            "parent": parent_path,
            "parent_lineage": _read_lineage(parent_path),
            "data": _data_record(data),
            "rows": store.num_rows,
            "positives": positives,
            "steps": steps,
            "options": changed,
            "optimizer_state": restored,
            "grown": None if growth is None else {
                "rows": growth.rows, "min_count": min_count,
                "first_ids": {k: v[:20] for k, v in growth.ids.items()}},
            "eval": None if eval is None else {"data": _data_record(eval), "before": before,
                                                "after": after},
            "wall_s": wall,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        _atomic.write_text(os.path.join(tmp, "lineage.json"), json.dumps(lineage, indent=1))
    console(f"wrote the updated run to {out}")
    # the run as written (the same arrays, not read back: that would only cost time)
    return dataclasses.replace(result, path=out)


def _read_lineage(path: str) -> dict | None:
    try:
        with open(os.path.join(path, "lineage.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
