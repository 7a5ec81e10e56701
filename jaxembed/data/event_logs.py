"""Reading raw event logs for the join: record batches of a Parquet file or folder, a CSV/TSV
file or an in-memory table, their column names, a time column as seconds; and the settings
a joined file records (its negative rate, which a fit on it stores in the run).

Parquet files are read file by file, row group by row group, without pre-buffering (the
dataset scanner and a pre-buffering ``ParquetFile`` read row groups ahead, and memory grew
with the file); a CSV key column is read as text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq

from jaxembed.data.readers import (
    BLOCK_BYTES,
    CSV_SUFFIXES,
    PARQUET_SUFFIXES,
    DataError,
    _arrow_table,
    _header,
    _suffix,
    describe,
    time_values,
)

METADATA_KEY = b"jaxembed.join"
"""The schema metadata entry of a joined Parquet file: JSON of the join's settings (key,
time, window, ``negative_rate``, seed); a table read from the file keeps it."""
STATS_KEY = b"jaxembed.join.stats"
"""The file's key-value metadata entry (written last) with the :class:`JoinStats` counts."""


def source_batches(source: Any, columns: Sequence[str] | None, batch_rows: int,
                   what: str, key: str) -> Iterator[pa.RecordBatch]:
    """Record batches of ``source`` (a Parquet file or folder, a CSV/TSV file, or a
    pyarrow/pandas/polars table; its chunks are kept as they are when smaller than
    ``batch_rows``) holding ``columns`` (all when None). A CSV key column is read as text."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{what} file {path!r} does not exist")
        if os.path.isdir(path) or _suffix(path) in PARQUET_SUFFIXES:
            yield from _parquet(path, columns, batch_rows, what)
            return
        if _suffix(path) in CSV_SUFFIXES:
            yield from _csv(path, columns, what, key)
            return
        raise DataError(f"{what} file {path!r}: unknown format (expected "
                        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or a folder of Parquet)")
    table = _arrow_table(source)
    _check_columns(table.schema.names, columns, f"{what} {describe(source)}")
    if columns is not None:
        table = table.select(list(columns))
    yield from table.to_batches(max_chunksize=batch_rows)


def _check_columns(present: Sequence[str], needed: Sequence[str] | None, where: str) -> None:
    missing = [c for c in needed or () if c not in present]
    if missing:
        raise DataError(f"{where} has no column {missing[0]!r}; its columns: "
                        f"{', '.join(list(present)[:40])}")


def _parquet(path: str, columns: Sequence[str] | None, batch_rows: int,
             what: str) -> Iterator[pa.RecordBatch]:
    try:
        dataset = pa_ds.dataset(path, format="parquet")
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{what} {path!r} is not readable Parquet: "
                        f"{str(err).splitlines()[0]}") from None
    _check_columns(dataset.schema.names, columns, f"{what} {path!r}")
    # file by file, row group by row group, without pre-buffering: the dataset scanner and
    # a pre-buffering ParquetFile read row groups ahead, and memory grew with the file
    try:
        for name in dataset.files:
            with pq.ParquetFile(name, pre_buffer=False) as handle:
                for group in range(handle.num_row_groups):  # one at a time: see readers
                    yield from handle.iter_batches(
                        batch_size=batch_rows, row_groups=[group],
                        columns=None if columns is None else list(columns))
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{what} {path!r}: {str(err).splitlines()[0]}") from None


def _csv(path: str, columns: Sequence[str] | None, what: str,
         key: str) -> Iterator[pa.RecordBatch]:
    if os.path.getsize(path) == 0:
        raise DataError(f"{what} file {path!r} is empty")
    delimiter = "\t" if _suffix(path) in (".tsv", ".txt") else ","
    try:
        reader = pa_csv.open_csv(
            path, read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(
                column_types={key: pa.string()}, strings_can_be_null=True,
                include_columns=None if columns is None else list(columns)))
    except (pa.ArrowInvalid, pa.ArrowKeyError, UnicodeDecodeError) as err:
        raise DataError(f"{what} {path!r}: {str(err).splitlines()[0]}") from None
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, UnicodeDecodeError) as err:
            raise DataError(f"{what} {path!r}: {str(err).splitlines()[0]}") from None
        yield batch


def columns_of(source: Any, what: str) -> list[str]:
    """The column names of a log, from a Parquet file's schema or a CSV/TSV header (nothing
    else is read); a missing, empty or unreadable file is an error naming it."""
    if not isinstance(source, str | os.PathLike):
        return list(_arrow_table(source).schema.names)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} file {path!r} does not exist")
    if os.path.isdir(path) or _suffix(path) in PARQUET_SUFFIXES:
        try:
            return list(pa_ds.dataset(path, format="parquet").schema.names)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{what} {path!r} is not readable Parquet: "
                            f"{str(err).splitlines()[0]}") from None
    if _suffix(path) not in CSV_SUFFIXES:
        raise DataError(f"{what} file {path!r}: unknown format (expected "
                        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or a folder of Parquet)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{what} file {path!r} is empty")
    delimiter = "\t" if _suffix(path) in (".tsv", ".txt") else ","
    return _header(path, delimiter, None)


_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def seconds(column: pa.Array, name: str) -> pa.Array:
    """A time column as ``float64`` seconds: numbers as they are, timestamps at their own
    resolution (sub-second parts kept), dates and ISO text as
    :func:`jaxembed.data.readers.time_values` reads them."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_timestamp(column.type):
        ticks = pc.cast(column.cast(pa.timestamp(column.type.unit)), pa.int64())
        return pc.divide(pc.cast(ticks, pa.float64()), float(_PER_SECOND[column.type.unit]))
    return time_values(column, name)


def join_metadata(data: Any) -> dict[str, Any] | None:
    """The join settings a joined Parquet file (or folder of them, or a pyarrow table read
    from one) records, with its counts under ``"stats"`` when a file gives them; None for
    anything else."""
    metadata = None
    if isinstance(data, str | os.PathLike):
        path = os.fspath(data)
        if not (os.path.isdir(path) or _suffix(path) in PARQUET_SUFFIXES) or \
                not os.path.exists(path):
            return None
        try:
            if os.path.isdir(path):
                files = pa_ds.dataset(path, format="parquet").files
                if not files:
                    return None
                path = files[0]
            metadata = pq.ParquetFile(path).metadata.metadata
        except (pa.ArrowInvalid, OSError):
            return None
    elif isinstance(data, pa.Table | pa.RecordBatch):
        metadata = data.schema.metadata
    if not metadata or METADATA_KEY not in metadata:
        return None
    settings = json.loads(metadata[METADATA_KEY])
    if STATS_KEY in metadata:
        settings["stats"] = json.loads(metadata[STATS_KEY])
    return settings


def negative_rate(data: Any) -> float | None:
    """The negative down-sampling rate a joined file records (1.0 when it kept every
    negative), or None when ``data`` is not a joined file."""
    meta = join_metadata(data)
    return None if meta is None else float(meta["negative_rate"])
