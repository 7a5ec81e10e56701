"""Two JAX processes on this machine (4 virtual CPU devices each, gloo collectives over
loopback) run one ``jaxembed fit --mesh 2x4`` over a mesh spanning both, each reading its own
chunks of the encoded log (uneven: one process runs out first and feeds padding).

The test starts ``python tests/test_fit_multihost.py WORKER <coordinator> <process_id> <dir>``
twice; each worker runs the command with ``--coordinator``, ``--num-processes 2`` and its
``--process-id`` and saves the parameters it ends with. It checks that

* both processes end with the same parameters (bit for bit);
* the run equals a one-device replay of the same global batches (process 0's rows, then
  process 1's) step for step: the per-epoch losses and the whole last checkpoint (tables,
  optimizer slots, dense parameters), restored on one device;
* the run folder loads and predicts on one device.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 300
LOCAL_BATCH = 16
CHUNK_ROWS = 48  # 6 chunks of the 256-row log: 3 per process, of unequal sizes
EPOCHS = 2


def _write_inputs(folder: str) -> None:
    import pyarrow.parquet as pq

    sys.path.insert(0, ROOT)
    from tests.test_fit_sharded import SCHEMA, _log

    with open(os.path.join(folder, "schema.toml"), "w", encoding="utf-8") as handle:
        handle.write(SCHEMA)
    pq.write_table(_log(), os.path.join(folder, "train.parquet"))
    pq.write_table(_log(64, 1), os.path.join(folder, "valid.parquet"))


def _argv(folder: str) -> list[str]:
    return ["fit", "--schema", os.path.join(folder, "schema.toml"),
            "--train", os.path.join(folder, "train.parquet"),
            "--valid", os.path.join(folder, "valid.parquet"), "--model", "wide_deep",
            "--set", "hidden=[16]", "--set", "patience=0", "--out", os.path.join(folder, "run"),
            "--epochs", str(EPOCHS), "--batch-size", str(2 * LOCAL_BATCH), "--quiet",
            "--mesh", "2x4", "--route", "all_to_all"]


def _worker(coordinator: str, process_id: int, folder: str) -> None:
    sys.path.insert(0, ROOT)
    from jaxembed.cli import main
    from jaxembed.train import runs

    runs.write_store = functools.partial(runs.write_store, chunk_rows=CHUNK_ROWS)
    fitted = []
    real_fit = runs.fit

    def fit(*args, **kwargs):
        fitted.append(real_fit(*args, **kwargs))
        return fitted[-1]

    runs.fit = fit
    code = main([*_argv(folder), "--coordinator", coordinator, "--num-processes", "2",
                 "--process-id", str(process_id)])
    assert code == 0, code
    import jax

    from jaxembed.sharding.launch import to_host

    assert jax.process_count() == 2 and jax.device_count() == 8
    leaves = jax.tree.leaves(fitted[0].trainer.params())
    np.savez(os.path.join(folder, f"params-{process_id}.npz"),
             *[to_host(x) if isinstance(x, jax.Array) else np.asarray(x) for x in leaves])
    jax.distributed.shutdown()


def _launch(folder: str) -> list[subprocess.Popen]:
    from jaxembed.sharding.launch import free_port, virtual_cpu_env

    coordinator = f"127.0.0.1:{free_port()}"
    env = virtual_cpu_env(4)
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    return [subprocess.Popen([sys.executable, os.path.abspath(__file__), "WORKER", coordinator,
                              str(i), folder], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for i in range(2)]


def _replay(run_dir: str):
    """The one-device trainer stepped through the same global batches, and its per-epoch
    mean losses."""
    import jax

    from jaxembed.train import runs

    run = runs.Run.load(run_dir)
    store = runs.Store.open(os.path.join(run_dir, "cache", "train"))
    trainer = runs._trainer(run.schema, run.vocabularies, run.model_name, run.hyper, run.config)
    empty = runs._empty_batch(store, LOCAL_BATCH)
    losses = []
    for epoch in range(EPOCHS):
        sources = [runs.iterator_source(store, run.config, epoch, p, 2, LOCAL_BATCH)
                   for p in (0, 1)]
        assert len(sources[0]) != len(sources[1])  # uneven: padding batches are exercised
        steps = []
        for s in range(max(len(src) for src in sources)):
            parts = [src[s] if s < len(src) else empty for src in sources]
            steps.append(float(trainer.step({k: np.concatenate([p[k] for p in parts])
                                             for k in parts[0]})))
        losses.append(np.mean(steps))
    jax.block_until_ready(trainer.tables)
    return run, trainer, losses


def test_two_process_fit_agrees_with_one_device(tmp_path):
    import jax

    from jaxembed.train import checkpoint

    folder = str(tmp_path)
    _write_inputs(folder)
    procs = _launch(folder)
    deadline = time.monotonic() + TIMEOUT_S
    logs = []
    try:
        for proc in procs:
            stdout, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            logs.append(stdout[-6000:])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    report = "\n".join(f"--- process {i} (exit {p.returncode}):\n{log}"
                       for i, (p, log) in enumerate(zip(procs, logs, strict=False)))
    assert all(p.returncode == 0 for p in procs), report
    got = [np.load(os.path.join(folder, f"params-{i}.npz")) for i in (0, 1)]
    assert got[0].files == got[1].files
    for key in got[0].files:  # both processes hold the same model
        np.testing.assert_array_equal(got[0][key], got[1][key])

    run_dir = os.path.join(folder, "run")
    summary = json.loads(open(os.path.join(run_dir, "fit.json"), encoding="utf-8").read())
    assert summary["mesh"]["devices"] == 8 and summary["mesh"]["processes"] == 2
    run, reference, losses = _replay(run_dir)
    tol = dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose([e["loss"] for e in summary["epochs"]], losses, **tol)
    template = {"trainer": reference.payload(), "epoch": np.int64(0),
                "loader": np.zeros(0, np.uint8), "meta": np.zeros(0, np.uint8)}
    _, saved = checkpoint.restore_latest(os.path.join(run_dir, "checkpoints"), template)
    assert int(saved["epoch"]) == EPOCHS
    for a, b in zip(jax.tree.leaves(saved["trainer"]), jax.tree.leaves(reference.payload()),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
    best = [np.asarray(x) for x in jax.tree.leaves(run.trainer.params())]
    for i, leaf in enumerate(best):  # the run folder holds what the processes ended with
        np.testing.assert_array_equal(leaf, got[0][f"arr_{i}"])
    from jaxembed.train import scoring

    assert np.isfinite(scoring.predict(run, os.path.join(folder, "valid.parquet"))).all()


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "WORKER":
    _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
