"""Embedding tables sharded over a JAX device mesh (row-, column- and table-wise).

One concept per module (``docs/scaling.md`` has the whole picture):

* :mod:`~jaxembed.sharding.layout`: where rows and columns live (:func:`plan`,
  :func:`shard_tables`, :func:`unshard_tables`, greedy table placement);
* :mod:`~jaxembed.sharding.lookup`: bag lookups with ``jax.shard_map`` and the bytes their
  collectives move (:func:`sharded_bag_lookup`, :func:`communication_bytes`);
* :mod:`~jaxembed.sharding.rowsparse`: per-shard row-sparse gradients and optimizer steps;
* :mod:`~jaxembed.sharding.checkpoint`: orbax save/restore onto another device count
  (imported on first use: ``save_sharded``, ``restore_sharded``, ``read_layout``);
* :mod:`~jaxembed.sharding.launch`: virtual CPU devices and multi-process start-up.
"""

from typing import Any

from jaxembed.sharding.launch import (
    free_port,
    global_array,
    global_bags,
    initialize,
    run_python,
    to_host,
    virtual_cpu_env,
)
from jaxembed.sharding.layout import (
    KINDS,
    PACKED,
    Layout,
    greedy_placement,
    plan,
    shard_tables,
    unshard_tables,
)
from jaxembed.sharding.lookup import (
    ROUTES,
    SHARDED_COMBINERS,
    communication_bytes,
    required_capacity,
    sharded_bag_lookup,
)
from jaxembed.sharding.rowsparse import (
    ShardGrads,
    apply_row_sparse,
    dense_from_sparse,
    init_row_sparse,
    row_sparse_grads,
)

_CHECKPOINT = ("read_layout", "restore_sharded", "save_sharded")


def __getattr__(name: str) -> Any:
    """Import the orbax-backed checkpoint functions on first use (orbax is slow to import)."""
    if name in _CHECKPOINT:
        from jaxembed.sharding import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'jaxembed.sharding' has no attribute {name!r}")


__all__ = [
    "KINDS",
    "PACKED",
    "ROUTES",
    "SHARDED_COMBINERS",
    "Layout",
    "ShardGrads",
    "apply_row_sparse",
    "communication_bytes",
    "dense_from_sparse",
    "free_port",
    "global_array",
    "global_bags",
    "greedy_placement",
    "init_row_sparse",
    "initialize",
    "plan",
    "read_layout",
    "required_capacity",
    "restore_sharded",
    "row_sparse_grads",
    "run_python",
    "save_sharded",
    "shard_tables",
    "sharded_bag_lookup",
    "to_host",
    "unshard_tables",
    "virtual_cpu_env",
]
