"""Read and write a :class:`~jaxembed.data.search_log.SearchLog` as CSV or Parquet.

Both formats hold one row per impression with the columns of :data:`CSV_COLUMNS`, in that
order: ``pageview_id, pv_time, click_time, user_id, query, item_id, shop_id, category_id,
brand_id, item_ctr_hist, item_log_impressions, price, position, shop_rating, label,
true_prob``. Floats are written with the shortest repr that reads back to the same value, so
a round trip is exact. In CSV a missing ``click_time`` (no click) is an empty field.

The cardinalities (``num_users`` ...) are not in a CSV file: pass them to :func:`read_csv`,
or each is inferred as ``max id + 1``. Parquet keeps them in the schema metadata. Parquet
needs ``pyarrow`` (``pip install pyarrow``); CSV needs only the standard library and numpy.

Writes are atomic (a temporary file in the same folder, then ``os.replace``). A malformed
file raises ValueError naming the file, the line (CSV) or row (Parquet), the column and the
value.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from jaxembed._atomic import atomic_path
from jaxembed.data.search_log import (
    COLUMN_DTYPES,
    ID_FIELDS,
    STAT_NAMES,
    SearchLog,
    column_problem,
)

__all__ = ["CSV_COLUMNS", "read_csv", "read_parquet", "write_csv", "write_parquet"]

CSV_COLUMNS = ("pageview_id", "pv_time", "click_time", "user_id", "query", "item_id", "shop_id",
               "category_id", "brand_id", *STAT_NAMES, "label", "true_prob")
"""Column order of the CSV and Parquet files (the stats are spread over their own columns)."""

_METADATA_KEY = b"jaxembed.search_log.cardinalities"
_CHUNK = 65_536


def _dtype(column: str) -> np.dtype:
    return np.dtype(COLUMN_DTYPES["stats" if column in STAT_NAMES else column])


def _flat_columns(log: SearchLog) -> dict[str, np.ndarray]:
    out = {name: getattr(log, name) for name in CSV_COLUMNS if name not in STAT_NAMES}
    out.update({name: log.stats[:, j] for j, name in enumerate(STAT_NAMES)})
    return {name: out[name] for name in CSV_COLUMNS}


def _atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary path next to ``path``, then move it into place
    (:func:`jaxembed._atomic.atomic_path`: the file gets the user's umask mode)."""
    with atomic_path(path) as tmp:
        write(tmp)


def _check_log(log: Any) -> None:
    if not isinstance(log, SearchLog):
        raise TypeError(f"expected a SearchLog, got {type(log).__name__}")


def write_csv(log: SearchLog, path: str | os.PathLike) -> None:
    """Write ``log`` to ``path`` as UTF-8 CSV with a header row (atomically)."""
    _check_log(log)
    columns = _flat_columns(log)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for start in range(0, len(log), _CHUNK):
                text = []
                for name, values in columns.items():
                    part = values[start:start + _CHUNK]
                    if part.dtype.kind == "i":
                        text.append(list(map(str, part.tolist())))
                    elif name == "click_time":
                        text.append(np.where(np.isnan(part), "", part.astype(str)).tolist())
                    else:
                        text.append((part if name == "query" else part.astype(str)).tolist())
                writer.writerows(zip(*text, strict=True))
            f.flush()
            os.fsync(f.fileno())

    _atomic_write(path, write)


def _cardinalities(columns: Mapping[str, np.ndarray], given: Mapping[str, int] | None
                   ) -> dict[str, int]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(ID_FIELDS.values()))
    if unknown:
        raise ValueError(f"unknown cardinalities {unknown}; expected keys among "
                         f"{sorted(ID_FIELDS.values())}")
    out = {}
    for column, size in ID_FIELDS.items():
        if size in given:
            value = given[size]
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"cardinality {size} must be a non-negative int, got {value!r}")
            out[size] = int(value)
        else:
            ids = columns[column]
            out[size] = int(ids.max()) + 1 if ids.size and ids.max() >= 0 else 0
    return out


def _build(columns: dict[str, np.ndarray], cardinalities: Mapping[str, int] | None,
           where: Callable[[int], str]) -> SearchLog:
    """A SearchLog from flat columns; a broken rule is reported at ``where(row)``."""
    merged = {name: v for name, v in columns.items() if name not in STAT_NAMES}
    merged["stats"] = np.stack([columns[name] for name in STAT_NAMES], axis=1).reshape(
        -1, len(STAT_NAMES))
    sizes = _cardinalities(columns, cardinalities)
    problem = column_problem(merged, sizes)
    if problem is not None:
        column, row, message = problem
        if column == "stats" and row is not None:
            bad = ~np.isfinite(merged["stats"][row])
            column = STAT_NAMES[int(np.argmax(bad))]
        at = "" if row is None else f"{where(row)}: "
        value = None if row is None else columns[column][row]
        shown = "" if row is None else f" (value {getattr(value, 'item', lambda: value)()!r})"
        raise ValueError(f"{at}column {column!r}: {message}{shown}")
    return SearchLog(**merged, **sizes)


