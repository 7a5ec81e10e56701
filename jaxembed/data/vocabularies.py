r"""Vocabularies and numeric statistics of a log, built in one streaming pass.

For every table of the schema (a field that owns its values, plus the fields that ``share``
it) a :class:`FieldVocab` maps a value to an id with Keras ``StringLookup`` /
TensorFlow ``StaticVocabularyTable`` semantics:

.. math::

    \mathrm{id}(t) = \begin{cases} \mathrm{index}(t) & t \in \text{vocab} \\
    V + (h_s(t) \bmod B) & \text{otherwise} \end{cases}

where the vocabulary holds the values seen at least ``min_count`` times (at most ``max_size``
of them), most frequent first, ties in code-point order, so the result does not depend on the
order of the rows; ``h_s`` is :func:`jaxembed.encoding.hash_strings`. That is the rule of
:class:`jaxembed.encoding.Vocabulary`, and :meth:`FieldVocab.ids` equals its ``lookup`` (a
test checks it) while looking up a whole Arrow column at once (``pyarrow.compute.index_in``).

The counts stay in Arrow: a :class:`Tally` keeps ``(value, count)`` pairs per table and sums
them with a ``group_by`` (no Python object per value). A dictionary-encoded column (what
:func:`record_batches(..., dictionary=True) <jaxembed.data.readers.record_batches>` gives
for a CSV's categorical columns) is counted on its indices,
``count(d_j) = #{i : k_i = j}`` for ``x_i = d_{k_i}``, and looked up on its dictionary,
``id(x_i) = id(d_{k_i})`` (:meth:`FieldVocab.dictionary_ids`): each distinct value of a batch
is hashed and looked up once. ``proofs/proof_vocabularies.py`` proves both equal to the
literal forms (a ``Counter`` of the decoded values; :meth:`FieldVocab.ids` of them).

For every dense field the pass keeps the moments of its transformed values (for
standardization and mean imputation) and, with ``buckets = N``, a uniform sample (bottom-k of
seeded random keys, deterministic) whose quantiles become the bucket boundaries.

Everything is saved as one JSON file beside the model (:meth:`Vocabularies.save`), written
atomically; nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxembed import _atomic
from jaxembed.data.readers import DataError
from jaxembed.data.schema import Field, Schema
from jaxembed.encoding.hashing import hash_strings
from jaxembed.encoding.segment import Segmenter

FORMAT = 1
MISSING = ""
"""The value a missing cell takes in a vocabulary (``missing = "category"``)."""
SAMPLE = 100_000
"""Values kept per dense field for its quantile boundaries."""


def unique_hashes(values: pa.Array, seed: int) -> np.ndarray:
    """``hash_strings(values, seed)`` as ``uint64[n]``, hashing each distinct value once."""
    encoded = pc.dictionary_encode(values)
    hashed = hash_strings(np.asarray(encoded.dictionary.to_pylist(), dtype=object), seed)
    return hashed[np.asarray(encoded.indices.fill_null(0))]


class Tally:
    """How often each value occurs in a stream of string columns: ``(value, count)`` pieces
    in Arrow, summed by a ``group_by`` whenever the pieces waiting outgrow the sums so far
    (amortized linear in the values seen; memory about two copies of the distinct values).
    ``merge_at``: the pieces' values that may wait before the first sum."""

    def __init__(self, merge_at: int = 1 << 16) -> None:
        self._values: list[pa.Array] = []
        self._counts: list[np.ndarray] = []
        self._merged = 0
        self._waiting = 0
        self._merge_at = merge_at

    def add(self, values: pa.Array, missing: str | None = None) -> None:
        """Count the valid values of a ``string`` or ``dictionary<string>`` column; nulls
        count as ``missing`` when it is given (``fill_null(missing)``), else not at all."""
        if pa.types.is_dictionary(values.type):
            dictionary = values.dictionary
            keys = np.asarray(values.indices.drop_null(), dtype=np.int64)
            counts = np.bincount(keys, minlength=len(dictionary))
            seen = (counts > 0) & np.asarray(dictionary.is_valid())
            nulls = len(values) - int(counts[seen].sum())
            self._put(dictionary.filter(pa.array(seen)), counts[seen])
        else:
            counted = pc.value_counts(values.drop_null())
            nulls = values.null_count
            self._put(counted.field("values"), np.asarray(counted.field("counts")))
        if missing is not None and nulls:
            self._put(pa.array([missing], pa.string()), np.array([nulls]))

    def _put(self, values: pa.Array, counts: np.ndarray) -> None:
        if len(values) == 0:
            return
        if values.type != pa.string():
            values = pc.cast(values, pa.string())
        self._values.append(values)
        self._counts.append(counts.astype(np.int64))
        self._waiting += len(values)
        if self._waiting > max(self._merged, self._merge_at):
            self._merge()

    def _merge(self) -> None:
        if self._waiting:  # even one piece: a dictionary may repeat an entry
            table = pa.table({"value": pa.chunked_array(self._values, pa.string()),
                              "count": np.concatenate(self._counts)})
            summed = table.group_by("value", use_threads=False).aggregate([("count", "sum")])
            self._values = [summed.column("value").combine_chunks()]
            self._counts = [np.asarray(summed.column("count_sum"), dtype=np.int64)]
        self._merged = sum(len(v) for v in self._values)
        self._waiting = 0

    def result(self) -> tuple[pa.Array, np.ndarray]:
        """``(values, counts)``: every distinct value once (in no particular order)."""
        self._merge()
        if not self._values:
            return pa.array([], pa.string()), np.zeros(0, np.int64)
        return self._values[0], self._counts[0]


