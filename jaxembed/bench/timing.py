"""Timing helpers shared by the benchmarks: a median wall-clock timer and a machine line."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import jax


def time_call(
    fn: Callable[[], Any],
    *,
    repeats: int = 10,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
) -> float:
    """Seconds per call of ``fn()`` at steady state.

    ``repeats`` calls are issued back to back and waited for once at the end (JAX and CUDA
    dispatch asynchronously), so the figure is the device's time per call rather than the
    host's dispatch latency; for a host-synchronous peer it is its plain mean. ``sync`` waits
    for a non-JAX peer (e.g. ``torch.cuda.synchronize``); JAX results are blocked on.
    """
    def wait(result: Any) -> None:
        jax.block_until_ready(result)
        if sync is not None:
            sync()

    for _ in range(warmup):
        wait(fn())
    start = time.perf_counter()
    result = None
    for _ in range(repeats):
        result = fn()
    wait(result)
    return (time.perf_counter() - start) / repeats


def machine() -> str:
    """One line naming the machine: CPU, core count, JAX version and backend device."""
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores, jax {jax.__version__}, "
        f"backend {jax.default_backend()} ({kind})"
    )


def ratio(ours: float, peer: float | None) -> str:
    """``ours / peer`` as text (``< 1`` means jaxembed is faster), or a dash."""
    return "-" if peer is None else f"{ours / peer:.2f}"
