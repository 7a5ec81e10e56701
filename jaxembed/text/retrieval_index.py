r"""A sentence index: every candidate pre-encoded, exact top-k by dot product in bounded memory.

**Chunked top-k.** For queries :math:`Q \in \mathbb{R}^{B \times D}` and candidates
:math:`V \in \mathbb{R}^{N \times D}` cut into :math:`C`-row chunks :math:`V_c`,

.. math::

    \mathrm{top}_k(Q V^\top) = \mathrm{top}_k\big(\mathrm{top}_k(Q V_1^\top) \cup
    \mathrm{top}_k(Q V_2^\top) \cup \dots\big)

row by row: the best :math:`k` of a union are among the best :math:`k` of each part.
:func:`top_k` runs a ``lax.scan`` over the chunks carrying the best :math:`k` (score, id)
so far and merging each chunk's best :math:`k` into them, so only a :math:`B \times C` score
block lives at a time — memory is :math:`O(B C + N D)` for any :math:`N`, and the whole
search is one ``jit``-compiled program. Rows past :math:`N` (the last chunk's padding) score
:math:`-\infty`. Ties keep the lower id (``lax.top_k`` keeps the earlier of equal values, and
earlier chunks come first in the merge). Scores use ``Precision.HIGHEST`` (no TF32 on GPUs),
so the ranking is the float32 one.

``approx=True`` uses :func:`jax.lax.approx_max_k` within each chunk: on TPUs it is a
hardware-accelerated partial reduction that finds each true neighbour with probability about
``recall_target``; on CPUs and GPUs it runs too (there it is an exact top-k, so no faster).

:class:`SentenceIndex` keeps the sentences with their document ids (to show the sentence
before and after a hit), their vectors from a
:class:`~jaxembed.text.retrieval_model.RetrievalModel`'s response tower, and the model; it is
saved as a folder: ``vectors.npz`` (``vectors``, ``doc_ids``), ``sentences.json`` and
``model/`` — every file written atomically, no pickle. ``sentences.json`` also keeps the
hybrid weight.
"""

from __future__ import annotations

import functools
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxembed._atomic import write_bytes, write_text
from jaxembed.text.bm25 import BM25, ENGLISH_STOP_WORDS
from jaxembed.text.corpus import Corpus
from jaxembed.text.hybrid import RANKINGS, hybrid_scores
from jaxembed.text.retrieval_model import RetrievalModel

__all__ = ["Hit", "SentenceIndex", "first_occurrences", "pad_to_chunks", "sentence_key",
           "top_k", "top_k_reference"]


