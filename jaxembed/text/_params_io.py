"""Save and load a Flax NNX module's parameters: msgpack of ``nnx.state`` (no pickle), with a
JSON config beside it; every file is written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx, serialization

from jaxembed._atomic import write_bytes, write_text

CONFIG_FILE = "config.json"
PARAMS_FILE = "params.msgpack"


def save_module(folder: str | os.PathLike, module: nnx.Module, config: dict[str, Any],
                kind: str) -> None:
    """Write ``folder/config.json`` (``config`` plus ``"kind"``) and ``folder/params.msgpack``
    (every variable of the module: parameters and fixed state)."""
    folder = Path(folder)
    pure = nnx.to_pure_dict(nnx.state(module))
    data = serialization.msgpack_serialize(jax.tree.map(np.asarray, pure))
    write_bytes(folder / PARAMS_FILE, data)
    write_text(folder / CONFIG_FILE, json.dumps({"kind": kind, **config}, indent=2) + "\n")


def read_config(folder: str | os.PathLike, kind: str) -> dict[str, Any]:
    """The config saved by :func:`save_module`; ValueError when it is not a ``kind``."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {folder}: not a saved {kind}")
    config = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or config.pop("kind", None) != kind:
        raise ValueError(f"{path} does not describe a saved {kind}")
    return config


def load_params(folder: str | os.PathLike, module: nnx.Module) -> None:
    """Restore ``folder/params.msgpack`` into ``module`` (shapes must match its config)."""
    path = Path(folder) / PARAMS_FILE
    restored = serialization.msgpack_restore(path.read_bytes())
    state = nnx.state(module)
    expected = jax.tree.map(np.shape, nnx.to_pure_dict(state))
    found = jax.tree.map(np.shape, restored)
    if expected != found:
        raise ValueError(f"{path}: parameter shapes {found} do not match the config's "
                         f"{expected}")
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(module, state)
