r"""The encoding step: a record batch of the log to the model's arrays.

An :class:`Encoder` holds a schema and the vocabularies built on the training data; it turns
each record batch into fixed-width numpy arrays (an *encoded chunk*)::

    "label"          f32[n]          0/1 (schema label, or value >= threshold)
    "ids/<field>"    i32[n, W_f]     ids into the field's table, -1 = padding
    "dense"          f32[n, D]       the plain dense fields, transformed and standardized
    "wide"           i32[n, W_c]     the hashed crosses (each in its own id range), -1 padding
    "group"          i64[n]          the GAUC group of each row (0 without one)

``W_f`` is 1 for single-valued kinds, ``k`` for ``random_code``, and ``max_len`` rounded up to a
power of two for ``multi``/``segment`` (values beyond ``max_len`` are dropped), so every batch of
a field has one width and ``jit`` compiles once. :meth:`Encoder.bags` makes the model's batch
(one :class:`~jaxembed.Bags` per field) of rows of a chunk.

Per kind (see :mod:`jaxembed.data.schema`): a vocabulary lookup (:class:`FieldVocab
<jaxembed.data.vocabularies.FieldVocab>`; a dictionary-encoded column is looked up on its
dictionary), a stable hash into ``buckets``, the attach rule
(the first warm level along ``[value, *parents]``, ids offset level by level, then hashed OOV
buckets), a ``k``-hot random code (:func:`jaxembed.encoding.random_code`) of the value's hash,
quantile buckets of a number (``bucket = #{boundaries <= x}``, the missing bucket last).

A cross of fields ``f_1 … f_m`` hashes every combination of their ids (the Cartesian product
of multi-valued fields' values, as TensorFlow's ``crossed_column``):
``g = mix64(…mix64((K_s + γ) ⊕ h(i_1)) …)``, id ``= offset_c + g mod buckets_c``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxembed.bags import Bags, bucket_width
from jaxembed.data.readers import DataError
from jaxembed.data.schema import Field, Schema
from jaxembed.data.vocabularies import (
    MISSING,
    Vocabularies,
    batch_labels,
    split_values,
    transform,
    unique_hashes,
)
from jaxembed.encoding.hashing import GAMMA, mix64, seed_key
from jaxembed.encoding.random_code import random_code
from jaxembed.encoding.segment import Segmenter
from jaxembed.models.inputs import FieldSpec, ModelInputs, TableSpec


class Encoder:
    """Encodes record batches of a log for the schema and vocabularies it was built with."""

    def __init__(self, schema: Schema, vocabularies: Vocabularies, *, seed: int = 0) -> None:
        self.schema = schema
        self.vocabularies = vocabularies
        self.seed = seed
        self.segmenter = Segmenter()
        self.embedded = tuple(f for f in schema.features if f.embedded)
        self.dense_fields = tuple(f for f in schema.features if not f.embedded)
        offsets, start = [], 0
        for c in schema.crosses:
            offsets.append(start)
            start += c.buckets
        self.cross_offsets = tuple(offsets)
        self.wide_size = start
        missing = [f.table for f in schema.vocab_owners
                   if f.kind in ("categorical", "multi", "segment")
                   and f.table not in vocabularies.tables]
        missing += [f.name for f in self.dense_fields if f.name not in vocabularies.dense]
        if missing:
            raise DataError(f"the vocabularies have no entry for field {missing[0]!r}: they "
                            f"were built for another schema")

    # --- sizes --------------------------------------------------------------------------------
    def rows(self, f: Field) -> int:
        """The rows of the table field ``f`` indexes."""
        if f.share is not None:
            return self.rows(self.schema.field(f.share))
        if f.kind in ("categorical", "multi", "segment"):
            return self.vocabularies.tables[f.table].size
        if f.kind in ("hashed", "random_code"):
            return int(f.buckets)
        if f.kind == "attach":
            warm = sum(len(v.tokens) for v in self.vocabularies.levels[f.name])
            return warm + max(f.oov_buckets, 1)
        return len(self.vocabularies.dense[f.name].boundaries) + 2  # bucketed dense

    @staticmethod
    def width(f: Field) -> int:
        """The fixed width of the field's id arrays."""
        if f.multi:
            return bucket_width(f.max_len)
        return f.k if f.kind == "random_code" else 1

    @property
    def inputs(self) -> ModelInputs:
        """The :class:`~jaxembed.models.inputs.ModelInputs` of a model for this schema."""
        return model_inputs(self.schema, self.rows)

    # --- encoding -----------------------------------------------------------------------------
    def encode(self, batch: pa.RecordBatch, *, labels: bool = True, start: int | None = None
               ) -> dict[str, np.ndarray]:
        """The encoded chunk of ``batch`` (see the module docstring); ``labels=False`` for a
        log without its label column (prediction). ``start``: the batch's first row number,
        for messages."""
        n = batch.num_rows
        out: dict[str, np.ndarray] = {}
        if labels:
            out["label"] = batch_labels(batch, self.schema, start)
        for f in self.embedded:
            out[f"ids/{f.name}"] = self._ids(batch, f, start)
        dense = np.zeros((n, len(self.dense_fields)), np.float32)
        for j, f in enumerate(self.dense_fields):
            dense[:, j] = self._dense(batch.column(f.column), f, start)
        out["dense"] = dense
        out["wide"] = self._wide(out, n)
        group = self.schema.options.group
        out["group"] = (np.zeros(n, np.int64) if not group else
                        (unique_hashes(batch.column(group).fill_null(MISSING), self.seed)
                         >> np.uint64(1)).astype(np.int64))
        return out

    def _missing(self, column: pa.Array, f: Field, start: int | None) -> pa.Array:
        if column.null_count == 0:
            return column
        if f.missing == "error":
            row = int(np.argmax(np.asarray(pc.is_null(column))))
            raise DataError(f"field {f.name!r}: row {_row(row, start)} of column {f.column!r} "
                            f"is missing (missing = \"error\")")
        if f.missing != "category" or pa.types.is_dictionary(column.type):
            return column  # a dictionary column's nulls are filled in its lookup
        return column.fill_null(MISSING)

    def _ids(self, batch: pa.RecordBatch, f: Field, start: int | None) -> np.ndarray:
        column = self._missing(batch.column(f.column), f, start)
        where = f"field {f.name!r}"
        if f.kind == "categorical":
            vocab = self.vocabularies.tables[f.table]
            if pa.types.is_dictionary(column.type):
                null_value = MISSING if f.missing == "category" else None
                ids = vocab.dictionary_ids(column, where, null_value)[:, None]
            else:
                ids = vocab.ids(column, where)[:, None]
        elif f.kind in ("multi", "segment"):
            ids = self._multi(column, f, where)
        elif f.kind == "hashed":
            ids = self._hashed(column, f.buckets, f.name)[:, None]
        elif f.kind == "random_code":
            hashed = self._hashed(column, 2**62, f.name)
            ids = random_code(np.maximum(hashed, 0), f.buckets, f.k, self.seed)
            ids[hashed < 0] = -1
        elif f.kind == "attach":
            ids = self._attach(batch, f, column)[:, None]
        else:
            ids = self._bucketed(batch.column(f.column), f, start)[:, None]
        return ids.astype(np.int32)

    def _hashed(self, column: pa.Array, buckets: int, salt: str) -> np.ndarray:
        seed = self.seed + int(_salt(salt))
        ids = (unique_hashes(column, seed) % np.uint64(buckets)).astype(np.int64)
        ids[np.asarray(pc.is_null(column))] = -1
        return ids

    def _multi(self, column: pa.Array, f: Field, where: str) -> np.ndarray:
        lists = split_values(column, f, self.segmenter)
        n = len(lists)
        offsets = np.asarray(lists.offsets)
        if lists.offset:  # a sliced list array: offsets count from its parent's start
            offsets = offsets - offsets[0]
        values = pc.list_flatten(lists)
        ids = self.vocabularies.tables[f.table].ids(values, where)
        lengths = np.diff(offsets)
        lengths[np.asarray(pc.is_null(lists))] = 0
        out = np.full((n, self.width(f)), -1, np.int64)
        row = np.repeat(np.arange(n), lengths)
        slot = np.arange(ids.size) - np.repeat(offsets[:-1], lengths)
        keep = slot < f.max_len
        out[row[keep], slot[keep]] = ids[keep]
        return out

    def _attach(self, batch: pa.RecordBatch, f: Field, own: pa.Array) -> np.ndarray:
        levels = self.vocabularies.levels[f.name]
        out = np.full(batch.num_rows, -1, np.int64)
        offset = 0
        for level, (name, vocab) in enumerate(zip(f.columns, levels, strict=True)):
            column = own if level == 0 else batch.column(name)
            ids = vocab.index(column.fill_null(MISSING))
            take = (out < 0) & (ids >= 0)
            out[take] = offset + ids[take]
            offset += len(vocab.tokens)
        cold = out < 0
        if cold.any():
            out[cold] = offset + self._hashed(own.filter(pa.array(cold)).fill_null(MISSING),
                                              max(f.oov_buckets, 1), f.name)
        return out

    @staticmethod
    def _numbers(column: pa.Array, f: Field, start: int | None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(t(x), missing)``: the transformed values (missing ones read as 0 before the
        transform) and the mask of missing or non-finite cells (an error with ``missing =
        "error"``, naming the row)."""
        x = np.asarray(column.fill_null(np.nan), dtype=np.float64)
        missing = ~np.isfinite(x)
        if missing.any() and f.missing == "error":
            raise DataError(f"field {f.name!r}: row {_row(int(np.argmax(missing)), start)} "
                            f"of column {f.column!r} is missing or not finite "
                            f"(missing = \"error\")")
        return transform(np.where(missing, 0.0, x), f.transform), missing

    def _bucketed(self, column: pa.Array, f: Field, start: int | None) -> np.ndarray:
        boundaries = np.asarray(self.vocabularies.dense[f.name].boundaries)
        t, missing = self._numbers(column, f, start)
        return np.where(missing, boundaries.size + 1, np.searchsorted(boundaries, t, "right"))

    def _dense(self, column: pa.Array, f: Field, start: int | None) -> np.ndarray:
        stats = self.vocabularies.dense[f.name]
        t, missing = self._numbers(column, f, start)
        if f.transform != "none":
            t = (t - stats.mean) / stats.std
        if f.missing == "mean":
            t = np.where(missing, 0.0 if f.transform != "none" else stats.mean, t)
        return t

    def _wide(self, encoded: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        parts = []
        for cross, offset in zip(self.schema.crosses, self.cross_offsets, strict=True):
            g = np.full((n, 1), seed_key(self.seed + int(_salt(cross.name))), np.uint64)
            valid = np.ones((n, 1), bool)
            for name in cross.fields:
                ids = encoded[f"ids/{name}"].astype(np.int64)
                g = (g[:, :, None] + np.uint64(GAMMA)) ^ mix64(ids.astype(np.uint64))[:, None, :]
                width = g.shape[1] * g.shape[2]  # not -1: a batch of 0 rows keeps its width
                g = mix64(g).reshape(n, width)
                valid = (valid[:, :, None] & (ids >= 0)[:, None, :]).reshape(n, width)
            ids = offset + (g % np.uint64(cross.buckets)).astype(np.int64)
            parts.append(np.where(valid, ids, -1))
        if not parts:
            return np.zeros((n, 0), np.int32)
        return np.concatenate(parts, axis=1).astype(np.int32)

    # --- batches ------------------------------------------------------------------------------
    def bags(self, chunk: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The model's batch of an encoded chunk: ``{field: Bags, "dense": f32[n, D],
        "wide": Bags}``."""
        out: dict[str, Any] = {f.name: Bags(chunk[f"ids/{f.name}"]) for f in self.embedded}
        out["dense"] = chunk["dense"]
        if self.wide_size:
            out["wide"] = Bags(chunk["wide"])
        return out


def model_inputs(schema: Schema, rows: Callable[[Field], int]) -> ModelInputs:
    """The tables (``rows(field)`` each), fields, dense width and wide size of a schema's
    model; with a stand-in ``rows`` it checks a model's hyperparameters before the data is
    read."""
    embedded = [f for f in schema.features if f.embedded]
    tables = tuple(TableSpec(f.table, rows(f), f.dim) for f in embedded if f.share is None)
    fields = tuple(FieldSpec(f.name, f.table, f.combiner, f.multi or f.kind == "random_code",
                             Encoder.width(f)) for f in embedded)
    return ModelInputs(tables, fields, len(schema.features) - len(embedded),
                       sum(c.buckets for c in schema.crosses))


def _salt(name: str) -> int:
    from jaxembed.encoding.hashing import hash_strings

    return int(hash_strings([name])[0] % np.uint64(2**31))


def _row(row: int, start: int | None) -> str:
    return str(row + 1) if start is None else str(start + row + 1)
