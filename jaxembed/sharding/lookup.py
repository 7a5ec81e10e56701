r"""Bag lookups into sharded tables with ``jax.shard_map``: ids go to the rows, sums come back.

The batch is split over every mesh axis (data parallel: device ``d`` owns bags
``d·b .. d·b + b - 1`` with ``b = B / #devices``); the tables are split over ``layout.axis``
(``P`` devices) as :mod:`jaxembed.sharding.layout` describes. Each bag owner first forms the
combiner's normalized slot weights (``sum``: ``w``; ``mean``: ``w / Σ_l w``; ``sqrtn``:
``w / √Σ_l w²``, ``div_no_nan``), so that every combiner becomes a weighted sum

.. math:: e_b = \sum_l \tilde w_{bl}\, W_{i_{bl}} = \sum_{p} \underbrace{\sum_{l:\ i_{bl}
   \text{ on } p} \tilde w_{bl}\, W_{i_{bl}}}_{\text{partial sum on device } p}

which splits over the devices that own the rows. The routes (per device, ``L`` the bag width,
``K`` the row size, ``C`` the capacity; byte counts in :func:`communication_bytes`):

* row-wise, ``route="all_gather"``: all-gather the group's ids and weights (each device then
  sees the ``b·P`` bags of its group), pool the rows it owns into a ``[b·P, K]`` partial sum
  (zeros elsewhere), and ``psum_scatter`` it so each device gets the sums of its own ``b``
  bags. Moves ``(P-1)·b·L`` ids and weights in, ``(P-1)·b·K`` values out; exact, no capacity.
* row-wise, ``route="all_to_all"``: each device sends each of its slots (local row, weight,
  bag) to the owning device, at most ``C`` per destination (default ``b·L``, which can never
  overflow); owners pool per (source, bag) and an all-to-all returns ``[b, K]`` partial sums
  from each owner. Moves ``(P-1)·C`` slots and ``(P-1)·b·K`` values. A bag whose slots do not
  fit the capacity comes back NaN (loud, never silently short): size ``C`` with
  :func:`required_capacity`.
* column-wise: all-gather ids and weights, pool the device's ``K' = ⌈K/P⌉`` columns for the
  group's bags, all-to-all the ``[b, K']`` column blocks back to the bag owners.
* table-wise: all-to-all each table's ids and weights to the table's device, pool, all-to-all
  the pooled ``[b, K]`` rows back (``T_max`` table slots per device).

Gradients: every collective has a linear transpose (all-gather ⇄ psum_scatter, all-to-all ⇄
all-to-all), so ``jax.grad`` of a sharded lookup runs the same routes backwards and the
table gradient stays sharded like the table. On a mesh with replica axes (all but
``layout.axis``) a block is invariant over them while the ids vary; ``shard_map`` (with its
default ``check_vma=True``) casts the block to varying where they meet, and the transpose of
that cast sums the block's gradient over the replicas. ``proofs/proof_sharding.py`` proves
values and gradients equal :func:`jaxembed.bag_lookup` on one device. Padding (``-1``) and the
out-of-range policy are :func:`jaxembed.bag_lookup`'s: eager calls raise ``IndexError``, under
``jit`` a bag holding an id outside ``[-1, V)`` is NaN. ``combiner="max"`` is not offered: its
per-device partial maxima would split the gradient of ties across devices differently.

The function runs eagerly or under ``jit``; a mesh with Explicit axes needs ``jax.set_mesh``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from jaxembed import _validate
from jaxembed.bags import PAD_ID, Bags
from jaxembed.checks import check_ids
from jaxembed.lookup import _normalized_weights, _slot_loop_row_sum, clip_rows
from jaxembed.partition import shard_of
from jaxembed.sharding.layout import PACKED, Layout

Route = Literal["all_gather", "all_to_all"]
ROUTES: tuple[str, ...] = ("all_gather", "all_to_all")
SHARDED_COMBINERS: tuple[str, ...] = ("sum", "mean", "sqrtn")


def prepare_bags(
    layout: Layout, bags: Mapping[str, Bags], combiner: str
) -> dict[str, tuple[jax.Array, jax.Array, jax.Array]]:
    """Check ``bags`` against ``layout``; per table ``(ids, weights, poisoned)``.

    ``ids`` keeps only ids in ``[0, V)`` (others become ``-1``), ``weights`` are the
    combiner-normalized slot weights (0 on padding), ``poisoned`` marks bags holding an id
    outside ``[-1, V)`` (possible only under ``jit``; concrete ids raise ``IndexError``).
    """
    if combiner not in SHARDED_COMBINERS:
        raise ValueError(f"sharded lookups take combiner in {SHARDED_COMBINERS}, got {combiner!r}")
    if not isinstance(bags, Mapping):
        raise TypeError(f"bags must be a mapping table name -> Bags, got {type(bags).__name__}")
    if set(bags) != set(layout.names):
        raise ValueError(
            f"bags has tables {sorted(bags)}, the layout has {sorted(layout.names)}; pass one "
            "Bags per table (an all-padding Bags for a table not looked up)"
        )
    sizes = set()
    for name in layout.names:
        if not isinstance(bags[name], Bags):
            raise TypeError(
                f"bags[{name!r}] must be a jaxembed.Bags, got {type(bags[name]).__name__}"
            )
        sizes.add(bags[name].batch_size)
    if len(sizes) != 1:
        raise ValueError(f"every table's Bags must have the same batch size, got {sorted(sizes)}")
    batch = sizes.pop()
    if batch % layout.mesh.size:
        raise ValueError(
            f"batch size {batch} must be a multiple of the mesh's {layout.mesh.size} devices "
            "(the batch is split over all of them); pad the batch with empty bags"
        )
    prepared = {}
    for name in layout.names:
        v, _ = layout.shape(name)
        ids = bags[name].ids
        if _validate.is_traced(ids) or getattr(ids, "is_fully_addressable", True):
            # (a multi-process array has no host copy to check)
            _validate.ids_in_range(ids, v, f"sharded lookup of table {name!r}: ids")
        ids = jnp.asarray(ids)
        valid = (ids >= PAD_ID) & (ids < v)
        check_ids(ids, valid, v, f"sharded lookup of table {name!r}: ids")
        present = (ids >= 0) & valid
        weights = jnp.where(present, bags[name].slot_weights(jnp.float32), 0.0)
        weights = _normalized_weights(weights, combiner)
        prepared[name] = (jnp.where(present, ids, PAD_ID), weights, jnp.any(~valid, axis=1))
    return prepared


def _pool(rows: jax.Array, ids: jax.Array, weights: jax.Array, max_norm: float | None):
    """``out[n] = Σ_l weights[n, l] · clip(rows[ids[n, l]])`` (weight 0 where ``ids < 0``).

    The plain-JAX gather-sum of :mod:`jaxembed.lookup` (differentiated by JAX: a scatter-add);
    its Pallas kernel is not used inside ``shard_map`` (its output type names no varying
    mesh axes, which ``check_vma`` requires).
    """
    present = ids >= 0
    safe = jnp.where(present, ids, 0)
    weights = jnp.where(present, weights, 0.0)
    if max_norm is None:
        return _slot_loop_row_sum(rows, safe, weights)
    got = clip_rows(jnp.take(rows, safe, axis=0, mode="clip"), max_norm)
    out = jnp.einsum("nlk,nl->nk", got.astype(weights.dtype), weights,
                     precision=lax.Precision.HIGHEST)
    return out.astype(rows.dtype)


# --- row-wise --------------------------------------------------------------------------------
def _row_all_gather(layout: Layout, v: int, max_norm: float | None):
    axis, p = layout.axis, layout.num_shards

    def body(block, ids, weights):
        ids = lax.all_gather(ids, axis, tiled=True)  # [b·P, L]: the group's bags
        weights = lax.all_gather(weights, axis, tiled=True)
        shard, local = shard_of(jnp.maximum(ids, 0), v, p, layout.strategy)
        mine = (ids >= 0) & (shard == lax.axis_index(axis))
        partial = _pool(block[0], jnp.where(mine, local, PAD_ID), weights,
                        max_norm)
        return lax.psum_scatter(partial, axis, scatter_dimension=0, tiled=True)

    return body


def required_capacity(layout: Layout, name: str, ids: Any) -> int:
    """Smallest ``capacity`` with which ``route="all_to_all"`` routes every slot of ``ids``
    (host-side, concrete ids): the most slots any device sends to any one owner."""
    ids = np.asarray(_validate.id_array(ids, "required_capacity ids"))
    v, _ = layout.shape(name)
    _validate.ids_in_range(ids, v, "required_capacity ids")
    p = layout.num_shards
    local = ids.reshape(layout.mesh.size, -1)
    owner, _ = shard_of(np.maximum(local, 0), v, p, layout.strategy)
    counts = [np.bincount(o[row >= 0], minlength=p) for o, row in zip(owner, local, strict=True)]
    return int(max(c.max() for c in counts))


def _row_all_to_all(layout: Layout, v: int, capacity: int, max_norm: float | None):
    axis, p = layout.axis, layout.num_shards

    def body(block, ids, weights):
        b, width = ids.shape
        flat = ids.reshape(-1)
        present = flat >= 0
        shard, local = shard_of(jnp.maximum(flat, 0), v, p, layout.strategy)
        dest = jnp.where(present, shard, p)  # p: goes nowhere
        to_dest = dest[:, None] == jnp.arange(p)[None, :]
        rank = jnp.sum(jnp.cumsum(to_dest, axis=0) * to_dest, axis=1) - 1
        sent = present & (rank < capacity)
        bag = jnp.repeat(jnp.arange(b), width)
        dropped = (present & ~sent).astype(jnp.int32)
        overflow = jax.ops.segment_max(dropped, bag, num_segments=b) > 0
        where_to = (jnp.where(sent, dest, p), jnp.where(sent, rank, 0))

        def buffer(fill, values):
            return jnp.full((p, capacity), fill, values.dtype).at[where_to].set(values, mode="drop")

        send_ids = buffer(PAD_ID, local.astype(ids.dtype))
        send_w = buffer(0.0, weights.reshape(-1))
        send_bag = buffer(0, bag.astype(jnp.int32))
        got_ids = lax.all_to_all(send_ids, axis, 0, 0)  # [P sources, C]
        got_w = lax.all_to_all(send_w, axis, 0, 0)
        got_bag = lax.all_to_all(send_bag, axis, 0, 0)
        rows = _pool(block[0], got_ids.reshape(-1, 1), got_w.reshape(-1, 1),
                     max_norm)
        segment = (jnp.arange(p)[:, None] * b + got_bag).reshape(-1)
        partial = jax.ops.segment_sum(rows, segment, num_segments=p * b).reshape(p, b, -1)
        back = lax.all_to_all(partial, axis, 0, 0)  # [P owners, b, K]
        out = jnp.sum(back, axis=0)
        return jnp.where(overflow[:, None], jnp.array(jnp.nan, out.dtype), out)

    return body


# --- column-wise -----------------------------------------------------------------------------
def _column(layout: Layout, k: int, max_norm: float | None):
    axis, p = layout.axis, layout.num_shards
    if max_norm is not None:
        raise ValueError(
            "max_norm needs each row's whole norm; a column-wise layout splits rows over "
            "devices: use a row- or table-wise layout for tables with max_norm"
        )

    def body(block, ids, weights):
        b = ids.shape[0]
        ids = lax.all_gather(ids, axis, tiled=True)
        weights = lax.all_gather(weights, axis, tiled=True)
        pooled = _pool(block[0], ids, weights, None)  # [b·P, K'] for my columns
        parts = lax.all_to_all(pooled.reshape(p, b, -1), axis, 0, 0)  # [P column blocks, b, K']
        return parts.transpose(1, 0, 2).reshape(b, -1)[:, :k]

    return body


# --- table-wise ------------------------------------------------------------------------------
def table_routing(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Table-wise static routing: ``slot_table[P, T_max]`` (table index of each device slot,
    ``T`` = empty) and ``offsets[P, T_max]`` (row offset of that table in the device's block)."""
    t_max, p = layout.slots_per_device(), layout.num_shards
    slot_table = np.full((p, t_max), len(layout.names), np.int32)
    offsets = np.zeros((p, t_max), np.int32)
    for t, name in enumerate(layout.names):
        device, slot, offset = layout.table_slots()[name]
        slot_table[device, slot] = t
        offsets[device, slot] = offset
    return slot_table, offsets