def pad_to_chunks(vectors: Any, chunk_size: int) -> jax.Array:
    """``vectors f[N, D]`` as ``f[ceil(N / C), C, D]``, zero rows appended."""
    vectors = jnp.asarray(vectors)
    n = vectors.shape[0]
    chunks = max(-(-n // chunk_size), 1)
    padded = jnp.pad(vectors, ((0, chunks * chunk_size - n), (0, 0)))
    return padded.reshape(chunks, chunk_size, vectors.shape[1])


@functools.partial(jax.jit, static_argnames=("k", "approx", "recall_target"))
def _chunked_top_k(queries: jax.Array, chunks: jax.Array, num_valid: jax.Array, *, k: int,
                   approx: bool, recall_target: float) -> tuple[jax.Array, jax.Array]:
    batch = queries.shape[0]
    size = chunks.shape[1]

    def step(best, chunk_and_start):
        chunk, start = chunk_and_start
        scores = jnp.dot(queries, chunk.T, precision=lax.Precision.HIGHEST)
        ids = start + jnp.arange(size, dtype=jnp.int32)
        scores = jnp.where(ids[None, :] < num_valid, scores, -jnp.inf)
        if approx:
            vals, pos = lax.approx_max_k(scores, k, recall_target=recall_target)
        else:
            vals, pos = lax.top_k(scores, k)
        all_vals = jnp.concatenate([best[0], vals], axis=1)
        all_ids = jnp.concatenate([best[1], ids[pos]], axis=1)
        top_vals, where = lax.top_k(all_vals, k)
        return (top_vals, jnp.take_along_axis(all_ids, where, axis=1)), None

    init = (jnp.full((batch, k), -jnp.inf, queries.dtype), jnp.full((batch, k), -1, jnp.int32))
    starts = jnp.arange(chunks.shape[0], dtype=jnp.int32) * size
    (vals, ids), _ = lax.scan(step, init, (chunks, starts))
    return vals, ids


def top_k(queries: Any, chunks: Any, k: int, *, num_valid: int | None = None,
          approx: bool = False, recall_target: float = 0.95) -> tuple[jax.Array, jax.Array]:
    """``(scores f[B, k], ids int32[B, k])``: the ``k`` best dot products of each query.

    Args:
        queries: ``f[B, D]``.
        chunks: the candidates as ``f[num_chunks, C, D]`` (:func:`pad_to_chunks`).
        k: neighbours per query, ``1 <= k <= min(C, num_valid)``.
        num_valid: the true number of candidates ``N`` (rows past it are padding); default all.
        approx: use :func:`jax.lax.approx_max_k` inside each chunk.
        recall_target: the approximate search's target recall.
    """
    queries = jnp.asarray(queries)
    chunks = jnp.asarray(chunks)
    if queries.ndim != 2 or chunks.ndim != 3 or queries.shape[1] != chunks.shape[2]:
        raise ValueError(f"queries must be [B, D] and chunks [num_chunks, C, D]; got "
                         f"{queries.shape} and {chunks.shape}")
    total = chunks.shape[0] * chunks.shape[1]
    num_valid = total if num_valid is None else int(num_valid)
    if not 0 <= num_valid <= total:
        raise ValueError(f"num_valid={num_valid} is outside [0, {total}]")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(chunks.shape[1],
                                                                          num_valid):
        raise ValueError(f"k={k!r} must be an int in [1, min(chunk size {chunks.shape[1]}, "
                         f"candidates {num_valid})]")
    if not 0.0 < recall_target <= 1.0:
        raise ValueError(f"recall_target must be in (0, 1], got {recall_target!r}")
    return _chunked_top_k(queries, chunks, jnp.int32(num_valid), k=k, approx=approx,
                          recall_target=float(recall_target))


def top_k_reference(queries: Any, vectors: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The literal form: all ``N`` scores in float64, a stable sort, the first ``k``."""
    scores = np.asarray(queries, np.float64) @ np.asarray(vectors, np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@dataclass(frozen=True)
class Hit:
    """One search result: the sentence, its score, and its neighbours in its document."""

    index: int
    score: float
    sentence: str
    before: str | None
    after: str | None


def sentence_key(sentence: str) -> str:
    """What makes two sentences the same result: their words, case folded (white space and
    case differences collapse)."""
    return " ".join(sentence.casefold().split())


def first_occurrences(sentences: Sequence[str]) -> np.ndarray:
    """``int64[U]``: the index of the first of each group of equal sentences
    (:func:`sentence_key`), in order."""
    seen: set[str] = set()
    keep = []
    for i, sentence in enumerate(sentences):
        key = sentence_key(sentence)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


class SentenceIndex:
    """Sentences, their response vectors and the model that encodes queries.

    A search ranks each distinct sentence once (:func:`first_occurrences`: a sentence the
    corpus repeats — the docstrings of overloads, inherited methods — is returned at its
    first place only), by ``"hybrid"`` (default), ``"dense"`` or ``"bm25"``
    (:mod:`jaxembed.text.retriever`). ``"dense"`` is the chunked :func:`top_k` scan;
    ``"bm25"`` and ``"hybrid"`` score every distinct sentence on the host (BM25 is a sparse
    product; the hybrid standardizes each query's scores over all of them).

    Args:
        model: encodes queries (query tower) and candidates (response tower).
        corpus: the sentences with their document ids.
        vectors: ``f32[N, D]`` response vectors of ``corpus.sentences`` (computed if ``None``).
        chunk_size: candidates per chunk of the top-k scan.
        weight: BM25's weight :math:`w` in the hybrid score.
        stop_words: BM25 leaves out :data:`~jaxembed.text.bm25.ENGLISH_STOP_WORDS`.
    """

    def __init__(self, model: RetrievalModel, corpus: Corpus, vectors: Any = None, *,
                 chunk_size: int = 65536, weight: float = 1.0, stop_words: bool = True) -> None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        if vectors is None:
            vectors = model.encode_responses(corpus.sentences)
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (len(corpus), model.dim):
            raise ValueError(f"vectors have shape {vectors.shape}, expected "
                             f"({len(corpus)}, {model.dim})")
        hybrid_scores(np.zeros((1, 1)), np.zeros((1, 1)), weight)  # checks the weight
        self.model = model
        self.corpus = corpus
        self.vectors = vectors
        self.weight = float(weight)
        self.stop_words = bool(stop_words)
        self.unique = first_occurrences(corpus.sentences)
        self.chunk_size = min(chunk_size, max(len(self.unique), 1))
        self._distinct_vectors = vectors[self.unique]
        self._chunks = pad_to_chunks(self._distinct_vectors, self.chunk_size)
        self._bm25: BM25 | None = None

    def _lexical(self) -> BM25:
        if self._bm25 is None:
            self._bm25 = BM25([self.corpus.sentences[i] for i in self.unique],
                              stop_words=ENGLISH_STOP_WORDS if self.stop_words else None)
        return self._bm25

    def __len__(self) -> int:
        return len(self.corpus)

    def search(self, queries: Sequence[str], k: int = 5, *, ranking: str = "hybrid",
               approx: bool = False) -> list[list[Hit]]:
        """The ``k`` best distinct sentences for each query (best first) under ``ranking``;
        ``approx`` applies to ``"dense"`` only."""
        if isinstance(queries, str):
            raise TypeError("queries must be a sequence of str, got a single str")
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}; got {ranking!r}")
        if not len(self):
            raise ValueError("the index holds no sentence")
        distinct = len(self.unique)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        k = min(k, distinct)
        queries = list(queries)
        if ranking == "dense":
            q = self.model.encode_queries(queries)
            scores, ids = top_k(q, self._chunks, k, num_valid=distinct, approx=approx)
            scores, ids = np.asarray(scores), np.asarray(ids)
        else:
            lexical = self._lexical().scores(queries)
            if ranking == "bm25":
                full = lexical
            else:
                dense = self.model.encode_queries(queries) @ self._distinct_vectors.T
                full = hybrid_scores(dense, lexical, self.weight)
            ids = np.argsort(-full, axis=1, kind="stable")[:, :k]
            scores = np.take_along_axis(full, ids, axis=1)
        ids = self.unique[ids]
        out = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            hits = []
            for score, i in zip(row_scores.tolist(), row_ids.tolist(), strict=True):
                before, after = self.corpus.context(i)
                hits.append(Hit(i, score, self.corpus.sentences[i], before, after))
            out.append(hits)
        return out

    def save(self, folder: str | os.PathLike) -> None:
        """Write the index folder (``vectors.npz``, ``sentences.json``, ``model/``)."""
        folder = Path(folder)
        self.model.save(folder / "model")
        buffer = io.BytesIO()
        np.savez(buffer, vectors=self.vectors, doc_ids=np.asarray(self.corpus.doc_ids))
        write_bytes(folder / "vectors.npz", buffer.getvalue())
        payload = {"sentences": self.corpus.sentences, "doc_names": self.corpus.doc_names,
                   "weight": self.weight, "stop_words": self.stop_words}
        write_text(folder / "sentences.json", json.dumps(payload, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike, *, chunk_size: int = 65536) -> SentenceIndex:
        """An index written by :meth:`save`."""
        folder = Path(folder)
        for name in ("vectors.npz", "sentences.json", "model"):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder} is not a sentence index: {name} is missing")
        with np.load(folder / "vectors.npz", allow_pickle=False) as data:
            vectors, doc_ids = data["vectors"], data["doc_ids"]
        payload = json.loads((folder / "sentences.json").read_text(encoding="utf-8"))
        corpus = Corpus(list(payload["sentences"]), doc_ids.astype(np.int64),
                        list(payload["doc_names"]))
        return cls(RetrievalModel.load(folder / "model"), corpus, vectors,
                   chunk_size=chunk_size, weight=float(payload.get("weight", 1.0)),
                   stop_words=bool(payload.get("stop_words", False)))
