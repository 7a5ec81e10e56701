"""A CSV/TSV log parsed once: the first pass writes its typed record batches to an Arrow IPC
stream beside the run, and every later pass reads them back instead of the text.

:func:`jaxembed.fit` reads its training log more than once: the vocabulary pass, then the
encoding passes of the training and validation stores. For text, parsing is most of a pass
(splitting fields, converting numbers, dictionary-encoding the categorical columns); reading
the batches back from Arrow IPC is a copy. The IPC stream keeps every type, dictionary and
null, and the batches come back in the same order and sizes, so every later pass sees
exactly the batches of the first and every result is the same; a malformed row raises in the
first pass, as it did. Other sources (Parquet, in-memory tables) are already columnar and are
read as they are, each pass.

The spool file lives in a folder the caller owns (``fit``: the run's ``cache`` folder) and is
removed when the :class:`Spool` closes. It is written under a temporary name and renamed when
the first pass has read the whole log, so a pass that stops early (an error, a consumer that
stops) leaves no spool and the next pass parses the text again. Both ways it streams one batch
at a time, so memory does not grow with the log; the disk holds about one more copy of it
(``float64`` numbers, ``int32`` dictionary indices and each batch's distinct values) until the
spool closes. The file is scratch: it is not fsynced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from jaxembed.data.readers import is_text, record_batches
from jaxembed.data.schema import Schema


class Spool:
    """``batches()`` of ``data`` (as :func:`~jaxembed.data.readers.record_batches` gives
    them, categorical columns dictionary-encoded), the text parsed on the first pass only."""

    def __init__(self, data: Any, schema: Schema, folder: str | os.PathLike) -> None:
        self.data = data
        self.schema = schema
        self.path = os.path.join(os.fspath(folder), "spool.arrows")
        self.text = is_text(data)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One pass over the log."""
        if not self.text:
            yield from record_batches(self.data, self.schema, dictionary=True)
        elif os.path.isfile(self.path):
            with pa.OSFile(self.path, "rb") as source:
                yield from pa.ipc.open_stream(source)
        else:
            yield from self._parse()

    def _parse(self) -> Iterator[pa.RecordBatch]:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        partial = f"{self.path}.partial"
        try:
            with pa.OSFile(partial, "wb") as sink:
                writer = None
                for batch in record_batches(self.data, self.schema, dictionary=True):
                    if writer is None:
                        writer = pa.ipc.new_stream(sink, batch.schema)
                    writer.write_batch(batch)
                    yield batch
                if writer is not None:
                    writer.close()
            os.replace(partial, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)

    def close(self) -> None:
        """Remove the spool file."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