def _parse(name: str, values: tuple[str, ...], lines: list[int], path: str) -> np.ndarray:
    """Strings of one column → numpy, or ValueError naming the first unparsable line."""
    dtype = _dtype(name)
    if name == "query":
        return np.array(values, dtype=object)
    if name == "click_time":
        values = tuple(v if v else "nan" for v in values)
    try:
        return np.array(values, dtype=dtype)
    except (ValueError, OverflowError):
        for value, line in zip(values, lines, strict=True):
            try:
                np.array([value], dtype=dtype)
            except (ValueError, OverflowError):
                raise ValueError(f"{path} line {line}: column {name!r}: cannot read {value!r} "
                                 f"as {dtype}") from None
        raise


def read_csv(path: str | os.PathLike, *, cardinalities: Mapping[str, int] | None = None
             ) -> SearchLog:
    """Read a search log written by :func:`write_csv` (or any CSV with the same columns).

    Args:
      path: the CSV file (UTF-8, header row ``CSV_COLUMNS``).
      cardinalities: ``{"num_items": ..., ...}``; missing entries are inferred as
        ``max id + 1``.

    Raises:
      ValueError: a wrong header, a row with the wrong number of fields, a value that does
        not parse or breaks a rule of the format (message names the line and column).
    """
    path = os.fspath(path)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in CSV_COLUMNS}
    line_parts: list[np.ndarray] = []

    def flush(rows: list[list[str]], lines: list[int]) -> None:
        if rows:
            for name, values in zip(CSV_COLUMNS, zip(*rows, strict=True), strict=True):
                parts[name].append(_parse(name, values, lines, path))
            line_parts.append(np.asarray(lines))

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != list(CSV_COLUMNS):
            raise ValueError(_header_message(path, header))
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if len(row) != len(CSV_COLUMNS):
                raise ValueError(f"{path} line {reader.line_num}: expected {len(CSV_COLUMNS)} "
                                 f"fields, got {len(row)}: {row!r}"[:300])
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) == _CHUNK:
                flush(rows, lines)
                rows, lines = [], []
        flush(rows, lines)
    columns = {name: (np.concatenate(chunks) if chunks else np.zeros(0, _dtype(name)))
               for name, chunks in parts.items()}
    all_lines = np.concatenate(line_parts) if line_parts else np.zeros(0, np.int64)
    return _build(columns, cardinalities, lambda row: f"{path} line {int(all_lines[row])}")


def _header_message(path: str, header: Iterable[str] | None) -> str:
    if header is None:
        return f"{path}: empty file; expected the header row {','.join(CSV_COLUMNS)}"
    header = list(header)
    missing = [c for c in CSV_COLUMNS if c not in header]
    extra = [c for c in header if c not in CSV_COLUMNS]
    detail = (f"missing {missing}, unexpected {extra}" if missing or extra
              else "columns out of order")
    return (f"{path} line 1: the columns do not match the search log format ({detail}); "
            f"expected {','.join(CSV_COLUMNS)}")


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError("Parquet files need pyarrow: `pip install pyarrow` (CSV works "
                          "without it: write_csv / read_csv)") from err
    return pa, pq


def write_parquet(log: SearchLog, path: str | os.PathLike) -> None:
    """Write ``log`` to ``path`` as Parquet (atomically); the cardinalities go into the schema
    metadata. Requires pyarrow."""
    _check_log(log)
    pa, pq = _pyarrow()
    columns = _flat_columns(log)
    arrays = {name: pa.array(values.tolist() if name == "query" else values,
                             type=pa.string() if name == "query" else None)
              for name, values in columns.items()}
    table = pa.table(arrays).replace_schema_metadata(
        {_METADATA_KEY: json.dumps(log.cardinalities).encode()})
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_parquet(path: str | os.PathLike, *, cardinalities: Mapping[str, int] | None = None
                 ) -> SearchLog:
    """Read a search log written by :func:`write_parquet`. Requires pyarrow.

    Cardinalities come from ``cardinalities``, else the file's metadata, else ``max id + 1``.

    Raises:
      ValueError: missing columns, nulls, values of the wrong type or breaking a rule of the
        format (message names the row and column).
    """
    pa, pq = _pyarrow()
    path = os.fspath(path)
    try:
        table = pq.read_table(path)
    except pa.ArrowInvalid as err:
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from err
    if list(table.column_names) != list(CSV_COLUMNS):
        raise ValueError(_header_message(path, table.column_names).replace(" line 1:", ":"))
    stored = (table.schema.metadata or {}).get(_METADATA_KEY)
    sizes = {**(json.loads(stored) if stored else {}), **(cardinalities or {})}
    columns = {}
    for name in CSV_COLUMNS:
        column = table.column(name)
        if column.null_count:
            row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise ValueError(f"{path} row {row}: column {name!r} is null")
        values = column.to_numpy(zero_copy_only=False)
        if name == "query":
            columns[name] = values.astype(object)
            continue
        kind = np.dtype(values.dtype).kind
        want = _dtype(name)
        if kind not in "iuf" or (want.kind == "i" and kind == "f"):
            raise ValueError(f"{path}: column {name!r} has type {column.type}, expected "
                             f"{want} values")
        cast = values.astype(want)
        if want.kind == "i" and not np.array_equal(cast, values):
            row = int(np.argmax(cast != values))
            raise ValueError(f"{path} row {row}: column {name!r}: {values[row].item()!r} does "
                             f"not fit {want}")
        columns[name] = cast
    return _build(columns, sizes, lambda row: f"{path} row {row}")
