"""Starting JAX with many devices: virtual CPU devices in one process, or several processes.

**Virtual CPU devices.** ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (or
``jax.config.update("jax_num_cpu_devices", N)`` right after ``import jax``) makes one process
see ``N`` CPU devices; either must happen before JAX starts its backend, so a process that
already ran JAX on one device needs a fresh interpreter: :func:`virtual_cpu_env` gives the
environment for one, :func:`run_python` runs a script in it and :func:`run_pytest` a test
file's functions of one name prefix (how the suite checks multi-device code from its
one-device process).

**Several processes (multi-host).** Each process calls :func:`initialize` with the same
coordinator address and process count and its own ``process_id`` before any other JAX call;
``jax.devices()`` then lists every process's devices and one :class:`jax.sharding.Mesh` spans
them all. On CPU the cross-process collectives go through gloo
(``jax_cpu_collectives_implementation="gloo"``, TCP). Two processes of four virtual CPU
devices each on this machine::

    # process i of 2 (run both; each blocks until the other has joined)
    from jaxembed.sharding.launch import initialize
    initialize("127.0.0.1:12355", num_processes=2, process_id=i, local_device_count=4)
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))   # 8 devices, 2 processes

On GPUs the same call (without ``local_device_count``) uses NCCL; on a cluster manager
(SLURM, Open MPI) ``jax.distributed.initialize()`` with no arguments finds the values itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from jaxembed.bags import Bags

_FLAG = "--xla_force_host_platform_device_count"


def virtual_cpu_env(num_devices: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) in which JAX runs on ``num_devices`` virtual
    CPU devices: ``JAX_PLATFORMS=cpu`` and the device-count flag in ``XLA_FLAGS`` (an earlier
    device-count flag is replaced; other flags are kept)."""
    if int(num_devices) < 1:
        raise ValueError(f"num_devices must be >= 1, got {num_devices}")
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_FLAG)]
    env["XLA_FLAGS"] = " ".join([*flags, f"{_FLAG}={int(num_devices)}"])
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_python(
    args: Sequence[str], num_devices: int, *, timeout: float, cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python <args>`` on ``num_devices`` virtual CPU devices; output captured as text.

    ``env`` adds variables to the child's environment. Raises ``subprocess.TimeoutExpired``
    after ``timeout`` seconds (the child is killed).
    """
    child = virtual_cpu_env(num_devices)
    child.update(env or {})
    return subprocess.run([sys.executable, *args], env=child, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def run_pytest(path: str, prefix: str, num_devices: int, *, expect_passed: int,
               timeout: float = 600.0, env: Mapping[str, str] | None = None) -> None:
    """Run the functions named ``prefix*`` of the test file ``path`` with pytest on
    ``num_devices`` virtual CPU devices (XLA's quick compile mode, which these small shapes do
    not need optimized); raise AssertionError with the child's output unless it exits cleanly
    with exactly ``expect_passed`` passed."""
    path = os.path.abspath(path)
    root = os.path.dirname(os.path.dirname(path))
    result = run_python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",  # one process: the child
         "-o", f"python_functions={prefix}*", path],
        num_devices, timeout=timeout, cwd=root,
        env={"JAX_DISABLE_MOST_OPTIMIZATIONS": "1", **(env or {})},
    )
    report = result.stdout[-8000:] + result.stderr[-4000:]
    if result.returncode != 0 or f"{expect_passed} passed" not in result.stdout:
        raise AssertionError(f"{path} ({prefix}*) on {num_devices} devices:\n{report}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a coordinator address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def initialize(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    local_device_count: int | None = None,
    initialization_timeout: int = 60,
) -> None:
    """Join a multi-process JAX run (call before any other JAX use in the process).

    ``local_device_count`` sets this process's virtual CPU devices; on a CPU backend the
    cross-process collectives use gloo. Wraps :func:`jax.distributed.initialize`.
    """
    if not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"process_id must be in 0..{num_processes - 1}, got {process_id}")
    if local_device_count is not None:
        jax.config.update("jax_num_cpu_devices", int(local_device_count))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=int(num_processes),
        process_id=int(process_id),
        initialization_timeout=int(initialization_timeout),
    )


def global_array(host: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A global array from the same host value given on every process (each process hands
    its devices their slices); single-process this is ``jax.device_put``."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def global_bags(host: Bags, sharding: jax.sharding.Sharding) -> Bags:
    """:class:`jaxembed.Bags` of global arrays from the same host bags on every process.

    The host bags are validated as usual; the global arrays are not read back (a process
    cannot fetch another's shards), so they are wrapped without a second check.
    """
    if not isinstance(host, Bags):
        raise TypeError(f"global_bags takes a jaxembed.Bags, got {type(host).__name__}")
    ids = global_array(np.asarray(host.ids), sharding)
    weights = None if host.weights is None else global_array(np.asarray(host.weights), sharding)
    return Bags.tree_unflatten(None, (ids, weights))


def to_host(x: jax.Array) -> np.ndarray:
    """The whole value of a (possibly multi-process) array on every process."""
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