def _table(layout: Layout, max_norm: float | None):
    axis = layout.axis
    slot_table, offsets = table_routing(layout)
    where = np.array([layout.table_slots()[n][:2] for n in layout.names])  # [T, (device, slot)]

    def body(block, ids, weights):  # ids, weights: [T, b, L]
        none_ids = jnp.full((1, *ids.shape[1:]), PAD_ID, ids.dtype)
        none_w = jnp.zeros((1, *weights.shape[1:]), weights.dtype)
        send_ids = jnp.concatenate([ids, none_ids])[slot_table]  # [P, T_max, b, L]
        send_w = jnp.concatenate([weights, none_w])[slot_table]
        got_ids = lax.all_to_all(send_ids, axis, 0, 0)  # [P sources, T_max, b, L]
        got_w = lax.all_to_all(send_w, axis, 0, 0)
        mine = jnp.asarray(offsets)[lax.axis_index(axis)]  # [T_max]
        local = jnp.where(got_ids >= 0, got_ids + mine[None, :, None, None], PAD_ID)
        width = ids.shape[-1]
        pooled = _pool(block[0], local.reshape(-1, width),
                       got_w.reshape(-1, width), max_norm)
        back = lax.all_to_all(pooled.reshape(*got_ids.shape[:3], -1), axis, 0, 0)
        return back[where[:, 0], where[:, 1]]  # [T, b, K_max]

    return body


