r"""A dual encoder for semantic retrieval: which sentence most likely follows this one?

**Features.** A text is tokenized (:class:`~jaxembed.encoding.segment.Segmenter`: NFKC,
lower case, words; CJK runs as character n-grams), and its word unigrams and bigrams
(``"a b"``) are hashed into ``M`` buckets with the stable string hash
(:func:`~jaxembed.encoding.hashing.hash_bucket`), at most ``max_ngrams`` per text (unigrams
first). The text is the bag :math:`x` of those bucket ids, padded with ``-1``.

**Towers.** The two towers share one table :math:`E \in \mathbb{R}^{M \times D}` and pool it
with :func:`jaxembed.bag_lookup` (``sqrtn``: :math:`e = \sum_{j \in x} E_j / \sqrt{|x|}`);
each has its own residual MLP and is L2-normalized:

.. math::

    u(x) = \frac{e + W_2\,\mathrm{relu}(W_1 e + b_1) + b_2}
                {\lVert e + W_2\,\mathrm{relu}(W_1 e + b_1) + b_2 \rVert},

(query tower :math:`u_Q`, response tower :math:`u_R`). Because of the residual, an untrained
model already scores texts by their shared n-grams (a random projection of the bag-of-n-grams
cosine); training learns which n-grams matter and which predict one another.

**Score and loss.** :math:`s(x, y) = \exp(\tau)\, u_Q(x)^\top u_R(y)` with a learned (or fixed)
log-scale :math:`\tau`. A batch of :math:`B` (statement, next sentence) pairs is trained with
in-batch negatives — every other next sentence of the batch is a negative:

.. math::

    \mathcal{L} = -\frac{1}{B} \sum_{i=1}^{B} \Big( s(x_i, y_i)
                  - \log \sum_{j=1}^{B} \exp s(x_i, y_j) \Big),

the softmax cross-entropy over the batch's :math:`B \times B` score matrix with the diagonal
as labels (Adam). Retrieval ranks candidates by :math:`u_Q(x)^\top u_R(y)`
(:mod:`jaxembed.text.retrieval_index`). A batch that holds the same next sentence twice
has a false negative; with sentences of a corpus this is rare and is not corrected.

References:
    Henderson, Al-Rfou, Strope, Sung, Lukács, Guo, Kumar, Miklos, Kurzweil. "Efficient Natural
    Language Response Suggestion for Smart Reply." arXiv:1705.00652, 2017.
    Yang, Yuan, Cer, Kong, Constant, Pilar, Ge, Sung, Strope, Kurzweil. "Learning Semantic
    Textual Similarity from Conversations." RepL4NLP 2018 (Talk to Books' encoder family).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from jaxembed._validate import text_list
from jaxembed.bags import PAD_ID, Bags, bucket_width
from jaxembed.encoding.hashing import hash_bucket
from jaxembed.encoding.segment import Segmenter
from jaxembed.lookup import bag_lookup
from jaxembed.text._params_io import load_params, read_config, save_module
from jaxembed.text._progress import training_bar

__all__ = ["DualEncoder", "NgramHasher", "RetrievalModel", "in_batch_loss",
           "train_dual_encoder"]


def _int_at_least(value: Any, what: str, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lowest:
        raise ValueError(f"{what} must be an int >= {lowest}, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class NgramHasher:
    """Texts to padded bucket ids of their hashed word unigrams and bigrams.

    Args:
        num_buckets: ``M``, the table rows.
        max_ngrams: keep at most this many n-grams per text (unigrams first).
        seed: the hash seed.
    """

    num_buckets: int = 2**17
    max_ngrams: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        _int_at_least(self.num_buckets, "num_buckets", 1)
        _int_at_least(self.max_ngrams, "max_ngrams", 1)

    def ids(self, texts: Sequence[str], width: int | None = None) -> np.ndarray:
        """``int32[N, W]`` bucket ids, ``-1`` padding; ``W`` is ``width`` or the power-of-two
        bucket of the longest text's n-gram count (at most ``max_ngrams``)."""
        texts = text_list(texts, "texts")
        tokens, offsets = Segmenter().batch(texts) if texts else ([], np.zeros(1, np.int64))
        grams: list[str] = []
        counts = np.zeros(len(texts), dtype=np.int64)
        for i in range(len(texts)):
            words = tokens[offsets[i]: offsets[i + 1]]
            found = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
            found = found[: self.max_ngrams]
            grams.extend(found)
            counts[i] = len(found)
        if width is None:
            width = min(bucket_width(int(counts.max(initial=0))), self.max_ngrams)
        out = np.full((len(texts), width), PAD_ID, dtype=np.int32)
        if grams:
            hashed = hash_bucket(np.array(grams, dtype=object), self.num_buckets, self.seed)
            rows = np.repeat(np.arange(len(texts)), counts)
            cols = np.arange(len(grams)) - np.repeat(np.cumsum(counts) - counts, counts)
            keep = cols < width
            out[rows[keep], cols[keep]] = hashed[keep]
        return out


