"""Two JAX processes on this machine (4 virtual CPU devices each, gloo collectives over
loopback) run sharded lookups and gradients over one global 8-device mesh; the results equal
the one-process, one-device lookups (a two-process *fit* is ``tests/test_fit_multihost.py``).

The test starts ``python tests/test_multihost.py WORKER <coordinator> <process_id> <out>``
twice; each worker joins with :func:`jaxembed.sharding.launch.initialize`, and process 0
writes the gathered results to ``<out>`` (``.npz``) for the test to compare.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"a": (37, 5), "b": (11, 3)}
BATCH, WIDTH = 16, 4
TIMEOUT_S = 240


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    tables = {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}
    ids = {n: rng.integers(-1, v, size=(BATCH, WIDTH)).astype(np.int32)
           for n, (v, _) in SHAPES.items()}
    weights = {n: rng.uniform(0.5, 2.0, size=(BATCH, WIDTH)).astype(np.float32) for n in SHAPES}
    cot = {n: rng.normal(size=(BATCH, k)).astype(np.float32) for n, (_, k) in SHAPES.items()}
    return tables, ids, weights, cot


def _worker(coordinator: str, process_id: int, out: str) -> None:
    from jaxembed.sharding.launch import initialize

    initialize(coordinator, 2, process_id, local_device_count=4)
    import jax
    import jax.numpy as jnp

    import jaxembed as je
    from jaxembed import sharding as sh
    from jaxembed.sharding.launch import global_array, global_bags, to_host

    assert jax.process_count() == 2 and jax.device_count() == 8, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))
    tables, ids, weights, cot = _data()
    results = {}
    for kind, route in (("row", "all_gather"), ("row", "all_to_all"), ("table", "all_gather")):
        layout = sh.plan(SHAPES, mesh, kind)
        stored = sh.shard_tables(tables, layout)
        batch = layout.batch_sharding()
        bags = {n: global_bags(je.Bags(ids[n], weights[n]), batch) for n in SHAPES}
        g = {n: global_array(cot[n], batch) for n in SHAPES}

        def loss(s, b, g, layout=layout, route=route):
            pooled = sh.sharded_bag_lookup(layout, s, b, combiner="mean", route=route)
            return sum(jnp.vdot(pooled[n], g[n]) for n in pooled), pooled

        (_, pooled), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(stored, bags, g)
        logical = layout.from_storage({k: to_host(v) for k, v in grads.items()})
        for name in SHAPES:
            results[f"{kind}-{route}-{name}-value"] = to_host(pooled[name])
            results[f"{kind}-{route}-{name}-grad"] = logical[name]
    if process_id == 0:
        tmp = out + ".tmp.npz"
        np.savez(tmp, **results)
        os.replace(tmp, out)
    jax.distributed.shutdown()


def _launch(tmp_path) -> tuple[list[subprocess.Popen], str]:
    from jaxembed.sharding.launch import free_port, virtual_cpu_env

    out = str(tmp_path / "results.npz")
    coordinator = f"127.0.0.1:{free_port()}"
    env = virtual_cpu_env(4)  # 4 CPU devices per process (initialize sets the same)
    procs = [
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "WORKER", coordinator,
                          str(i), out], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    return procs, out


def test_two_processes_match_one_device(tmp_path):
    import jax

    import jaxembed as je

    procs, out = _launch(tmp_path)
    deadline = time.monotonic() + TIMEOUT_S
    logs = []
    try:
        for proc in procs:
            stdout, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            logs.append(stdout[-4000:])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report = "\n".join(f"--- process {i} (exit {p.returncode}):\n{log}"
                       for i, (p, log) in enumerate(zip(procs, logs, strict=False)))
    assert all(p.returncode == 0 for p in procs), report
    got = np.load(out)
    tables, ids, weights, cot = _data()
    for name in SHAPES:
        bags = je.Bags(ids[name], weights[name])
        value, vjp = jax.vjp(lambda t, b=bags: je.bag_lookup(t, b, combiner="mean"),
                             tables[name])
        (grad,) = vjp(cot[name])
        for variant in ("row-all_gather", "row-all_to_all", "table-all_gather"):
            np.testing.assert_allclose(got[f"{variant}-{name}-value"], value, rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(got[f"{variant}-{name}-grad"], grad, rtol=1e-5,
                                       atol=1e-6)


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "WORKER":
    _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
