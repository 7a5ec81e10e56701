"""``jaxembed bench word2vec``: skip-gram training against gensim on the same corpus.

The corpus is generated with known structure (:func:`topic_corpus`): every sentence is about
one topic and draws its words from that topic's vocabulary (Zipf-like frequencies) mixed with
frequent topic-free "stop words". A good embedding puts each topic word's nearest neighbours in
its own topic; *purity@k* is the fraction of the ``k`` nearest neighbours (cosine) of topic
words that share their topic. The benchmark trains :func:`jaxembed.text.word2vec` and gensim's
``Word2Vec(sg=1, workers=2)`` with the same hyperparameters, and prints wall-clock times (ours
with and without the one-off ``jit`` compilation), words per second, the ratio, both purities,
and the agreement of the two models (Spearman correlation of their cosines over random word
pairs).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from jaxembed.bench.timing import machine


def topic_corpus(num_topics: int = 8, words_per_topic: int = 20, num_sentences: int = 2000,
                 sentence_length: int = 12, num_stopwords: int = 10, stop_prob: float = 0.3,
                 seed: int = 0) -> tuple[list[list[str]], dict[str, int]]:
    """Sentences with planted topics, and ``{word: topic}`` (stop words get ``-1``).

    Sentence ``s`` has a topic ``z_s ~ Uniform{0..T-1}``; each token is, with probability
    ``stop_prob``, a uniform stop word ``s<j>``, else topic word ``t<z_s>_w<j>`` with
    ``P(j) ∝ (j + 1)^-1/2``.
    """
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.sqrt(np.arange(1, words_per_topic + 1))
    zipf /= zipf.sum()
    topics = rng.integers(0, num_topics, num_sentences)
    words = rng.choice(words_per_topic, size=(num_sentences, sentence_length), p=zipf)
    stop = rng.random((num_sentences, sentence_length)) < stop_prob
    stops = rng.integers(0, num_stopwords, (num_sentences, sentence_length))
    vocab = [[f"t{t}_w{j}" for j in range(words_per_topic)] for t in range(num_topics)]
    stop_words = [f"s{j}" for j in range(num_stopwords)]
    sentences = [
        [stop_words[stops[i, j]] if stop[i, j] else vocab[topics[i]][words[i, j]]
         for j in range(sentence_length)]
        for i in range(num_sentences)
    ]
    topic_of = {w: t for t in range(num_topics) for w in vocab[t]}
    topic_of.update({w: -1 for w in stop_words})
    return sentences, topic_of


def purity(index_to_key: list[str], vectors: Any, topic_of: dict[str, int], k: int = 5) -> float:
    """Fraction of the ``k`` cosine-nearest neighbours of topic words in the same topic."""
    x = np.asarray(vectors, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    topics = np.array([topic_of[w] for w in index_to_key])
    rows = np.flatnonzero(topics >= 0)
    nearest = np.argsort(-sims[rows], axis=1)[:, :k]
    return float(np.mean(topics[nearest] == topics[rows, None]))


def _agreement(ours: Any, theirs: Any, seed: int = 0, pairs: int = 5000) -> float:
    """Spearman correlation of two models' cosines over random pairs of shared words."""
    from scipy.stats import spearmanr

    shared = [w for w in ours.index_to_key if w in theirs.key_to_index]
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(shared), (2, pairs))
    keep = a != b
    xs = [ours.similarity(shared[i], shared[j]) for i, j in zip(a[keep], b[keep], strict=True)]
    ys = [float(theirs.similarity(shared[i], shared[j]))
          for i, j in zip(a[keep], b[keep], strict=True)]
    return float(spearmanr(xs, ys).statistic)


def run(num_sentences: int = 100_000, dim: int = 100, window: int = 5, negative: int = 5,
        min_count: int = 5, sample: float = 1e-3, epochs: int = 3, seed: int = 0,
        per_pair: bool = False) -> None:
    """Print the word2vec-vs-gensim table for a topic corpus of ``num_sentences`` sentences."""
    from jaxembed.bench.peers import import_gensim_word2vec
    from jaxembed.graph.skipgram import train_skipgram
    from jaxembed.text.keyed_vectors import KeyedVectors
    from jaxembed.text.word2vec import build_vocab, word2vec

    sentences, topic_of = topic_corpus(num_topics=50, words_per_topic=200,
                                       num_sentences=num_sentences, sentence_length=20,
                                       num_stopwords=50, seed=seed)
    tokens = sum(map(len, sentences))
    print(f"machine: {machine()}")
    print(f"corpus: {num_sentences} sentences, {tokens} tokens, 50 topics x 200 words + 50 stop "
          f"words; dim={dim} window={window} negative={negative} sample={sample} "
          f"epochs={epochs}")
    kwargs = dict(dim=dim, window=window, negative=negative, min_count=min_count,
                  sample=sample, epochs=epochs)
    start = time.perf_counter()
    ours = word2vec(sentences, jax.random.key(seed), **kwargs)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    ours = word2vec(sentences, jax.random.key(seed), **kwargs)
    warm = time.perf_counter() - start
    ours_purity = purity(ours.index_to_key, ours.vectors, topic_of)
    rows = [("jaxembed (incl. compile)", cold, ours_purity),
            ("jaxembed", warm, ours_purity)]
    if per_pair:
        keys, _, corpus = build_vocab(sentences, min_count)
        train = dict(dim=dim, window=window, negative=negative, sample=sample, epochs=epochs,
                     negatives_per="pair")
        train_skipgram(corpus, jax.random.key(seed), **train)  # compile
        start = time.perf_counter()
        pair_in, _ = jax.block_until_ready(train_skipgram(corpus, jax.random.key(seed), **train))
        pair_s = time.perf_counter() - start
        pair = KeyedVectors(keys, np.asarray(pair_in))
        rows.append(("jaxembed negatives/pair", pair_s,
                     purity(pair.index_to_key, pair.vectors, topic_of)))
    Word2Vec = import_gensim_word2vec()
    theirs = None
    if Word2Vec is None:
        print("gensim: not installed (pip install gensim)")
    else:
        start = time.perf_counter()
        model = Word2Vec(sentences, vector_size=dim, window=window, negative=negative,
                         min_count=min_count, sample=sample, epochs=epochs, sg=1, workers=2,
                         seed=seed)
        theirs = model.wv
        rows.append(("gensim sg workers=2", time.perf_counter() - start,
                     purity(theirs.index_to_key, theirs.vectors, topic_of)))
    peer = rows[-1][1] if theirs is not None else None
    print(f"{'trainer':<26}{'seconds':>10}{'words/s':>12}{'time / gensim':>15}{'purity@5':>10}")
    for name, seconds, quality in rows:
        ratio = "-" if peer is None else f"{seconds / peer:.2f}"
        print(f"{name:<26}{seconds:>10.2f}{tokens * epochs / seconds:>12.0f}{ratio:>15}"
              f"{quality:>10.3f}")
    if theirs is not None:
        print(f"agreement (Spearman of cosines over random word pairs, ours vs gensim): "
              f"{_agreement(ours, theirs):.3f}")