@dataclass
class FieldVocab:
    """A table's vocabulary: ``tokens`` (ids ``0..V-1``), their ``counts``, and
    ``oov_buckets`` hashed ids ``V..V+B-1`` for the rest."""

    tokens: list[str]
    counts: list[int]
    oov_buckets: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        self._set = pa.array(self.tokens, pa.string())

    @property
    def size(self) -> int:
        """The table's rows, ``V + B`` (at least 1)."""
        return max(len(self.tokens) + self.oov_buckets, 1)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], *, min_count: int = 1,
                    max_size: int | None = None, oov_buckets: int = 1, seed: int = 0
                    ) -> FieldVocab:
        """The values seen at least ``min_count`` times, most frequent first (ties in
        code-point order), at most ``max_size``."""
        kept = sorted(((-c, t) for t, c in counts.items() if c >= min_count))
        if max_size is not None:
            kept = kept[:max_size]
        return cls([t for _, t in kept], [-c for c, _ in kept], oov_buckets, seed)

    @classmethod
    def from_tally(cls, tally: Tally, *, min_count: int = 1, max_size: int | None = None,
                   oov_buckets: int = 1, seed: int = 0) -> FieldVocab:
        """:meth:`from_counts` of a :class:`Tally`, selected and sorted in Arrow: the sort
        keys are ``(count descending, value ascending)``, and Arrow orders strings by their
        UTF-8 bytes, which is code-point order."""
        values, counts = tally.result()
        table = pa.table({"count": pa.array(counts, pa.int64()), "value": values})
        table = table.filter(pc.greater_equal(table.column("count"), min_count))
        order = pc.sort_indices(table, sort_keys=[("count", "descending"),
                                                  ("value", "ascending")])
        if max_size is not None:
            order = order[:max_size]
        table = table.take(order)
        return cls(table.column("value").to_pylist(), table.column("count").to_pylist(),
                   oov_buckets, seed)

    def index(self, values: pa.Array) -> np.ndarray:
        """``int64[n]``: each value's position in the vocabulary, ``-1`` if it has none."""
        return np.asarray(pc.index_in(values, value_set=self._set).fill_null(-1),
                          dtype=np.int64)

    def ids(self, values: pa.Array, where: str) -> np.ndarray:
        """``int64[n]`` ids of string values; a null gives ``-1``. An out-of-vocabulary value
        with no OOV bucket raises, naming it."""
        index = pc.index_in(values, value_set=self._set)
        out = np.asarray(index.fill_null(-1), dtype=np.int64)
        oov = np.asarray(pc.and_(pc.is_null(index), pc.is_valid(values)))
        if oov.any():
            unknown = values.filter(pa.array(oov))
            if self.oov_buckets == 0:
                raise DataError(f"{where}: value {unknown[0].as_py()!r} is not in the "
                                f"vocabulary and oov_buckets = 0")
            out[oov] = len(self.tokens) + (unique_hashes(unknown, self.seed)
                                           % np.uint64(self.oov_buckets)).astype(np.int64)
        return out

    def dictionary_ids(self, values: pa.DictionaryArray, where: str,
                       null_value: str | None = None) -> np.ndarray:
        """:meth:`ids` of ``values.dictionary_decode()`` (filled with ``null_value`` when it
        is given), each dictionary entry looked up once: ``id(x_i) = id(d_{k_i})``, a null
        row ``-1`` (or the id of ``null_value``). With ``oov_buckets = 0`` an
        out-of-vocabulary value that a row uses raises, naming the first such row's value as
        :meth:`ids` does (an unused dictionary entry is no error); with one bucket every OOV
        id is ``V`` (``h mod 1 = 0``), so nothing is hashed."""
        dictionary = values.dictionary
        if null_value is not None:  # a null row reads entry D, the null value
            dictionary = pa.concat_arrays([dictionary, pa.array([null_value], dictionary.type)])
        index = pc.index_in(dictionary, value_set=self._set)
        entry = np.asarray(index.fill_null(-1), dtype=np.int64)
        oov = entry < 0
        if dictionary.null_count:
            oov &= np.asarray(dictionary.is_valid())
        if oov.any() and self.oov_buckets == 1:
            entry[oov] = len(self.tokens)
        elif oov.any() and self.oov_buckets > 1:
            entry[oov] = len(self.tokens) + (
                unique_hashes(dictionary.filter(pa.array(oov)), self.seed)
                % np.uint64(self.oov_buckets)).astype(np.int64)
        if null_value is None:  # a null row reads entry D, -1
            entry = np.append(entry, -1)
            oov = np.append(oov, False)
        keys = values.indices.fill_null(len(entry) - 1).to_numpy()
        if self.oov_buckets == 0 and oov.any():
            used = oov.take(keys)
            if used.any():
                value = dictionary[int(keys[int(np.argmax(used))])].as_py()
                raise DataError(f"{where}: value {value!r} is not in the vocabulary and "
                                f"oov_buckets = 0")
        return entry.take(keys)

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "counts": self.counts, "oov_buckets": self.oov_buckets,
                "seed": self.seed}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FieldVocab:
        return cls(list(raw["tokens"]), list(raw["counts"]), int(raw["oov_buckets"]),
                   int(raw["seed"]))


