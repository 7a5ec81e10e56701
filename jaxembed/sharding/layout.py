r"""Where the rows and columns of embedding tables live on a device mesh.

A :class:`Layout` spreads a set of named tables ``W_t ∈ R^{V_t × K_t}`` over the ``P``
devices of one axis (``axis``) of a :class:`jax.sharding.Mesh`. Every layout stores each
device's part as one block of a *stacked* array ``S ∈ R^{P × R × K'}`` sharded on its first
axis (``NamedSharding(mesh, P(axis, None, None))``): device ``p`` of the axis holds ``S[p]``.
Other mesh axes (e.g. ``'data'``) hold replicas of the blocks. The three kinds:

* **row** (``strategy="mod"``, TensorFlow's default): id ``i`` lives on device ``i mod P`` at
  local row ``i div P``, so ``S[p, r] = W[r·P + p]``; ``R = ⌈V / P⌉``.
* **row** (``strategy="div"``): contiguous ranges with TensorFlow's uneven split (the first
  ``V mod P`` devices hold one row more), ``S[p] = W[start_p : start_p + size_p]``.
  Both follow :func:`jaxembed.partition.shard_of`; a device with fewer than ``R`` rows is
  padded with zero rows that no id reaches.
* **column**: the embedding dimension is split, ``S[p] = W[:, p·K' : (p+1)·K']`` with
  ``K' = ⌈K / P⌉``; the last device's missing columns are zero padding (``R = V``).
* **table**: whole tables on single devices, balanced by size (``V_t·K_t``) with greedy
  largest-first bin packing: tables in decreasing size each go to the least-loaded device
  (ties: lowest device index, then table order). Device ``p`` stacks its tables' rows
  (``S[p, o_t : o_t + V_t, :K_t] = W_t``); all tables share one stacked array, ``K' = max K_t``
  and ``R = max_p Σ_{t on p} V_t``. Greedy largest-first is a 4/3-approximation of the best
  makespan (Graham 1969).

The logical ⇄ stored maps (:meth:`Layout.to_storage`, :meth:`Layout.from_storage`) are pure
``jnp`` index arithmetic, so gradients of stored arrays map back to table gradients with the
same function. Storage names: each table's own name for the row and column kinds,
:data:`PACKED` for the table kind.

References:
  TensorFlow ``tf.nn.embedding_lookup`` partition strategies; TorchRec sharding types
  (row-wise, table-wise, column-wise); R. L. Graham, *Bounds on multiprocessing timing
  anomalies*, SIAM J. Appl. Math. 17 (1969).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

from jaxembed import _validate
from jaxembed.partition import Strategy, shard_of

Kind = Literal["row", "column", "table"]
KINDS: tuple[str, ...] = ("row", "column", "table")
PACKED = "packed"
"""Storage name of the one stacked array that holds every table of a table-wise layout."""


def greedy_placement(sizes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Device of each table: largest first, each to the least-loaded device.

    Ties in size keep the mapping's order; ties in load go to the lowest device index.
    """
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    names = list(sizes)
    values = [int(sizes[name]) for name in names]
    load = [0] * num_devices
    placement: dict[str, int] = {}
    for n in sorted(range(len(names)), key=lambda n: -values[n]):  # stable: ties keep order
        device = min(range(num_devices), key=lambda p: (load[p], p))
        placement[names[n]] = device
        load[device] += values[n]
    return {name: placement[name] for name in names}


