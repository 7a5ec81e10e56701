r"""Okapi BM25: lexical relevance of a collection's texts to a query, as one sparse product.

**The formula.** For a collection of :math:`N` texts (the candidates), each a sequence of
tokens (:class:`~jaxembed.encoding.segment.Segmenter`: NFKC, lower case, words), let
:math:`f(t, d)` be the count of term :math:`t` in text :math:`d`, :math:`|d|` its token count,
:math:`\overline{|d|}` the mean of :math:`|d|` over the collection and :math:`n_t` the number
of texts holding :math:`t`. A query :math:`q` holding :math:`t` :math:`c_q(t)` times scores

.. math::

    \mathrm{BM25}(q, d) = \sum_{t} c_q(t)\; \mathrm{idf}(t)\;
        \frac{f(t, d)\,(k_1 + 1)}{f(t, d) + k_1\big(1 - b + b\,|d| / \overline{|d|}\big)},
    \qquad
    \mathrm{idf}(t) = \ln\Big(1 + \frac{N - n_t + 0.5}{n_t + 0.5}\Big),

the sum over the query's distinct terms (a repeated query term counts as often as it occurs:
Robertson's query-frequency factor with :math:`k_3 \to \infty`). The idf is the
Robertson–Spärck Jones weight with Lucene's ``1 +`` inside the logarithm, so it is positive
even for a term in more than half the texts. A query term the collection never holds adds 0.
Defaults :math:`k_1 = 1.2`, :math:`b = 0.75`. Optionally, stop words are left out of the
texts before anything is counted (the formula is unchanged, over fewer tokens).

**The fast form.** Every factor but :math:`c_q(t)` depends on the collection alone, so the
collection becomes one sparse matrix :math:`W \in \mathbb{R}^{N \times V}` (:math:`V`: the
collection's vocabulary), :math:`W_{d t} = \mathrm{idf}(t)\, f(t,d)(k_1+1) / (f(t,d) +
k_1(1 - b + b|d|/\overline{|d|}))`, and a batch of queries is its count matrix
:math:`C \in \mathbb{N}^{Q \times V}`:

.. math::

    \mathrm{BM25}(Q, D) = C\, W^\top,

the library's one equation again (a multi-hot row times a table). :class:`BM25` builds
:math:`W` once (scipy CSR) and scores any batch of queries against it;
:func:`bm25_literal` is the per-term formula written out with dictionaries, its reference
twin (``proofs/proof_bm25.py``).

References:
    Robertson, Walker, Jones, Hancock-Beaulieu, Gatford. "Okapi at TREC-3." TREC 1994.
    Robertson, Zaragoza. "The Probabilistic Relevance Framework: BM25 and Beyond."
    Foundations and Trends in Information Retrieval 3(4), 2009.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import sparse

from jaxembed._validate import text_list
from jaxembed.encoding.segment import Segmenter

__all__ = ["BM25", "ENGLISH_STOP_WORDS", "bm25_literal", "bm25_scores", "tokenize"]

ENGLISH_STOP_WORDS: frozenset[str] = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())
"""Function words a question is full of ("how do I ... a ..."): ``BM25(stop_words=...)`` can
leave them out of queries and documents alike."""


def tokenize(texts: Sequence[str],
             stop_words: frozenset[str] | None = None) -> list[list[str]]:
    """Each text's tokens (:class:`~jaxembed.encoding.segment.Segmenter`), without the
    ``stop_words``."""
    texts = text_list(texts, "texts")
    if not texts:
        return []
    tokens, offsets = Segmenter().batch(texts)
    out = [tokens[offsets[i]: offsets[i + 1]] for i in range(len(texts))]
    if stop_words:
        out = [[t for t in words if t not in stop_words] for words in out]
    return out


def _check_parameters(k1: float, b: float) -> tuple[float, float]:
    if isinstance(k1, bool) or not isinstance(k1, int | float) or not (
            math.isfinite(k1) and k1 >= 0):
        raise ValueError(f"k1 must be a finite number >= 0, got {k1!r}")
    if isinstance(b, bool) or not isinstance(b, int | float) or not 0.0 <= b <= 1.0:
        raise ValueError(f"b must be a number in [0, 1], got {b!r}")
    return float(k1), float(b)


class BM25:
    """A collection's BM25 term-weight matrix :math:`W` (module docstring), ready to score.

    Args:
        documents: the collection (the candidates ranked later).
        k1: term-frequency saturation, :math:`k_1 \\ge 0`.
        b: length normalisation, :math:`0 \\le b \\le 1`.
        stop_words: tokens left out of documents and queries (e.g.
            :data:`ENGLISH_STOP_WORDS`); none by default.
    """

    def __init__(self, documents: Sequence[str], *, k1: float = 1.2, b: float = 0.75,
                 stop_words: frozenset[str] | None = None) -> None:
        self.k1, self.b = _check_parameters(k1, b)
        self.stop_words = frozenset(stop_words or ())
        documents = text_list(documents, "documents")
        if not documents:
            raise ValueError("BM25 needs at least one document")
        docs = tokenize(documents, self.stop_words)
        flat = [t for d in docs for t in d]
        vocab, term_ids = np.unique(np.array(flat, dtype=object), return_inverse=True)
        self.vocabulary: dict[str, int] = {t: i for i, t in enumerate(vocab.tolist())}
        lengths = np.array([len(d) for d in docs], dtype=np.float64)
        rows = np.repeat(np.arange(len(docs)), lengths.astype(np.int64))
        counts = sparse.csr_matrix(
            (np.ones(len(flat)), (rows, term_ids.reshape(-1).astype(np.int64))),
            shape=(len(docs), len(vocab)))
        counts.sum_duplicates()
        n_t = np.bincount(counts.indices, minlength=len(vocab)).astype(np.float64)
        total = float(len(docs))
        self.idf = np.log1p((total - n_t + 0.5) / (n_t + 0.5))
        mean_length = lengths.mean()
        norm = self.k1 * (1.0 - self.b + self.b * lengths / mean_length) if mean_length else (
            np.full(len(docs), self.k1))
        f = counts.data
        row_of = np.repeat(np.arange(len(docs)), np.diff(counts.indptr))
        weights = self.idf[counts.indices] * f * (self.k1 + 1.0) / (f + norm[row_of])
        self.matrix = sparse.csr_matrix((weights, counts.indices, counts.indptr),
                                        shape=counts.shape)
        self.num_documents = len(docs)

    def query_counts(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """:math:`C`, ``[Q, V]``: each query's counts of the collection's terms."""
        rows, cols = [], []
        for i, tokens in enumerate(tokenize(queries, self.stop_words)):
            for t in tokens:
                j = self.vocabulary.get(t)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                   shape=(len(queries), len(self.vocabulary)))
        matrix.sum_duplicates()
        return matrix

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """``f64[Q, N]``: :math:`\\mathrm{BM25}(q, d)` of every query against every document."""
        queries = text_list(queries, "queries")
        return np.asarray((self.query_counts(queries) @ self.matrix.T).toarray(), np.float64)


def bm25_scores(queries: Sequence[str], documents: Sequence[str], *, k1: float = 1.2,
                b: float = 0.75, stop_words: frozenset[str] | None = None) -> np.ndarray:
    """``f64[Q, N]`` BM25 of each query against each document, statistics from ``documents``."""
    return BM25(documents, k1=k1, b=b, stop_words=stop_words).scores(queries)


def bm25_literal(queries: Sequence[Sequence[str]], documents: Sequence[Sequence[str]], *,
                 k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """The reference twin: the per-term formula of the module docstring, term by term, over
    already tokenized queries and documents (lists of tokens)."""
    n = len(documents)
    avgdl = sum(len(d) for d in documents) / n
    df: Counter[str] = Counter()
    for d in documents:
        df.update(set(d))
    out = np.zeros((len(queries), n))
    for i, q in enumerate(queries):
        for j, d in enumerate(documents):
            tf = Counter(d)
            total = 0.0
            for term, c_q in Counter(q).items():
                if df[term] == 0:
                    continue
                idf = math.log(1.0 + (n - df[term] + 0.5) / (df[term] + 0.5))
                f = tf[term]
                if f == 0:
                    continue
                length_norm = 1.0 - b + b * len(d) / avgdl if avgdl else 1.0
                total += c_q * idf * f * (k1 + 1.0) / (f + k1 * length_norm)
            out[i, j] = total
    return out