@dataclass
class DenseStats:
    """A dense field's transformed mean and deviation, and its bucket boundaries."""

    mean: float = 0.0
    std: float = 1.0
    boundaries: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "boundaries": self.boundaries}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DenseStats:
        return cls(float(raw["mean"]), float(raw["std"]), [float(b) for b in raw["boundaries"]])


def transform(values: np.ndarray, kind: str) -> np.ndarray:
    """A dense field's transform before standardization: ``log1p`` is
    ``sign(x) log(1 + |x|)`` (defined for every real, monotone), the others the identity."""
    if kind == "log1p":
        return np.sign(values) * np.log1p(np.abs(values))
    return values


def split_values(column: pa.Array, f: Field, segmenter: Segmenter | None = None
                 ) -> pa.ListArray:
    """The values of a multi-valued column (``separator``) or the words of a text
    (``segment``), one list per row (null rows give null lists)."""
    if f.kind == "segment":
        texts = column.to_pylist()
        tokens, offsets = (segmenter or Segmenter()).batch([t or "" for t in texts])
        lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                         pa.array(tokens, pa.string()))
        return pc.if_else(pc.is_null(column), pa.scalar(None, lists.type), lists)
    return pc.split_pattern(column, f.separator)


@dataclass
class Vocabularies:
    """Every table's :class:`FieldVocab`, every dense field's :class:`DenseStats`, attach
    levels, and the training rows and positives they were built from."""

    tables: dict[str, FieldVocab]
    dense: dict[str, DenseStats]
    levels: dict[str, list[FieldVocab]]
    rows: int
    positives: int

    # --- the pass -----------------------------------------------------------------------------
    @classmethod
    def build(cls, batches: Iterable[pa.RecordBatch], schema: Schema, *, seed: int = 0,
              keep: Any = None) -> Vocabularies:
        """Count every table's values and every dense field's moments in one pass over
        ``batches``; ``keep(batch, start) -> bool[n]`` selects the training rows (all by
        default; ``start`` is the batch's first row number in the stream)."""
        counts = {f.table: Tally() for f in schema.vocab_owners
                  if f.kind in ("categorical", "multi", "segment")}
        level_counts = {f.name: [Tally() for _ in f.columns] for f in schema.features
                        if f.kind == "attach"}
        dense = [f for f in schema.features if f.kind == "dense"]
        moments = {f.name: np.zeros(3) for f in dense}
        samples: dict[str, tuple[np.ndarray, np.ndarray]] = {
            f.name: (np.zeros(0), np.zeros(0)) for f in dense if f.buckets}
        segmenter = Segmenter()
        rows = positives = 0
        start = 0
        for batch in batches:
            n = batch.num_rows
            if keep is not None:
                mask = keep(batch, start)
                batch = batch.filter(pa.array(mask))
            labels = batch_labels(batch, schema, start if keep is None else None)
            rows += batch.num_rows
            positives += int(labels.sum())
            for f in schema.features:
                column = batch.column(f.column)
                if f.kind in ("categorical", "multi", "segment"):
                    values = column
                    if f.kind != "categorical":
                        values = pc.list_flatten(split_values(column, f, segmenter))
                    counts[f.table].add(values, MISSING if f.missing == "category" else None)
                elif f.kind == "attach":
                    for level, name in enumerate(f.columns):
                        level_counts[f.name][level].add(batch.column(name))
                elif f.kind == "dense":
                    x = np.asarray(column.fill_null(np.nan), dtype=np.float64)
                    x = transform(x[np.isfinite(x)], f.transform)
                    moments[f.name] += (x.size, x.sum(), (x * x).sum())
                    if f.buckets:
                        samples[f.name] = _bottom_k(samples[f.name], x, seed, f.name, start)
            start += n
        if rows == 0:
            raise DataError("the training data has no rows")
        tables = {}
        for f in schema.vocab_owners:
            if f.kind in ("categorical", "multi", "segment"):
                tables[f.table] = FieldVocab.from_tally(
                    counts[f.table], min_count=f.min_count, max_size=f.max_size,
                    oov_buckets=f.oov_buckets, seed=seed)
        levels = {name: [FieldVocab.from_tally(c, min_count=schema.field(name).min_count,
                                                oov_buckets=0, seed=seed) for c in per_level]
                  for name, per_level in level_counts.items()}
        stats = {}
        for f in dense:
            count, total, squares = moments[f.name]
            mean = total / count if count else 0.0
            std = math.sqrt(max(squares / count - mean * mean, 0.0)) if count else 1.0
            boundaries: list[float] = []
            if f.buckets and samples[f.name][0].size:
                qs = np.quantile(samples[f.name][0], np.arange(1, f.buckets) / f.buckets)
                boundaries = [float(b) for b in np.unique(qs)]
            stats[f.name] = DenseStats(float(mean), float(std) if std > 1e-12 else 1.0,
                                       boundaries)
        return cls(tables, stats, levels, rows, positives)

    # --- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``vocabularies.json`` (atomically)."""
        document = {"format": FORMAT, "rows": self.rows, "positives": self.positives,
                    "tables": {k: v.to_json() for k, v in self.tables.items()},
                    "dense": {k: v.to_json() for k, v in self.dense.items()},
                    "levels": {k: [v.to_json() for v in vs] for k, vs in self.levels.items()}}
        _atomic.write_text(path, json.dumps(document, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabularies:
        """Read what :meth:`save` wrote."""
        try:
            with open(path, encoding="utf-8") as handle:
                raw = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(f"no vocabularies at {os.fspath(path)!r}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"vocabularies {os.fspath(path)!r} are not valid JSON: {err}"
                            ) from None
        if raw.get("format") != FORMAT:
            raise DataError(f"vocabularies {os.fspath(path)!r} have format "
                            f"{raw.get('format')!r}, this jaxembed reads {FORMAT}")
        return cls({k: FieldVocab.from_json(v) for k, v in raw["tables"].items()},
                   {k: DenseStats.from_json(v) for k, v in raw["dense"].items()},
                   {k: [FieldVocab.from_json(v) for v in vs] for k, vs in raw["levels"].items()},
                   int(raw["rows"]), int(raw["positives"]))


def _bottom_k(kept: tuple[np.ndarray, np.ndarray], x: np.ndarray, seed: int, name: str,
              start: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniform sample of at most :data:`SAMPLE` values: the ones with the smallest random
    keys, the keys drawn from ``(seed, field, batch start)`` so the sample is reproducible."""
    salt = int(hash_strings([name], seed)[0] % np.uint64(2**31))
    keys = np.random.default_rng([seed, salt, start]).random(x.size)
    values = np.concatenate([kept[0], x])
    keys = np.concatenate([kept[1], keys])
    if values.size > SAMPLE:
        top = np.argpartition(keys, SAMPLE)[:SAMPLE]
        values, keys = values[top], keys[top]
    return values, keys


def batch_labels(batch: pa.RecordBatch, schema: Schema, start: int | None = None
                 ) -> np.ndarray:
    """The 0/1 labels of a batch (``value >= threshold`` with a threshold); a missing label,
    or one outside {0, 1} without a threshold, raises naming its row."""
    column = batch.column(schema.label.column)
    values = np.asarray(column.fill_null(np.nan), dtype=np.float64)
    where = f"label column {schema.label.column!r}"
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where}: row {_row(row, start)} has no label (missing or not a "
                        f"number)")
    if schema.label.threshold is not None:
        return (values >= schema.label.threshold).astype(np.float32)
    bad = (values != 0) & (values != 1)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where}: row {_row(row, start)} has label {values[row]:g}, not 0 or 1 "
                        f"(give [label] threshold = ... for a graded column)")
    return values.astype(np.float32)


def _row(row: int, start: int | None) -> str:
    return str(row + 1) if start is None else str(start + row + 1)
