r"""Offline training of :class:`~jaxembed.models.SearchCTR` with its tables sharded over a mesh.

:class:`ShardedTrainer` is :class:`~jaxembed.train.offline.OfflineTrainer` with the tables
placed by :mod:`jaxembed.sharding`; :func:`jaxembed.train.offline.fit` uses it when given a
``mesh`` (``jaxembed train --mesh 8``). One jit-compiled step per mini-batch, the batch split
over every device of the mesh (data parallel), the tables over ``mesh[axis]``:

1. ``pooled = sharded_bag_lookup(layout, S, bags)`` — ids routed to the devices that hold
   their rows, pooled sums routed back to the bag's device;
2. ``loss, (∂L/∂pooled, ∂L/∂dense) = value_and_grad(head loss)``; the dense parameters are
   replicated, so XLA all-reduces their gradient over the batch's devices;
3. the dense parameters take the same optax step on every device (they stay replicated);
4. each table block takes the **row-sparse** step of its rule (Adagrad for embeddings, FTRL
   for the wide kernel) with the ids it owns, on its own device
   (:func:`jaxembed.sharding.rowsparse.row_sparse_grads`, ``apply_row_sparse``).

Every step equals the single-device step up to float summation order, so a run on ``D``
devices follows the one-device run step for step (``tests/test_sharded_train.py`` checks it
on 8 virtual CPU devices for every layout kind).

The behaviour tables form one layout (combiner of the model), the wide kernel another
(combiner ``sum``; placed row-wise when the behaviour tables are split column-wise, since a
one-column table has nothing to split).

**Checkpoints hold logical tables.** :meth:`ShardedTrainer.payload` returns the same pytree
as ``OfflineTrainer.payload`` — tables ``[V, K]`` and optimizer slots in table order — so a
checkpoint written on 8 devices resumes on 4, on 1 (``mesh=None``) or under another layout,
and a single-device checkpoint resumes sharded. A logical table whose ``V`` is a multiple of
the device count is held (and written by orbax) row-sharded over the table axis, others
replicated.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxembed.bags import Bags
from jaxembed.optim import partition as optim_partition
from jaxembed.sharding import layout as sharding_layout
from jaxembed.sharding import rowsparse
from jaxembed.sharding.launch import global_array, global_bags
from jaxembed.sharding.lookup import ROUTES, sharded_bag_lookup
from jaxembed.train import offline
from jaxembed.train.evaluate import mean_loss

__all__ = ["MeshConfig", "ShardedTrainer", "make_mesh"]

WIDE = "wide"


def make_mesh(shape: str | int, devices: Any = None) -> Mesh:
    """A mesh from ``"8"`` (one axis ``model``) or ``"2x4"`` (axes ``data`` × ``model``).

    The tables are split over ``model``; the batch over every axis. ``devices`` defaults to
    ``jax.devices()``; the mesh takes the first ``prod(shape)`` of them.

    Raises:
        ValueError: a malformed shape, or more devices asked for than there are.
    """
    text = str(shape).strip().lower()
    try:
        sizes = tuple(int(part) for part in text.split("x"))
    except ValueError:
        raise ValueError(f"mesh shape must look like '8' or '2x4', got {shape!r}") from None
    if not 1 <= len(sizes) <= 2 or any(s < 1 for s in sizes):
        raise ValueError(f"mesh shape must look like '8' or '2x4' (sizes >= 1), got {shape!r}")
    devices = list(jax.devices() if devices is None else devices)
    needed = int(np.prod(sizes))
    if needed > len(devices):
        raise ValueError(
            f"mesh {text} needs {needed} devices, the {devices[0].platform} backend has "
            f"{len(devices)} (on CPU, virtual devices come from XLA_FLAGS="
            f"--xla_force_host_platform_device_count={needed}, set before jax starts)"
        )
    names = ("model",) if len(sizes) == 1 else ("data", "model")
    return Mesh(np.array(devices[:needed]).reshape(sizes), names)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """How ``jaxembed train --mesh SHAPE`` shards the model: the mesh shape (see
    :func:`make_mesh`), the layout ``kind``, the row ``strategy`` and the lookup ``route``."""

    shape: str = "8"
    kind: str = "row"
    strategy: str = "mod"
    route: str = "all_gather"

    def __post_init__(self) -> None:
        if self.kind not in sharding_layout.KINDS:
            raise ValueError(f"kind must be one of {sharding_layout.KINDS}, got {self.kind!r}")
        if self.strategy not in ("mod", "div"):
            raise ValueError(f"strategy must be 'mod' or 'div', got {self.strategy!r}")
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {self.route!r}")

    def trainer(self, model: nnx.Module, config: offline.OfflineConfig) -> ShardedTrainer:
        """A :class:`ShardedTrainer` for ``model`` on a fresh mesh of this shape."""
        return ShardedTrainer(model, config, make_mesh(self.shape), kind=self.kind,
                              strategy=self.strategy, route=self.route)


class ShardedTrainer:
    """The state of a sharded offline fit; same interface as ``OfflineTrainer``.

    Args:
        model: a :class:`~jaxembed.models.SearchCTR` (its tables are split off and sharded).
        config: the :class:`~jaxembed.train.offline.OfflineConfig`.
        mesh: the device mesh; the tables go over ``axis`` (default: its last axis).
        kind: ``"row"``, ``"column"`` or ``"table"`` (see :mod:`jaxembed.sharding.layout`).
        strategy: row placement, ``"mod"`` or ``"div"``.
        route: row-wise lookup route, ``"all_gather"`` or ``"all_to_all"``.
    """

    def __init__(self, model: nnx.Module, config: offline.OfflineConfig, mesh: Mesh, *,
                 kind: str = "row", strategy: str = "mod", route: str = "all_gather",
                 axis: str | None = None) -> None:
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
        self.config, self.mesh, self.route = config, mesh, route
        if config.batch_size % mesh.size:
            raise ValueError(
                f"batch_size {config.batch_size} must be a multiple of the mesh's "
                f"{mesh.size} devices (the batch is split over all of them)"
            )
        self.graphdef, tables, rest = nnx.split(model, offline.is_table, ...)
        flat, self.table_def = jax.tree_util.tree_flatten_with_path(tables)
        paths = [optim_partition.param_path(path) for path, _ in flat]
        self.entries = tuple(offline.batch_entry(p) for p in paths)
        self.abstract_tables = [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for _, leaf in flat]
        combiner = offline.table_combiner(model)
        rules, dense_tx = offline.table_optimizers(self.entries, config)
        shapes = {e: tuple(leaf.shape) for e, (_, leaf) in zip(self.entries, flat, strict=True)}
        groups = {"behavior": [e for e in self.entries if e != WIDE],
                  WIDE: [e for e in self.entries if e == WIDE]}
        self.layouts: dict[str, sharding_layout.Layout] = {}
        self.combiners: dict[str, str] = {}
        for group, members in groups.items():
            if not members:
                continue
            group_kind = "row" if group == WIDE and kind == "column" else kind
            self.layouts[group] = sharding_layout.plan(
                {e: shapes[e] for e in members}, mesh, group_kind, axis=axis, strategy=strategy)
            self.combiners[group] = "sum" if group == WIDE else combiner
        self._replicated = NamedSharding(mesh, PartitionSpec())
        self._batch_sharding = NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))
        self.stored: dict[str, dict[str, jax.Array]] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.load({"tables": [leaf for _, leaf in flat],
                   "table_states": [rule.init(leaf) for rule, (_, leaf)
                                    in zip(rules, flat, strict=True)],
                   "rest": rest, "dense_state": dense_tx.init(rest)})
        self._step = _compiled_step(self.graphdef, self.table_def, tuple(self.abstract_tables),
                                    self._group_plan(), route, config)

    def _group_plan(self) -> tuple:
        """Hashable ``((group, layout, combiner, rule entry), ...)`` for the compiled step."""
        return tuple((g, layout, self.combiners[g], layout.names[0])
                     for g, layout in self.layouts.items())

    # --- state ------------------------------------------------------------------------------
    def tables(self) -> list[jax.Array]:
        """The logical tables ``[V, K]`` in the model's table order."""
        logical = {}
        for group, layout in self.layouts.items():
            logical.update(layout.from_storage(self.stored[group]))
        return [self._logical_placement(logical[e]) for e in self.entries]

    def model(self) -> nnx.Module:
        """The model with the current parameters (tables gathered to their logical form)."""
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.table_def, self.tables()),
                         self.rest)

    def table_state(self, entry: str) -> Any:
        """The logical optimizer state of the table indexed by batch entry ``entry``."""
        return self._logical_states()[self.entries.index(entry)]

    def payload(self) -> dict:
        """The run's state in logical form: the structure of ``OfflineTrainer.payload``."""
        return {"tables": self.tables(), "table_states": self._logical_states(),
                "rest": self.rest, "dense_state": self.dense_state}

    def load(self, payload: Mapping[str, Any]) -> None:
        """Take a logical payload (from either trainer, any device count) and shard it."""
        tables = dict(zip(self.entries, payload["tables"], strict=True))
        states = dict(zip(self.entries, payload["table_states"], strict=True))
        for group, layout in self.layouts.items():
            self.stored[group] = {
                name: jax.device_put(array, layout.storage_sharding())
                for name, array in layout.to_storage(
                    {e: jnp.asarray(tables[e]) for e in layout.names}).items()
            }
            self.states[group] = _states_to_storage(layout, states)
        self.rest = jax.device_put(payload["rest"], self._replicated)
        self.dense_state = jax.device_put(payload["dense_state"], self._replicated)

    def _logical_states(self) -> list[Any]:
        logical: dict[str, Any] = {}
        for group, layout in self.layouts.items():
            logical.update(_states_from_storage(layout, self.states[group]))
        return [jax.tree.map(self._logical_placement, logical[e]) for e in self.entries]

    def _logical_placement(self, x: jax.Array) -> jax.Array:
        """Row-sharded over the table axis when the rows divide evenly, else replicated."""
        axis = next(iter(self.layouts.values())).axis
        if x.ndim >= 1 and x.shape[0] % self.mesh.shape[axis] == 0:
            return jax.device_put(x, NamedSharding(self.mesh, PartitionSpec(axis)))
        return jax.device_put(x, self._replicated)

    # --- training ---------------------------------------------------------------------------
    def place_batch(self, batch: Mapping[str, Any], labels: Any) -> tuple[dict, jax.Array]:
        """Host batch → global arrays split over every device (works across processes)."""
        placed = {
            name: global_bags(value, self._batch_sharding) if isinstance(value, Bags)
            else global_array(np.asarray(value), self._batch_sharding)
            for name, value in batch.items()
        }
        return placed, global_array(np.asarray(labels), self._batch_sharding)

    def step(self, batch: Mapping[str, Any], labels: Any) -> jax.Array:
        """Train on one mini-batch; returns its loss (before the update)."""
        placed, labels = self.place_batch(batch, labels)
        self.stored, self.states, self.rest, self.dense_state, loss = self._step(
            self.stored, self.states, self.rest, self.dense_state, placed, labels)
        return loss


