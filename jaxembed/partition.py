r"""A table split into ``P`` shards, looked up as if it were whole (TF ``embedding_lookup``).

TensorFlow's ``tf.compat.v1.nn.embedding_lookup(params=[shard_0, ..., shard_{P-1}], ids,
partition_strategy=...)`` places id ``i`` of a ``V``-row table:

* ``"mod"``: on shard ``i mod P``, at local row ``i div P``; shard ``p`` holds
  :math:`\lceil (V - p) / P \rceil` rows.
* ``"div"``: contiguously; with :math:`q = \lfloor V / P \rfloor` and :math:`r = V \bmod P`, the
  first ``r`` shards hold ``q + 1`` rows and the rest ``q``; id ``i < r (q + 1)`` sits on shard
  ``i div (q + 1)`` at row ``i mod (q + 1)``, any other on shard ``r + (i - r(q+1)) div q``
  at row ``(i - r(q+1)) mod q``.

:func:`partitioned_lookup` equals :func:`jaxembed.lookup` on the table the shards make
(``proofs/proof_partition.py``). This module is the single-device arithmetic; spreading shards
over devices is :mod:`jaxembed.sharding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxembed import _validate
from jaxembed.bags import PAD_ID
from jaxembed.checks import check_ids
from jaxembed.lookup import clip_rows

Strategy = Literal["mod", "div"]


def shard_sizes(num_embeddings: int, num_shards: int, strategy: Strategy) -> list[int]:
    """Rows each shard holds under ``strategy`` (TensorFlow's layout)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if strategy == "mod":
        return [len(range(p, num_embeddings, num_shards)) for p in range(num_shards)]
    if strategy == "div":
        base, extra = divmod(num_embeddings, num_shards)
        return [base + (1 if p < extra else 0) for p in range(num_shards)]
    raise ValueError(f"strategy must be 'mod' or 'div', got {strategy!r}")


def shard_of(ids: Any, num_embeddings: int, num_shards: int, strategy: Strategy):
    """``(shard, local_row)`` of each id (works on numpy and jax arrays)."""
    xp = jnp if not isinstance(ids, np.ndarray) else np
    if strategy == "mod":
        return ids % num_shards, ids // num_shards
    if strategy != "div":
        raise ValueError(f"strategy must be 'mod' or 'div', got {strategy!r}")
    base, extra = divmod(num_embeddings, num_shards)
    cut = extra * (base + 1)
    big = ids < cut
    rest = ids - cut
    safe_base = max(base, 1)
    shard = xp.where(big, ids // (base + 1), extra + rest // safe_base)
    local = xp.where(big, ids % (base + 1), rest % safe_base)
    return shard, local


def split_table(table: Any, num_shards: int, strategy: Strategy = "mod") -> list[Array]:
    """The shards of ``table`` under ``strategy`` (inverse of :func:`join_shards`)."""
    table = jnp.asarray(_validate.table_array(table))
    num_embeddings = table.shape[0]
    if not 1 <= num_shards <= num_embeddings:
        raise ValueError(
            f"num_shards must be in 1..{num_embeddings} (the table's rows), got {num_shards}"
        )
    if strategy == "mod":
        return [table[p::num_shards] for p in range(num_shards)]
    sizes = shard_sizes(num_embeddings, num_shards, strategy)
    starts = np.cumsum([0, *sizes])
    return [table[starts[p] : starts[p + 1]] for p in range(num_shards)]


def join_shards(shards: Sequence[Any], strategy: Strategy = "mod") -> Array:
    """The whole table that ``shards`` split under ``strategy``."""
    shards = [jnp.asarray(_validate.table_array(s, f"shard {p}")) for p, s in enumerate(shards)]
    num_embeddings = _check_layout(shards, strategy)
    if strategy == "div":
        return jnp.concatenate(shards, axis=0)
    ids = np.arange(num_embeddings)
    shard, local = shard_of(ids, num_embeddings, len(shards), strategy)
    stacked = jnp.concatenate(shards, axis=0)
    starts = np.cumsum([0] + [s.shape[0] for s in shards])[:-1]
    return stacked[starts[shard] + local]


def _check_layout(shards: Sequence[Array], strategy: Strategy) -> int:
    if not shards:
        raise ValueError("partitioned_lookup needs at least one shard")
    features = {s.shape[1] for s in shards}
    if len(features) != 1:
        raise ValueError(f"shards have different feature sizes {sorted(features)}")
    dtypes = {jnp.dtype(s.dtype) for s in shards}
    if len(dtypes) != 1:
        raise TypeError(f"shards have different dtypes {sorted(str(d) for d in dtypes)}")
    num_embeddings = sum(s.shape[0] for s in shards)
    expected = shard_sizes(num_embeddings, len(shards), strategy)
    actual = [s.shape[0] for s in shards]
    if actual != expected:
        raise ValueError(
            f"shard sizes {actual} do not match strategy {strategy!r} for {num_embeddings} rows "
            f"over {len(shards)} shards (expected {expected})"
        )
    return num_embeddings


def partitioned_lookup(
    shards: Sequence[Any],
    ids: Any,
    *,
    strategy: Strategy = "mod",
    max_norm: float | None = None,
) -> Array:
    """``W[ids]`` where ``W`` is given as ``shards`` split by ``strategy``.

    Same output, padding (``-1`` → zeros) and out-of-range policy as :func:`jaxembed.lookup`;
    ``max_norm`` clips each looked-up row. Each shard is gathered with the ids it owns (a
    masked gather per shard: ``P`` gathers, as TF's ``dynamic_partition`` + ``gather``).
    """
    shards = [jnp.asarray(_validate.table_array(s, f"shard {p}")) for p, s in enumerate(shards)]
    num_embeddings = _check_layout(shards, strategy)
    ids = _validate.id_array(ids, "partitioned_lookup ids")
    _validate.ids_in_range(ids, num_embeddings, "partitioned_lookup ids")
    ids = jnp.asarray(ids)
    valid = (ids >= PAD_ID) & (ids < num_embeddings)
    check_ids(ids, valid, num_embeddings, "partitioned_lookup ids")
    present = (ids >= 0) & valid
    shard, local = shard_of(jnp.where(present, ids, 0), num_embeddings, len(shards), strategy)
    dtype = shards[0].dtype
    rows = jnp.zeros((*ids.shape, shards[0].shape[1]), dtype)
    for p, part in enumerate(shards):
        mine = present & (shard == p)
        got = jnp.take(part, jnp.where(mine, local, 0), axis=0, mode="clip")
        rows = rows + jnp.where(mine[..., None], got, jnp.zeros((), dtype))
    rows = jnp.where(valid[..., None], rows, jnp.array(jnp.nan, dtype))
    if max_norm is not None:
        rows = clip_rows(rows, max_norm)
    return rows
