r"""The :class:`~jaxembed.train.field_trainer.FieldTrainer` step with its tables sharded over a
device mesh and each batch split over the mesh's devices: ``je.fit(..., mesh="8")``,
``jaxembed fit --mesh 8``.

The step is :mod:`jaxembed.train.field_trainer`'s own, jitted over global arrays (JAX SPMD):
the batch is placed ``NamedSharding(mesh, P(all axes))`` (data parallel), the dense
parameters and their Adam state replicated (XLA all-reduces their gradient), and the tables
are held as the stacked blocks ``S[P, R, K']`` of :mod:`jaxembed.sharding.layout` over the
mesh's last axis. A :class:`FieldPlacement` replaces the two places where the step touches a
table:

1. **gathered rows.** Every slot of every field becomes a bag of one id, so that
   ``R[b, l] = m_{bl} W[i_{bl}]`` is the sum-pooled lookup of that one-id bag:
   ``rows = sharded_bag_lookup(layout, S, slots, combiner="sum")`` reshaped to ``[B, L, K]``
   (``jax.shard_map``: ids travel to the devices that hold their rows, rows travel back; the
   padding id ``-1`` gives a zero row, as :func:`jaxembed.nn.fields.gather`);
2. **row-sparse update.** The touched ids and their gradient rows (``∂L/∂R``, as the step
   computes them) go to the devices that store them
   (:func:`jaxembed.sharding.rowsparse.row_sparse_grads`), and each device runs the table's
   :class:`~jaxembed.optim.sparse.SparseRule` on its own block with its local row ids
   (:func:`~jaxembed.sharding.rowsparse.apply_row_sparse`): no table row crosses a device.

Since the gathered rows are exact (one id per bag: a sum of one row and zeros) and the sparse
rule sees the same ids and gradient rows in the same order, a sharded step equals the
one-device step up to the float summation order of the batch reductions (the dense gradient,
the loss): ``tests/test_fit_sharded.py`` follows both for several steps, for every layout.

Layouts (``kind``): ``row`` (``strategy`` ``mod`` or ``div``, ``route`` ``all_gather`` or
``all_to_all``), ``column`` (a table with fewer columns than the table axis has devices,
such as a linear table ``[V, 1]``, goes row-wise: there is nothing to split), ``table``
(whole tables on single devices, greedy largest-first over all tables; the tables of one
variable class — embedding or linear — share one packed array and one rule).

**Parameters and checkpoints stay logical.** :meth:`ShardedFieldTrainer.params` and
:meth:`~ShardedFieldTrainer.payload` return the one-device trainer's pytrees (tables ``[V, K]``
and their optimizer slots in table order), so a run fitted on 8 devices resumes on 1 and back,
and ``Run.load``, ``je.predict``, ``je.evaluate`` and ``jaxembed export`` read it on one device.

**Several processes.** After :func:`jaxembed.sharding.launch.initialize`, a mesh of every
process's devices trains one model: each process hands :meth:`ShardedFieldTrainer.step` its
own rows (the loader's per-process chunks), which become its devices' part of the global
batch (``jax.make_array_from_process_local_data``); evaluation batches are the same on every
process.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxembed.bags import PAD_ID, Bags
from jaxembed.sharding import layout as sharding_layout
from jaxembed.sharding.launch import global_array, to_host
from jaxembed.sharding.lookup import ROUTES, sharded_bag_lookup
from jaxembed.sharding.rowsparse import apply_row_sparse, row_sparse_grads
from jaxembed.train.field_trainer import (
    FieldTrainer,
    FitConfig,
    _compiled_predict,
    _compiled_step,
)

__all__ = ["FieldPlacement", "MeshSpec", "ShardedFieldTrainer", "make_mesh", "plan_fields"]


def make_mesh(shape: str | int, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh from ``"8"`` (one axis ``model``) or ``"2x4"`` (axes ``data`` × ``model``).

    The tables are split over ``model``, the batch over every axis. ``devices`` defaults to
    ``jax.devices()`` (every process's devices); the mesh takes the first ``prod(shape)``.

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
            f"--xla_force_host_platform_device_count={needed}, set before jax starts)")
    names = ("model",) if len(sizes) == 1 else ("data", "model")
    return Mesh(np.array(devices[:needed]).reshape(sizes), names)


@dataclasses.dataclass(frozen=True)
class MeshSpec:
    """How a fit shards its model: the mesh ``shape`` (:func:`make_mesh`), the layout
    ``kind`` (``row``, ``column``, ``table``), the row ``strategy`` (``mod``, ``div``) and the
    row-wise lookup ``route`` (``all_gather``, ``all_to_all``)."""

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

    @classmethod
    def of(cls, mesh: MeshSpec | str | int) -> MeshSpec:
        """A spec from a spec, or a shape (``8``, ``"2x4"``) with the default layout."""
        if isinstance(mesh, MeshSpec):
            return mesh
        if isinstance(mesh, bool) or not isinstance(mesh, str | int):
            raise TypeError(f"mesh must be a shape like '8' or '2x4' or a MeshSpec, got "
                            f"{type(mesh).__name__}")
        return cls(shape=str(mesh))

    def describe(self) -> str:
        return f"{self.kind}-wise ({self.strategy}, {self.route}) over a {self.shape} mesh"


@dataclasses.dataclass(frozen=True)
class FieldPlacement:
    """Where a model's tables live on a mesh (hashable: a static argument of the jitted step).

    ``groups[g] = (layout, members)``: one :class:`~jaxembed.sharding.layout.Layout` and the
    indices of the tables (in the trainer's table order) it stores; the trainer's sharded
    state is one storage dict per group (``{storage name: S[P, R, K']}``).
    """

    mesh: Mesh
    keys: tuple[str, ...]
    fields: tuple[tuple[str, ...], ...]
    groups: tuple[tuple[sharding_layout.Layout, tuple[int, ...]], ...]
    stand_ins: tuple[jax.ShapeDtypeStruct, ...]
    route: str = "all_gather"

    @property
    def batch_sharding(self) -> NamedSharding:
        """Rows of a batch split over every mesh axis."""
        return NamedSharding(self.mesh, PartitionSpec(tuple(self.mesh.axis_names)))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    # --- inside the step ----------------------------------------------------------------
    def rows(self, stored: Sequence[Mapping[str, jax.Array]], bags: Mapping[str, Bags]
             ) -> dict[str, dict[str, jax.Array]]:
        """``rows[key][field] f[B, L, K]`` gathered from the sharded tables (each slot a bag
        of one id, sum-pooled where its row lives)."""
        out: dict[str, dict[str, jax.Array]] = {}
        for (layout, members), storage in zip(self.groups, stored, strict=True):
            ids = {i: jnp.concatenate([bags[f].ids for f in self.fields[i]], axis=1)
                   for i in members}
            width = max(x.shape[1] for x in ids.values())
            slots = {self.keys[i]: _one_id_bags(_pad_columns(x, width)) for i, x in ids.items()}
            route = self.route if layout.kind == "row" else "all_gather"
            pooled = sharded_bag_lookup(layout, storage, slots, combiner="sum", route=route)
            for i in members:
                key = self.keys[i]
                per_slot = pooled[key].reshape(ids[i].shape[0], width, -1)
                start, out[key] = 0, {}
                for f in self.fields[i]:
                    size = bags[f].ids.shape[1]
                    out[key][f] = per_slot[:, start:start + size]
                    start += size
        return out

    def update(self, rules: Sequence[Any], stored: Sequence[Mapping[str, jax.Array]],
               states: Sequence[Mapping[str, Any]],
               touched: Sequence[tuple[jax.Array, jax.Array]]) -> tuple[list, list]:
        """Each table's row-sparse step on the devices that store its touched rows.

        ``touched[i] = (ids int[N_i], grads f[N_i, K_i])`` of table ``i`` (``-1`` padding);
        the tables of a packed (table-wise) group take their first member's rule."""
        new_stored, new_states = [], []
        for (layout, members), storage, state in zip(self.groups, stored, states, strict=True):
            n = max(touched[i][0].shape[0] for i in members)
            slots, cotangents = {}, {}
            for i in members:
                ids, grads = touched[i]
                pad = n - ids.shape[0]
                slots[self.keys[i]] = _one_id_bags(
                    jnp.pad(ids, (0, pad), constant_values=PAD_ID)[:, None])
                cotangents[self.keys[i]] = jnp.pad(grads, ((0, pad), (0, 0)))
            sparse = row_sparse_grads(layout, slots, cotangents, combiner="sum")
            table, slot_state = apply_row_sparse(rules[members[0]], layout, storage, state,
                                                 sparse)
            new_stored.append(table)
            new_states.append(slot_state)
        return new_stored, new_states

    # --- logical <-> sharded ------------------------------------------------------------
    def logical_sharding(self, shape: tuple[int, ...]) -> NamedSharding:
        """A logical table (or slot) on the mesh: rows split over the table axis when they
        divide evenly, else replicated (what orbax writes and restores)."""
        axis = self.groups[0][0].axis
        if len(shape) >= 1 and shape[0] % self.mesh.shape[axis] == 0:
            return NamedSharding(self.mesh, PartitionSpec(axis))
        return self.replicated

    def tables_to_storage(self, tables: Sequence[Any]) -> list[dict[str, jax.Array]]:
        """Logical tables (on any devices, any process count: the values are read to the
        host) → the sharded storage of every group."""
        stored = []
        for layout, members in self.groups:
            host = {self.keys[i]: _host(tables[i]) for i in members}
            sharding = layout.storage_sharding()
            stored.append({name: global_array(array, sharding)
                           for name, array in layout.to_storage(host).items()})
        return stored

    def to_storage(self, tables: Sequence[Any], states: Sequence[Any]) -> tuple[list, list]:
        """Logical tables and their rule states → the sharded storage and states."""
        return self.tables_to_storage(tables), [
            self._states_to_storage(layout, members, states) for layout, members in self.groups]

    def _states_to_storage(self, layout: sharding_layout.Layout, members: tuple[int, ...],
                           states: Sequence[Any]) -> dict[str, Any]:
        """Slots shaped like their table are laid out like it; other leaves (Adam's step
        count) are taken from the group's first table and replicated."""
        first = members[0]
        treedef = jax.tree.structure(states[first])
        leaves = {i: jax.tree.leaves(states[i]) for i in members}
        names = list(layout.storage_shapes())
        out: dict[str, list] = {name: [] for name in names}
        for j, leaf in enumerate(leaves[first]):
            if tuple(np.shape(leaf)) == layout.shape(self.keys[first]):
                laid = layout.to_storage({self.keys[i]: _host(leaves[i][j]) for i in members})
                for name in names:
                    out[name].append(global_array(laid[name], layout.storage_sharding()))
            else:
                for name in names:
                    out[name].append(global_array(_host(leaf), self.replicated))
        return {name: jax.tree.unflatten(treedef, out[name]) for name in names}

    def logical_tables(self, stored: Sequence[Mapping[str, jax.Array]]) -> list[jax.Array]:
        """The ``[V, K]`` tables of the sharded storage, in table order (one jitted program;
        ready when returned)."""
        return jax.block_until_ready(_compiled_logical(self, False)(list(stored)))

    def logical(self, stored: Sequence[Mapping[str, jax.Array]],
                states: Sequence[Mapping[str, Any]]) -> tuple[list, list]:
        """The logical tables and the rule state of every table, as the one-device trainer
        holds them (one jitted program; ready when returned)."""
        return jax.block_until_ready(_compiled_logical(self, True)(list(stored), list(states)))

    def _tables_of(self, stored: Sequence[Mapping[str, jax.Array]]) -> list[jax.Array]:
        tables: dict[int, jax.Array] = {}
        for (layout, members), storage in zip(self.groups, stored, strict=True):
            logical = layout.from_storage(dict(storage))
            for i in members:
                tables[i] = self._placed(logical[self.keys[i]])
        return [tables[i] for i in range(len(self.keys))]

    def _states_of(self, states: Sequence[Mapping[str, Any]]) -> list[Any]:
        out: dict[int, Any] = {}
        for (layout, members), state in zip(self.groups, states, strict=True):
            names = list(layout.storage_shapes())
            shapes = layout.storage_shapes()
            treedef = jax.tree.structure(state[names[0]])
            leaves = {name: jax.tree.leaves(state[name]) for name in names}
            per_table: dict[int, list] = {i: [] for i in members}
            for j, leaf in enumerate(leaves[names[0]]):
                if tuple(leaf.shape) == shapes[names[0]]:
                    logical = layout.from_storage({n: leaves[n][j] for n in names})
                    for i in members:
                        per_table[i].append(self._placed(logical[self.keys[i]]))
                else:
                    for i in members:
                        per_table[i].append(self._placed(leaf))
            for i in members:
                out[i] = jax.tree.unflatten(treedef, per_table[i])
        return [out[i] for i in range(len(self.keys))]

    def _placed(self, x: jax.Array) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, self.logical_sharding(tuple(x.shape)))

    def describe(self) -> list[dict[str, Any]]:
        """Each group's layout (JSON-able)."""
        return [layout.describe() for layout, _ in self.groups]


def _pad_columns(ids: jax.Array, width: int) -> jax.Array:
    return jnp.pad(ids, ((0, 0), (0, width - ids.shape[1])), constant_values=PAD_ID)


def _one_id_bags(ids: jax.Array) -> Bags:
    """``[B, W]`` ids → ``B·W`` bags of one id each (traced values: no validation)."""
    return Bags.tree_unflatten(None, (ids.reshape(-1, 1), None))


def _host(x: Any) -> np.ndarray:
    """A value on this host, whatever devices or processes hold it."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return to_host(x)
    return np.asarray(x)


@functools.lru_cache(maxsize=16)
def _compiled_logical(placement: FieldPlacement, with_states: bool) -> Any:
    """Sharded storage → logical arrays, every table (and state) in one jitted program: one
    program in flight rather than one per array (on CPU devices, many small collective
    programs dispatched at once can starve the collectives' rendezvous)."""
    if with_states:
        return jax.jit(lambda stored, states: (placement._tables_of(stored),
                                               placement._states_of(states)))
    return jax.jit(placement._tables_of)


def plan_fields(trainer: FieldTrainer, mesh: Mesh, *, kind: str = "row", strategy: str = "mod",
                route: str = "all_gather") -> FieldPlacement:
    """The :class:`FieldPlacement` of ``trainer``'s tables over ``mesh`` (tables over its last
    axis)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    spec = MeshSpec("1", kind, strategy, route)  # validates kind, strategy and route
    layout = trainer.layout
    axis = mesh.axis_names[-1]
    p = int(mesh.shape[axis])
    shapes = {key: tuple(int(d) for d in table.shape)
              for key, table in zip(layout.keys, trainer.tables, strict=True)}
    groups: list[tuple[sharding_layout.Layout, tuple[int, ...]]] = []
    if spec.kind == "table":
        placement = sharding_layout.greedy_placement(
            {key: v * k for key, (v, k) in shapes.items()}, p)
        classes: dict[Any, list[int]] = {}
        for i, (cls, table) in enumerate(zip(layout.kinds, trainer.tables, strict=True)):
            classes.setdefault((cls, jnp.dtype(table.dtype)), []).append(i)
        for members in classes.values():
            names = [layout.keys[i] for i in members]
            groups.append((sharding_layout.Layout(
                "table", mesh, axis, tuple((n, *shapes[n]) for n in names), spec.strategy,
                tuple((n, placement[n]) for n in names)), tuple(members)))
    else:
        for i, key in enumerate(layout.keys):
            v, k = shapes[key]
            table_kind = "row" if spec.kind == "column" and k < p else spec.kind
            groups.append((sharding_layout.plan({key: (v, k)}, mesh, table_kind, axis=axis,
                                                strategy=spec.strategy), (i,)))
    stand_ins = tuple(jax.ShapeDtypeStruct(t.shape, t.dtype) for t in trainer.tables)
    return FieldPlacement(mesh, layout.keys, layout.fields, tuple(groups), stand_ins,
                          spec.route)


class ShardedFieldTrainer(FieldTrainer):
    """A :class:`FieldTrainer` whose tables are sharded over ``mesh`` and whose batches are
    split over its devices; same interface, logical parameters and checkpoints.

    Args:
        model: a schema-built model (:mod:`jaxembed.models`).
        config: the fit configuration; ``batch_size`` is the global batch and must be a
            multiple of the mesh's device count.
        mesh: the device mesh (:func:`make_mesh`); the tables go over its last axis.
        kind: the layout kind (``row``, ``column``, ``table``; :class:`MeshSpec`).
        strategy: row placement, ``mod`` or ``div``.
        route: the row-wise lookup route, ``all_gather`` or ``all_to_all``.
    """

    def __init__(self, model: nnx.Module, config: FitConfig, mesh: Mesh, *,
                 kind: str = "row", strategy: str = "mod", route: str = "all_gather") -> None:
        super().__init__(model, config)
        if config.batch_size % mesh.size:
            raise ValueError(f"batch_size {config.batch_size} must be a multiple of the mesh's "
                             f"{mesh.size} devices (the batch is split over all of them)")
        self.mesh = mesh
        self.placement = plan_fields(self, mesh, kind=kind, strategy=strategy, route=route)
        self.load(FieldTrainer.payload(self))
        self._step = _compiled_step(self.graphdef, self.table_def, self.layout, config,
                                    self.placement)
        self._predict = _compiled_predict(self.graphdef, self.table_def, self.layout,
                                          self.placement)

    # --- logical state ---------------------------------------------------------------------
    def logical_tables(self) -> list[jax.Array]:
        """The tables ``[V, K]`` in table order."""
        return self.placement.logical_tables(self.tables)

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.table_def,
                                                           self.logical_tables()), self.rest)

    def params(self) -> dict:
        return {"tables": self.logical_tables(), "rest": self.rest}

    def set_params(self, params: Mapping[str, Any]) -> None:
        self.tables = self.placement.tables_to_storage(list(params["tables"]))
        self.rest = self._replicate(params["rest"])

    def payload(self) -> dict:
        tables, states = self.placement.logical(self.tables, self.table_states)
        return {"tables": tables, "table_states": states, "rest": self.rest,
                "dense_state": self.dense_state}

    def load(self, payload: Mapping[str, Any]) -> None:
        """Take a logical payload (from either trainer, any device or process count)."""
        self.tables, self.table_states = self.placement.to_storage(
            list(payload["tables"]), list(payload["table_states"]))
        self.rest = self._replicate(payload["rest"])
        self.dense_state = self._replicate(payload["dense_state"])

    def _replicate(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: global_array(_host(x), self.placement.replicated), tree)

    # --- training and scoring --------------------------------------------------------------
    def step(self, batch: Mapping[str, np.ndarray]) -> jax.Array:
        """Train on one batch: this process's rows of it (on one process, the whole batch;
        on ``n`` processes each passes ``batch_size / n`` rows, its loader's share)."""
        sharding = self.placement.batch_sharding
        arrays = {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
                  for k, v in batch.items() if k != "group"}
        self.tables, self.table_states, self.rest, self.dense_state, loss = self._step(
            self.tables, self.table_states, self.rest, self.dense_state, arrays)
        return loss

    def probabilities(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Click probabilities of a batch (the same batch on every process)."""
        sharding = self.placement.batch_sharding
        arrays = {k: global_array(np.asarray(v), sharding) for k, v in batch.items()
                  if k not in ("group", "label", "mask")}
        return to_host(self._predict(self.tables, self.rest, arrays))