def _states_to_storage(layout: sharding_layout.Layout, states: Mapping[str, Any]) -> dict:
    """Per-table logical optimizer states → per-storage-array states (slots stacked like the
    table; other leaves, e.g. step counts, taken from the layout's first table)."""
    first = layout.names[0]
    leaves = {e: jax.tree.leaves(states[e]) for e in layout.names}
    treedef = jax.tree.structure(states[first])
    out_leaves: dict[str, list] = {name: [] for name in layout.storage_shapes()}
    for i, leaf in enumerate(leaves[first]):
        if tuple(np.shape(leaf)) == layout.shape(first):
            stored = layout.to_storage({e: jnp.asarray(leaves[e][i]) for e in layout.names})
            for name, array in stored.items():
                out_leaves[name].append(jax.device_put(array, layout.storage_sharding()))
        else:
            for name in out_leaves:
                replicated = NamedSharding(layout.mesh, PartitionSpec())
                out_leaves[name].append(jax.device_put(jnp.asarray(leaf), replicated))
    return {name: jax.tree.unflatten(treedef, leaves) for name, leaves in out_leaves.items()}


def _states_from_storage(layout: sharding_layout.Layout, states: Mapping[str, Any]) -> dict:
    """Inverse of :func:`_states_to_storage`: per-table logical states."""
    shapes = layout.storage_shapes()
    names = list(shapes)
    treedef = jax.tree.structure(states[names[0]])
    leaves = {name: jax.tree.leaves(states[name]) for name in names}
    out: dict[str, list] = {e: [] for e in layout.names}
    for i, leaf in enumerate(leaves[names[0]]):
        if tuple(leaf.shape) == shapes[names[0]]:
            logical = layout.from_storage({name: leaves[name][i] for name in names})
            for e in layout.names:
                out[e].append(logical[e])
        else:
            for e in layout.names:
                out[e].append(leaf)
    return {e: jax.tree.unflatten(treedef, leaves) for e, leaves in out.items()}


