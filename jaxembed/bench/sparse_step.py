"""Benchmark: a row-sparse FTRL step costs O(ids), not O(table).

Times the jitted, donated :func:`jaxembed.optim.sparse.sparse_ftrl` step
(:attr:`SparseRule.step`) on a small and a huge table (default ``V = 2^12`` and ``2^24`` rows
of ``K = 16`` float32, 65,536 ids per step) and reports their ratio: with the table and both
FTRL slots updated in place the step touches the same number of rows whatever ``V``, so the
ratio should stay near 1 (target <= 1.25). For contrast, the dense optax step of
:func:`jaxembed.optim.ftrl` on the scatter-added gradient (also jitted and donated) at
``V = 2^12`` and ``2^20``, whose cost grows with ``V``. Memory: three ``[V, K]`` float32
arrays per table (weights, accumulator, linear), 3 GiB at ``V = 2^24, K = 16``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxembed.optim.ftrl import ftrl
from jaxembed.optim.sparse import sparse_ftrl

FTRL_KW = {"learning_rate": 0.05, "l1": 1e-4, "l2": 1e-4}


def _machine() -> str:
    device = jax.devices()[0]
    return (
        f"{platform.platform()} | {os.cpu_count()} CPUs | jax {jax.__version__} "
        f"backend={jax.default_backend()} device={device.device_kind}"
    )


def _batches(
    num_embeddings: int, features: int, batch: int, count: int, seed: int
) -> list[tuple[jax.Array, jax.Array]]:
    """``count`` device-resident (ids, row_grads) batches; uniform ids (duplicates when
    ``batch`` exceeds ``V``) with 1% padding."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ids = rng.integers(0, num_embeddings, size=batch).astype(np.int32)
        ids[rng.random(batch) < 0.01] = -1
        rows = rng.normal(0.0, 0.1, size=(batch, features)).astype(np.float32)
        out.append((jax.device_put(ids), jax.device_put(rows)))
    return out


def _time_steps(
    step: Callable[..., Any],
    carry: tuple[Any, Any],
    batches: Sequence[tuple[jax.Array, jax.Array]],
    steps: int,
    warmup: int,
) -> tuple[float, tuple[Any, Any]]:
    """Seconds per step (median of 3 timed runs of ``steps``), after ``warmup`` steps."""
    table, state = carry
    for i in range(warmup):
        table, state = step(table, state, *batches[i % len(batches)])
    jax.block_until_ready(table)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        for i in range(steps):
            table, state = step(table, state, *batches[i % len(batches)])
        jax.block_until_ready((table, state))
        runs.append((time.perf_counter() - start) / steps)
    return float(np.median(runs)), (table, state)


def sparse_step_time(
    num_embeddings: int,
    *,
    features: int = 16,
    batch: int = 65536,
    steps: int = 20,
    warmup: int = 3,
    seed: int = 0,
) -> float:
    """Seconds per donated sparse FTRL step on a ``[num_embeddings, features]`` table."""
    rule = sparse_ftrl(**FTRL_KW)
    table = jnp.zeros((num_embeddings, features), jnp.float32)
    state = rule.init(table)
    batches = _batches(num_embeddings, features, batch, 4, seed)
    seconds, carry = _time_steps(rule.step, (table, state), batches, steps, warmup)
    del carry
    return seconds


def dense_step_time(
    num_embeddings: int,
    *,
    features: int = 16,
    batch: int = 65536,
    steps: int = 20,
    warmup: int = 3,
    seed: int = 0,
) -> float:
    """Seconds per donated dense optax FTRL step (scatter-added gradient, whole table)."""
    tx = ftrl(**FTRL_KW)

    def step(table, state, ids, rows):
        grad = jnp.zeros_like(table).at[ids].add(rows, mode="drop")
        updates, state = tx.update(grad, state, table)
        return optax.apply_updates(table, updates), state

    table = jnp.zeros((num_embeddings, features), jnp.float32)
    batches = _batches(num_embeddings, features, batch, 4, seed)
    seconds, carry = _time_steps(
        jax.jit(step, donate_argnums=(0, 1)), (table, tx.init(table)), batches, steps, warmup
    )
    del carry
    return seconds


def run(
    *,
    log2_small: int = 12,
    log2_large: int = 24,
    dense_log2: Sequence[int] = (12, 20),
    features: int = 16,
    batch: int = 65536,
    steps: int = 20,
    warmup: int = 3,
    seed: int = 0,
) -> None:
    """Print the sparse FTRL step time at ``2^log2_small`` and ``2^log2_large`` rows, their
    ratio (target <= 1.25), and dense optax FTRL steps at ``2^dense_log2`` rows for contrast."""
    kw = {"features": features, "batch": batch, "steps": steps, "warmup": warmup, "seed": seed}
    print(f"machine: {_machine()}")
    print(f"sparse FTRL step, K={features}, {batch} ids/step (jit, table+state donated)")
    print(f"{'rule':<8}{'V':>12}{'ms/step':>12}{'vs sparse small V':>20}")
    small = sparse_step_time(2**log2_small, **kw)
    print(f"{'sparse':<8}{'2^' + str(log2_small):>12}{small * 1e3:>12.3f}{1.0:>20.2f}")
    large = sparse_step_time(2**log2_large, **kw)
    print(f"{'sparse':<8}{'2^' + str(log2_large):>12}{large * 1e3:>12.3f}{large / small:>20.2f}")
    for log2 in dense_log2:
        dense = dense_step_time(2**log2, **kw)
        print(f"{'dense':<8}{'2^' + str(log2):>12}{dense * 1e3:>12.3f}{dense / small:>20.2f}")
    verdict = "ok" if large / small <= 1.25 else "ABOVE TARGET"
    print(
        f"ratio sparse 2^{log2_large} / 2^{log2_small}: {large / small:.3f} "
        f"(target <= 1.25: {verdict})"
    )
