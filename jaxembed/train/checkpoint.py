"""Orbax checkpoints of a training run's whole state, committed atomically.

A checkpoint holds every leaf of a pytree (model tables and dense parameters, optimizer
states, the epoch counter, the metric history) under its flat index. Orbax writes each step
into a temporary folder and renames it only when the write completed, so a crash mid-save
leaves the previous checkpoint as the latest one; :func:`restore_latest` ignores unfinished
folders. Restoring needs a template pytree of the same structure (a freshly built run), whose
tree definition puts the leaves back in place — nothing is unpickled. Each leaf is restored
with the template leaf's sharding, so a checkpoint saved on one set of devices restores onto
another. The template may be abstract (``jax.ShapeDtypeStruct`` leaves, as from
``jax.eval_shape``): its leaves are restored onto the default device, and nothing has to be
initialised only to be overwritten.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _manager(directory: str | os.PathLike, keep: int = 2) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def _flat(tree: Any) -> dict[str, Any]:
    return {f"{i:06d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def _stored(tree: Any) -> dict[str, Any]:
    """The leaves orbax stores: all but the empty ones (orbax refuses zero-size arrays; an
    empty leaf is rebuilt from the template's shape on restore)."""
    return {key: leaf for key, leaf in _flat(tree).items() if np.size(leaf) > 0}


def _size(leaf: Any) -> int:
    """Elements of a leaf, abstract (``jax.ShapeDtypeStruct``) or not."""
    return int(np.prod(leaf.shape)) if isinstance(leaf, jax.ShapeDtypeStruct) else np.size(leaf)


def save(directory: str | os.PathLike, step: int, tree: Any) -> None:
    """Save ``tree`` as checkpoint ``step`` and wait until it is committed."""
    manager = _manager(directory)
    manager.save(int(step), args=ocp.args.StandardSave(_stored(tree)))
    manager.wait_until_finished()
    manager.close()


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest committed checkpoint step, or None."""
    if not os.path.isdir(directory):
        return None
    manager = _manager(directory)
    step = manager.latest_step()
    manager.close()
    return step


def _target(leaf: Any, stored: Any) -> jax.ShapeDtypeStruct:
    """What a restored leaf becomes: a jax array with the template's own sharding (so a run
    saved on 8 devices restores onto this run's devices, however many), or a numpy array
    (dtype kept, float64 included). A template leaf with zero rows takes the stored number
    of rows."""
    if isinstance(leaf, jax.Array):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
    sharding = None
    if isinstance(leaf, jax.ShapeDtypeStruct):  # an abstract template: the default device
        sharding = leaf.sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    else:
        leaf = np.asarray(leaf)
    shape = tuple(leaf.shape)
    if shape and shape[0] == 0 and stored is not None and len(stored.shape) == len(shape):
        shape = (int(stored.shape[0]), *shape[1:])
    return jax.ShapeDtypeStruct(shape, leaf.dtype, sharding=sharding)


def restore_latest(directory: str | os.PathLike, template: Any) -> tuple[int, Any] | None:
    """``(step, tree)`` of the newest committed checkpoint, shaped like ``template``; None
    when there is none. A template leaf with zero rows (e.g. a metric history, one row per
    epoch done) takes the saved number of rows. Raises ValueError when the leaves do not
    match the template's."""
    step = latest_step(directory)
    if step is None:
        return None
    leaves, treedef = jax.tree.flatten(template)
    manager = _manager(directory)
    try:
        # the stored shapes matter only for a template's empty leaves (reading them costs
        # about as much as restoring a small model)
        empty = any(_size(leaf) == 0 for leaf in leaves)
        stored = dict(manager.item_metadata(step).tree) if empty else {}
        abstract = {key: _target(leaf, stored.get(key)) for key, leaf in _flat(template).items()
                    if key in stored or _size(leaf) > 0}
        restored = dict(manager.restore(step, args=ocp.args.StandardRestore(abstract)))
    except (ValueError, KeyError) as err:
        raise ValueError(
            f"checkpoint {step} in {directory} does not match this model and optimizer: {err}"
        ) from err
    finally:
        manager.close()
    for key, leaf in _flat(template).items():
        if key not in restored and _size(leaf) == 0:
            # an empty leaf was not stored: the template's is the value
            restored[key] = (jax.numpy.zeros(leaf.shape, leaf.dtype)
                             if isinstance(leaf, jax.ShapeDtypeStruct) else leaf)
    if len(restored) != len(leaves):
        raise ValueError(f"checkpoint {step} has {len(restored)} arrays, expected {len(leaves)}")
    return step, jax.tree.unflatten(treedef, [restored[key] for key in sorted(restored)])
