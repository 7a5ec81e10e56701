"""``jaxembed bench fit-mesh``: ``jaxembed fit --mesh 8`` against the one-device fit.

On generated Criteo-format data (:func:`jaxembed.data.criteo_like.write_sample`: 200 000
training rows, the preset schema, ``wide_deep``) it runs one epoch of ``jaxembed fit`` three
times, each in its own interpreter (JAX fixes the device count at start-up): on one device
(the peer), with ``--mesh 1`` (the sharded step's routing on one device) and with
``--mesh 8`` on 8 virtual CPU devices; it prints each run's training ``examples_per_s`` (from
its ``fit.json``: the epoch's rows after the first, compiling, step over the loop's seconds),
the ratio to the peer and the validation AUC.

On a CPU the 8 "devices" share the machine's cores: the figure is the cost of sharding
(collectives become memory copies, every device gathers the batch's ids for the row-sparse
update), not a speed-up; real devices are what ``docs/scaling.md`` estimates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from jaxembed.bench.timing import machine

RUNS = (("one device", 1, ()), ("--mesh 1", 1, ("--mesh", "1")),
        ("--mesh 8", 8, ("--mesh", "8")))


def run(batch: int = 1024, timeout: float = 1800.0) -> list[dict[str, Any]]:
    """Print the three runs' examples/s and ratios; return their rows."""
    from jaxembed.data.criteo_like import write_sample
    from jaxembed.sharding.launch import virtual_cpu_env

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="jaxembed-fit-mesh-") as folder:
        paths = write_sample(os.path.join(folder, "data"), test_rows=1000)
        for name, devices, extra in RUNS:
            out = os.path.join(folder, f"run-{len(rows)}")
            command = [sys.executable, "-m", "jaxembed.cli", "fit", "--schema",
                       paths["schema.toml"], "--train", paths["train.tsv"], "--out", out,
                       "--epochs", "1", "--batch-size", str(batch), "--quiet", *extra]
            done = subprocess.run(command, env=virtual_cpu_env(devices), capture_output=True,
                                  text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
            with open(os.path.join(out, "fit.json"), encoding="utf-8") as handle:
                summary = json.load(handle)
            rows.append({"run": name, "devices": devices,
                         "examples_per_s": summary["examples_per_s"],
                         "auc": summary["epochs"][0]["auc"], "wall_s": summary["wall_s"]})
    peer = rows[0]["examples_per_s"]
    print(f"wide_deep on 200,000 generated Criteo-format rows (90% train), batch {batch}, "
          f"one epoch per run; peer: the one-device fit")
    print(f"{'run':<12}{'devices':>8}{'examples/s':>12}{'ratio':>8}{'valid AUC':>11}")
    for row in rows:
        row["ratio"] = row["examples_per_s"] / peer
        print(f"{row['run']:<12}{row['devices']:>8}{row['examples_per_s']:>12,.0f}"
              f"{row['ratio']:>8.2f}{row['auc']:>11.4f}")
    print("ratio = examples/s / the one-device fit's (< 1: slower); virtual CPU devices share "
          "the cores, so this is the sharding's overhead, not a speed-up")
    return rows
