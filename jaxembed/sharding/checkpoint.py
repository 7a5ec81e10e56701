"""Save sharded tables with orbax; restore them onto another mesh, device count or layout.

:func:`save_sharded` writes the stacked arrays (each device or process writes its own blocks;
orbax writes into a temporary directory and renames it when complete, so a crash never
leaves a half-written checkpoint under ``path``) and the layout as JSON. :func:`restore_sharded`
reads the blocks back with the new mesh's devices and re-lays them out under ``jit``:

.. math:: S_{\\text{new}} = \\text{to\\_storage}_{\\text{new}}(\\text{from\\_storage}_{\\text{old}}
   (S_{\\text{old}}))

so a row-wise checkpoint of 8 devices restores onto 4 devices, onto 1, or as a table-wise
layout, bit for bit (``tests/test_sharding.py``). The old blocks are read sharded over the
new table axis when ``P_old`` is a multiple of ``P_new``, else replicated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec

from jaxembed.sharding.layout import Layout
from jaxembed.sharding.lookup import _check_stored

FORMAT = "jaxembed.sharding/1"


def _checkpointer() -> ocp.Checkpointer:
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def save_sharded(
    path: str | os.PathLike, layout: Layout, stored: Mapping[str, jax.Array], *,
    overwrite: bool = False,
) -> None:
    """Write ``stored`` (the arrays of :func:`jaxembed.sharding.shard_tables`) and ``layout``
    to the directory ``path`` (absolute or relative; it must not exist unless ``overwrite``)."""
    path = os.path.abspath(os.fspath(path))
    _check_stored(layout, stored)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"checkpoint {path} already exists (pass overwrite=True)")
    meta = layout.describe() | {
        "format": FORMAT,
        "dtypes": {name: str(jnp.dtype(a.dtype)) for name, a in stored.items()},
    }
    _checkpointer().save(
        path,
        args=ocp.args.Composite(
            arrays=ocp.args.StandardSave(dict(stored)), layout=ocp.args.JsonSave(meta)
        ),
        force=overwrite,
    )


def read_layout(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON layout description a checkpoint was saved with."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint directory at {path}")
    meta = _checkpointer().restore(path, args=ocp.args.Composite(layout=ocp.args.JsonRestore()))
    meta = meta["layout"]
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a jaxembed sharded checkpoint (format {meta.get('format')!r})"
        )
    return meta


def _saved_layout(meta: Mapping[str, Any]) -> Layout:
    """The saved layout over an abstract mesh of the saved size (for index arithmetic only)."""
    mesh = AbstractMesh((meta["num_shards"],), (meta["axis"],))
    return Layout(
        meta["kind"], mesh, meta["axis"], tuple((n, int(v), int(k)) for n, v, k in meta["shapes"]),
        meta["strategy"], tuple((n, int(d)) for n, d in meta["placement"]),
    )


def restore_sharded(path: str | os.PathLike, layout: Layout) -> dict[str, jax.Array]:
    """The tables of the checkpoint at ``path``, stored as ``layout`` says (on its mesh).

    ``layout`` may differ from the saved one in mesh, device count and kind; its tables must
    have the saved names and shapes.
    """
    path = os.path.abspath(os.fspath(path))
    meta = read_layout(path)
    old = _saved_layout(meta)
    if sorted(old.shapes) != sorted(layout.shapes):
        raise ValueError(
            f"checkpoint {path} holds tables {sorted(old.shapes)}, the layout wants "
            f"{sorted(layout.shapes)} (name, V, K)"
        )
    p_old, p_new = old.num_shards, layout.num_shards
    spec = PartitionSpec(layout.axis) if p_old % p_new == 0 else PartitionSpec()
    read = NamedSharding(layout.mesh, spec)
    targets = {
        name: jax.ShapeDtypeStruct(shape, jnp.dtype(meta["dtypes"][name]), sharding=read)
        for name, shape in old.storage_shapes().items()
    }
    restored = _checkpointer().restore(
        path, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(targets))
    )["arrays"]
    relayout = jax.jit(
        lambda arrays: layout.to_storage(old.from_storage(arrays)),
        out_shardings=layout.storage_sharding(),
    )
    return relayout(dict(restored))
