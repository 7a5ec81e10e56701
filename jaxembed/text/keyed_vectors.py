"""KeyedVectors: a vocabulary of keys with one vector each, cosine queries, word2vec files.

The shape users of gensim know: ``index_to_key[i]`` is the key of row ``i`` of ``vectors``,
``key_to_index`` inverts it. Similarity is the cosine

    cos(a, b) = a · b / (‖a‖ ‖b‖)

(0 when either vector is zero). :meth:`most_similar` ranks every other key by cosine to the
query. Files are the word2vec text and binary formats of :mod:`jaxembed.text.vectors_io`
(gensim's ``save_word2vec_format`` / ``load_word2vec_format`` read and write the same bytes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxembed.text import vectors_io

__all__ = ["KeyedVectors"]


class KeyedVectors:
    """Vectors ``float32[V, K]`` under string keys.

    Args:
        index_to_key: the ``V`` keys, distinct.
        vectors: array ``[V, K]``; row ``i`` belongs to ``index_to_key[i]``.

    Raises:
        ValueError: a key count that differs from ``V``, a repeated key, or vectors that are
            not 2-D.
    """

    def __init__(self, index_to_key: Sequence[str], vectors: Any) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D [V, K], got shape {vectors.shape}")
        keys = list(index_to_key)
        if len(keys) != vectors.shape[0]:
            raise ValueError(f"{len(keys)} keys for {vectors.shape[0]} vectors")
        index: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key in index:
                raise ValueError(f"key {key!r} appears twice (rows {index[key]} and {i})")
            index[key] = i
        self.index_to_key: list[str] = keys
        self.key_to_index: dict[str, int] = index
        self.vectors: np.ndarray = vectors
        self._unit: np.ndarray | None = None

    # --- mapping ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, key: object) -> bool:
        return key in self.key_to_index

    def __getitem__(self, key: str) -> np.ndarray:
        return self.vectors[self._index(key)]

    @property
    def vector_size(self) -> int:
        """``K``, the vector length."""
        return int(self.vectors.shape[1])

    def _index(self, key: str) -> int:
        try:
            return self.key_to_index[key]
        except KeyError:
            raise KeyError(f"key {key!r} is not in the vocabulary ({len(self)} keys)") from None

    def unit_vectors(self) -> np.ndarray:
        """Rows scaled to unit length (zero rows stay zero), computed once."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = np.divide(self.vectors, norms, out=np.zeros_like(self.vectors),
                                   where=norms > 0)
        return self._unit

    # --- queries ----------------------------------------------------------------------------
    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of the vectors of keys ``a`` and ``b``."""
        unit = self.unit_vectors()
        return float(unit[self._index(a)] @ unit[self._index(b)])

    def most_similar(self, key: str | Any, topn: int = 10) -> list[tuple[str, float]]:
        """The ``topn`` keys of highest cosine to ``key`` (a key, which is then left out, or a
        vector), as ``[(key, cosine), ...]`` best first; ties keep index order."""
        if int(topn) < 0:
            raise ValueError(f"topn must be >= 0, got {topn}")
        unit = self.unit_vectors()
        if isinstance(key, str):
            skip = self._index(key)
            query = unit[skip]
        else:
            skip = -1
            query = np.asarray(key, np.float32).reshape(-1)
            if query.shape[0] != self.vector_size:
                raise ValueError(f"query has {query.shape[0]} values, vectors have "
                                 f"{self.vector_size}")
            norm = np.linalg.norm(query)
            query = query / norm if norm > 0 else query
        scores = unit @ query
        if skip >= 0:
            scores[skip] = -np.inf
        order = np.argsort(-scores, kind="stable")
        top = [int(i) for i in order[: int(topn) + 1] if i != skip][: int(topn)]
        return [(self.index_to_key[i], float(scores[i])) for i in top]

    # --- files ------------------------------------------------------------------------------
    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Write the word2vec text (``binary=False``) or binary format, atomically."""
        write = vectors_io.write_word2vec_binary if binary else vectors_io.write_word2vec_text
        write(path, self.index_to_key, self.vectors)

    @classmethod
    def load_word2vec_format(cls, path: str | os.PathLike, binary: bool = False
                             ) -> KeyedVectors:
        """Read a word2vec text (``binary=False``) or binary file (as gensim writes them)."""
        read = vectors_io.read_word2vec_binary if binary else vectors_io.read_word2vec_text
        keys, vectors = read(path)
        return cls(keys, vectors)