def idf_weights(ids: np.ndarray, num_buckets: int, unseen: float = 0.0) -> np.ndarray:
    """``f32[M]``: ``idf_b = ln((1 + n) / (1 + df_b)) + 1`` (scikit-learn's smoothed idf) with
    ``df_b`` the number of the ``n`` rows of ``ids`` (``-1`` padding) that hold bucket ``b``;
    ``unseen`` for a bucket no row holds (its embedding row never trains: by default it is
    left out of the bag)."""
    ids = np.sort(np.asarray(ids), axis=1)
    first = np.ones(ids.shape, dtype=bool)
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]
    df = np.bincount(ids[first & (ids >= 0)], minlength=num_buckets)
    idf = np.log((1.0 + len(ids)) / (1.0 + df)) + 1.0
    return np.where(df > 0, idf, unseen).astype(np.float32)


class _Tower(nnx.Module):
    """``e + W2 relu(W1 e + b1) + b2``, L2-normalized."""

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs) -> None:
        self.inner = nnx.Linear(dim, hidden, rngs=rngs)
        self.outer = nnx.Linear(hidden, dim, kernel_init=nnx.initializers.zeros_init(),
                                rngs=rngs)

    def __call__(self, e: jax.Array) -> jax.Array:
        u = e + self.outer(jax.nn.relu(self.inner(e)))
        # rsqrt of a clamped square norm: finite value and gradient at u = 0 (an empty bag)
        return u * lax.rsqrt(jnp.maximum(jnp.sum(u * u, axis=-1, keepdims=True), 1e-24))


class DualEncoder(nnx.Module):
    """Query and response towers over one hashed n-gram table (see the module docstring).

    Args:
        num_buckets: ``M``, rows of the shared n-gram table.
        dim: ``D``, the embedding size.
        hidden: the towers' hidden width.
        scale: initial :math:`\\exp(\\tau)`.
        learn_scale: train :math:`\\tau` (else it stays ``log(scale)``).
        rngs: parameter initialisation.
    """

    def __init__(self, num_buckets: int = 2**17, dim: int = 256, hidden: int = 512, *,
                 scale: float = 20.0, learn_scale: bool = True, rngs: nnx.Rngs) -> None:
        for name, value in (("num_buckets", num_buckets), ("dim", dim), ("hidden", hidden)):
            _int_at_least(value, name, 1)
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        self.table = nnx.Param(jax.random.normal(rngs.params(), (num_buckets, dim))
                               / math.sqrt(dim))
        self.idf = nnx.Variable(jnp.ones((num_buckets,), jnp.float32))
        self.query_tower = _Tower(dim, hidden, rngs=rngs)
        self.response_tower = _Tower(dim, hidden, rngs=rngs)
        log_scale = jnp.asarray(math.log(scale), jnp.float32)
        self.log_scale = nnx.Param(log_scale) if learn_scale else nnx.Variable(log_scale)

    def _pool(self, ids: jax.Array) -> jax.Array:
        weights = jnp.take(self.idf[...], jnp.maximum(ids, 0))
        return bag_lookup(self.table[...], Bags(ids, weights), combiner="sqrtn")

    def encode_queries(self, ids: jax.Array) -> jax.Array:
        """``u_Q f[B, D]`` of padded n-gram ids ``int[B, W]``."""
        return self.query_tower(self._pool(ids))

    def encode_responses(self, ids: jax.Array) -> jax.Array:
        """``u_R f[B, D]`` of padded n-gram ids ``int[B, W]``."""
        return self.response_tower(self._pool(ids))

    def __call__(self, query_ids: jax.Array, response_ids: jax.Array) -> jax.Array:
        """Scores ``s f[B, B']``: every query against every response."""
        q, r = self.encode_queries(query_ids), self.encode_responses(response_ids)
        return jnp.exp(self.log_scale[...]) * q @ r.T


