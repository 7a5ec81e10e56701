"""Offline training of :class:`~jaxembed.models.SearchCTR`: row-sparse tables, dense optax.

One jit-compiled step per mini-batch:

1. ``pooled = model.embed(batch)`` — the sparse inner products of every domain and the
   wide part's sum;
2. ``loss, (∂L/∂pooled, ∂L/∂dense) = value_and_grad(head loss)`` — no gradient w.r.t. any
   table is formed;
3. the dense parameters take an optax step (Adam; ``accumulate = k`` wraps it in
   ``optax.MultiSteps`` so ``k`` mini-batches make one update);
4. each table takes a **row-sparse** step: :func:`jaxembed.lookup.bag_row_grads` turns
   ``∂L/∂pooled`` into the gradient rows of the looked-up ids, and the rule of
   :mod:`jaxembed.optim.sparse` (Adagrad for embeddings, FTRL for the wide part) updates only
   those rows, in place (the step donates its buffers).

The epoch's example order is a permutation drawn from ``(seed, epoch)``, and a checkpoint is
written after every epoch, so :func:`fit` with ``resume=True`` continues a run bit-exactly
from its last committed epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxembed.features import Features
from jaxembed.lookup import bag_row_grads
from jaxembed.optim import partition as optim_partition
from jaxembed.optim.sparse import SparseRule, sparse_adagrad, sparse_ftrl
from jaxembed.train import checkpoint
from jaxembed.train.evaluate import mean_loss


@dataclasses.dataclass(frozen=True)
class OfflineConfig:
    """Hyperparameters of the offline fit."""

    epochs: int = 3
    batch_size: int = 512
    dense_learning_rate: float = 5e-3
    table_learning_rate: float = 0.1
    wide_learning_rate: float = 0.2
    wide_l1: float = 0.0
    wide_l2: float = 0.1
    accumulate: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "accumulate"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("dense_learning_rate", "table_learning_rate", "wide_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


def is_table(path: tuple, _value: Any) -> bool:
    """NNX filter: the embedding tables and the wide kernel (row-sparse parameters)."""
    return path[-1] == "embedding" or tuple(path[-2:]) == ("wide", "kernel")


def batch_entry(path: str) -> str:
    """The batch entry whose Bags index a table: ``behavior/<domain>/...`` or ``wide``."""
    parts = path.split("/")
    return parts[1] if parts[0] == "behavior" else "wide"


class OfflineTrainer:
    """Holds the split model and optimizer states; :meth:`step` trains one mini-batch."""

    def __init__(self, model: nnx.Module, config: OfflineConfig) -> None:
        self.config = config
        self.graphdef, tables, self.rest = nnx.split(model, is_table, ...)
        flat, self.table_def = jax.tree_util.tree_flatten_with_path(tables)
        self.table_paths = [optim_partition.param_path(path) for path, _ in flat]
        self.tables = [leaf for _, leaf in flat]
        combiner = table_combiner(model)
        self.entries = tuple(batch_entry(p) for p in self.table_paths)
        self.combiners = tuple("sum" if e == "wide" else combiner for e in self.entries)
        rules, dense_tx = table_optimizers(self.entries, config)
        self.table_states = [rule.init(t) for rule, t in zip(rules, self.tables, strict=True)]
        self.dense_state = dense_tx.init(self.rest)
        self._step = _compiled_step(self.graphdef, self.table_def, self.entries, self.combiners,
                                    config)

    # --- state -------------------------------------------------------------------------------
    def model(self) -> nnx.Module:
        """The model with the current parameters."""
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.table_def, self.tables),
                         self.rest)

    def table_state(self, entry: str) -> Any:
        """The optimizer state of the table indexed by batch entry ``entry`` (e.g. "wide")."""
        return self.table_states[self.entries.index(entry)]

    def payload(self) -> dict:
        """Everything a checkpoint must hold to continue the run."""
        return {"tables": self.tables, "table_states": self.table_states,
                "rest": self.rest, "dense_state": self.dense_state}

    def load(self, payload: dict) -> None:
        self.tables = list(payload["tables"])
        self.table_states = list(payload["table_states"])
        self.rest = payload["rest"]
        self.dense_state = payload["dense_state"]

    def step(self, batch: dict, labels: Any) -> jax.Array:
        """Train on one mini-batch; returns its loss (before the update)."""
        self.tables, self.table_states, self.rest, self.dense_state, loss = self._step(
            self.tables, self.table_states, self.rest, self.dense_state, batch,
            jnp.asarray(labels),
        )
        return loss


def table_optimizers(entries: tuple[str, ...], config: OfflineConfig
                     ) -> tuple[list[SparseRule], optax.GradientTransformation]:
    """Row-sparse rules of the tables (FTRL for the wide kernel, Adagrad for embeddings) and
    the dense transform (Adam, in ``optax.MultiSteps`` when ``accumulate > 1``)."""
    rules = [
        sparse_ftrl(config.wide_learning_rate, l1=config.wide_l1, l2=config.wide_l2)
        if entry == "wide" else sparse_adagrad(config.table_learning_rate)
        for entry in entries
    ]
    dense = optax.adam(config.dense_learning_rate)
    if config.accumulate > 1:
        dense = optax.MultiSteps(dense, config.accumulate)
    return rules, dense


@functools.lru_cache(maxsize=16)
def _compiled_step(graphdef, table_def, entries, combiners, config: OfflineConfig) -> Callable:
    """The jitted train step for one model structure and config (cached: a second trainer of
    the same model and config reuses the compiled step)."""
    rules, dense_tx = table_optimizers(entries, config)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
    def step(tables, table_states, rest, dense_state, batch, labels):
        table_tree = jax.tree.unflatten(table_def, tables)
        pooled = nnx.merge(graphdef, table_tree, rest).embed(batch)

        def loss_fn(pooled, rest):
            logits = nnx.merge(graphdef, table_tree, rest).head(pooled, batch)
            return mean_loss(logits, labels)

        loss, (d_pooled, d_rest) = jax.value_and_grad(loss_fn, argnums=(0, 1))(pooled, rest)
        updates, dense_state = dense_tx.update(d_rest, dense_state, rest)
        rest = optax.apply_updates(rest, updates)
        new_tables, new_states = [], []
        for table, state, entry, combiner, rule in zip(
            tables, table_states, entries, combiners, rules, strict=True
        ):
            ids, rows = bag_row_grads(batch[entry], d_pooled[entry], combiner)
            table, state = rule.update(table, state, ids, rows)
            new_tables.append(table)
            new_states.append(state)
        return new_tables, new_states, rest, dense_state, loss

    return step


def table_combiner(model: nnx.Module) -> str:
    """The combiner of the model's behaviour tables (every domain uses the same one)."""
    behavior = model.behavior
    return behavior[next(iter(model.domain_names))].embed.combiner


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of an epoch: a permutation drawn from ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def fit(
    model: nnx.Module,
    train: Features,
    config: OfflineConfig,
    *,
    checkpoint_dir: str | None = None,
    resume: bool = False,
    on_epoch: Callable[[int, OfflineTrainer, list[float]], dict] | None = None,
    progress: Any = None,
    mesh: Any = None,
) -> tuple[OfflineTrainer, list[dict]]:
    """Train ``model`` on ``train`` for ``config.epochs`` epochs.

    After each epoch ``on_epoch(epoch, trainer, losses)`` may evaluate and returns a dict of
    figures, appended to the history; with ``checkpoint_dir`` the whole state is then saved.
    ``resume=True`` restores the newest committed checkpoint and continues with the next
    epoch (the result is bit-identical to an uninterrupted run). Returns the trainer (its
    ``model()`` is the trained model) and the history (one dict per epoch, with ``loss``,
    ``examples_per_s`` and ``on_epoch``'s figures). The last partial mini-batch of an epoch
    is dropped (shapes stay fixed).

    ``mesh`` (a :class:`jaxembed.train.sharded.MeshConfig`) shards the tables over a device
    mesh and splits each batch over its devices (:class:`~jaxembed.train.sharded.
    ShardedTrainer`); checkpoints hold logical tables either way, so a run may resume on
    another device count or unsharded.
    """
    if mesh is None:
        trainer = OfflineTrainer(model, config)
    else:
        trainer = mesh.trainer(model, config)
    history: list[dict] = []
    first_epoch = 0
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        template = {"trainer": trainer.payload(), "epoch": np.int64(0),
                    "history": np.zeros((0, len(_HISTORY_KEYS)))}
        found = checkpoint.restore_latest(checkpoint_dir, template)
        if found is not None:
            _, saved = found
            trainer.load(saved["trainer"])
            first_epoch = int(saved["epoch"]) + 1
            history = _history_from_array(np.asarray(saved["history"])[:first_epoch])
    n = len(train)
    steps = n // config.batch_size
    if steps == 0:
        raise ValueError(f"{n} training examples make no batch of {config.batch_size}")
    for epoch in range(first_epoch, config.epochs):
        order = epoch_order(n, config.seed, epoch)
        losses = []
        start = time.perf_counter()
        task = None if progress is None else progress.add_task(f"epoch {epoch + 1}", total=steps,
                                                              unit="batches")
        for s in range(steps):
            rows = order[s * config.batch_size : (s + 1) * config.batch_size]
            batch = jax.tree.map(lambda a, r=rows: a[r], train.batch(0, n))
            losses.append(trainer.step(batch, train.labels[rows]))
            if progress is not None and (s % 20 == 0 or s == steps - 1):
                progress.update(task, completed=s + 1,
                                description=f"epoch {epoch + 1} loss {float(losses[-1]):.4f}")
        losses = [float(x) for x in losses]
        seconds = time.perf_counter() - start
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                  "examples_per_s": steps * config.batch_size / seconds}
        if on_epoch is not None:
            record.update(on_epoch(epoch, trainer, losses))
        history.append(record)
        if checkpoint_dir is not None:
            checkpoint.save(checkpoint_dir, epoch, {
                "trainer": trainer.payload(), "epoch": np.int64(epoch),
                "history": _history_to_array(history)})
    return trainer, history


_HISTORY_KEYS = ("epoch", "loss", "examples_per_s", "auc", "logloss", "gauc", "calibration",
                 "ne")


def _history_to_array(history: list[dict]) -> np.ndarray:
    out = np.full((len(history), len(_HISTORY_KEYS)), np.nan)
    for i, record in enumerate(history):
        out[i] = [record.get(k, np.nan) for k in _HISTORY_KEYS]
    return out


def _history_from_array(array: np.ndarray) -> list[dict]:
    return [{k: float(v) for k, v in zip(_HISTORY_KEYS, row, strict=True) if np.isfinite(v)}
            for row in array]
