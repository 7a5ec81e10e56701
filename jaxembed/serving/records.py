"""Raw records to score: a list of dicts, or a pandas/polars/pyarrow table, as an Arrow table.

A list of dicts becomes a ``pyarrow.Table`` with one column per column the schema's features
read (:class:`~jaxembed.data.readers.ColumnPlan`): a column whose values fit the planned
type (``string`` for categorical columns, ``float64`` for dense ones) is built with that
type, any other is built as Arrow infers it and cast by the reader like a column of a file
(an integer id ``123`` becomes the text ``"123"``, as in a Parquet log). Every record must
hold every column (``None`` for a missing value); the label, group and time columns are not
needed. Tables and file paths pass through unchanged:
:func:`jaxembed.data.readers.record_batches` checks and types them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from jaxembed.data.readers import DataError


def as_table(records: Any, types: Mapping[str, pa.DataType]) -> Any:
    """``records`` as something :func:`~jaxembed.data.readers.record_batches` reads: a list
    (or tuple) of dicts becomes a ``pyarrow.Table`` of the ``types``' columns; a table, data
    frame or file path is returned as it is."""
    if isinstance(records, pa.Table | pa.RecordBatch | str | os.PathLike):
        return records  # a path: a CSV/TSV/Parquet log, read as jaxembed.predict reads it
    if type(records).__module__.split(".")[0] in ("pandas", "polars"):
        return records
    if isinstance(records, Mapping):
        raise TypeError("records must be a list of dicts (one per row) or a table; got one "
                        "dict: wrap a single record in a list")
    if not isinstance(records, Sequence) or isinstance(records, bytes):
        raise TypeError(f"records must be a list of dicts, a pandas/polars/pyarrow table or a "
                        f"file path, got {type(records).__name__}")
    needed = list(types)
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(f"record {i} is a {type(record).__name__}, not a dict")
        if len(record) < len(needed) or any(c not in record for c in needed):
            missing = next(c for c in needed if c not in record)
            raise DataError(f"record {i} has no column {missing!r} (the schema needs "
                            f"{', '.join(needed)}; give None for a missing value)")
    return pa.table({name: _column([r[name] for r in records], name, kind)
                     for name, kind in types.items()})


def _column(values: list, name: str, kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise DataError(f"column {name!r}: the records' values cannot make one column of "
                        f"{kind} ({err})") from None