def in_batch_loss(scores: jax.Array) -> jax.Array:
    """Softmax cross-entropy of each row of ``scores [B, B]`` against its diagonal entry."""
    labels = jnp.arange(scores.shape[0])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(scores, labels))


@functools.lru_cache(maxsize=8)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(3, 4))
def _train_step(graphdef: Any, tx: optax.GradientTransformation, dropout: float, params: Any,
                opt_state: Any, fixed: Any, query_ids: jax.Array, response_ids: jax.Array,
                key: jax.Array):
    """One Adam step on :func:`in_batch_loss` (``fixed``: the state that is not trained), each
    n-gram dropped with probability ``dropout``."""
    if dropout:
        keys = jax.random.split(key)
        query_ids, response_ids = (
            jnp.where(jax.random.bernoulli(k, dropout, ids.shape), PAD_ID, ids)
            for k, ids in zip(keys, (query_ids, response_ids), strict=True))

    def loss_fn(p: Any) -> jax.Array:
        return in_batch_loss(nnx.merge(graphdef, p, fixed)(query_ids, response_ids))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnums=(0, 3))
def _encode(graphdef: Any, state: Any, ids: jax.Array, side: str) -> jax.Array:
    model = nnx.merge(graphdef, state)
    return model.encode_queries(ids) if side == "query" else model.encode_responses(ids)


