"""Save and load a Flax NNX module's parameters: an orbax checkpoint of ``nnx.state`` (no
pickle), with a JSON config beside it.

Layout of a saved module folder: ``config.json`` (the constructor arguments and ``"kind"``)
and ``params/`` (the orbax checkpoint of every variable). Orbax writes ``params`` into a
temporary folder and renames it when complete; a save over an existing module writes the new
checkpoint beside the old one and swaps them only then, so an interrupted save never leaves
a half-written module (at worst the previous one under ``params.old-*``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxembed._atomic import write_text

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


def _checkpointer() -> Any:
    import orbax.checkpoint as ocp  # slow to import: only when saving or loading

    return ocp.StandardCheckpointer()


def save_module(folder: str | os.PathLike, module: nnx.Module, config: dict[str, Any],
                kind: str) -> None:
    """Write ``folder/params/`` (orbax: every variable of the module, parameters and fixed
    state) and then ``folder/config.json`` (``config`` plus ``"kind"``)."""
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    pure = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module)))
    tag = uuid.uuid4().hex[:8]
    fresh, final = folder / f"{PARAMS_DIR}.new-{tag}", folder / PARAMS_DIR
    with _checkpointer() as checkpointer:
        checkpointer.save(fresh, pure)
        checkpointer.wait_until_finished()
    if final.exists():
        old = folder / f"{PARAMS_DIR}.old-{tag}"
        final.rename(old)
        fresh.rename(final)
        shutil.rmtree(old)
    else:
        fresh.rename(final)
    write_text(folder / CONFIG_FILE, json.dumps({"kind": kind, **config}, indent=2) + "\n")


def read_config(folder: str | os.PathLike, kind: str) -> dict[str, Any]:
    """The config saved by :func:`save_module`; ValueError when it is not a ``kind``."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {folder}: not a saved {kind}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or config.pop("kind", None) != kind:
        raise ValueError(f"{path} does not describe a saved {kind}")
    return config


def load_params(folder: str | os.PathLike, module: nnx.Module) -> None:
    """Restore ``folder/params/`` into ``module`` (shapes and dtypes must match its config)."""
    path = Path(folder).absolute() / PARAMS_DIR
    if not path.is_dir():
        raise FileNotFoundError(f"no {PARAMS_DIR}/ checkpoint in {folder}")
    state = nnx.state(module)
    expected = nnx.to_pure_dict(state)
    with _checkpointer() as checkpointer:
        saved = checkpointer.metadata(path).item_metadata.tree
        found = jax.tree.map(lambda m: (tuple(m.shape), np.dtype(m.dtype)), saved)
        wanted = jax.tree.map(lambda x: (tuple(np.shape(x)), np.dtype(x.dtype)), expected)
        if _normalized(found) != _normalized(wanted):
            raise ValueError(f"{path}: parameters (shape, dtype) {found} do not match the "
                             f"config's {wanted}")
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), expected)
        restored = checkpointer.restore(path, target)
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(module, state)


def _normalized(tree: Any) -> Any:
    """Nested dicts with string keys (orbax stores list positions as strings)."""
    if isinstance(tree, dict):
        return {str(k): _normalized(v) for k, v in tree.items()}
    return tree
