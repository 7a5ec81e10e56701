r"""A served model: the schema's encoder and a deserialized ``jax.export`` function.

:func:`load` opens a folder written by :func:`jaxembed.serving.export` with nothing of the
training code: the schema and vocabularies (:mod:`jaxembed.data.schema`,
:mod:`jaxembed.data.vocabularies`), the reader and encoder (:mod:`jaxembed.data.readers`,
:mod:`jaxembed.data.encode`), the parameters from ``.npy`` files, and
``jax.export.deserialize``. No model class is built, no optimizer or checkpoint library is
touched.

Scoring a batch of ``n`` rows: records → Arrow record batches with the schema's column types
→ encoded arrays (values unseen in training go to their field's OOV buckets) → the exported
function on chunks of at most ``max_batch`` rows. A chunk is padded to the next power of two
(at least 8 rows, by repeating its last row), so a stream of odd batch sizes compiles the
function for at most :math:`\log_2(\mathrm{max\_batch})` shapes; padded rows are dropped.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxembed.data.encode import Encoder
from jaxembed.data.readers import ColumnPlan, record_batches
from jaxembed.data.schema import Schema
from jaxembed.data.vocabularies import Vocabularies
from jaxembed.serving.folder import (
    FUNCTION,
    SCHEMA,
    VOCABULARIES,
    Manifest,
    ServingError,
    read_manifest,
)
from jaxembed.serving.records import as_table

MIN_BATCH = 8


def scoring_schema(schema: Schema) -> Schema:
    """The schema as scoring reads it: the features' columns only (the group and time
    columns serve evaluation and splitting, not a prediction)."""
    options = dataclasses.replace(schema.options, group=None, time=None)
    return dataclasses.replace(schema, options=options)


def _backend_platforms() -> tuple[str, ...]:
    backend = jax.default_backend()
    return ("cuda", "rocm") if backend == "gpu" else (backend,)


def padded_size(n: int, max_batch: int) -> int:
    """The rows a chunk of ``n <= max_batch`` rows is padded to: the next power of two, at
    least :data:`MIN_BATCH`, at most ``max_batch``."""
    return min(max(MIN_BATCH, 1 << max(n - 1, 0).bit_length()), max_batch)


def input_widths(encoder: Any) -> dict[str, tuple[int, str]]:
    """``{name: (width, dtype)}`` of the encoded arrays a served function takes."""
    out = {f"ids/{f.name}": (encoder.width(f), "int32") for f in encoder.embedded}
    out["dense"] = (len(encoder.dense_fields), "float32")
    out["wide"] = (sum(_cross_width(encoder, c) for c in encoder.schema.crosses), "int32")
    return out


def _cross_width(encoder: Any, cross: Any) -> int:
    width = 1
    for name in cross.fields:
        width *= encoder.width(encoder.schema.field(name))
    return width


class ServedModel:
    """``model(records) -> float64[n]``: click probabilities of raw records (a list of dicts,
    or a pandas/polars/pyarrow table; a CSV/Parquet path works too)."""

    def __init__(self, path: str | os.PathLike, *, max_batch: int = 1024) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.path = os.fspath(path)
        self.max_batch = max_batch
        where = f"served folder {self.path!r}"
        self.manifest: Manifest = read_manifest(self.path)
        here = _backend_platforms()
        if not any(p in self.manifest.platforms for p in here):
            raise ServingError(f"{where} was exported for {', '.join(self.manifest.platforms)}"
                               f"; this machine runs {here[0]}: export it again with "
                               f"--platforms {here[0]}")
        self.schema = Schema.from_toml(os.path.join(self.path, SCHEMA))
        self.vocabularies = Vocabularies.load(os.path.join(self.path, VOCABULARIES))
        self.encoder = Encoder(scoring_schema(self.schema), self.vocabularies,
                               seed=self.manifest.seed)
        self.columns = ColumnPlan.of(self.encoder.schema, labels=False).types
        self._check_inputs(where)
        params = {}
        for entry in self.manifest.params:
            array = np.load(os.path.join(self.path, entry.file), allow_pickle=False)
            if tuple(array.shape) != entry.shape or str(array.dtype) != entry.dtype:
                raise ServingError(f"{where}: {entry.file} holds {array.dtype}{list(array.shape)}"
                                   f", the manifest says {entry.dtype}{list(entry.shape)} "
                                   f"for {entry.name!r}")
            params[entry.name] = array
        self._check_tables(params, where)
        try:
            self.exported = jax.export.deserialize(
                bytearray(Path(self.path, FUNCTION).read_bytes()))
        except Exception as err:  # the deserializer raises assorted errors on bad bytes
            raise ServingError(f"{where}: {FUNCTION} cannot be deserialized ({err!r})"
                               ) from None
        self.params = jax.device_put(params)
        self._call = jax.jit(self.exported.call)

    def _check_inputs(self, where: str) -> None:
        expected = input_widths(self.encoder)
        if dict(self.manifest.inputs) != expected:
            raise ServingError(f"{where}: its schema and vocabularies make inputs {expected}, "
                               f"its function takes {dict(self.manifest.inputs)}: the files "
                               f"come from different exports")

    def _check_tables(self, params: dict[str, np.ndarray], where: str) -> None:
        rows = {t.name: t.rows for t in self.encoder.inputs.tables}
        for name, array in params.items():
            kind, _, table = name.partition(":")
            if kind != "table":
                continue
            _, _, table = table.partition(":")
            if table in rows and array.shape[0] != rows[table]:
                raise ServingError(f"{where}: table {table!r} has {array.shape[0]} rows, its "
                                   f"vocabulary gives {rows[table]}: the files come from "
                                   f"different exports")

    @property
    def model_name(self) -> str:
        """The name of the exported model (``wide_deep``, ``lr`` ...)."""
        return self.manifest.model

    def __call__(self, records: Any) -> np.ndarray:
        """Click probabilities ``float64[n]`` of ``records``, in their order."""
        data = as_table(records, self.columns)
        scores = []
        start = 0
        for batch in record_batches(data, self.encoder.schema, labels=False):
            arrays = self.encoder.encode(batch, labels=False, start=start)
            arrays.pop("group", None)
            start += batch.num_rows
            scores.extend(self.score_arrays(arrays))
        if not scores:
            return np.zeros(0, np.float64)
        return np.concatenate(scores).astype(np.float64)

    def score_arrays(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Probabilities of encoded arrays (:meth:`Encoder.encode` without ``group``), in
        chunks of at most ``max_batch`` rows."""
        n = len(arrays["dense"])
        out = []
        for lo in range(0, n, self.max_batch):
            count = min(self.max_batch, n - lo)
            size = padded_size(count, self.max_batch)
            take = np.minimum(np.arange(lo, lo + size), lo + count - 1)
            chunk = {k: v[take] for k, v in arrays.items()}
            out.append(np.asarray(self._call(self.params, chunk))[:count])
        return out


def load(path: str | os.PathLike, *, max_batch: int = 1024) -> ServedModel:
    """Open a served folder; the result scores raw records: ``load(path)(records)``."""
    return ServedModel(path, max_batch=max_batch)
