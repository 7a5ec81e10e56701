"""Word-vector files: the word2vec text and binary formats and the GloVe text format.

These are the formats users of word embeddings already hold (Mikolov's ``word2vec`` tool,
gensim's ``KeyedVectors.save_word2vec_format``, Stanford's GloVe releases):

* **word2vec text** — a header line ``"<V> <K>"``, then ``V`` lines ``"<word> <x_1> ... <x_K>"``
  separated by single spaces;
* **word2vec binary** — the same header line, then ``V`` records ``<word> <space>
  <K little-endian float32>``, each optionally followed by ``"\\n"`` (the C tool writes it,
  gensim does not; both are read);
* **GloVe text** — no header; every line ``"<word> <x_1> ... <x_K>"``, ``K`` taken from the
  first line.

Every reader returns ``(index_to_key, vectors)``: the words in file order and a ``float32``
array ``[V, K]`` whose row ``i`` is the vector of ``index_to_key[i]``. A malformed file raises a
``ValueError`` that names the line (text) or record (binary): a header whose counts do not
match the body, a line with the wrong number of values, a value that is not a finite number,
a truncated binary record, a duplicated word. Text is UTF-8. Writers are atomic (a temporary
file in the same directory, then :func:`os.replace`), so a reader never sees half a file.
Nothing here unpickles anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

import numpy as np

from jaxembed._atomic import atomic_path

__all__ = [
    "read_glove_text",
    "read_word2vec_binary",
    "read_word2vec_text",
    "write_glove_text",
    "write_word2vec_binary",
    "write_word2vec_text",
]

_FLOAT = np.dtype("<f4")


# --- shared helpers --------------------------------------------------------------------------
def _parse_header(line: str, path: Any) -> tuple[int, int]:
    parts = line.split()
    if len(parts) != 2:
        raise ValueError(
            f"{path}: line 1: a word2vec header is '<num_vectors> <dim>', got {line.rstrip()!r}"
        )
    try:
        count, dim = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(
            f"{path}: line 1: header counts must be integers, got {line.rstrip()!r}"
        ) from None
    if count < 0 or dim <= 0:
        raise ValueError(
            f"{path}: line 1: header needs num_vectors >= 0 and dim > 0, got {count} {dim}"
        )
    return count, dim


def _parse_vector_line(line: str, dim: int | None, lineno: int, path: Any) -> tuple[str, Any]:
    """One ``"<word> <x_1> ... <x_K>"`` line (``dim=None``: any ``K >= 1``)."""
    parts = line.rstrip("\r\n").split(" ")
    while parts and parts[-1] == "":  # the word2vec tool ends lines with a space
        parts.pop()
    if not parts or parts[0] == "":
        raise ValueError(f"{path}: line {lineno}: expected '<word> <values...>', got {line!r}")
    word, values = parts[0], parts[1:]
    if dim is not None and len(values) != dim:
        raise ValueError(
            f"{path}: line {lineno}: word {word!r} has {len(values)} values, expected {dim}"
        )
    if not values:
        raise ValueError(f"{path}: line {lineno}: word {word!r} has no values")
    try:
        vector = np.array([float(v) for v in values], dtype=np.float32)
    except ValueError:
        bad = next(v for v in values if not _is_float(v))
        raise ValueError(
            f"{path}: line {lineno}: word {word!r}: value {bad!r} is not a number"
        ) from None
    if not np.all(np.isfinite(vector)):
        bad = values[int(np.argmax(~np.isfinite(vector)))]
        raise ValueError(f"{path}: line {lineno}: word {word!r}: value {bad!r} is not finite")
    return word, vector


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_unique(words: list[str], where: str, path: Any) -> None:
    seen: dict[str, int] = {}
    for i, word in enumerate(words):
        if word in seen:
            raise ValueError(
                f"{path}: word {word!r} appears twice ({where} {seen[word]} and {where} {i})"
            )
        seen[word] = i


def _stack(vectors: list[Any], dim: int) -> np.ndarray:
    if not vectors:
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack(vectors).astype(np.float32, copy=False)


# --- readers ---------------------------------------------------------------------------------
def read_word2vec_text(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a word2vec text file: ``(index_to_key, vectors float32[V, K])``.

    Raises ``ValueError`` naming the line for a bad header, a line with other than ``K``
    values, a non-numeric or non-finite value, a duplicated word, or a body with more or fewer
    lines than the header's ``V``.
    """
    words: list[str] = []
    vectors: list[Any] = []
    with open(path, encoding="utf-8") as f:
        header = f.readline()
        if not header:
            raise ValueError(f"{path}: empty file (expected a '<num_vectors> <dim>' header)")
        count, dim = _parse_header(header, path)
        for lineno, line in enumerate(f, start=2):
            if len(words) == count:
                if line.strip():
                    raise ValueError(
                        f"{path}: line {lineno}: header says {count} vectors but the file "
                        "has more lines"
                    )
                continue
            word, vector = _parse_vector_line(line, dim, lineno, path)
            words.append(word)
            vectors.append(vector)
    if len(words) != count:
        raise ValueError(
            f"{path}: header says {count} vectors but the file has {len(words)} (truncated?)"
        )
    _check_unique(words, "line", path)
    return words, _stack(vectors, dim)