@functools.lru_cache(maxsize=16)
def _compiled_step(graphdef, table_def, abstract_tables, groups, route: str,
                   config: offline.OfflineConfig) -> Callable:
    """The jitted sharded train step for one model structure, layout and config."""
    entries = tuple(e for _, layout, _, _ in groups for e in layout.names)
    rules, dense_tx = offline.table_optimizers(entries, config)
    rule_of = dict(zip(entries, rules, strict=True))

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
    def step(stored, states, rest, dense_state, batch, labels):
        pooled = {}
        for group, layout, combiner, _ in groups:
            pooled.update(sharded_bag_lookup(
                layout, stored[group], {e: batch[e] for e in layout.names},
                combiner=combiner, route=route if layout.kind == "row" else "all_gather"))
        # the head never reads the tables: abstract leaves stand in for them
        table_tree = jax.tree.unflatten(table_def, list(abstract_tables))

        def loss_fn(pooled, rest):
            logits = nnx.merge(graphdef, table_tree, rest).head(pooled, batch)
            return mean_loss(logits, labels)

        loss, (d_pooled, d_rest) = jax.value_and_grad(loss_fn, argnums=(0, 1))(pooled, rest)
        updates, dense_state = dense_tx.update(d_rest, dense_state, rest)
        rest = optax.apply_updates(rest, updates)
        new_stored, new_states = {}, {}
        for group, layout, combiner, first in groups:
            rule = rule_of[first]
            grads = rowsparse.row_sparse_grads(
                layout, {e: batch[e] for e in layout.names},
                {e: d_pooled[e] for e in layout.names}, combiner=combiner)
            new_stored[group], new_states[group] = rowsparse.apply_row_sparse(
                rule, layout, stored[group], states[group], grads)
        return new_stored, new_states, rest, dense_state, loss

    return step
