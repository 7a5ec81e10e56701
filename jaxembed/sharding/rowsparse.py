r"""Row-sparse gradients of sharded tables, applied shard by shard with a row-sparse optimizer.

For a lookup pooled with normalized slot weights :math:`\tilde w` (see
:mod:`jaxembed.sharding.lookup`) and the loss's cotangent :math:`g_b = \partial L / \partial
e_b`, the table gradient is a sum of one row per slot:

.. math:: \frac{\partial L}{\partial W_i} = \sum_{(b, l):\ i_{bl} = i} \tilde w_{bl}\, g_b .

:func:`row_sparse_grads` hands each device the slots whose rows it stores, as *local* row
indices into its block and the matching gradient rows (``ShardGrads``: ``ids int[P, N]`` with
``-1`` for slots another device owns, ``row_grads f[P, N, K']``); per kind

* row-wise: ``N = B·L``, local row ``i div P`` (mod) or ``i - start_p`` (div) where owned;
* column-wise: ``N = B·L``, every slot, the device's ``K'`` columns of ``w̃·g``;
* table-wise: ``N = T_max·B·L``, the slots of the device's tables, offset into its block.

Every device all-gathers the batch's ids, weights and cotangents over the whole mesh
(``(#devices - 1)·b·(2L + K)`` values sent per device) — the replicas of a block all compute
the same update, so no dense all-reduce of the replicated tables is needed.
:func:`apply_row_sparse` runs a :class:`jaxembed.optim.sparse.SparseRule`'s ``update`` on
each block with its own optimizer slots (:func:`init_row_sparse`), inside ``shard_map``: the
update touches ``O(N·K')`` entries per device and no table row crosses a device.
``proofs/proof_sharding.py`` proves the result equals the dense optax step on one device.
Gradients here are for lookups without ``max_norm`` (clipping makes the row gradient depend
on the row).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from jaxembed.bags import PAD_ID, Bags
from jaxembed.partition import shard_of
from jaxembed.sharding.layout import PACKED, Layout
from jaxembed.sharding.lookup import _check_stored, prepare_bags, table_routing


class ShardGrads(NamedTuple):
    """Per-device row-sparse gradient of one stored array (stacked on axis 0 like it)."""

    ids: jax.Array
    """int32[P, N]: local row in the device's block of each slot, -1 where not this device's."""
    row_grads: jax.Array
    """f[P, N, K']: the gradient row of each slot (zero where ``ids`` is -1)."""


def _gather_all(layout: Layout, x: jax.Array, axis: int = 0) -> jax.Array:
    """The whole batch on every device (identical on replicas, so typed invariant)."""
    return lax.all_gather(x, layout.batch_axes, axis=axis, tiled=True, to="invarying")


def _row_body(layout: Layout, v: int):
    p = layout.num_shards

    def body(ids, weights, g):
        ids, weights, g = (_gather_all(layout, x) for x in (ids, weights, g))
        shard, local = shard_of(jnp.maximum(ids, 0), v, p, layout.strategy)
        mine = (ids >= 0) & (shard == lax.axis_index(layout.axis))
        rows = jnp.where(mine[..., None], weights[..., None] * g[:, None, :], 0.0)
        return (jnp.where(mine, local, PAD_ID).reshape(1, -1),
                rows.reshape(1, -1, g.shape[-1]).astype(g.dtype))

    return body


def _column_body(layout: Layout, k: int):
    p = layout.num_shards
    width = -(-k // p)

    def body(ids, weights, g):
        ids, weights, g = (_gather_all(layout, x) for x in (ids, weights, g))
        g = jnp.pad(g, ((0, 0), (0, p * width - k)))
        mine = lax.dynamic_slice_in_dim(g, lax.axis_index(layout.axis) * width, width, axis=1)
        rows = jnp.where((ids >= 0)[..., None], weights[..., None] * mine[:, None, :], 0.0)
        return ids.reshape(1, -1), rows.reshape(1, -1, width).astype(g.dtype)

    return body


def _table_body(layout: Layout):
    slot_table, offsets = table_routing(layout)
    num_tables = len(layout.names)

    def body(ids, weights, g):  # [T, b, L], [T, b, L], [T, b, K_max]
        ids, weights, g = (_gather_all(layout, x, axis=1) for x in (ids, weights, g))
        me = lax.axis_index(layout.axis)
        chosen = jnp.asarray(slot_table)[me]  # [T_max], T = empty slot
        real = chosen < num_tables
        pick = jnp.minimum(chosen, num_tables - 1)
        sel_ids, sel_w, sel_g = ids[pick], weights[pick], g[pick]
        present = (sel_ids >= 0) & real[:, None, None]
        local = jnp.where(present, sel_ids + jnp.asarray(offsets)[me][:, None, None], PAD_ID)
        rows = jnp.where(present[..., None], sel_w[..., None] * sel_g[:, :, None, :], 0.0)
        return local.reshape(1, -1), rows.reshape(1, -1, g.shape[-1]).astype(g.dtype)

    return body


def row_sparse_grads(
    layout: Layout,
    bags: Mapping[str, Bags],
    cotangents: Mapping[str, jax.Array],
    *,
    combiner: str = "mean",
) -> dict[str, ShardGrads]:
    """Per-device row-sparse gradients, by storage name, of
    ``Σ_t <cotangents[t], sharded_bag_lookup(...)[t]>`` w.r.t. the stored arrays.

    ``cotangents[t]`` is ``∂loss/∂pooled[t]`` (``[B, K_t]``, e.g. from ``jax.vjp`` of the
    layers above the lookup). Bags holding an id outside ``[-1, V)`` (under ``jit``) get a
    zero gradient, as :func:`jaxembed.bag_lookup`'s NaN rows do.
    """
    prepared = prepare_bags(layout, bags, combiner)
    if not isinstance(cotangents, Mapping) or set(cotangents) != set(layout.names):
        got = sorted(cotangents) if isinstance(cotangents, Mapping) else type(cotangents)
        raise ValueError(f"cotangents has tables {got}, the layout has {sorted(layout.names)}")
    batch = next(iter(prepared.values()))[0].shape[0]
    gs = {}
    for name in layout.names:
        g = jnp.asarray(cotangents[name])
        expected = (batch, layout.shape(name)[1])
        if tuple(g.shape) != expected:
            raise ValueError(
                f"cotangents[{name!r}] has shape {tuple(g.shape)}, expected {expected}"
            )
        gs[name] = jnp.where(prepared[name][2][:, None], jnp.zeros((), g.dtype), g)
    data, out_spec = layout.batch_spec, PartitionSpec(layout.axis)
    if layout.kind == "table":
        width = max(prepared[n][0].shape[1] for n in layout.names)
        k_max = max(k for _, _, k in layout.shapes)

        def pad(x, size, fill):
            return jnp.pad(x, ((0, 0), (0, size - x.shape[1])), constant_values=fill)

        ids = jnp.stack([pad(prepared[n][0], width, PAD_ID) for n in layout.names])
        weights = jnp.stack([pad(prepared[n][1], width, 0.0) for n in layout.names])
        g = jnp.stack([pad(gs[n], k_max, 0.0) for n in layout.names])
        stacked = PartitionSpec(None, layout.batch_axes)
        fn = jax.shard_map(_table_body(layout), mesh=layout.mesh,
                           in_specs=(stacked, stacked, stacked), out_specs=out_spec)
        args = (layout.place(x, stacked) for x in (ids, weights, g))
        return {PACKED: ShardGrads(*fn(*args))}
    out = {}
    for name in layout.names:
        v, k = layout.shape(name)
        body = _row_body(layout, v) if layout.kind == "row" else _column_body(layout, k)
        fn = jax.shard_map(body, mesh=layout.mesh, in_specs=(data, data, data),
                           out_specs=out_spec)
        ids, weights, _ = prepared[name]
        out[name] = ShardGrads(*fn(*(layout.place(x, data) for x in (ids, weights, gs[name]))))
    return out


def _state_specs(layout: Layout, state: Any, block_shape: tuple[int, ...]) -> Any:
    """Storage spec for slot arrays shaped like the stacked table, replicated for the rest."""
    stacked = (layout.num_shards, *block_shape)
    return jax.tree.map(
        lambda x: layout.storage_spec if tuple(x.shape) == stacked else PartitionSpec(), state
    )


def _is_slot(x: Any, block_shape: tuple[int, ...]) -> bool:
    return tuple(x.shape) == block_shape


def init_row_sparse(rule: Any, layout: Layout, stored: Mapping[str, jax.Array]) -> dict[str, Any]:
    """Optimizer slots of ``rule`` (a :class:`jaxembed.optim.sparse.SparseRule`) for each
    stored array, sharded like it (slots shaped like a block are stacked; scalars such as
    Adam's step count are replicated)."""
    _check_stored(layout, stored)
    states = {}
    for name, shape in layout.storage_shapes().items():
        block = shape[1:]
        local = jax.eval_shape(rule.init, jax.ShapeDtypeStruct(block, stored[name].dtype))
        specs = jax.tree.map(
            lambda x, b=block: layout.storage_spec if _is_slot(x, b) else PartitionSpec(), local
        )

        def body(stacked, b=block):
            return jax.tree.map(lambda x: x[None] if _is_slot(x, b) else x, rule.init(stacked[0]))

        fn = jax.shard_map(body, mesh=layout.mesh, in_specs=layout.storage_spec, out_specs=specs)
        states[name] = fn(layout.place(stored[name], layout.storage_spec))
    return states


def apply_row_sparse(
    rule: Any,
    layout: Layout,
    stored: Mapping[str, jax.Array],
    states: Mapping[str, Any],
    grads: Mapping[str, ShardGrads],
) -> tuple[dict[str, jax.Array], dict[str, Any]]:
    """One row-sparse optimizer step on every block: ``rule.update(block, slots, ids,
    row_grads)`` on each device, with its local ids. Returns the new stored arrays and slots."""
    _check_stored(layout, stored)
    expected = set(layout.storage_shapes())
    for what, given in (("states", states), ("grads", grads)):
        if set(given) != expected:
            raise ValueError(
                f"{what} has keys {sorted(given)}, the layout stores {sorted(expected)}"
            )
    new_stored, new_states = {}, {}
    for name, shape in layout.storage_shapes().items():
        block = shape[1:]
        specs = _state_specs(layout, states[name], block)
        spec = layout.storage_spec

        def body(stacked, state, grad, b=block):
            local = jax.tree.map(lambda x: x[0] if x.ndim == len(b) + 1 else x, state)
            table, new = rule.update(stacked[0], local, grad.ids[0], grad.row_grads[0])
            return table[None], jax.tree.map(lambda x: x[None] if _is_slot(x, b) else x, new)

        grad = grads[name]
        g_spec = ShardGrads(PartitionSpec(layout.axis), spec)
        fn = jax.shard_map(body, mesh=layout.mesh, in_specs=(spec, specs, g_spec),
                           out_specs=(spec, specs))
        new_stored[name], new_states[name] = fn(
            layout.place(stored[name], spec),
            jax.tree.map(layout.place, states[name], specs),
            ShardGrads(layout.place(grad.ids, g_spec.ids),
                       layout.place(grad.row_grads, g_spec.row_grads)),
        )
    return new_stored, new_states


def dense_from_sparse(layout: Layout, grads: Mapping[str, ShardGrads]) -> dict[str, jax.Array]:
    """The stored-shape dense gradient the sparse one stands for (for checks and debugging):
    ``dense[p, ids[p, n]] += row_grads[p, n]``."""
    out = {}
    for name, (p, r, k) in layout.storage_shapes().items():
        ids, rows = grads[name]
        device = np.repeat(np.arange(p), ids.shape[1]).reshape(p, -1)
        keep = ids >= 0
        out[name] = jnp.zeros((p, r, k), rows.dtype).at[
            jnp.asarray(device), jnp.where(keep, ids, r)
        ].add(rows, mode="drop")
    return out
