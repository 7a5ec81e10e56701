"""word2vec: skip-gram with negative sampling on tokenized sentences.

Builds the vocabulary (tokens seen at least ``min_count`` times, most frequent first, ties in
order of first appearance — gensim's order), drops out-of-vocabulary tokens from the
sentences (as the word2vec tool does), and trains with the shared SGNS trainer
:func:`jaxembed.graph.skipgram.train_skipgram`: noise ``∝ count^0.75``, subsampling with
threshold ``sample``, dynamic window, linear learning-rate decay from ``lr = 0.025`` (the
equations are in that module). Sentences are not split at any length.

References:
    Mikolov, Chen, Corrado, Dean. "Efficient Estimation of Word Representations in Vector
    Space". ICLR workshop 2013.
    Mikolov, Sutskever, Chen, Corrado, Dean. "Distributed Representations of Words and
    Phrases and their Compositionality". NeurIPS 2013.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import jax
import numpy as np

from jaxembed.graph.skipgram import Corpus, train_skipgram
from jaxembed.text.keyed_vectors import KeyedVectors

__all__ = ["build_vocab", "word2vec"]


def _read(sentences: Iterable[Sequence[str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One pass: ``(tokens in first-appearance order, provisional ids, offsets)``."""
    if isinstance(sentences, str):
        raise TypeError("sentences must be an iterable of token lists, got one str")
    ids: dict[str, int] = {}
    flat: list[int] = []
    offsets = [0]
    for s, sentence in enumerate(sentences):
        if isinstance(sentence, str) or not isinstance(sentence, Sequence):
            raise TypeError(
                f"sentence {s} is a {type(sentence).__name__}; pass lists of tokens "
                "(e.g. line.split())"
            )
        for t, token in enumerate(sentence):
            if not isinstance(token, str):
                raise TypeError(
                    f"sentence {s}, token {t} is a {type(token).__name__} ({token!r}), "
                    "expected str"
                )
            flat.append(ids.setdefault(token, len(ids)))
        offsets.append(len(flat))
    return list(ids), np.asarray(flat, np.int64), np.asarray(offsets, np.int64)


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int = 5
                ) -> tuple[list[str], np.ndarray, Corpus]:
    """``(index_to_key, counts, corpus)``: the kept tokens by descending count (ties: first
    appearance), their counts, and the sentences as ids with dropped tokens removed."""
    if int(min_count) < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    seen, flat, offsets = _read(sentences)
    counts = np.bincount(flat, minlength=len(seen))
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] >= min_count]
    if order.size == 0:
        most = int(counts.max(initial=0))
        raise ValueError(
            f"no token occurs min_count={min_count} times (the most frequent occurs {most}); "
            "lower min_count or give a larger corpus"
        )
    new_id = np.full(len(seen), -1, np.int64)
    new_id[order] = np.arange(order.size)
    mapped = new_id[flat]
    kept = mapped >= 0
    kept_before = np.concatenate([[0], np.cumsum(kept)])
    corpus = Corpus(mapped[kept].astype(np.int32), kept_before[offsets], int(order.size))
    return [seen[i] for i in order], counts[order], corpus


def word2vec(
    sentences: Iterable[Sequence[str]],
    key: jax.Array,
    dim: int = 100,
    window: int = 5,
    negative: int = 5,
    min_count: int = 5,
    sample: float = 1e-3,
    epochs: int = 5,
    *,
    lr: float = 0.025,
    batch_size: int | None = None,
    negatives_per: str = "lane",
    progress: Callable[[int, int], None] | None = None,
) -> KeyedVectors:
    """Skip-gram word vectors for the tokens of ``sentences`` (an iterable of token lists).

    Returns :class:`~jaxembed.text.KeyedVectors` with the input ("syn0") vectors, keys most
    frequent first. ``negatives_per`` is :func:`~jaxembed.graph.skipgram.train_skipgram`'s
    (``"lane"``: noise drawn per lane of centers and shared by all their pairs, the fast
    default; ``"center"``: per center; ``"pair"``: a draw per pair as in the C tool and
    gensim). ``progress(done, total)`` reports tokens processed.
    Same key, same vectors.

    Raises:
        TypeError: a sentence that is not a list of str (naming the sentence and token).
        ValueError: no token reaching ``min_count``, or bad hyperparameters.
    """
    keys, _, corpus = build_vocab(sentences, min_count)
    w_in, _ = train_skipgram(corpus, key, dim=dim, window=window, negative=negative,
                             sample=sample, epochs=epochs, lr=lr, batch_size=batch_size,
                             negatives_per=negatives_per, progress=progress)
    return KeyedVectors(keys, np.asarray(w_in))
