r"""The retrieval a user starts from: a general dual encoder, BM25 and their hybrid.

A dual encoder trained on a few thousand pairs of one user's text cannot beat lexical matching
on *new* text by itself: most of a new document's rare words never trained. So
:meth:`Retriever.pretrained` trains one **general encoder** on the largest text available
offline — the reference topics and the docstrings of the standard library and of every
installed package (:func:`~jaxembed.text.corpus.general_documents`, a few hundred thousand
sentence pairs) — once, and caches it (:func:`jaxembed._cache.cache_root`; keyed by its
options and the Python version). A held-out 5 % of
the modules is never trained on: ``jaxembed bench retrieval`` measures on it.

:meth:`Retriever.fit` fine-tunes a copy on a user's documents (their (sentence, next
sentence) pairs) when they hold at least ``min_pairs`` pairs, and :meth:`Retriever.score`
ranks candidates by

* ``"dense"`` — :math:`u_Q(q)^\top u_R(d)` (:mod:`jaxembed.text.retrieval_model`);
* ``"bm25"`` — Okapi BM25 with the candidates as the collection, English stop words left
  out (:mod:`jaxembed.text.bm25`);
* ``"hybrid"`` (default) — :math:`z(s_D) + w\, z(s_{BM25})`, each standardized per query,
  :math:`w` tuned on pairs of documents the encoder did not train on
  (:mod:`jaxembed.text.hybrid`).

::

    r = je.text.Retriever.pretrained()          # built once, then loaded from the cache
    r = r.fit([("notes.txt", text), ...])        # a new Retriever, fine-tuned
    s = r.score(queries, candidates)             # f64[len(queries), len(candidates)]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxembed._atomic import write_text
from jaxembed._cache import cache_root
from jaxembed._validate import text_list
from jaxembed.text.bm25 import BM25, ENGLISH_STOP_WORDS
from jaxembed.text.corpus import Corpus, general_documents, held_out_module
from jaxembed.text.hybrid import RANKINGS, hybrid_scores, tune_weight
from jaxembed.text.retrieval_model import RetrievalModel, train_dual_encoder

__all__ = ["GeneralConfig", "Retriever", "check_ranking", "unique_pairs"]

FORMAT = 1
"""Bumped when the cached general encoder changes form, so an old cache is rebuilt."""


def check_ranking(ranking: str) -> str:
    """``ranking`` if it is one of :data:`~jaxembed.text.hybrid.RANKINGS`, else ValueError."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {', '.join(RANKINGS)}; got {ranking!r}")
    return ranking


def _distributions() -> list[str]:
    """The installed distributions (their ``.dist-info`` folder names), sorted."""
    import sysconfig

    root = Path(sysconfig.get_paths()["purelib"])
    return sorted(p.name for p in root.glob("*.dist-info")) if root.is_dir() else []


