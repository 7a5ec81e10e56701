r"""Export a fitted run for serving: the prediction function through ``jax.export``.

The exported function is the one :func:`jaxembed.predict` runs,

.. math::

    p = \sigma\big(\mathrm{head}_\theta(\mathrm{gather}(W, x), x)\big),

calibrated, for a run fitted on a log whose negatives were kept at rate :math:`w < 1`, to
:math:`p / (p + (1 - p)/w)` (``negative_rate`` in the run's ``model.json``),

taking ``(params, inputs)``: ``params`` a flat ``{name: array}`` of every parameter and
``inputs`` the encoded arrays ``{"ids/<field>": i32[b, W_f], "dense": f32[b, D],
"wide": i32[b, W_c]}``, with the batch size ``b`` symbolic
(``jax.export.symbolic_shape("b")``), so one serialized function serves any number of rows.

The parameters are an argument, saved beside the function as ``.npy`` files, rather than
constants baked into the StableHLO: a 1M x 16 float table is 64 MB that would otherwise sit
inside the serialized module, be copied by every serialization and deserialization, and be
handed to XLA as a literal at every compilation (one per batch size); as an argument it is
read once (memory-mappable), moved to the device once, and can be swapped (a re-fitted or
online-updated run) without lowering again. ``docs/serving.md`` has the measured difference.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxembed import _atomic
from jaxembed.serving import DEFAULT_PLATFORMS
from jaxembed.serving.folder import (
    FUNCTION,
    MANIFEST,
    PARAMS,
    SCHEMA,
    VOCABULARIES,
    Manifest,
    ParamEntry,
    is_served,
)
from jaxembed.serving.served import input_widths
from jaxembed.stream.calibration import calibrate

BATCH_DIM = "b"


def _key_name(path: tuple) -> str:
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey) and key.name != "value":
            parts.append(key.name)
    return "/".join(parts)


def prediction_function(run: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """``(fn, params)``: ``fn(params, inputs) -> f32[b]`` the run's click probabilities, with
    ``params`` a flat ``{name: array}`` (tables by their key, e.g. ``embedding:C1``; the other
    parameters by their path, e.g. ``deep/layers/0/kernel``)."""
    trainer = run.trainer
    layout = trainer.layout
    rest_flat, rest_def = jax.tree_util.tree_flatten_with_path(trainer.rest)
    table_names = [f"table:{key}" for key in layout.keys]
    rest_names = [f"rest:{_key_name(path)}" for path, _ in rest_flat]
    names = table_names + rest_names
    if len(set(names)) != len(names):
        raise ValueError(f"parameter names are not unique: {names}")
    params = {name: np.asarray(leaf) for name, leaf in
              zip(names, [*trainer.params()["tables"], *(leaf for _, leaf in rest_flat)],
                  strict=True)}
    model_probabilities = trainer.probability_function()

    rate = run.config.negative_rate

    def probabilities(params: dict[str, jax.Array], inputs: dict[str, jax.Array]) -> jax.Array:
        tables = [params[name] for name in table_names]
        rest = jax.tree.unflatten(rest_def, [params[name] for name in rest_names])
        p = model_probabilities(tables, rest, inputs)
        return p if rate == 1.0 else calibrate(p, rate)  # the run's negative down-sampling

    return probabilities, params


def export(run: Any, out: str | os.PathLike, *,
           platforms: Sequence[str] = DEFAULT_PLATFORMS) -> str:
    """Write the served folder of ``run`` (a :class:`~jaxembed.train.runs.Run` or a run
    folder) to ``out``; returns ``out``.

    The folder is written beside ``out`` and renamed into place when complete; an existing
    ``out`` is replaced only if it is a served folder (or empty), never another folder.
    ``platforms``: what the function is lowered for (``cpu``, ``cuda``, ``rocm``, ``tpu``).
    """
    from jaxembed.train.runs import Run

    out = os.fspath(out)
    platforms = tuple(platforms)
    if not platforms:
        raise ValueError("platforms must name at least one of cpu, cuda, rocm, tpu")
    for p in platforms:
        if p not in ("cpu", "cuda", "rocm", "tpu"):
            raise ValueError(f"unknown platform {p!r}; choose from cpu, cuda, rocm, tpu")
    if os.path.exists(out) and not (os.path.isdir(out) and (is_served(out)
                                                            or not os.listdir(out))):
        raise FileExistsError(f"--out {out!r} exists and is not a served folder; choose a new "
                              f"path (an export replaces only an earlier export)")
    run = run if isinstance(run, Run) else Run.load(run)
    encoder = run.encoder
    fn, params = prediction_function(run)
    widths = input_widths(encoder)
    (b,) = jax.export.symbolic_shape(BATCH_DIM)
    input_specs = {name: jax.ShapeDtypeStruct((b, w), jnp.dtype(d))
                   for name, (w, d) in widths.items()}
    param_specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()}
    exported = jax.export.export(jax.jit(fn), platforms=platforms)(param_specs, input_specs)
    serialized = exported.serialize()
    entries = tuple(ParamEntry(name, f"{PARAMS}/{i:04d}.npy", tuple(params[name].shape),
                               str(params[name].dtype)) for i, name in enumerate(sorted(params)))
    manifest = Manifest(run.model_name, int(run.config.seed), platforms, BATCH_DIM, widths,
                        entries, jax.__version__)
    with _atomic.atomic_dir(out, replaceable=is_served) as tmp:
        os.makedirs(os.path.join(tmp, PARAMS))
        for entry in entries:
            np.save(os.path.join(tmp, entry.file), params[entry.name], allow_pickle=False)
        with open(os.path.join(tmp, FUNCTION), "wb") as handle:
            handle.write(serialized)
        run.schema.to_toml(os.path.join(tmp, SCHEMA))
        run.vocabularies.save(os.path.join(tmp, VOCABULARIES))
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as handle:
            json.dump(manifest.to_json(), handle, indent=1)
    return out


def timed_export(run: Any, out: str | os.PathLike, **kwargs: Any) -> tuple[str, float, int]:
    """``(out, seconds, bytes)``: :func:`export` with its wall time and the folder's size."""
    start = time.perf_counter()
    export(run, out, **kwargs)
    seconds = time.perf_counter() - start
    return os.fspath(out), seconds, folder_bytes(out)


def folder_bytes(folder: str | os.PathLike) -> int:
    """The summed size of the files under ``folder``."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
               for f in files)
