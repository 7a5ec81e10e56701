"""Input checks shared by the public functions.

Each check runs only on concrete values (numpy arrays, python data, committed jax arrays);
traced values pass through untouched, and the traced behaviour is documented by the caller
(see :mod:`jaxembed.checks` for the checked mode that raises under ``jit`` too). Every message
names the offending value and where it is.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(x: Any) -> bool:
    """True when ``x`` is a tracer (inside ``jit``, ``grad``, ``vmap`` ...)."""
    return isinstance(x, jax.core.Tracer)


def _position(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(tuple(int(i) for i in index))


def id_array(ids: Any, what: str) -> Any:
    """Return ``ids`` as an integer array; raise TypeError for a non-integer dtype.

    Python lists become numpy arrays; a ragged list (not rectangular) raises ValueError.
    """
    if not hasattr(ids, "dtype"):
        try:
            ids = np.asarray(ids)
        except ValueError as err:  # ragged nested lists
            raise ValueError(
                f"{what} is ragged (rows of different lengths); build bags with "
                "Bags.from_lists or Bags.from_offsets"
            ) from err
        if ids.dtype == object:
            raise ValueError(
                f"{what} is ragged (rows of different lengths); build bags with "
                "Bags.from_lists or Bags.from_offsets"
            )
        if ids.size == 0 and ids.dtype == np.float64:  # np.asarray([]) is float64
            ids = ids.astype(np.int32)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"{what} must have an integer dtype, got {ids.dtype}")
    return ids


def narrow_ids(ids: np.ndarray) -> np.ndarray:
    """int32 when the values fit (JAX's default int width), else keep int64."""
    limits = np.iinfo(np.int32)
    if ids.size == 0 or (ids.min() >= limits.min and ids.max() <= limits.max):
        return ids.astype(np.int32)
    return ids


def ids_at_least(ids: Any, lowest: int, what: str) -> None:
    """Raise IndexError naming the first id below ``lowest`` (concrete ids only)."""
    if is_traced(ids) or ids.size == 0:
        return
    host = np.asarray(ids)
    bad = host < lowest
    if np.any(bad):
        pos = np.unravel_index(int(np.argmax(bad)), host.shape)
        raise IndexError(
            f"{what}: id {int(host[pos])} at position {_position(pos)} is below {lowest} "
            f"(-1 is the only negative id allowed: it marks padding)"
        )


def ids_fit_index_type(ids: Any, what: str) -> None:
    """Raise IndexError naming the first 64-bit id outside int32, JAX's index type unless
    ``jax_enable_x64`` is set (converting would wrap it around, silently, to another id)."""
    if (
        is_traced(ids)
        or ids.size == 0
        or jnp.dtype(ids.dtype).itemsize <= 4
        or jax.config.jax_enable_x64
    ):
        return
    host = np.asarray(ids)
    limits = np.iinfo(np.int32)
    bad = (host < limits.min) | (host > limits.max)
    if np.any(bad):
        pos = np.unravel_index(int(np.argmax(bad)), host.shape)
        raise IndexError(
            f"{what}: id {int(host[pos])} at position {_position(pos)} does not fit in int32 "
            "(JAX's index type without jax_enable_x64)"
        )


def ids_in_range(ids: Any, num_embeddings: int, what: str, *, lowest: int = -1) -> None:
    """Raise IndexError naming the first id outside ``[lowest, num_embeddings)``."""
    if is_traced(ids) or ids.size == 0:
        return
    host = np.asarray(ids)
    bad = (host < lowest) | (host >= num_embeddings)
    if np.any(bad):
        pos = np.unravel_index(int(np.argmax(bad)), host.shape)
        raise IndexError(
            f"{what}: id {int(host[pos])} at position {_position(pos)} is out of range for a "
            f"table of {num_embeddings} rows (valid ids: 0..{num_embeddings - 1}, -1 = padding)"
        )


def weight_array(weights: Any, shape: tuple[int, ...], what: str) -> Any:
    """Return ``weights`` as a float array of ``shape``; raise on bad shape, dtype or NaN/inf."""
    if not hasattr(weights, "dtype"):
        try:
            weights = np.asarray(weights, dtype=np.float32)
        except ValueError as err:
            raise ValueError(f"{what} is ragged or not numeric") from err
    if tuple(weights.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(weights.shape)}, expected {tuple(shape)}")
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        if jnp.issubdtype(weights.dtype, jnp.integer) or weights.dtype == bool:
            weights = weights.astype(np.float32) if isinstance(weights, np.ndarray) else (
                weights.astype(jnp.float32)
            )
        else:
            raise TypeError(f"{what} must be a float array, got dtype {weights.dtype}")
    finite(weights, what)
    return weights


def finite(x: Any, what: str) -> None:
    """Raise ValueError naming the first NaN/inf entry of a concrete float array."""
    if is_traced(x) or x.size == 0:
        return
    host = np.asarray(x, dtype=np.float64) if x.dtype == jnp.bfloat16 else np.asarray(x)
    bad = ~np.isfinite(host)
    if np.any(bad):
        pos = np.unravel_index(int(np.argmax(bad)), host.shape)
        raise ValueError(f"{what}: value {host[pos]} at position {_position(pos)} is not finite")


def table_array(table: Any, what: str = "table") -> Any:
    """Return ``table`` as a 2-D float array ``[V, K]``."""
    if not hasattr(table, "dtype"):
        table = np.asarray(table, dtype=np.float32)
    if table.ndim != 2:
        raise ValueError(f"{what} must be 2-D [num_embeddings, features], got shape {table.shape}")
    if not jnp.issubdtype(table.dtype, jnp.floating):
        raise TypeError(f"{what} must be a float array, got dtype {table.dtype}")
    return table


def text_list(texts: Any, what: str) -> list[str]:
    """``texts`` as a list of str; a lone str or a non-str item raises TypeError naming it."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a sequence of str, got a single str")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {text!r} of type {type(text).__name__}, not str")
    return texts
