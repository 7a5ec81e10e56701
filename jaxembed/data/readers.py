"""Readers: a user's log as a stream of Arrow record batches holding the schema's columns.

``record_batches(data, schema)`` accepts

* a path to a CSV/TSV file (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``/``.bz2``),
  read in pieces of :data:`BLOCK_BYTES` of text cut at line ends, each parsed by
  ``pyarrow.csv.read_csv`` on all of pyarrow's threads and the next one parsed while this
  one is consumed (a newline or carriage return always ends a row: pyarrow parses with
  ``newlines_in_values`` false, so a quoted value cannot hold one); the batches are those
  of pyarrow's streaming reader ``open_csv``, which parses one block at a time and is
  slower (docs/benchmarks.md, "Encoding a Criteo file"). With a header row, or with
  ``[options] header = false`` and ``names = [...]`` (the ``criteo`` preset gives the
  Criteo columns, tab-separated); the delimiter is ``[options] delimiter``, else ``\\t``
  for ``.tsv``/``.txt`` and ``,`` otherwise;
* a path to a Parquet file or a folder of them (found by ``pyarrow.dataset``), read one
  row group at a time in record batches, so a file larger than memory streams and at most
  one row group is decoded ahead;
* an in-memory ``pyarrow.Table``/``RecordBatch``, ``pandas.DataFrame`` or
  ``polars.DataFrame``.

Every batch holds exactly :attr:`Schema.columns <jaxembed.data.schema.Schema.columns>`, typed:
the label and dense columns ``float64``, every other column ``string`` (an integer id column
becomes its decimal text, so a vocabulary is the same whatever the file format). Empty CSV
cells are missing (null). With ``dictionary=True`` a column that only ``categorical`` fields
read comes as ``dictionary<int32, string>`` of the same values (a CSV's parser
dictionary-encodes it as it converts the text; other sources are encoded after the cast):
counting and looking up then touch each distinct value of a batch once. Problems raise
:class:`DataError` naming the file, the column, and for a malformed CSV row its line and
value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.dataset as pa_ds
import pyarrow.parquet as pq

from jaxembed.data.schema import CRITEO_COLUMNS, Schema

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
BLOCK_BYTES = 16 << 20
"""Bytes of CSV text per piece, i.e. per record batch (pyarrow splits a piece over its
threads); ``event_logs`` uses it as its streaming reader's block size."""


class DataError(ValueError):
    """A log that does not fit its schema: the message names the file, column and value."""


@dataclass(frozen=True)
class ColumnPlan:
    """The columns to read and the Arrow type of each."""

    types: dict[str, pa.DataType]

    @classmethod
    def of(cls, schema: Schema, labels: bool = True, dictionary: bool = False) -> ColumnPlan:
        types: dict[str, pa.DataType | None] = {name: pa.string() for name in schema.columns}
        if dictionary:
            for name in categorical_columns(schema):
                types[name] = DICTIONARY
        types[schema.label.column] = pa.float64()
        if not labels:
            del types[schema.label.column]
        for f in schema.features:
            if f.kind == "dense":
                types[f.column] = pa.float64()
        time = schema.options.time
        if time and not any(time in f.columns and f.kind != "dense" for f in schema.features):
            types[time] = None  # inferred: a number or a timestamp (see time_values)
        return cls(types)

    @property
    def fixed(self) -> dict[str, pa.DataType]:
        """The columns whose type is fixed (all but an inferred time column)."""
        return {name: kind for name, kind in self.types.items() if kind is not None}


DICTIONARY = pa.dictionary(pa.int32(), pa.string())
"""The type of a dictionary-encoded string column."""


def categorical_columns(schema: Schema) -> tuple[str, ...]:
    """The columns that only ``categorical`` fields read (not the label, time or group)."""
    others = {schema.label.column, schema.options.time, schema.options.group}
    for f in schema.features:
        if f.kind != "categorical":
            others.update(f.columns)
    return tuple(dict.fromkeys(f.column for f in schema.features
                               if f.kind == "categorical" and f.column not in others))


def time_values(column: pa.Array, name: str) -> pa.Array:
    """A time column as ``float64`` (numbers as they are, timestamps in seconds)."""
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        column = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            column = pc.cast(pc.strptime(column, "%Y-%m-%dT%H:%M:%S", "s", error_is_null=False),
                             pa.int64())
        except pa.ArrowInvalid:
            raise DataError(f"time column {name!r} holds text that is neither a number nor an "
                            f"ISO timestamp (e.g. {column[0].as_py()!r})") from None
    return pc.cast(column, pa.float64())