@dataclass(frozen=True)
class Layout:
    """A static plan for sharding named tables over ``mesh[axis]``; build it with :func:`plan`.

    Hashable, so it can be closed over or passed as a static argument to ``jit``.
    """

    kind: Kind
    mesh: Mesh | AbstractMesh
    axis: str
    shapes: tuple[tuple[str, int, int], ...]
    strategy: Strategy = "mod"
    placement: tuple[tuple[str, int], ...] = ()
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    # --- sizes ----------------------------------------------------------------------------
    @property
    def num_shards(self) -> int:
        """``P``: devices along the table axis."""
        return int(self.mesh.shape[self.axis])

    @property
    def names(self) -> tuple[str, ...]:
        """Table names in the order given to :func:`plan`."""
        return tuple(name for name, _, _ in self.shapes)

    @property
    def batch_axes(self) -> tuple[str, ...]:
        """Mesh axes the batch is split over: all of them, major to minor."""
        return tuple(self.mesh.axis_names)

    def shape(self, name: str) -> tuple[int, int]:
        """``(V, K)`` of table ``name``."""
        for n, v, k in self.shapes:
            if n == name:
                return v, k
        raise KeyError(f"no table {name!r} in this layout (tables: {list(self.names)})")

    def table_slots(self) -> dict[str, tuple[int, int, int]]:
        """Table-wise: ``name -> (device, slot, row offset)``; slot ``j`` is the table's
        position among its device's tables (in the order given to :func:`plan`)."""
        if "slots" not in self._cache:
            filled: dict[int, list[tuple[str, int]]] = {}
            for name, device in self.placement:
                filled.setdefault(device, []).append((name, self.shape(name)[0]))
            slots = {}
            for device, items in filled.items():
                offset = 0
                for j, (name, rows) in enumerate(items):
                    slots[name] = (device, j, offset)
                    offset += rows
            self._cache["slots"] = slots
        return self._cache["slots"]

    def slots_per_device(self) -> int:
        """Table-wise: ``T_max``, the most tables any device holds."""
        counts = np.bincount([d for _, d in self.placement], minlength=self.num_shards)
        return int(counts.max())

    def storage_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Stacked ``(P, R, K')`` of each stored array, by storage name."""
        p = self.num_shards
        if self.kind == "row":
            return {n: (p, -(-v // p), k) for n, v, k in self.shapes}
        if self.kind == "column":
            return {n: (p, v, -(-k // p)) for n, v, k in self.shapes}
        rows = [0] * p
        for name, device in self.placement:
            rows[device] += self.shape(name)[0]
        return {PACKED: (p, max(rows), max(k for _, _, k in self.shapes))}

    # --- shardings --------------------------------------------------------------------------
    @property
    def storage_spec(self) -> PartitionSpec:
        """``P(axis, None, None)``: block ``p`` on device ``p`` of the axis."""
        return PartitionSpec(self.axis, None, None)

    @property
    def batch_spec(self) -> PartitionSpec:
        """The batch split over every mesh axis (data parallel)."""
        return PartitionSpec(self.batch_axes)

    def storage_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, self.storage_spec)

    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, self.batch_spec)

    def place(self, x: Any, spec: PartitionSpec) -> Any:
        """``x`` resharded to ``spec`` when the mesh's axes are Explicit (shard_map then
        requires it); with Auto axes shard_map reshards its inputs itself."""
        if all(t == AxisType.Explicit for t in self.mesh.axis_types):
            return jax.reshard(x, NamedSharding(self.mesh, spec))
        return x

    # --- logical <-> stored -------------------------------------------------------------
    def _row_index(self, num_embeddings: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.arange(num_embeddings)
        return shard_of(ids, num_embeddings, self.num_shards, self.strategy)

    def to_storage(self, tables: Mapping[str, Any]) -> dict[str, Any]:
        """The stacked arrays of ``tables`` (no placement): a gather from each table with one
        zero row appended for padding; numpy in, numpy out (host), else ``jnp``."""
        xp = np if all(isinstance(t, np.ndarray) for t in tables.values()) else jnp
        p = self.num_shards
        shapes = self.storage_shapes()
        if self.kind == "table":
            _, r, kk = shapes[PACKED]
            dtype = _common_dtype(tables)
            source = xp.concatenate(
                [xp.pad(_unsharded(xp.asarray(tables[n])).astype(dtype), ((0, 0), (0, kk - k)))
                 for n, _, k in self.shapes] + [xp.zeros((1, kk), dtype)]
            )
            index = np.full((p, r), source.shape[0] - 1)
            starts = np.cumsum([0] + [v for _, v, _ in self.shapes])
            for t, name in enumerate(self.names):
                device, _, offset = self.table_slots()[name]
                rows = self.shape(name)[0]
                index[device, offset : offset + rows] = starts[t] + np.arange(rows)
            return {PACKED: source[index]}
        stored = {}
        for name, v, k in self.shapes:
            table = _unsharded(xp.asarray(tables[name]))
            _, r, kk = shapes[name]
            if self.kind == "row":
                shard, local = self._row_index(v)
                index = np.full((p, r), v)
                index[shard, local] = np.arange(v)
                stored[name] = xp.concatenate([table, xp.zeros((1, k), table.dtype)])[index]
            else:
                padded = xp.pad(table, ((0, 0), (0, p * kk - k)))
                stored[name] = padded.reshape(v, p, kk).transpose(1, 0, 2)
        return stored

    def from_storage(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The logical ``[V, K]`` tables of stacked arrays (inverse of :meth:`to_storage`).

        Applied to the gradient of the stored arrays it gives the tables' gradients.
        numpy in, numpy out; else ``jnp``.
        """
        xp = np if all(isinstance(a, np.ndarray) for a in stored.values()) else jnp
        if self.kind == "table":
            packed = _unsharded(xp.asarray(stored[PACKED]))
            slots = self.table_slots()
            return {
                name: packed[slots[name][0], slots[name][2] : slots[name][2] + v, :k]
                for name, v, k in self.shapes
            }
        tables = {}
        for name, v, k in self.shapes:
            s = _unsharded(xp.asarray(stored[name]))
            if self.kind == "row":
                shard, local = self._row_index(v)
                tables[name] = s[shard, local]
            else:
                tables[name] = s.transpose(1, 0, 2).reshape(v, -1)[:, :k]
        return {name: tables[name] for name in self.names}

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (kind, axis, strategy, shapes, placement)."""
        return {
            "kind": self.kind,
            "axis": self.axis,
            "num_shards": self.num_shards,
            "strategy": self.strategy,
            "shapes": [[n, v, k] for n, v, k in self.shapes],
            "placement": [[n, d] for n, d in self.placement],
        }


def _unsharded(x: Any) -> Any:
    """``x`` itself, or replicated when its type carries an Explicit sharding (gathers across
    an explicitly sharded axis need their output sharding spelled out; the storage maps
    are for placement, checkpoints and checks, where a replicated value is what is wanted)."""
    if isinstance(x, np.ndarray):
        return x
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or not mesh.axis_names:
        return x
    if any(t == AxisType.Explicit for t in mesh.axis_types) and any(
        part is not None for part in sharding.spec
    ):
        concrete = getattr(x, "sharding", None)  # an array (not a tracer) knows its devices
        target = PartitionSpec() if concrete is None else NamedSharding(concrete.mesh,
                                                                        PartitionSpec())
        return jax.reshard(x, target)
    return x


def _common_dtype(tables: Mapping[str, Any]) -> Any:
    dtypes = {jnp.dtype(t.dtype) for t in tables.values()}
    if len(dtypes) != 1:
        raise TypeError(
            f"a table-wise layout packs tables into one array: their dtypes differ "
            f"({sorted(str(d) for d in dtypes)})"
        )
    return dtypes.pop()


def plan(
    shapes: Mapping[str, tuple[int, int]],
    mesh: Mesh | AbstractMesh,
    kind: Kind = "row",
    *,
    axis: str | None = None,
    strategy: Strategy = "mod",
) -> Layout:
    """Plan a layout of tables ``{name: (V, K)}`` over ``mesh[axis]``.

    ``axis`` defaults to the mesh's last axis (the fastest-varying one; on a 1-D mesh its only
    axis). ``strategy`` ('mod' or 'div') applies to ``kind="row"``. Every table needs
    ``V >= 1`` and ``K >= 1``. An :class:`jax.sharding.AbstractMesh` (no devices) plans for
    sizes and communication volumes only (:func:`jaxembed.sharding.communication_bytes`).
    """
    if not isinstance(mesh, Mesh | AbstractMesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if strategy not in ("mod", "div"):
        raise ValueError(f"strategy must be 'mod' or 'div', got {strategy!r}")
    axis = mesh.axis_names[-1] if axis is None else axis
    if axis not in mesh.axis_names:
        raise ValueError(f"axis {axis!r} is not an axis of the mesh {tuple(mesh.axis_names)}")
    if not shapes:
        raise ValueError("plan needs at least one table")
    checked = []
    for name, shape in shapes.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"table names must be non-empty strings, got {name!r}")
        if len(tuple(shape)) != 2 or any(int(d) < 1 for d in shape):
            raise ValueError(f"table {name!r}: shape must be (V >= 1, K >= 1), got {shape}")
        checked.append((name, int(shape[0]), int(shape[1])))
    placement: tuple[tuple[str, int], ...] = ()
    if kind == "table":
        sizes = {n: v * k for n, v, k in checked}
        placement = tuple(greedy_placement(sizes, int(mesh.shape[axis])).items())
    return Layout(kind, mesh, axis, tuple(checked), strategy, placement)


def shard_tables(tables: Mapping[str, Any], layout: Layout) -> dict[str, jax.Array]:
    """Place ``tables`` (host or device arrays) on the mesh as ``layout`` says.

    Each device receives only its own block: the stacked arrays are built on the host and
    handed out with :func:`jax.make_array_from_callback`, which also works when the mesh
    spans several processes (each process then passes the same tables).
    """
    stacked = layout.to_storage(_check_tables(tables, layout))
    sharding = layout.storage_sharding()
    return {
        name: jax.make_array_from_callback(a.shape, sharding, lambda index, a=a: a[index])
        for name, a in stacked.items()
    }


def unshard_tables(stored: Mapping[str, Any], layout: Layout) -> dict[str, jax.Array]:
    """The logical tables of stored arrays (each becomes one ``[V, K]`` array)."""
    expected = layout.storage_shapes()
    if set(stored) != set(expected):
        raise ValueError(
            f"stored arrays {sorted(stored)} do not match the layout's {sorted(expected)}"
        )
    for name, shape in expected.items():
        if tuple(stored[name].shape) != shape:
            raise ValueError(
                f"stored array {name!r} has shape {tuple(stored[name].shape)}, the layout "
                f"expects {shape}"
            )
    return layout.from_storage(stored)


def _check_tables(tables: Mapping[str, Any], layout: Layout) -> dict[str, np.ndarray]:
    if set(tables) != set(layout.names):
        raise ValueError(
            f"tables {sorted(tables)} do not match the layout's tables {sorted(layout.names)}"
        )
    host = {}
    for name in layout.names:
        table = _validate.table_array(np.asarray(tables[name]), f"table {name!r}")
        if tuple(table.shape) != layout.shape(name):
            raise ValueError(
                f"table {name!r} has shape {tuple(table.shape)}, the layout planned "
                f"{layout.shape(name)}"
            )
        host[name] = table
    return host


__all__ = [
    "KINDS",
    "PACKED",
    "Kind",
    "Layout",
    "greedy_placement",
    "plan",
    "shard_tables",
    "unshard_tables",
]
