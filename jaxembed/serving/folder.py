"""The served folder: its files, its manifest, and the checks made when it is opened.

::

    served/
      serving.json        the manifest (below)
      function.jaxexport  the prediction function, jax.export-serialized (StableHLO + trees)
      params/0000.npy ... one plain .npy per parameter (np.load(..., allow_pickle=False))
      schema.toml         the schema the run was fitted with
      vocabularies.json   its vocabularies and dense statistics

``serving.json`` holds ``format`` (:data:`FORMAT`), the model's name, the encoder ``seed``,
the ``platforms`` the function was lowered for, ``batch_dim`` (the symbolic batch size's
name), the function's ``inputs`` (``{name: {"width": W, "dtype": ...}}``: arrays
``[batch, W]``) and ``params`` (``[{"name", "file", "shape", "dtype"}]``, in the order the
function's parameter dict is flattened). Nothing in the folder is pickled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = 1
"""The served-folder format this jaxembed writes and reads."""
MANIFEST = "serving.json"
FUNCTION = "function.jaxexport"
PARAMS = "params"
SCHEMA = "schema.toml"
VOCABULARIES = "vocabularies.json"


class ServingError(ValueError):
    """A served folder that cannot be used: the message names the folder and the problem."""


@dataclass(frozen=True)
class ParamEntry:
    """One saved parameter: its name (``embedding:C1``, ``deep/layers/0/kernel``), its file
    (relative to the folder), shape and dtype."""

    name: str
    file: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class Manifest:
    """The contents of ``serving.json``."""

    model: str
    seed: int
    platforms: tuple[str, ...]
    batch_dim: str
    inputs: Mapping[str, tuple[int, str]]
    params: tuple[ParamEntry, ...]
    jax_version: str = ""
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "seed": self.seed,
                "platforms": list(self.platforms), "batch_dim": self.batch_dim,
                "jax_version": self.jax_version,
                "inputs": {k: {"width": w, "dtype": d} for k, (w, d) in self.inputs.items()},
                "params": [{"name": p.name, "file": p.file, "shape": list(p.shape),
                            "dtype": p.dtype} for p in self.params]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], where: str) -> Manifest:
        if not isinstance(raw, Mapping):
            raise ServingError(f"{where}: {MANIFEST} must hold a JSON object")
        if raw.get("format") != FORMAT:
            raise ServingError(f"{where} is a served folder of format {raw.get('format')!r}; "
                               f"this jaxembed reads format {FORMAT} (export the run again "
                               f"with `jaxembed export`)")
        try:
            return cls(str(raw["model"]), int(raw["seed"]), tuple(raw["platforms"]),
                       str(raw["batch_dim"]),
                       {k: (int(v["width"]), str(v["dtype"])) for k, v in raw["inputs"].items()},
                       tuple(ParamEntry(str(p["name"]), str(p["file"]), tuple(p["shape"]),
                                        str(p["dtype"])) for p in raw["params"]),
                       str(raw.get("jax_version", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ServingError(f"{where}: {MANIFEST} is incomplete or malformed ({err!r})"
                               ) from None


def is_served(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a served model (has a manifest): only such a folder is
    replaced by a new export."""
    return os.path.isfile(os.path.join(folder, MANIFEST))


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """The manifest of a served folder, after checking that the folder and every file the
    manifest names exist."""
    folder = os.fspath(folder)
    where = f"served folder {folder!r}"
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{where} does not exist")
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where} has no {MANIFEST}: it is not a folder written by "
                                f"`jaxembed export`")
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ServingError(f"{where}: {MANIFEST} is not valid JSON ({err})") from None
    manifest = Manifest.from_json(raw, where)
    needed = [FUNCTION, SCHEMA, VOCABULARIES, *(p.file for p in manifest.params)]
    for name in needed:
        if not os.path.isfile(os.path.join(folder, name)):
            raise FileNotFoundError(f"{where} is missing {name!r}")
    return manifest
