"""``jaxembed bench sharding``: sharded lookups and train steps on 1, 2, 4, 8 virtual CPU devices.

Each device count runs in its own interpreter (JAX fixes the device count at start-up, see
:mod:`jaxembed.sharding.launch`). For every layout it times the lookup (forward) and the
lookup plus the gradient of the stored tables (forward + backward) under ``jit``, next to the
peer: :func:`jaxembed.bag_lookup` of the same tables on one device, measured in the same
interpreter, and prints ``sharded / one-device`` time ratios and the bytes the collectives
move per step (:func:`jaxembed.sharding.communication_bytes`, from the shapes). It also
times one training step of ``search_ctr`` with the same tables as its fields
(:class:`jaxembed.train.field_sharding.ShardedFieldTrainer`, row-wise, all-gather; the host
batch's placement included) against the one-device
:class:`~jaxembed.train.field_trainer.FieldTrainer` in the same interpreter.

Virtual CPU devices share the machine's cores, so on a CPU the figures show the cost of the
routing (extra gathers, scatters and copies), not a speed-up: the speed-up of real devices
is what the byte counts and an interconnect's bandwidth predict (``docs/scaling.md``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from jaxembed.bench.timing import machine, ratio

LAYOUTS = [("row", "mod", "all_gather"), ("row", "mod", "all_to_all"),
           ("column", "mod", "all_gather"), ("table", "mod", "all_gather")]
_MARK = "RESULT "


def _measure(devices: int, tables: int, vocab: int, features: int, batch: int, width: int,
             repeats: int) -> dict[str, Any]:
    """In a process with ``devices`` CPU devices: seconds per call of each layout and of the
    one-device peer, and the communication volume per step."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxembed as je
    from jaxembed import sharding as sh
    from jaxembed.bench.timing import time_call

    assert jax.device_count() == devices, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("x",))
    rng = np.random.default_rng(0)
    shapes = {f"t{i}": (vocab, features) for i in range(tables)}
    host = {n: rng.standard_normal(s, dtype=np.float32) for n, s in shapes.items()}
    bags = {n: je.Bags(rng.integers(0, vocab, (batch, width)).astype(np.int32))
            for n in shapes}
    out: dict[str, Any] = {"machine": machine(), "rows": []}

    local = {n: jnp.asarray(t) for n, t in host.items()}
    one_fwd = jax.jit(lambda ts, bg: {n: je.bag_lookup(ts[n], bg[n], combiner="sum")
                                      for n in ts})
    one_grad = jax.jit(jax.grad(lambda ts, bg: sum(jnp.sum(o) for o in one_fwd(ts, bg).values())))
    peer = (time_call(lambda: one_fwd(local, bags), repeats=repeats),
            time_call(lambda: one_grad(local, bags), repeats=repeats))
    for kind, strategy, route in LAYOUTS:
        layout = sh.plan(shapes, mesh, kind, strategy=strategy)
        stored = sh.shard_tables(host, layout)
        placed = {n: jax.device_put(b, layout.batch_sharding()) for n, b in bags.items()}

        def lookup(s, bg, layout=layout, route=route):
            return sh.sharded_bag_lookup(layout, s, bg, combiner="sum", route=route)

        fwd = jax.jit(lookup)
        grad = jax.jit(jax.grad(lambda s, bg, f=lookup: sum(jnp.sum(o) for o in f(s, bg).values())))
        volume = sh.communication_bytes(layout, batch, width, route=route)
        out["rows"].append({
            "layout": f"{kind}/{route}" if kind == "row" else kind,
            "fwd": time_call(lambda f=fwd, s=stored, b=placed: f(s, b), repeats=repeats),
            "fwd_bwd": time_call(lambda g=grad, s=stored, b=placed: g(s, b), repeats=repeats),
            "peer_fwd": peer[0], "peer_fwd_bwd": peer[1],
            "bytes_fwd": volume["forward"], "bytes_bwd": volume["backward"],
        })
    out["train"] = _train_steps(mesh, shapes, bags, batch, repeats)
    return out


