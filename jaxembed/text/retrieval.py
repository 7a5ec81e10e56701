r"""Talk-to-Books style semantic retrieval: ask a sentence, get the sentences that follow it.

The pieces (each in its module):

* :mod:`jaxembed.text.retrieval_model` — hashed n-gram bags (:class:`NgramHasher`), the dual
  encoder (:class:`DualEncoder`) and its in-batch-negatives training
  (:func:`train_dual_encoder`), wrapped as a :class:`RetrievalModel`;
* :mod:`jaxembed.text.retrieval_index` — the chunked exact (or approximate) top-k scan
  (:func:`top_k`) and the saved :class:`SentenceIndex`;
* :mod:`jaxembed.text.corpus` — the built-in corpus (CPython's own documentation).

This module adds the measurement: :func:`evaluate_next_sentence` ranks, for each held-out
statement :math:`x_i`, all distinct held-out next sentences :math:`\{y_j\}` and reports
recall@k — the fraction of statements whose true next sentence is among the :math:`k` best —
for the dual encoder (:math:`u_Q(x)^\top u_R(y)`) and for a TF-IDF baseline in the same run
(scikit-learn's ``TfidfVectorizer`` with its defaults, fitted on the held-out statements and
candidates, cosine similarity). :func:`next_sentence_experiment` holds out pairs (or whole
documents) of a corpus, trains on the rest and evaluates on what was held out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxembed.text.corpus import Corpus
from jaxembed.text.hybrid import hybrid_scores, reciprocal_ranks
from jaxembed.text.retrieval_index import Hit, SentenceIndex, top_k
from jaxembed.text.retrieval_model import (
    DualEncoder,
    NgramHasher,
    RetrievalModel,
    in_batch_loss,
    train_dual_encoder,
)
from jaxembed.text.retriever import Retriever

__all__ = [
    "DualEncoder",
    "Hit",
    "NgramHasher",
    "RetrievalModel",
    "Retriever",
    "SentenceIndex",
    "evaluate_next_sentence",
    "evaluate_rankings",
    "in_batch_loss",
    "next_sentence_experiment",
    "ranking_metrics",
    "top_k",
    "train_dual_encoder",
]


def _recalls(scores: np.ndarray, own: np.ndarray, targets: np.ndarray,
             ks: Sequence[int]) -> dict[int, float]:
    """Recall@k from a ``[P, C]`` score matrix; ``own[i]`` (the statement itself among the
    candidates, or -1) is never ranked."""
    scores = np.array(scores, np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("non-finite retrieval scores (a diverged model?)")
    rows = np.flatnonzero(own >= 0)
    scores[rows, own[rows]] = -np.inf
    target = scores[np.arange(len(targets)), targets]
    # rank = candidates scoring higher, plus equal ones before it (a stable sort's order)
    higher = np.sum(scores > target[:, None], axis=1)
    ties = np.sum((scores == target[:, None])
                  & (np.arange(scores.shape[1])[None, :] < targets[:, None]), axis=1)
    rank = higher + ties
    return {k: float(np.mean(rank < k)) for k in ks}


def ranking_metrics(scores: Any, own: np.ndarray, targets: np.ndarray,
                    ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    r"""``{"recall@k": ..., "mrr": ...}`` of a ``[P, C]`` score matrix: recall@k is the share
    of rows whose target column ranks in the first ``k``, MRR the mean of
    :math:`1/\mathrm{rank}`; ``own[i]`` (the statement itself among the candidates, or -1)
    is never ranked; ties rank in candidate order."""
    scores = np.array(scores, np.float64)
    out = {f"recall@{k}": v for k, v in _recalls(scores, own, targets, ks).items()}
    rows = np.flatnonzero(own >= 0)
    scores[rows, own[rows]] = -np.inf
    out["mrr"] = float(np.mean(reciprocal_ranks(scores, targets)))
    return out


def evaluate_rankings(retriever: Retriever, statements: Sequence[str],
                      responses: Sequence[str],
                      ks: Sequence[int] = (1, 10)) -> dict[str, Any]:
    """Next-sentence retrieval of held-out pairs by every ranking, in one run.

    The candidates are the distinct ``responses`` (the statement itself left out of its own
    ranking, as in :func:`evaluate_next_sentence`). Rankings: the retriever's ``"dense"``,
    ``"bm25"`` and ``"hybrid"`` scores (:meth:`Retriever.score`, BM25 statistics from the
    candidates, with the retriever's stop words) and scikit-learn's ``TfidfVectorizer``
    cosine (defaults, fitted on the statements and candidates). Returns ``{"queries": P,
    "candidates": C, ranking: ranking_metrics(...)}``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    statements, responses = list(statements), list(responses)
    if len(statements) != len(responses) or not statements:
        raise ValueError(f"need as many statements as responses, at least one; got "
                         f"{len(statements)} and {len(responses)}")
    candidates = list(dict.fromkeys(responses))
    position = {text: i for i, text in enumerate(candidates)}
    targets = np.array([position[r] for r in responses])
    own = np.array([position.get(text, -1) for text in statements])
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1 or ks[-1] > len(candidates):
        raise ValueError(f"ks={ks} must lie in [1, {len(candidates)}] (the candidates)")
    tfidf = TfidfVectorizer().fit(statements + candidates)
    results: dict[str, Any] = {"queries": len(statements), "candidates": len(candidates)}
    dense = np.asarray(retriever.dense_scores(statements, candidates), np.float64)
    lexical = retriever.score(statements, candidates, ranking="bm25")
    scores = {"dense": dense, "bm25": lexical,
              "tfidf": (tfidf.transform(statements) @ tfidf.transform(candidates).T).toarray(),
              "hybrid": hybrid_scores(dense, lexical, retriever.weight)}
    for name, matrix in scores.items():
        results[name] = ranking_metrics(matrix, own, targets, ks)
    return results


def evaluate_next_sentence(model: RetrievalModel, statements: Sequence[str],
                           responses: Sequence[str],
                           ks: Sequence[int] = (1, 10)) -> dict[str, Any]:
    """Recall@k of next-sentence retrieval, dual encoder against TF-IDF, on the same pairs.

    The candidates are the distinct ``responses``; statement ``i`` is answered correctly at
    ``k`` when ``responses[i]`` is among its ``k`` best candidates. A candidate equal to the
    statement itself (a statement is usually the next sentence of the one before it) is
    left out of its ranking: TF-IDF would always put it first. Ties rank in candidate order.
    Returns
    ``{"queries": P, "candidates": C, "dual_encoder": {k: recall}, "tfidf": {k: recall}}``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    statements, responses = list(statements), list(responses)
    if len(statements) != len(responses) or not statements:
        raise ValueError(f"need as many statements as responses, at least one; got "
                         f"{len(statements)} and {len(responses)}")
    ks = sorted({int(k) for k in ks})
    candidates = list(dict.fromkeys(responses))
    position = {text: i for i, text in enumerate(candidates)}
    targets = np.array([position[r] for r in responses])
    if not ks or ks[0] < 1 or ks[-1] > len(candidates):
        raise ValueError(f"ks={ks} must lie in [1, {len(candidates)}] (the candidates)")
    own = np.array([position.get(text, -1) for text in statements])

    scores = model.encode_queries(statements) @ model.encode_responses(candidates).T
    tfidf = TfidfVectorizer().fit(statements + candidates)
    tfidf_scores = (tfidf.transform(statements) @ tfidf.transform(candidates).T).toarray()
    return {"queries": len(statements), "candidates": len(candidates),
            "dual_encoder": _recalls(scores, own, targets, ks),
            "tfidf": _recalls(tfidf_scores, own, targets, ks)}


def _split_pairs(corpus: Corpus, holdout: float, seed: int,
                 by: str) -> tuple[tuple[list[str], list[str]], list[tuple[str, str]]]:
    """(training pairs, held-out pairs), held-out pairs that also occur in training dropped."""
    if by == "documents":
        train, held = corpus.split(holdout, seed)
        seen = set(train.sentences)
        pairs = train.pairs()
        return pairs, [(x, y) for x, y in zip(*held.pairs(), strict=True)
                       if x not in seen and y not in seen]
    if by != "pairs":
        raise ValueError(f"split must be 'documents' or 'pairs', got {by!r}")
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
    statements, responses = corpus.pairs()
    held = np.random.default_rng(seed).random(len(statements)) < holdout
    train = ([x for x, h in zip(statements, held, strict=True) if not h],
             [y for y, h in zip(responses, held, strict=True) if not h])
    seen = set(zip(*train, strict=True))
    return train, [(x, y) for x, y, h in zip(statements, responses, held, strict=True)
                   if h and (x, y) not in seen]


def next_sentence_experiment(corpus: Corpus, key: jax.Array, *, split: str = "pairs",
                             holdout: float = 0.1, split_seed: int = 0,
                             ks: Sequence[int] = (1, 10), max_eval_pairs: int | None = None,
                             **train_options: Any) -> dict[str, Any]:
    """Hold out pairs of ``corpus``, train on the rest, evaluate on the held-out pairs.

    ``split="pairs"`` holds out a ``holdout`` fraction of the (statement, next sentence)
    pairs: the model never sees a held-out pair, though it sees its sentences in their other
    pairs — the Talk to Books setting, where the model has read the books it searches.
    ``split="documents"`` holds out whole documents, whose sentences the model never sees.
    Either way a held-out pair that also occurs in training is dropped (the reference text
    repeats paragraphs across topics; with documents, any pair with a sentence seen in
    training). ``train_options`` go to :func:`train_dual_encoder`; ``max_eval_pairs`` keeps
    the first held-out pairs only. Returns :func:`evaluate_next_sentence`'s dict plus
    ``"train_pairs"`` and ``"losses"``.
    """
    (statements, responses), held = _split_pairs(corpus, holdout, split_seed, split)
    if max_eval_pairs is not None:
        held = held[:max_eval_pairs]
    if not held:
        raise ValueError("no held-out pair is left to evaluate; use a larger holdout")
    model, losses = train_dual_encoder(statements, responses, key, **train_options)
    result = evaluate_next_sentence(model, [x for x, _ in held], [y for _, y in held], ks)
    return {**result, "train_pairs": len(statements), "losses": losses}