class RetrievalModel:
    """A :class:`NgramHasher` and a :class:`DualEncoder`: texts in, unit vectors out."""

    def __init__(self, hasher: NgramHasher, encoder: DualEncoder) -> None:
        self.hasher = hasher
        self.encoder = encoder

    @property
    def dim(self) -> int:
        """``D``, the size of the vectors."""
        return int(self.encoder.table.shape[1])

    def _encode(self, texts: Sequence[str], side: str, batch_size: int) -> np.ndarray:
        texts = text_list(texts, "texts")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        ids = self.hasher.ids(texts, width=self.hasher.max_ngrams)
        ids = np.concatenate([ids, np.full(((-len(ids)) % batch_size, ids.shape[1]), PAD_ID,
                                           np.int32)])
        graphdef, state = nnx.split(self.encoder)
        parts = [np.asarray(_encode(graphdef, state, ids[i: i + batch_size], side))
                 for i in range(0, len(ids), batch_size)]
        return np.concatenate(parts)[: len(texts)].astype(np.float32)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """``f32[N, D]`` query vectors (unit length)."""
        return self._encode(texts, "query", batch_size)

    def encode_responses(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """``f32[N, D]`` response (candidate) vectors (unit length)."""
        return self._encode(texts, "response", batch_size)

    def config(self) -> dict[str, Any]:
        """The sizes needed to rebuild the model (saved beside its parameters)."""
        enc = self.encoder
        return {"num_buckets": self.hasher.num_buckets, "max_ngrams": self.hasher.max_ngrams,
                "seed": self.hasher.seed, "dim": self.dim,
                "hidden": int(enc.query_tower.inner.out_features),
                "learn_scale": isinstance(enc.log_scale, nnx.Param),
                "scale": float(np.exp(np.asarray(enc.log_scale[...])))}

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``folder/params/`` (an orbax checkpoint) and ``folder/config.json``; an
        interrupted save leaves the previous model whole."""
        save_module(folder, self.encoder, self.config(), "dual_encoder")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RetrievalModel:
        """A model written by :meth:`save`."""
        config = read_config(folder, "dual_encoder")
        hasher = NgramHasher(config["num_buckets"], config["max_ngrams"], config["seed"])
        encoder = DualEncoder(config["num_buckets"], config["dim"], config["hidden"],
                              scale=config["scale"], learn_scale=config["learn_scale"],
                              rngs=nnx.Rngs(0))
        load_params(folder, encoder)
        return cls(hasher, encoder)


def train_dual_encoder(statements: Sequence[str], responses: Sequence[str], key: jax.Array, *,
                       num_buckets: int = 2**17, dim: int = 256, hidden: int = 512,
                       max_ngrams: int = 128, epochs: int = 10, batch_size: int = 1024,
                       learning_rate: float = 2e-3, scale: float = 20.0,
                       learn_scale: bool = True, ngram_dropout: float = 0.5, seed: int = 0,
                       init: RetrievalModel | None = None,
                       progress: bool = False) -> tuple[RetrievalModel, list[float]]:
    """Train a :class:`DualEncoder` on (statement, next sentence) pairs with in-batch negatives.

    ``key`` initialises the parameters and shuffles the pairs each epoch; ``seed`` is the
    n-gram hash seed. Batches are full (``min(batch_size, P)`` pairs; the last partial batch
    of an epoch is dropped, a different one each epoch). Returns the model and each epoch's
    mean loss.

    ``init`` fine-tunes a copy of a trained model instead (its hasher and sizes win over
    ``num_buckets``, ``dim``, ``hidden``, ``max_ngrams``, ``seed`` and ``learn_scale``; ``init``
    itself is left as it was): a bucket the model's idf already weights keeps its weight, a
    bucket first seen in these pairs gets its idf in them.
    """
    statements = text_list(statements, "statements")
    responses = text_list(responses, "responses")
    if len(statements) != len(responses):
        raise ValueError(f"{len(statements)} statements but {len(responses)} responses")
    if len(statements) < 2:
        raise ValueError("in-batch negatives need at least 2 pairs")
    _int_at_least(epochs, "epochs", 0)
    _int_at_least(batch_size, "batch_size", 2)
    if init is not None:
        config = init.config()
        num_buckets, max_ngrams = config["num_buckets"], config["max_ngrams"]
        hasher = init.hasher
    else:
        hasher = NgramHasher(num_buckets, max_ngrams, seed)
    query_ids = hasher.ids(statements, width=max_ngrams)
    response_ids = hasher.ids(responses, width=max_ngrams)
    width = bucket_width(int(max(np.sum(query_ids >= 0, 1).max(),
                                 np.sum(response_ids >= 0, 1).max())))
    query_ids, response_ids = query_ids[:, :width], response_ids[:, :width]
    init_key, shuffle_key, dropout_key = jax.random.split(key, 3)
    idf = idf_weights(np.concatenate([query_ids, response_ids]), num_buckets)
    if init is not None:
        encoder = nnx.clone(init.encoder)
        known = np.asarray(encoder.idf[...])
        idf = np.where(known > 0, known, idf)
    else:
        encoder = DualEncoder(num_buckets, dim, hidden, scale=scale, learn_scale=learn_scale,
                              rngs=nnx.Rngs(init_key))
    encoder.idf[...] = jnp.asarray(idf)
    n = len(statements)
    batch = min(batch_size, n)
    steps = n // batch
    graphdef, params, fixed = nnx.split(encoder, nnx.Param, ...)
    tx = _adam(float(learning_rate))
    opt_state = tx.init(params)
    history: list[float] = []
    with training_bar("dual encoder", epochs * steps, progress) as update:
        for epoch in range(epochs):
            order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
            total = 0.0
            for s in range(steps):
                rows = order[s * batch: (s + 1) * batch]
                params, opt_state, loss = _train_step(
                    graphdef, tx, float(ngram_dropout), params, opt_state, fixed,
                    query_ids[rows], response_ids[rows],
                    jax.random.fold_in(dropout_key, epoch * steps + s))
                value = float(loss)
                total += value
                update(epoch * steps + s + 1, value)
            history.append(total / max(steps, 1))
    nnx.update(encoder, params)
    return RetrievalModel(hasher, encoder), history