def describe(data: Any) -> str:
    """A short name of a data argument for messages."""
    if isinstance(data, str | os.PathLike):
        return repr(os.fspath(data))
    return f"the {type(data).__module__.split('.')[0]} {type(data).__name__}"


def record_batches(data: Any, schema: Schema, *, batch_rows: int = 65_536,
                   labels: bool = True, dictionary: bool = False) -> Iterator[pa.RecordBatch]:
    """Stream ``data`` as record batches of at most ``batch_rows`` rows (CSV blocks may give
    fewer) with the schema's columns and types (without the label column when ``labels`` is
    false: a log to score; the categorical columns dictionary-encoded with ``dictionary``)."""
    plan = ColumnPlan.of(schema, labels, dictionary)
    if isinstance(data, str | os.PathLike):
        path = os.fspath(data)
        if not os.path.exists(path):
            raise FileNotFoundError(f"data file {path!r} does not exist")
        if os.path.isdir(path) or _suffix(path) in PARQUET_SUFFIXES:
            yield from _parquet(path, plan, batch_rows)
            return
        if _suffix(path) in CSV_SUFFIXES:
            yield from _csv(path, schema, plan)
            return
        raise DataError(f"data file {path!r}: unknown format (expected "
                        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or a folder of Parquet)")
    table = _arrow_table(data)
    _check_columns(table.schema.names, plan, describe(data))
    for batch in table.select(list(plan.types)).to_batches(max_chunksize=batch_rows):
        yield _typed(batch, plan, describe(data))


def is_text(data: Any) -> bool:
    """Whether ``data`` is a path to a CSV/TSV file (text to parse)."""
    return (isinstance(data, str | os.PathLike) and os.path.isfile(data)
            and _suffix(os.fspath(data)) in CSV_SUFFIXES)


def _suffix(path: str) -> str:
    base = path.lower()
    for compressed in (".gz", ".bz2", ".zst", ".lz4"):
        if base.endswith(compressed):
            base = base[: -len(compressed)]
    return os.path.splitext(base)[1]


def _arrow_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if module == "polars":
        return data.to_arrow()
    raise TypeError(f"data must be a file path, a pyarrow Table, or a pandas/polars DataFrame, "
                    f"got {type(data).__name__}")


def _check_columns(present: list[str], plan: ColumnPlan, where: str) -> None:
    missing = [c for c in plan.types if c not in present]
    if missing:
        raise DataError(f"{where} has no column {missing[0]!r} (the schema needs it); its "
                        f"columns: {', '.join(present[:40])}")


def _typed(batch: pa.RecordBatch, plan: ColumnPlan, where: str) -> pa.RecordBatch:
    columns = []
    for name, kind in plan.types.items():
        column = batch.column(name)
        if kind is not None and column.type != kind:
            target = kind.value_type if pa.types.is_dictionary(kind) else kind
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            try:
                column = pc.cast(column, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise DataError(f"{where}: column {name!r} of type {column.type} cannot be "
                                f"read as {target}: {err}") from None
            if target != kind:
                column = pc.dictionary_encode(column)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=list(plan.types))