def _train_steps(mesh: Any, shapes: dict, bags: dict, batch: int, repeats: int) -> dict:
    """Seconds per ``search_ctr`` training step, sharded (row-wise) and on one device."""
    import time

    import jax
    import numpy as np

    from jaxembed.models import registry
    from jaxembed.models.inputs import FieldSpec, ModelInputs, TableSpec
    from jaxembed.train.field_sharding import ShardedFieldTrainer
    from jaxembed.train.field_trainer import FieldTrainer, FitConfig

    rng = np.random.default_rng(1)
    vocab = next(iter(shapes.values()))[0]
    inputs = ModelInputs(
        tables=tuple(TableSpec(name, v, k) for name, (v, k) in shapes.items()),
        fields=tuple(FieldSpec(name, name, multi=True, width=int(bags[name].ids.shape[1]))
                     for name in shapes),
        num_dense=4, wide_size=vocab)
    host = {f"ids/{name}": np.asarray(bags[name].ids, np.int32) for name in shapes}
    host["wide"] = rng.integers(0, vocab, (batch, 8)).astype(np.int32)
    host["dense"] = rng.standard_normal((batch, 4), dtype=np.float32)
    host["label"] = (rng.random(batch) < 0.2).astype(np.float32)
    host["mask"] = np.ones(batch, np.float32)
    config = FitConfig(batch_size=batch)

    def per_step(trainer) -> float:
        jax.block_until_ready(trainer.step(host))  # compile
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(trainer.step(host))
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    def model():
        return registry.build("search_ctr", inputs, seed=0)

    return {"sharded": per_step(ShardedFieldTrainer(model(), config, mesh)),
            "peer": per_step(FieldTrainer(model(), config))}


def run(
    device_counts: tuple[int, ...] = (1, 2, 4, 8),
    tables: int = 4,
    vocab: int = 100_000,
    features: int = 32,
    batch: int = 2048,
    width: int = 8,
    repeats: int = 5,
    timeout: float = 900.0,
) -> list[dict[str, Any]]:
    """Print the scaling table (one interpreter per device count); return its rows."""
    from jaxembed.sharding.launch import run_python

    print(f"shape: {tables} tables of V={vocab} K={features}, B={batch} bags of L={width} ids "
          f"(float32, sum); mean of {repeats} calls; peer: bag_lookup on one device")
    header = (f"{'devices':>7}  {'layout':<16}{'fwd ms':>9}{'fwd+bwd ms':>12}"
              f"{'ratio fwd':>11}{'ratio f+b':>11}{'MB fwd':>9}{'MB bwd':>9}")
    rows: list[dict[str, Any]] = []
    steps: list[tuple[int, dict]] = []
    for n, devices in enumerate(device_counts):
        args = json.dumps([devices, tables, vocab, features, batch, width, repeats])
        result = run_python(["-m", "jaxembed.bench.sharding", args], devices, timeout=timeout)
        found = [ln for ln in result.stdout.splitlines() if ln.startswith(_MARK)]
        if result.returncode != 0 or not found:
            raise RuntimeError(f"{devices}-device run failed:\n{result.stdout[-3000:]}"
                               f"\n{result.stderr[-3000:]}")
        measured = json.loads(found[-1][len(_MARK):])
        if n == 0:
            print(f"machine: {measured['machine']}\n\n{header}")
        for row in measured["rows"]:
            row["devices"] = devices
            rows.append(row)
            print(f"{devices:>7}  {row['layout']:<16}{row['fwd'] * 1e3:>9.2f}"
                  f"{row['fwd_bwd'] * 1e3:>12.2f}{ratio(row['fwd'], row['peer_fwd']):>11}"
                  f"{ratio(row['fwd_bwd'], row['peer_fwd_bwd']):>11}"
                  f"{row['bytes_fwd'] / 1e6:>9.2f}{row['bytes_bwd'] / 1e6:>9.2f}")
        step = measured["train"]
        steps.append((devices, step))
    print("\nratio = sharded time / one-device bag_lookup time in the same process "
          "(> 1: the routing costs more than it saves on virtual devices sharing these cores); "
          "MB = bytes the collectives move per step, all devices together")
    print(f"\nsearch_ctr train step (these {tables} tables as domains, a wide part of V={vocab}, "
          f"row-wise all-gather; median of {repeats}; host batch placement included)")
    print(f"{'devices':>7}{'sharded ms':>12}{'one-device ms':>15}{'ratio':>8}")
    for devices, step in steps:
        print(f"{devices:>7}{step['sharded'] * 1e3:>12.2f}{step['peer'] * 1e3:>15.2f}"
              f"{ratio(step['sharded'], step['peer']):>8}")
        rows.append({"devices": devices, "layout": "train_step/row", **step})
    return rows


if __name__ == "__main__":
    print(_MARK + json.dumps(_measure(*json.loads(sys.argv[1]))), flush=True)
