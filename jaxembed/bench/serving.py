"""``jaxembed bench serving``: export time, served-folder size, and scoring rows/s of a served
model against the in-process :func:`jaxembed.predict`, on generated Criteo-format rows.

A ``model`` is fitted for one epoch on ``train_rows`` generated rows (the Criteo preset
schema), exported (timed; the run is already in memory), and both the served callable
(``jaxembed.serving.load(path)(table)``) and ``jaxembed.predict(run, table)`` score the same
``rows`` fresh rows given as a ``pyarrow.Table`` (each warmed up on a slice first, then the
best of ``repeats`` interleaved runs). The peer is the in-process model in the same run;
the ratio is served time / in-process time (below 1: the served model is faster).

``table_rows`` > 0 adds the parameter-placement experiment of ``docs/serving.md``: a
gather-and-sum function over one ``table_rows x 16`` float table exported with the table as
an argument (what :mod:`jaxembed.serving` does) and as a constant baked into the module:
export time, serialized size, and deserialize + first call (compilation) time.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxembed.bench.timing import machine, ratio


def placement(table_rows: int = 1_000_000, dim: int = 16, batch: int = 1024,
              seed: int = 0) -> dict[str, dict[str, float]]:
    """Export ``sigmoid(Σ_l W[ids[b, l]])`` over a ``table_rows x dim`` table two ways
    (table as an argument / as a baked constant); seconds and bytes of each."""
    table = np.random.default_rng(seed).normal(size=(table_rows, dim)).astype(np.float32)
    ids = np.random.default_rng(seed + 1).integers(0, table_rows, (batch, 4)).astype(np.int32)
    (b,) = jax.export.symbolic_shape("b")
    id_spec = jax.ShapeDtypeStruct((b, 4), jnp.int32)

    def score(w: jax.Array, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(jnp.take(w, x, axis=0).sum(axis=(1, 2)))

    out = {}
    for name in ("argument", "constant"):
        start = time.perf_counter()
        if name == "argument":
            exported = jax.export.export(jax.jit(score), platforms=("cpu",))(
                jax.ShapeDtypeStruct(table.shape, table.dtype), id_spec)
        else:
            baked = jnp.asarray(table)
            exported = jax.export.export(jax.jit(lambda x, w=baked: score(w, x)),
                                         platforms=("cpu",))(id_spec)
        blob = exported.serialize()
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        loaded = jax.export.deserialize(blob)
        call = jax.jit(loaded.call)
        args = (jnp.asarray(table), ids) if name == "argument" else (ids,)
        jax.block_until_ready(call(*args))
        first_call_s = time.perf_counter() - start
        out[name] = {"export_s": export_s, "function_bytes": float(len(blob)),
                     "load_and_first_call_s": first_call_s}
    return out


def run(rows: int = 100_000, train_rows: int = 20_000, model: str = "wide_deep",
        repeats: int = 3, table_rows: int = 1_000_000) -> dict[str, Any]:
    """Measure and print the figures (see the module docstring); returns them."""
    from jaxembed.data.criteo_like import criteo_like
    from jaxembed.data.schema import criteo_schema
    from jaxembed.serving import load
    from jaxembed.serving.exporter import folder_bytes, timed_export
    from jaxembed.train.runs import fit
    from jaxembed.train.scoring import predict

    print(f"# jaxembed bench serving — {machine()}")
    figures: dict[str, Any] = {"rows": rows, "model": model}
    with tempfile.TemporaryDirectory(prefix="jaxembed-bench-serving-") as tmp:
        train, _ = criteo_like(train_rows, seed=0)
        start = time.perf_counter()
        fitted = fit(criteo_schema(), train, model=model, out=os.path.join(tmp, "run"),
                     epochs=1)
        figures["fit_s"] = time.perf_counter() - start
        served_dir = os.path.join(tmp, "served")
        _, figures["export_s"], figures["served_bytes"] = timed_export(fitted, served_dir)
        figures["params_bytes"] = folder_bytes(os.path.join(served_dir, "params"))
        start = time.perf_counter()
        served = load(served_dir)
        figures["load_s"] = time.perf_counter() - start
        table, _ = criteo_like(rows, seed=1)
        warm = table.slice(0, min(rows, 5000))
        served(warm)
        predict(fitted, warm)
        results: dict[str, np.ndarray] = {}
        timings: dict[str, list[float]] = {"served": [], "predict": []}
        for _ in range(repeats):  # interleaved, so a burst of load hits both alike
            for name, fn in (("served", lambda: served(table)),
                             ("predict", lambda: predict(fitted, table))):
                start = time.perf_counter()
                results[name] = fn()
                timings[name].append(time.perf_counter() - start)
        figures["served_s"], figures["predict_s"] = min(timings["served"]), min(
            timings["predict"])
        figures["max_abs_diff"] = float(np.abs(results["served"] - results["predict"]).max())
    served_rate, predict_rate = rows / figures["served_s"], rows / figures["predict_s"]
    print(f"model {model}, fitted on {train_rows:,} rows in {figures['fit_s']:.1f} s")
    print("| figure | value |\n| --- | --- |")
    print(f"| export (run in memory) | {figures['export_s']:.2f} s |")
    print(f"| served folder | {figures['served_bytes'] / 2**20:.2f} MiB "
          f"(params {figures['params_bytes'] / 2**20:.2f} MiB) |")
    print(f"| load(served) | {figures['load_s']:.2f} s |")
    print(f"| served scoring, {rows:,} rows (pyarrow table) | {served_rate:,.0f} rows/s |")
    print(f"| in-process predict, same rows | {predict_rate:,.0f} rows/s |")
    print(f"| ratio served / in-process time | "
          f"{ratio(figures['served_s'], figures['predict_s'])} |")
    print(f"| max abs difference of the scores | {figures['max_abs_diff']:.2e} |")
    if table_rows:
        figures["placement"] = placement(table_rows)
        print(f"\nparameters as argument vs baked constant ({table_rows:,} x 16 float32 table):")
        print("| placement | export s | function MiB | deserialize + first call s |")
        print("| --- | --- | --- | --- |")
        for name, f in figures["placement"].items():
            print(f"| {name} | {f['export_s']:.2f} | {f['function_bytes'] / 2**20:.2f} | "
                  f"{f['load_and_first_call_s']:.2f} |")
    return figures


if __name__ == "__main__":
    run()
