r"""Vocabulary: tokens to ids, with hashed out-of-vocabulary buckets and a text file format.

A :class:`Vocabulary` of :math:`V` tokens and :math:`B` OOV buckets maps a key to

.. math::

    \mathrm{id}(t) = \begin{cases} \mathrm{index}(t) & t \in \text{vocab} \\
    V + (h_s(t) \bmod B) & \text{otherwise} \end{cases}

so its embedding table has :math:`V + B` rows. These are the semantics of TensorFlow's
``tf.lookup.StaticVocabularyTable``; the hash :math:`h_s` is
:func:`~jaxembed.encoding.hashing.hash_strings` (stable, seeded) where TensorFlow uses
FarmHash ``Fingerprint64``, so which bucket an OOV key lands in differs from TensorFlow, the
rule does not. With ``num_oov_buckets=0`` an OOV key is an error.

:meth:`Vocabulary.from_counts` keeps tokens seen at least ``min_count`` times, most frequent
first (ties in code-point order of the token, so the result does not depend on input order),
optionally the ``max_size`` most frequent.

**File format** (TensorFlow ``TextFileInitializer`` / word-list style): UTF-8, one token per
line, the line number (from 0) being its id; optionally ``token<TAB>count``. Every line has a
count or none does. Tokens are non-empty, hold no tab, newline or carriage return, and do
not start with U+FEFF (a leading byte-order mark of the file is skipped). A
file is written to a temporary file in the same folder and moved into place
(``os.replace``), so a reader never sees half a file. Loading names the line of an empty
token, a duplicate (and the line of its first use), a bad count, or invalid UTF-8.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from jaxembed import _atomic
from jaxembed.bags import Bags
from jaxembed.encoding.hashing import bags_from_values, hash_strings, seed_key

_COUNT = re.compile(r"[0-9]+")
_FORBIDDEN = ("\t", "\n", "\r")


def _check_token(token: Any, where: str) -> str:
    if not isinstance(token, str):
        raise TypeError(f"{where}: token {token!r} is a {type(token).__name__}, not a str")
    if not token:
        raise ValueError(f"{where}: empty token")
    for ch in _FORBIDDEN:
        if ch in token:
            raise ValueError(f"{where}: token {token!r} contains {ch!r} (not allowed in a token)")
    if token.startswith("\ufeff"):
        raise ValueError(f"{where}: token {token!r} starts with a byte-order mark U+FEFF")
    return token


def _key_list(keys: Any) -> tuple[list[Any], tuple[int, ...]]:
    if isinstance(keys, str | bytes):
        raise TypeError(f"keys must be a sequence of str, got a single {type(keys).__name__}")
    if isinstance(keys, np.ndarray):
        if keys.dtype.kind not in "UO":
            raise TypeError(f"keys must hold str, got dtype {keys.dtype}")
        return keys.ravel().tolist(), keys.shape
    items = list(keys)
    return items, (len(items),)


class Vocabulary:
    """Tokens with ids ``0..V-1`` plus ``num_oov_buckets`` hashed ids ``V..V+B-1``.

    Args:
        tokens: the vocabulary in id order (unique, non-empty ``str``, no tab/newline/CR).
        counts: optional count of each token (non-negative ints), kept and saved.
        num_oov_buckets: ``B >= 0``, the ids shared by out-of-vocabulary keys.
        seed: seed of the OOV hash.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        counts: Sequence[int] | None = None,
        *,
        num_oov_buckets: int = 1,
        seed: int = 0,
    ) -> None:
        tokens = tuple(tokens)
        index: dict[str, int] = {}
        for i, token in enumerate(tokens):
            _check_token(token, f"token {i}")
            first = index.setdefault(token, i)
            if first != i:
                raise ValueError(f"token {token!r} appears twice (at {first} and {i})")
        if counts is not None:
            counts = np.asarray(counts)
            if counts.shape != (len(tokens),):
                raise ValueError(f"counts has shape {counts.shape}, expected ({len(tokens)},)")
            if counts.size and (not np.issubdtype(counts.dtype, np.integer) or counts.min() < 0):
                raise ValueError("counts must be non-negative integers")
            counts = counts.astype(np.int64)
        if isinstance(num_oov_buckets, bool) or not isinstance(num_oov_buckets, int | np.integer):
            raise TypeError(f"num_oov_buckets must be an integer, got {num_oov_buckets!r}")
        if num_oov_buckets < 0:
            raise ValueError(f"num_oov_buckets must be >= 0, got {num_oov_buckets}")
        seed_key(seed)  # validates the seed
        self.tokens: tuple[str, ...] = tokens
        self.counts: np.ndarray | None = counts
        self.num_oov_buckets = int(num_oov_buckets)
        self.seed = int(seed)
        self._index = index

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        num_oov_buckets: int = 1,
        seed: int = 0,
    ) -> Vocabulary:
        """Tokens counted at least ``min_count`` times, most frequent first (ties by token),
        at most ``max_size`` of them."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        kept = [(t, int(c)) for t, c in counts.items() if c >= min_count]
        kept.sort(key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            kept = kept[:max_size]
        return cls([t for t, _ in kept], [c for _, c in kept],
                   num_oov_buckets=num_oov_buckets, seed=seed)

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], **kwargs: Any) -> Vocabulary:
        """Count a stream of tokens, then :meth:`from_counts` (same keyword arguments)."""
        return cls.from_counts(Counter(tokens), **kwargs)

    # --- sizes -------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """``V``: in-vocabulary tokens."""
        return len(self.tokens)

    @property
    def size(self) -> int:
        """``V + B``: the rows an embedding table over these ids needs."""
        return len(self.tokens) + self.num_oov_buckets

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __repr__(self) -> str:
        return (f"Vocabulary(vocab_size={self.vocab_size}, "
                f"num_oov_buckets={self.num_oov_buckets}, seed={self.seed})")

    # --- lookup ------------------------------------------------------------------------------
    def lookup(self, keys: Any) -> np.ndarray:
        """``int64`` ids of ``keys`` (a sequence or ``U``/``object`` array of ``str``; the
        result has its shape): the index of an in-vocabulary key, else
        ``V + hash_strings(key, seed) mod B``."""
        items, shape = _key_list(keys)
        types = set(map(type, items))
        if not all(issubclass(t, str) for t in types):
            i = next(i for i, k in enumerate(items) if not isinstance(k, str))
            raise TypeError(f"key {i} is {items[i]!r} of type {type(items[i]).__name__}, not str")
        return self.lookup_strings(items).reshape(shape)

    def lookup_strings(self, items: list[str]) -> np.ndarray:
        """:meth:`lookup` of a python list already known to hold only ``str`` (no checks)."""
        ids = np.fromiter(map(self._index.get, items, repeat(-1)), dtype=np.int64,
                          count=len(items))
        oov = np.flatnonzero(ids < 0)
        if oov.size:
            if self.num_oov_buckets == 0:
                i = int(oov[0])
                raise KeyError(f"key {i} {items[i]!r} is not in the vocabulary and "
                               "num_oov_buckets=0")
            hashed = hash_strings([items[i] for i in oov], self.seed)
            ids[oov] = self.vocab_size + (hashed % np.uint64(self.num_oov_buckets)).astype(np.int64)
        return ids

    def bags(self, keys: Any, offsets: Any = None, *, min_width: int = 1) -> Bags:
        """Bags of the ids of ``keys``: one per record, or ``keys[offsets[b]:offsets[b+1]]``
        for record ``b`` when ``offsets`` is given."""
        return bags_from_values(self.lookup(keys), offsets, min_width=min_width)

    # --- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, with_counts: bool | None = None) -> None:
        """Write one token per line (``token<TAB>count`` with counts), atomically.

        ``with_counts`` defaults to whether this vocabulary has counts. ``num_oov_buckets``
        and ``seed`` are not stored: pass them to :meth:`load`.
        """
        if with_counts is None:
            with_counts = self.counts is not None
        if with_counts and self.counts is None:
            raise ValueError("with_counts=True but this vocabulary has no counts")
        if with_counts:
            lines = [f"{t}\t{c}\n" for t, c in zip(self.tokens, self.counts.tolist(), strict=True)]
        else:
            lines = [f"{t}\n" for t in self.tokens]
        _atomic.write_bytes(path, "".join(lines).encode("utf-8"))

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, num_oov_buckets: int = 1, seed: int = 0
    ) -> Vocabulary:
        """Read a file written by :meth:`save` (or any UTF-8 word list, one token a line).

        A final newline is optional, ``\\r\\n`` line ends and a leading UTF-8 byte-order mark
        are accepted. Errors name the file and the 1-based line.
        """
        raw = Path(path).read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        tokens: list[str] = []
        counts: list[int] = []
        first_line: dict[str, int] = {}
        has_counts: bool | None = None
        for number, line in enumerate(lines, start=1):
            where = f"{path}, line {number}"
            if line.endswith(b"\r"):
                line = line[:-1]
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{where}: not valid UTF-8 ({err.reason} at byte "
                                 f"{err.start})") from err
            fields = text.split("\t")
            if len(fields) > 2:
                raise ValueError(f"{where}: expected 'token' or 'token<TAB>count', got "
                                 f"{len(fields)} tab-separated fields in {text!r}")
            if has_counts is None:
                has_counts = len(fields) == 2
            elif has_counts != (len(fields) == 2):
                raise ValueError(f"{where}: {'no' if has_counts else 'a'} count on this line, "
                                 f"but line 1 {'has' if has_counts else 'has none'}")
            token = fields[0]
            if not token:
                raise ValueError(f"{where}: empty token")
            if "\r" in token:
                raise ValueError(f"{where}: token {token!r} contains a carriage return")
            if token in first_line:
                raise ValueError(f"{where}: duplicate token {token!r} (first on line "
                                 f"{first_line[token]})")
            first_line[token] = number
            tokens.append(token)
            if has_counts:
                if not _COUNT.fullmatch(fields[1]) or int(fields[1]) >= 2**63:
                    raise ValueError(f"{where}: count {fields[1]!r} of token {token!r} is not a "
                                     "non-negative integer")
                counts.append(int(fields[1]))
        return cls(tokens, counts if has_counts else None,
                   num_oov_buckets=num_oov_buckets, seed=seed)