def read_glove_text(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a GloVe text file (no header): ``(index_to_key, vectors float32[V, K])``.

    ``K`` is the number of values on the first line; every line must have as many. Raises
    ``ValueError`` naming the line for a wrong count, a non-numeric or non-finite value, an
    empty line or a duplicated word.
    """
    words: list[str] = []
    vectors: list[Any] = []
    dim: int | None = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            word, vector = _parse_vector_line(line, dim, lineno, path)
            dim = vector.shape[0]
            words.append(word)
            vectors.append(vector)
    if dim is None:
        raise ValueError(
            f"{path}: empty file (a GloVe file has one '<word> <values...>' line per word)"
        )
    _check_unique(words, "line", path)
    return words, _stack(vectors, dim)


def _read_word(f: BinaryIO, record: int, path: Any) -> str:
    """The bytes up to the next space, skipping the newline that may end the last record."""
    chunks = bytearray()
    while True:
        ch = f.read(1)
        if not ch:
            raise ValueError(f"{path}: record {record}: file ends inside the word (truncated)")
        if ch == b" ":
            break
        if ch == b"\n" and not chunks:
            continue
        chunks += ch
    if not chunks:
        raise ValueError(f"{path}: record {record}: empty word")
    try:
        return chunks.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: record {record}: word is not UTF-8 ({err})") from None


def read_word2vec_binary(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a word2vec binary file: ``(index_to_key, vectors float32[V, K])``.

    Records are numbered from 0. Raises ``ValueError`` for a bad header, a record cut short
    (naming its index and the bytes missing), a non-finite value, a duplicated word, or bytes
    left over after the ``V`` records the header announces.
    """
    words: list[str] = []
    with open(path, "rb") as f:
        header = f.readline()
        if not header:
            raise ValueError(f"{path}: empty file (expected a '<num_vectors> <dim>' header)")
        try:
            header_text = header.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: line 1: header is not ASCII text") from None
        count, dim = _parse_header(header_text, path)
        vectors = np.empty((count, dim), dtype=np.float32)
        nbytes = dim * _FLOAT.itemsize
        for record in range(count):
            words.append(_read_word(f, record, path))
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(
                    f"{path}: record {record} ({words[-1]!r}): vector has {len(data)} of "
                    f"{nbytes} bytes (truncated file?)"
                )
            vectors[record] = np.frombuffer(data, dtype=_FLOAT)
            if not np.all(np.isfinite(vectors[record])):
                raise ValueError(
                    f"{path}: record {record} ({words[-1]!r}): vector has a non-finite value"
                )
        rest = f.read()
    if rest.strip(b"\n"):
        raise ValueError(
            f"{path}: header says {count} vectors but {len(rest)} bytes follow the last one"
        )
    _check_unique(words, "record", path)
    return words, vectors


# --- writers ---------------------------------------------------------------------------------
def _checked_pair(keys: Sequence[str], vectors: Any) -> tuple[list[str], np.ndarray]:
    keys = list(keys)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D [V, K], got shape {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise TypeError(f"vectors must be a float array, got dtype {vectors.dtype}")
    if len(keys) != vectors.shape[0]:
        raise ValueError(f"{len(keys)} keys for {vectors.shape[0]} vectors")
    if vectors.shape[1] == 0:
        raise ValueError("vectors have 0 columns; the formats need dim > 0")
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise TypeError(f"key {i} is {type(key).__name__}, expected str")
        if key == "" or any(c.isspace() for c in key):
            raise ValueError(
                f"key {i} ({key!r}) is empty or holds whitespace; the formats cannot store it"
            )
    _check_unique(keys, "key", "keys")
    bad = ~np.isfinite(vectors)
    if np.any(bad):
        row, col = np.unravel_index(int(np.argmax(bad)), vectors.shape)
        raise ValueError(f"vectors[{row}, {col}] = {vectors[row, col]} is not finite")
    return keys, vectors.astype(np.float32, copy=False)


def _atomic_write(path: str | os.PathLike, chunks: Iterable[bytes]) -> None:
    """Stream ``chunks`` into ``path`` atomically (:func:`jaxembed._atomic.atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def _text_lines(keys: list[str], vectors: np.ndarray) -> Iterable[bytes]:
    for key, row in zip(keys, vectors, strict=True):
        values = " ".join(str(x) for x in row)
        yield f"{key} {values}\n".encode()


def write_word2vec_text(path: str | os.PathLike, keys: Sequence[str], vectors: Any) -> None:
    """Write ``vectors[i]`` under ``keys[i]`` in the word2vec text format (atomically).

    Each value is written as the shortest decimal that rounds back to the same float32, so
    reading the file gives the same array bit for bit.
    """
    keys, vectors = _checked_pair(keys, vectors)
    header = f"{vectors.shape[0]} {vectors.shape[1]}\n".encode("ascii")
    _atomic_write(path, [header, *_text_lines(keys, vectors)])


def write_glove_text(path: str | os.PathLike, keys: Sequence[str], vectors: Any) -> None:
    """Write ``vectors[i]`` under ``keys[i]`` in the GloVe text format (no header; atomic)."""
    keys, vectors = _checked_pair(keys, vectors)
    _atomic_write(path, _text_lines(keys, vectors))


def write_word2vec_binary(path: str | os.PathLike, keys: Sequence[str], vectors: Any) -> None:
    """Write the word2vec binary format as the C tool does (atomically): the header line, then
    per word ``<word> <space> <K little-endian float32> <newline>``."""
    keys, vectors = _checked_pair(keys, vectors)
    header = f"{vectors.shape[0]} {vectors.shape[1]}\n".encode("ascii")
    records = (
        key.encode("utf-8") + b" " + row.astype(_FLOAT).tobytes() + b"\n"
        for key, row in zip(keys, vectors, strict=True)
    )
    _atomic_write(path, [header, *records])