@dataclasses.dataclass(frozen=True)
class GeneralConfig:
    """How the general encoder is built (every field is part of its cache key).

    ``packages``: read installed packages' docstrings too (else the standard library only);
    ``limit``: read only the first ``limit`` source files of each kind (tests); the rest are
    :func:`~jaxembed.text.retrieval_model.train_dual_encoder`'s options.
    """

    dim: int = 256
    num_buckets: int = 2**17
    hidden: int = 512
    epochs: int = 2
    batch_size: int = 1024
    ngram_dropout: float = 0.5
    learning_rate: float = 2e-3
    seed: int = 0
    packages: bool = True
    limit: int | None = None
    validation_pairs: int = 1000

    def key(self) -> str:
        """A short digest of the options, the Python version and the format. (Installing a
        package changes the text the encoder would train on, but does not invalidate the
        cache: delete the folder to rebuild.)"""
        payload = {**dataclasses.asdict(self), "format": FORMAT,
                   "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def unique_pairs(corpus: Corpus) -> tuple[list[str], list[str]]:
    """``corpus.pairs()`` with repeated (statement, next sentence) pairs kept once."""
    seen: set[tuple[str, str]] = set()
    statements, responses = [], []
    for x, y in zip(*corpus.pairs(), strict=True):
        if (x, y) not in seen:
            seen.add((x, y))
            statements.append(x)
            responses.append(y)
    return statements, responses


def _validation_pairs(documents: list[tuple[str, str]], limit: int, seed: int
                      ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training documents, up to ``limit`` validation pairs): documents whose module hashes
    into a second 3 % slice (their first two dotted name parts, salted) are kept for tuning
    the hybrid weight."""
    keep, valid_docs = [], []
    for name, text in documents:
        module = ".".join(name.split(".")[:2]) + "#validation"
        (valid_docs if held_out_module(module, 0.03) else keep).append((name, text))
    train = Corpus.from_documents(keep)
    valid = Corpus.from_documents(valid_docs)
    seen = set(train.sentences)
    pairs = [(x, y) for x, y in zip(*valid.pairs(), strict=True)
             if x not in seen and y not in seen]
    if len(pairs) > limit:
        order = np.sort(np.random.default_rng(seed).choice(len(pairs), limit, replace=False))
        pairs = [pairs[i] for i in order]
    return keep, pairs


class Retriever:
    """A dual encoder with BM25 and the hybrid weight: ranks candidate texts for queries.

    Args:
        model: the dual encoder.
        weight: :math:`w`, BM25's weight in the hybrid score.
        k1: BM25's :math:`k_1`.
        b: BM25's :math:`b`.
        stop_words: BM25 leaves out :data:`~jaxembed.text.bm25.ENGLISH_STOP_WORDS`.
    """

    def __init__(self, model: RetrievalModel, *, weight: float = 1.0, k1: float = 1.2,
                 b: float = 0.75, stop_words: bool = True) -> None:
        hybrid_scores(np.zeros((1, 1)), np.zeros((1, 1)), weight)  # checks the weight
        self.model = model
        self.weight = float(weight)
        self.k1 = float(k1)
        self.b = float(b)
        self.stop_words = bool(stop_words)

    def __repr__(self) -> str:
        return (f"Retriever(dim={self.model.dim}, weight={self.weight}, k1={self.k1}, "
                f"b={self.b}, stop_words={self.stop_words})")

    def bm25(self, candidates: Sequence[str]) -> BM25:
        """BM25 with ``candidates`` as the collection and this retriever's parameters."""
        return BM25(candidates, k1=self.k1, b=self.b,
                    stop_words=ENGLISH_STOP_WORDS if self.stop_words else None)

    def _options(self) -> dict[str, Any]:
        return {"weight": self.weight, "k1": self.k1, "b": self.b,
                "stop_words": self.stop_words}

    # --- scoring ---------------------------------------------------------------------------
    def dense_scores(self, queries: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """``f32[Q, C]``: :math:`u_Q(q)^\\top u_R(d)`."""
        return self.model.encode_queries(queries) @ self.model.encode_responses(candidates).T

    def score(self, queries: Sequence[str], candidates: Sequence[str],
              ranking: str = "hybrid") -> np.ndarray:
        """``f64[len(queries), len(candidates)]``: the score of every candidate for every
        query under ``ranking`` (``"hybrid"``, ``"dense"`` or ``"bm25"``; BM25's statistics
        come from the candidates)."""
        check_ranking(ranking)
        queries = text_list(queries, "queries")
        candidates = text_list(candidates, "candidates")
        if not queries or not candidates:
            return np.zeros((len(queries), len(candidates)))
        if ranking == "dense":
            return np.asarray(self.dense_scores(queries, candidates), np.float64)
        lexical = self.bm25(candidates).scores(queries)
        if ranking == "bm25":
            return lexical
        return hybrid_scores(self.dense_scores(queries, candidates), lexical, self.weight)

    # --- training --------------------------------------------------------------------------
    def fit(self, documents: Sequence[tuple[str, str]], *, epochs: int = 3,
            learning_rate: float = 5e-4, batch_size: int = 256, min_pairs: int = 256,
            key: jax.Array | None = None, progress: bool = False) -> Retriever:
        """A new Retriever fine-tuned on the (sentence, next sentence) pairs of ``documents``
        (``(name, text)``, split with :meth:`Corpus.from_documents`); with fewer than
        ``min_pairs`` pairs (or ``epochs=0``) it keeps this one's encoder (a copy)."""
        if isinstance(documents, str | bytes):
            raise TypeError("documents must be a sequence of (name, text) pairs, got a str")
        corpus = Corpus.from_documents(list(documents))
        statements, responses = unique_pairs(corpus)
        if len(statements) < max(min_pairs, 2) or epochs == 0:
            return Retriever(self.model, **self._options())
        key = jax.random.key(0) if key is None else key
        model, _ = train_dual_encoder(statements, responses, key, epochs=epochs,
                                      learning_rate=learning_rate, batch_size=batch_size,
                                      init=self.model, progress=progress)
        return Retriever(model, **self._options())

    @classmethod
    def build_general(cls, config: GeneralConfig | None = None, *,
                      progress: bool = False) -> tuple[Retriever, dict[str, Any]]:
        """Train the general encoder (no cache): read :func:`general_documents`, keep a
        validation slice of its modules out, train on the rest, tune :math:`w` on the
        validation pairs. Returns the retriever and a summary of its training, whose
        ``"held_out_pairs"`` are the (statement, next sentence) pairs of the held-out modules
        with neither sentence in the training text."""
        config = GeneralConfig() if config is None else config
        documents, held_documents = general_documents(packages=config.packages,
                                                      limit=config.limit)
        documents, valid = _validation_pairs(documents, config.validation_pairs, config.seed)
        corpus = Corpus.from_documents(documents)
        statements, responses = unique_pairs(corpus)
        seen = set(corpus.sentences)
        held = [(x, y) for x, y in zip(*unique_pairs(Corpus.from_documents(held_documents)),
                                       strict=True) if x not in seen and y not in seen]
        model, losses = train_dual_encoder(
            statements, responses, jax.random.key(config.seed), num_buckets=config.num_buckets,
            dim=config.dim, hidden=config.hidden, epochs=config.epochs,
            batch_size=config.batch_size, learning_rate=config.learning_rate,
            ngram_dropout=config.ngram_dropout, progress=progress)
        retriever = cls(model)
        weight = 1.0
        if len(valid) >= 2:
            queries = [x for x, _ in valid]
            candidates = list(dict.fromkeys(y for _, y in valid))
            position = {c: i for i, c in enumerate(candidates)}
            targets = np.array([position[y] for _, y in valid])
            dense = retriever.dense_scores(queries, candidates)
            lexical = retriever.bm25(candidates).scores(queries)
            weight = tune_weight(dense, lexical, targets)
        retriever.weight = weight
        return retriever, {"distributions": len(_distributions()),
                           "train_pairs": len(statements), "validation_pairs": len(valid),
                           "losses": losses, "weight": weight, "held_out_pairs": held}

    @classmethod
    def pretrained(cls, cache_dir: str | os.PathLike | None = None, *,
                   config: GeneralConfig | None = None, progress: bool = False) -> Retriever:
        """The general retriever: loaded from the cache, or built (:meth:`build_general`,
        a few minutes on a laptop) and cached on first use."""
        folder = cls.cache_dir(cache_dir, config)
        if (folder / "retriever.json").is_file():
            return cls.load(folder)
        if progress:
            print(f"building the general retrieval encoder in {folder} (once)",
                  file=sys.stderr)
        retriever, summary = cls.build_general(config, progress=progress)
        held = summary.pop("held_out_pairs")
        write_text(folder / "heldout.json", json.dumps(held, ensure_ascii=False) + "\n")
        retriever.save(folder, summary=summary)
        return retriever

    @classmethod
    def held_out_pairs(cls, cache_dir: str | os.PathLike | None = None,
                       config: GeneralConfig | None = None) -> list[tuple[str, str]]:
        """The held-out pairs saved with the cached general encoder (building it if needed):
        text it never trained on, for ``jaxembed bench retrieval``."""
        folder = cls.cache_dir(cache_dir, config)
        if not (folder / "heldout.json").is_file():
            cls.pretrained(cache_dir, config=config, progress=True)
        pairs = json.loads((folder / "heldout.json").read_text(encoding="utf-8"))
        return [(x, y) for x, y in pairs]

    @staticmethod
    def cache_dir(cache_dir: str | os.PathLike | None = None,
                  config: GeneralConfig | None = None) -> Path:
        """Where :meth:`pretrained` caches the general encoder built with ``config``."""
        config = GeneralConfig() if config is None else config
        return cache_root(cache_dir) / f"retriever-general-{config.key()}"

    # --- files -----------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, *, summary: dict[str, Any] | None = None) -> None:
        """Write ``folder/model/`` and ``folder/retriever.json`` (the weight and BM25's
        options; written last, so a folder with it is whole)."""
        folder = Path(folder)
        self.model.save(folder / "model")
        payload = {"format": FORMAT, **self._options(), "summary": summary or {}}
        write_text(folder / "retriever.json", json.dumps(payload, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Retriever:
        """A retriever written by :meth:`save`."""
        folder = Path(folder)
        meta_path = folder / "retriever.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} is not a saved retriever: retriever.json is "
                                    "missing")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return cls(RetrievalModel.load(folder / "model"), weight=meta["weight"],
                   k1=meta["k1"], b=meta["b"], stop_words=meta.get("stop_words", False))