def _parquet(path: str, plan: ColumnPlan, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The batches of a Parquet file (or a folder of them: ``pyarrow.dataset`` finds the
    files), one row group at a time.

    Each file is read by ``pyarrow.parquet.ParquetFile.iter_batches`` on one row group at a
    time, so at most one row group's batches are decoded ahead of the consumer. (A
    ``pyarrow.dataset`` scan, even with ``batch_readahead=1, fragment_readahead=1``, decodes
    the row groups of a file ahead of a slower consumer without bound: reading 20 row groups
    of 65,536 rows while counting vocabularies held about 20 MiB per row group, so the peak
    memory of a fit grew with the file.)
    """
    try:
        files = pa_ds.dataset(path, format="parquet").files
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"data {path!r} is not readable Parquet: {err}") from None
    columns = list(plan.types)
    for name in files:
        try:
            handle = pq.ParquetFile(name, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"data {name!r} is not readable Parquet: {err}") from None
        with handle:
            _check_columns(handle.schema_arrow.names, plan, repr(name))
            try:
                for group in range(handle.num_row_groups):
                    for batch in handle.iter_batches(batch_size=batch_rows, columns=columns,
                                                     row_groups=[group]):
                        yield _typed(batch, plan, repr(name))
            except pa.ArrowInvalid as err:
                raise DataError(f"data {name!r}: {err}") from None


def _csv_layout(path: str, schema: Schema) -> tuple[str, list[str] | None]:
    options = schema.options
    names = list(options.names) if options.names else None
    if options.format == "criteo" and names is None:
        names = list(CRITEO_COLUMNS)
    delimiter = options.delimiter or ("\t" if options.format == "criteo"
                                      or _suffix(path) in (".tsv", ".txt") else ",")
    header = options.header and options.format != "criteo" and not options.names
    return delimiter, (None if header else names or _no_names(path))


def _no_names(path: str) -> list[str]:
    raise DataError(f"data {path!r}: the schema says the file has no header "
                    f"([options] header = false) but gives no names = [...] for its columns")


def _csv(path: str, schema: Schema, plan: ColumnPlan) -> Iterator[pa.RecordBatch]:
    """The batches of a CSV/TSV file: one per piece of its text (:func:`_pieces`), each
    piece parsed by ``pyarrow.csv.read_csv`` in ``cpu_count`` blocks on pyarrow's threads,
    the next piece read and parsed on a helper thread while the consumer works on this one
    (one piece ahead, no more: the helper holds at most two reads of ``BLOCK_BYTES`` of text
    and one parsed piece beside the consumer's batch).

    With a header, the names are parsed from the first line and the first piece starts after
    it; every piece is read with those names. A piece's blocks are combined into one batch,
    so the batches are the streaming reader's (``open_csv`` with ``block_size=BLOCK_BYTES``:
    batch ``k`` holds the rows that end in bytes ``[k B, (k + 1) B)`` of the text). That
    keeps more than the rows: a bucketed dense field's quantile sample draws its keys per
    batch (:meth:`Vocabularies.build <jaxembed.data.vocabularies.Vocabularies.build>`).
    """
    delimiter, names = _csv_layout(path, schema)
    if os.path.getsize(path) == 0:
        raise DataError(f"data file {path!r} is empty")
    _check_columns(_header(path, delimiter, names), plan, repr(path))
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    convert = pa_csv.ConvertOptions(column_types=plan.fixed, include_columns=list(plan.types),
                                    strings_can_be_null=True, quoted_strings_can_be_null=True)

    def tables() -> Iterator[pa.Table]:
        columns = names
        for piece in _pieces(path, BLOCK_BYTES):
            if columns is None:
                end = _line_end(piece)
                line = piece[:end].rstrip(b"\r\n") + b"\n"  # pyarrow wants a line end here
                columns = pa_csv.read_csv(pa.py_buffer(line), parse_options=parse).column_names
                piece = piece[end:]
            if piece:
                block = max(1 << 20, -(-len(piece) // pa.cpu_count()))
                yield pa_csv.read_csv(
                    pa.py_buffer(piece), parse_options=parse, convert_options=convert,
                    read_options=pa_csv.ReadOptions(column_names=columns, block_size=block))

    rows, parsed = 0, tables()
    try:
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(next, parsed, None)
            while (table := ahead.result()) is not None:
                ahead = pool.submit(next, parsed, None)
                if table.num_rows:
                    rows += table.num_rows
                    yield table.combine_chunks().to_batches()[0].select(list(plan.types))
    except pa.ArrowKeyError as err:
        raise DataError(f"data {path!r}: {_missing_column(path, err, delimiter, names)}"
                        ) from None
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise DataError(_located(path, err, delimiter, names, plan)) from None
    finally:
        parsed.close()  # a consumer that stopped early: the file is closed now
    if rows == 0:
        raise DataError(f"data file {path!r} has no rows")


def _pieces(path: str, size: int) -> Iterator[bytes]:
    """The text of ``path`` (``.gz``/``.bz2``/... decompressed by ``pyarrow.input_stream``)
    in pieces of whole lines: each read of ``size`` bytes up to its last line end (``\\n``
    or ``\\r``), after the rest of the read before it; the last read is taken whole, so a
    last line without a line end closes the last piece (as in the streaming reader's last
    block).

    Cutting after any ``\\n`` or ``\\r`` is sound because pyarrow ends a row at each of
    them: ``ParseOptions.newlines_in_values`` stays false (nothing in a schema turns it on),
    so no value, quoted or not, holds one. It is where the streaming reader cuts its blocks
    (pyarrow's ``NewlineBoundaryFinder``). A ``\\r\\n`` split by a cut leaves an empty
    line at the start of the next piece, which the parser skips."""
    carry = b""
    with pa.input_stream(path) as stream:
        data = stream.read(size)
        while data:
            following = stream.read(size)
            cut = data.rfind(b"\n") + 1 if following else len(data)
            cut = max(cut, data.rfind(b"\r", cut) + 1)
            if cut == 0:
                carry += data
            else:
                yield b"".join((carry, memoryview(data)[:cut])) if carry else data[:cut]
                carry = data[cut:]
            data = following


def _line_end(text: bytes) -> int:
    """The end of the first line of ``text`` (after its ``\\n``, ``\\r`` or ``\\r\\n``)."""
    end = text.find(b"\n")
    end = len(text) if end < 0 else end + 1
    cr = text.find(b"\r", 0, end)
    return end if cr < 0 or cr == end - 2 else cr + 1


def _header(path: str, delimiter: str, names: list[str] | None) -> list[str]:
    if names is not None:
        return names
    with _open_text(path) as handle:
        return _cells(handle.readline(), delimiter)


def _cells(line: str, delimiter: str) -> list[str]:
    """The fields of one CSV line (quotes removed)."""
    import csv

    return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])


def _open_text(path: str):
    import bz2
    import gzip

    lower = path.lower()
    if lower.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    if lower.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _missing_column(path: str, err: Exception, delimiter: str, names: list[str] | None) -> str:
    header = _header(path, delimiter, names)
    return f"{err}; the file's columns are: {', '.join(header[:40])}"


def _located(path: str, err: Exception, delimiter: str, names: list[str] | None,
             plan: ColumnPlan) -> str:
    """The parse error with the line, column and value it is about (found by a scan of the
    text, on this error path only)."""
    message = str(err).split("\n")[0]
    header = _header(path, delimiter, names)
    first = 1 if names is None else 0
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if number <= first:
                continue
            cells = _cells(line, delimiter)
            if len(cells) != len(header):
                return (f"data {path!r} line {number}: {len(cells)} fields, the "
                        f"{'header' if names is None else 'schema names'} has {len(header)}")
            for name, kind in plan.types.items():
                if kind != pa.float64() or name not in header:
                    continue
                value = cells[header.index(name)]
                if value.strip() and not _is_number(value):
                    return (f"data {path!r} line {number}, column {name!r}: value {value!r} "
                            f"is not a number")
    if isinstance(err, UnicodeDecodeError):
        return f"data {path!r} is not UTF-8 text"
    return f"data {path!r}: {message}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_source(data: Any, schema: Schema, *, labels: bool = True) -> None:
    """Cheap checks before any work: the path exists and is a known format, and the file's
    header (CSV) or schema (Parquet) has every column the schema reads."""
    plan = ColumnPlan.of(schema, labels)
    if not isinstance(data, str | os.PathLike):
        _check_columns(_arrow_table(data).schema.names, plan, describe(data))
        return
    path = os.fspath(data)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    if os.path.isdir(path) or _suffix(path) in PARQUET_SUFFIXES:
        try:
            names = pa_ds.dataset(path, format="parquet").schema.names
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"data {path!r} is not readable Parquet: "
                            f"{str(err).splitlines()[0]}") from None
        _check_columns(names, plan, repr(path))
        return
    if _suffix(path) not in CSV_SUFFIXES:
        raise DataError(f"data file {path!r}: unknown format (expected "
                        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}, or a folder of Parquet)")
    if os.path.getsize(path) == 0:
        raise DataError(f"data file {path!r} is empty")
    delimiter, names = _csv_layout(path, schema)
    try:
        with _open_text(path) as handle:
            first = handle.readline().rstrip("\r\n")
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as err:
        raise DataError(f"data file {path!r} cannot be read: {err.strerror}") from None
    if b"\0" in head and not path.lower().endswith((".gz", ".bz2")):
        raise DataError(f"data file {path!r} is binary, not {_suffix(path)[1:].upper()} text")
    cells = _cells(first, delimiter)
    if names is None:
        _check_columns(cells, plan, repr(path))
    elif len(cells) != len(names):
        raise DataError(f"data {path!r} line 1: {len(cells)} fields, the schema's names give "
                        f"{len(names)} columns")
    else:
        _check_columns(names, plan, repr(path))


def source_types(data: Any, schema: Schema) -> dict[str, str] | None:
    """The Arrow type of each schema column as stored in ``data`` (a Parquet file or folder,
    or an in-memory table), before the reader casts it; None for CSV/TSV text, whose cells
    carry no type. A run records them so that a later log with a retyped column (an id
    column that became floating point, a count that became text) is named before an update."""
    plan = ColumnPlan.of(schema)
    if isinstance(data, str | os.PathLike):
        path = os.fspath(data)
        if not (os.path.isdir(path) or _suffix(path) in PARQUET_SUFFIXES):
            return None
        try:
            stored = pa_ds.dataset(path, format="parquet").schema
        except (pa.ArrowInvalid, OSError):
            return None
    else:
        stored = _arrow_table(data).schema
    return {name: str(stored.field(name).type) for name in plan.types
            if name in stored.names}