def sharded_bag_lookup(
    layout: Layout,
    stored: Mapping[str, jax.Array],
    bags: Mapping[str, Bags],
    *,
    combiner: str = "mean",
    max_norm: float | None = None,
    route: Route = "all_gather",
    capacity: int | None = None,
) -> dict[str, jax.Array]:
    """Pooled rows ``{name: [B, K]}`` of each table's bags, the batch split over the mesh.

    Equals ``{name: jaxembed.bag_lookup(table, bags[name], combiner=..., max_norm=...)}``
    on the logical tables (values and gradients w.r.t. ``stored``). ``stored`` are the arrays
    of :func:`jaxembed.sharding.shard_tables`; ``route`` and ``capacity`` choose the row-wise
    algorithm (see the module docstring). ``max_norm`` is not available column-wise.
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    if capacity is not None and (route != "all_to_all" or layout.kind != "row"):
        raise ValueError("capacity applies only to kind='row' with route='all_to_all'")
    _check_stored(layout, stored)
    prepared = prepare_bags(layout, bags, combiner)
    data = layout.batch_spec
    out: dict[str, jax.Array] = {}
    if layout.kind == "table":
        width = max(ids.shape[1] for ids, _, _ in prepared.values())

        def pad(x, fill):
            return jnp.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=fill)

        ids = jnp.stack([pad(prepared[n][0], PAD_ID) for n in layout.names])
        weights = jnp.stack([pad(prepared[n][1], 0.0) for n in layout.names])
        stacked = PartitionSpec(None, layout.batch_axes)
        fn = jax.shard_map(
            _table(layout, max_norm), mesh=layout.mesh,
            in_specs=(layout.storage_spec, stacked, stacked), out_specs=stacked,
        )
        pooled = fn(layout.place(stored[PACKED], layout.storage_spec),
                    layout.place(ids, stacked), layout.place(weights, stacked))
        for t, name in enumerate(layout.names):
            out[name] = pooled[t, :, : layout.shape(name)[1]]
    else:
        for name in layout.names:
            v, k = layout.shape(name)
            ids, weights, _ = prepared[name]
            if layout.kind == "column":
                body = _column(layout, k, max_norm)
            elif route == "all_gather":
                body = _row_all_gather(layout, v, max_norm)
            else:
                cap = ids.shape[1] * (ids.shape[0] // layout.mesh.size) if capacity is None \
                    else _positive_int(capacity, "capacity")
                body = _row_all_to_all(layout, v, cap, max_norm)
            fn = jax.shard_map(body, mesh=layout.mesh,
                               in_specs=(layout.storage_spec, data, data), out_specs=data)
            out[name] = fn(layout.place(stored[name], layout.storage_spec),
                           layout.place(ids, data), layout.place(weights, data))
    return {
        name: jnp.where(prepared[name][2][:, None], jnp.array(jnp.nan, out[name].dtype),
                        out[name])
        for name in layout.names
    }


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _check_stored(layout: Layout, stored: Mapping[str, Any]) -> None:
    expected = layout.storage_shapes()
    if not isinstance(stored, Mapping) or set(stored) != set(expected):
        got = sorted(stored) if isinstance(stored, Mapping) else type(stored).__name__
        raise ValueError(f"stored arrays {got} do not match the layout's {sorted(expected)}")
    for name, shape in expected.items():
        if tuple(stored[name].shape) != shape:
            raise ValueError(
                f"stored array {name!r} has shape {tuple(stored[name].shape)}, the layout "
                f"expects {shape} (use shard_tables to build it)"
            )


def communication_bytes(
    layout: Layout,
    batch: int,
    width: int | Mapping[str, int],
    *,
    route: Route = "all_gather",
    capacity: int | None = None,
    value_bytes: int = 4,
) -> dict[str, int]:
    """Bytes the collectives of one lookup move between devices, summed over all devices.

    Counted as what each device sends to other devices (an all-gather or all-to-all of a
    local block ``x`` over ``P`` devices: ``(P-1)·|x|`` per device, a ring ``psum_scatter`` of
    ``[b·P, K]``: ``(P-1)·b·K``), times the number of devices. Ids, weights and bag indices
    are 4 bytes; rows ``value_bytes``. Returns ``forward`` (the lookup), ``backward`` (the
    table gradient: the float return path transposed; ids and weights are not sent back) and,
    on a mesh with replica axes, ``replica_allreduce``: the ring all-reduce of the dense
    gradient of each replicated block (``2·(D-1)/D·R·K'`` per device), which
    :func:`jaxembed.sharding.row_sparse_grads` avoids.
    """
    widths = {n: width for n in layout.names} if isinstance(width, int) else dict(width)
    p, devices = layout.num_shards, layout.mesh.size
    b = batch // devices
    fwd = bwd = 0
    if layout.kind == "table":
        t_max, l_max = layout.slots_per_device(), max(widths.values())
        k_max = max(k for _, _, k in layout.shapes)
        fwd = (p - 1) * t_max * b * (l_max * 8 + k_max * value_bytes)
        bwd = (p - 1) * t_max * b * k_max * value_bytes
    for name, _, k in layout.shapes if layout.kind != "table" else ():
        l = widths[name]
        if layout.kind == "column":
            kk = -(-k // p)
            fwd += (p - 1) * b * (l * 8 + kk * value_bytes)
            bwd += (p - 1) * b * kk * value_bytes
        elif route == "all_gather":
            fwd += (p - 1) * b * (l * 8 + k * value_bytes)
            bwd += (p - 1) * b * k * value_bytes
        else:
            cap = b * l if capacity is None else capacity
            fwd += (p - 1) * (cap * 12 + b * k * value_bytes)
            bwd += (p - 1) * b * k * value_bytes
    out = {"forward": fwd * devices, "backward": bwd * devices}
    replicas = devices // p
    if replicas > 1:
        block = sum(r * kk for _, r, kk in layout.storage_shapes().values()) * value_bytes
        out["replica_allreduce"] = devices * 2 * (replicas - 1) * block // replicas
    return out
