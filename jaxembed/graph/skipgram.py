"""Skip-gram with negative sampling (SGNS): the trainer shared by DeepWalk, node2vec and word2vec.

A corpus is a set of sequences of token ids (graph walks, or sentences). For each center
``c`` and each context ``o`` within the (dynamic) window, with ``k`` noise tokens
``n_1..n_k ~ P_n``, the loss is

    ℓ(c, o) = -log σ(u_o · v_c) - Σ_j [n_j ≠ o] log σ(-u_{n_j} · v_c)

with ``v`` the input table ("syn0", the embeddings returned) and ``u`` the output table
("syn1neg"). Everything follows Mikolov's word2vec C tool:

* **noise distribution** ``P_n(w) ∝ count(w)^0.75`` (negatives equal to the positive ``o``
  are skipped, as the C code does);
* **subsampling**: token ``w`` with corpus frequency ``f = count(w)`` out of ``T`` tokens is
  kept with probability ``min(1, (sqrt(f / (s·T)) + 1) · (s·T) / f)`` (``s`` = ``sample``;
  ``s = 0`` keeps everything), drawn afresh each epoch, before the windows are formed;
* **dynamic window**: each center draws ``b ~ Uniform{0..window-1}`` and uses the reduced
  window ``window - b`` on both sides (so nearer contexts are used more often);
* **learning rate** decays linearly with the fraction of (raw) tokens processed,
  ``lr = lr0 · max(1 - done / (epochs · T), 1e-4)``;
* initial ``v ~ Uniform[-1, 1) / dim`` (gensim's range; the C tool's is half as wide, which
  learns measurably slower on short runs), ``u = 0``.

**Batched, row-sparse SGD.** Each step computes the gradient of its pairs' summed loss from
the tables as they were before the step, and only for the rows it touches, then scatter-adds
``-lr ·`` it into the donated tables (repeated rows add up) — never a dense ``V×K`` gradient.
Many steps run per ``jit`` call (``lax.scan``). Three ways to draw the noise
(``negatives_per``):

* ``"pair"`` — word2vec's exact form: each pair draws its own ``k`` negatives. Pairs are
  generated on the host (numpy, vectorized per window offset), shuffled within chunks, and
  trained ``batch_size`` pairs per step (:func:`sgns_step`):

      ∂/∂v_c = g_o u_o + Σ_j g_j u_{n_j},   ∂/∂u_o = g_o v_c,   ∂/∂u_{n_j} = g_j v_c,
      g_o = σ(u_o · v_c) - 1,   g_j = [n_j ≠ o] σ(u_{n_j} · v_c).

  A step gathers and scatters ``2 + k`` table rows per *pair*; on a CPU, XLA's scatter-add
  and gather of those rows are most of the time.
* ``"lane"`` (default) — negatives shared by a lane of centers, in the spirit of Ji et al.'s
  HogBatch (they share negatives to turn SGNS into matrix products). The token stream
  (sequences shuffled within a chunk) is cut into lanes of consecutive positions
  (:func:`center_lanes`); a step takes ``P = LANE_POSITIONS`` centers per lane with their
  window as halo. The lane draws ``N = P·k`` noise ids and center ``p`` uses all of them with
  weight ``a_pl = 1/P`` (:func:`noise_shares`), so its noise term is
  ``Σ_l a_pl c_pl log σ(-u_{n_l} · v_p)`` with ``c_pl = Σ_o [n_l ≠ o]`` (≈ ``m_p``, its
  number of pairs). Per pair the expected loss and gradient are those of the per-pair form
  (``k/N`` times ``N`` draws from ``P_n``), with the variance of ``N`` draws. A lane's logits
  are two matrix products, ``[P, K] × [K, P + 2·window]`` masked to the window band and
  ``[P, K] × [K, N]``; a step touches per *center* one ``v`` row, ``k`` noise rows and about
  one context row (:func:`sgns_center_step`) — ``window + 1`` times fewer rows than the
  per-pair form at the same number of pairs.
* ``"center"`` — the same step with each center's own ``k`` draws (``a_pl = 1`` for them,
  0 for the others'), shared by its ``m_p`` pairs: unbiased too, but the whole noise
  gradient of a center rests on ``k`` draws weighted ``m_p`` each. It was the default until
  issue 16 found it 0.06-0.07 macro-F1 below gensim on hard block models, where ``"lane"``
  matches gensim (``docs/graph.md``).

``proofs/proof_skipgram.py`` proves both steps equal to ``table - lr · jax.grad`` of their
literal loss (:func:`sgns_loss` over the listed pairs, with any non-negative shares) and the
lanes to list every window pair
exactly once. Compared with word2vec's one-pair-at-a-time Hogwild updates, a batch sums the
updates of a row that occurs several times; the default batch size is capped at ``4 · V``
pairs so that, on average, a row is touched a handful of times per step even for tiny
vocabularies.

References:
    Mikolov, Sutskever, Chen, Corrado, Dean. "Distributed Representations of Words and
    Phrases and their Compositionality". NeurIPS 2013.
    Goldberg, Levy. "word2vec Explained: deriving Mikolov et al.'s negative-sampling
    word-embedding method". arXiv:1402.3722, 2014.
    Ji, Shah, Satish, Dubey. "Parallelizing Word2Vec in Shared and Distributed Memory".
    arXiv:1604.04661, 2016.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Corpus",
    "center_lanes",
    "draw_negatives",
    "draw_reach",
    "keep_probabilities",
    "learning_rates",
    "noise_distribution",
    "noise_shares",
    "sgns_center_step",
    "sgns_loss",
    "sgns_step",
    "train_skipgram",
    "window_pairs",
]

MIN_LR_RATIO = 1e-4
"""The learning rate never decays below ``lr0 · MIN_LR_RATIO`` (as in word2vec)."""

NEGATIVES_PER = ("lane", "center", "pair")
"""How noise ids are drawn: per lane of centers (shared by all its pairs), per center
position (shared by its pairs) or per pair."""

LANE_POSITIONS = 16
"""Centers per lane per step in ``negatives_per="center"``: the logits of a lane are one
``[16, K] × [K, 16 + 2·window]`` product (8 and 16 measured alike on 2 CPU cores, 32 and 64
slower: the product computes ``16 + 2·window`` logits per center to use ``2·window``)."""


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Sequences of token ids, flattened: sequence ``s`` is ``tokens[offsets[s]:offsets[s+1]]``.

    Attributes:
        tokens: ``int32[T]`` ids in ``[0, vocab_size)``.
        offsets: ``int64[S + 1]``, non-decreasing, ``offsets[0] = 0``, ``offsets[-1] = T``.
        vocab_size: ``V``.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    vocab_size: int

    def __post_init__(self) -> None:
        tokens, offsets = np.asarray(self.tokens), np.asarray(self.offsets)
        if tokens.ndim != 1 or offsets.ndim != 1 or offsets.size < 1:
            raise ValueError("tokens and offsets must be 1-D, offsets non-empty")
        if offsets[0] != 0 or offsets[-1] != tokens.size or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"offsets must rise from 0 to len(tokens)={tokens.size}, got "
                f"{offsets[:3].tolist()}...{offsets[-3:].tolist()}"
            )
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            bad = int(np.argmax((tokens < 0) | (tokens >= self.vocab_size)))
            raise IndexError(
                f"token id {int(tokens[bad])} at position {bad} is out of range for a "
                f"vocabulary of {self.vocab_size}"
            )

    @classmethod
    def from_walks(cls, walks: Any, num_nodes: int) -> Corpus:
        """A corpus whose sequences are the rows of ``walks int[W, L]``."""
        walks = np.asarray(walks)
        if walks.ndim != 2:
            raise ValueError(f"walks must be 2-D [num_walks, walk_length], got {walks.shape}")
        offsets = np.arange(walks.shape[0] + 1, dtype=np.int64) * walks.shape[1]
        return cls(walks.reshape(-1).astype(np.int32), offsets, int(num_nodes))

    def counts(self) -> np.ndarray:
        """Occurrences of each id, ``int64[V]``."""
        return np.bincount(self.tokens, minlength=self.vocab_size)


def noise_distribution(counts: Any, power: float = 0.75) -> np.ndarray:
    """``P_n(w) = count(w)^power / Σ count^power`` (float64; ids never seen get 0)."""
    weights = np.asarray(counts, np.float64) ** power
    total = weights.sum()
    if total <= 0:
        raise ValueError("the corpus is empty: no token to draw negatives from")
    return weights / total


def keep_probabilities(counts: Any, sample: float) -> np.ndarray:
    """word2vec's subsampling keep probability per id:
    ``min(1, (sqrt(f / (s·T)) + 1) · (s·T) / f)`` with ``T = Σ counts``; ``s <= 0``: all 1."""
    counts = np.asarray(counts, np.float64)
    if sample <= 0:
        return np.ones(counts.shape)
    threshold = sample * counts.sum()
    with np.errstate(divide="ignore"):
        keep = (np.sqrt(counts / threshold) + 1.0) * threshold / counts
    return np.minimum(np.nan_to_num(keep, nan=1.0, posinf=1.0), 1.0)


def draw_reach(rng: np.random.Generator, size: int, window: int) -> np.ndarray:
    """word2vec's dynamic window: each center's reduced window ``window - b``,
    ``b ~ Uniform{0..window-1}``, as ``int64[size]``.

    A context at offset ``d`` (``1 <= d <= window``) on either side is then used with
    probability ``P(reach >= d) = (window - d + 1) / window``, so the expected number of pairs
    per interior center is ``window + 1``.
    """
    return window - rng.integers(0, window, size=size)


def learning_rates(lr: float, start: int, span: int, n_steps: int, total: int) -> np.ndarray:
    """The learning rate of each of ``n_steps`` steps that train raw tokens
    ``start .. start + span`` of ``total = epochs · T``: linear decay at the step's midpoint,

        lr_s = lr · max(1 - (start + (s + 1/2) / n_steps · span) / total, MIN_LR_RATIO),

    as word2vec and gensim decay ``alpha`` with the fraction of words processed (gensim ends
    at ``min_alpha = 1e-4``, i.e. ``lr · 0.004``; the floor here is ``lr · 1e-4``).
    """
    frac = (np.arange(n_steps) + 0.5) / max(n_steps, 1)
    return lr * np.maximum(1.0 - (start + frac * span) / total, MIN_LR_RATIO)


def window_pairs(tokens: np.ndarray, seq_ids: np.ndarray, reach: np.ndarray,
                 window: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``(center, context)`` pairs: position ``i`` pairs with ``i ± d`` for
    ``1 <= d <= reach[i]`` when both lie in the same sequence (``seq_ids`` equal).

    ``reach`` is each center's reduced window (``window - b``). Vectorized over positions,
    one pass per offset ``d = 1..window``; pairs come grouped by offset.
    """
    centers, contexts = [], []
    for d in range(1, window + 1):
        same = seq_ids[:-d] == seq_ids[d:] if d < tokens.size else np.zeros(0, bool)
        forward = same & (reach[:-d] >= d)  # center i, context i + d
        backward = same & (reach[d:] >= d)  # center i + d, context i
        centers += [tokens[:-d][forward], tokens[d:][backward]]
        contexts += [tokens[d:][forward], tokens[:-d][backward]]
    if not centers:
        empty = np.zeros(0, np.int32)
        return empty, empty
    return np.concatenate(centers), np.concatenate(contexts)


def sgns_loss(w_in: jax.Array, w_out: jax.Array, centers: jax.Array, contexts: jax.Array,
              negatives: jax.Array, mask: jax.Array,
              noise_weights: jax.Array | None = None) -> jax.Array:
    """``Σ_i mask_i · ℓ(centers_i, contexts_i)`` with ``negatives int[B, k]`` (literal form).

    ``noise_weights f[B, k]`` (default all 1) weights each noise term:
    ``ℓ_i = -log σ(u_o · v_c) - Σ_j a_ij [n_ij ≠ o] log σ(-u_{n_ij} · v_c)``.
    """
    v = w_in[centers]
    pos = jnp.sum(v * w_out[contexts], -1)
    neg = jnp.einsum("bk,bnk->bn", v, w_out[negatives])
    keep = (negatives != contexts[:, None]).astype(v.dtype)
    if noise_weights is not None:
        keep = keep * noise_weights
    per_pair = -jax.nn.log_sigmoid(pos) - jnp.sum(keep * jax.nn.log_sigmoid(-neg), -1)
    return jnp.sum(mask * per_pair)


def sgns_step(w_in: jax.Array, w_out: jax.Array, centers: jax.Array, contexts: jax.Array,
              negatives: jax.Array, mask: jax.Array, lr: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One row-sparse SGD step on :func:`sgns_loss`: only the gathered rows' gradients are
    formed, then scatter-added (see the module docstring)."""
    v = w_in[centers]  # [B, K]
    u_pos = w_out[contexts]  # [B, K]
    u_neg = w_out[negatives]  # [B, k, K]
    g_pos = (jax.nn.sigmoid(jnp.sum(v * u_pos, -1)) - 1.0) * mask
    keep = (negatives != contexts[:, None]) & (mask[:, None] > 0)
    g_neg = jnp.where(keep, jax.nn.sigmoid(jnp.einsum("bk,bnk->bn", v, u_neg)), 0.0)
    grad_v = g_pos[:, None] * u_pos + jnp.einsum("bn,bnk->bk", g_neg, u_neg)
    out_ids = jnp.concatenate([contexts, negatives.reshape(-1)])
    grad_u = jnp.concatenate([g_pos[:, None] * v,
                              (g_neg[:, :, None] * v[:, None, :]).reshape(-1, v.shape[1])])
    return w_in.at[centers].add(-lr * grad_v), w_out.at[out_ids].add(-lr * grad_u)


def noise_shares(positions: int, negative: int, negatives_per: str) -> np.ndarray:
    """The weights ``a[P, N]`` with which center ``p`` of a lane uses noise id ``l`` of the
    lane's ``N = P · k`` draws (:func:`sgns_center_step`):

    * ``"lane"``: every center uses all ``N`` draws, each with weight ``k / N = 1 / P``;
    * ``"center"``: center ``p`` uses only its own ``k`` draws ``p·k .. p·k + k - 1``,
      each with weight 1.

    Either way ``Σ_l a_pl = k``: a pair's noise term has the expectation of ``k`` draws.
    """
    if negatives_per == "lane":
        return np.full((positions, positions * negative), 1.0 / positions, np.float32)
    if negatives_per == "center":
        return np.kron(np.eye(positions, dtype=np.float32), np.ones((1, negative), np.float32))
    raise ValueError(f"noise_shares: negatives_per must be 'lane' or 'center', got "
                     f"{negatives_per!r}")


def sgns_center_step(w_in: jax.Array, w_out: jax.Array, tokens: jax.Array, seq_ids: jax.Array,
                     reach: jax.Array, negatives: jax.Array, shares: jax.Array, lr: jax.Array,
                     window: int) -> tuple[jax.Array, jax.Array]:
    """One SGD step on the pairs of ``R`` lanes of ``P`` centers, whose noise is ``N`` ids
    drawn per lane and shared among the lane's centers with weights ``shares f[P, N]``
    (``negatives_per="lane"`` or ``"center"``, :func:`noise_shares`).

    ``tokens``, ``seq_ids``, ``reach`` are ``int[R, P + 2·window]``: columns ``window ..
    window + P - 1`` are the centers, the ``window`` columns on either side their halo of
    contexts; ``seq_ids < 0`` marks padding. Center column ``p`` pairs with column ``q`` when
    ``0 < |q - p| <= reach[p]`` and ``seq_ids[q] = seq_ids[p] >= 0``; ``negatives int[R, N]``
    are the lane's noise ids. With ``c_pl = Σ_q [pair (p, q)] [n_l ≠ t_q]`` (the center's
    pairs whose context is not ``n_l``), the loss is that of :func:`sgns_loss` on these pairs,
    every pair of center ``p`` carrying the lane's ``N`` noise ids with weights ``a_pl``:

        L = Σ_(p,q) -log σ(u_{t_q}·v_{t_p}) - Σ_p Σ_l a_pl c_pl log σ(-u_{n_l}·v_{t_p}),

    and the step applies ``-lr ∇L`` row-sparsely: per center one ``v`` row, per column one
    ``u`` row, per noise id one ``u`` row — where the per-pair form scatters ``2 + k`` rows per
    *pair*. The logits of a lane are two matrix products, ``[P, K] × [K, P + 2·window]``
    (masked to the window band) and ``[P, K] × [K, N]``, so they run as dense level-3 BLAS.
    """
    tokens, seq_ids, reach = (jnp.asarray(a, jnp.int32) for a in (tokens, seq_ids, reach))
    num_cols = tokens.shape[1]
    num_centers = num_cols - 2 * window
    centers = tokens[:, window:window + num_centers]
    center_seq = seq_ids[:, window:window + num_centers, None]
    dist = jnp.arange(num_cols)[None, :] - jnp.arange(window, window + num_centers)[:, None]
    pair = ((dist != 0) & (jnp.abs(dist) <= reach[:, window:window + num_centers, None])
            & (seq_ids[:, None, :] == center_seq) & (center_seq >= 0))  # [R, P, Q]
    v = w_in[centers]  # [R, P, K]
    u = w_out[tokens]  # [R, Q, K]
    u_neg = w_out[negatives]  # [R, N, K]
    g_pos = jnp.where(pair, jax.nn.sigmoid(jnp.einsum("rpk,rqk->rpq", v, u)) - 1.0, 0.0)
    pair_f = pair.astype(v.dtype)
    hits = (tokens[:, :, None] == negatives[:, None, :]).astype(v.dtype)  # [R, Q, N]
    count = jnp.sum(pair_f, -1)[..., None] - jnp.einsum("rpq,rql->rpl", pair_f, hits)  # c_pl
    g_neg = (jnp.asarray(shares, v.dtype) * count
             * jax.nn.sigmoid(jnp.einsum("rpk,rlk->rpl", v, u_neg)))
    grad_v = jnp.einsum("rpq,rqk->rpk", g_pos, u) + jnp.einsum("rpl,rlk->rpk", g_neg, u_neg)
    grad_u = jnp.einsum("rpq,rpk->rqk", g_pos, v)
    grad_neg = jnp.einsum("rpl,rpk->rlk", g_neg, v)
    dim = v.shape[-1]
    out_ids = jnp.concatenate([tokens.reshape(-1), negatives.reshape(-1)])
    grad_out = jnp.concatenate([grad_u.reshape(-1, dim), grad_neg.reshape(-1, dim)])
    return (w_in.at[centers.reshape(-1)].add(-lr * grad_v.reshape(-1, dim)),
            w_out.at[out_ids].add(-lr * grad_out))


def center_lanes(tokens: np.ndarray, seq_ids: np.ndarray, reach: np.ndarray, window: int,
                 lanes: int, positions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay a token stream out for :func:`sgns_center_step`: ``lanes`` rows, row ``r`` owning
    the ``n = steps · positions`` consecutive stream positions from ``r · n`` (``steps`` the
    fewest that cover the stream) plus ``window`` halo positions on either side, read from the
    neighbouring rows; beyond the stream, padding (token 0, ``seq_ids`` -1, reach 0).

    Returns ``(tokens, seq_ids, reach)``, each ``int32[lanes, n + 2·window]``; step ``s`` is
    columns ``s · positions .. (s + 1) · positions + 2·window``. Every ``(center, context)``
    pair of :func:`window_pairs` on the stream is the pair of exactly one center column.
    """
    size = int(tokens.size)
    steps = max(1, -(-size // (lanes * positions)))
    n = steps * positions
    cols = np.arange(lanes)[:, None] * n + np.arange(n + 2 * window)[None, :]
    out = []
    for values, fill in ((tokens, 0), (seq_ids, -1), (reach, 0)):
        stream = np.full(lanes * n + 2 * window, fill, np.int32)
        stream[window:window + size] = values
        out.append(stream[cols])
    return out[0], out[1], out[2]


def draw_negatives(key: jax.Array, cdf: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Ids ``~ P_n`` by inverse transform: the first ``w`` with ``cdf[w] > U``, ``U ~ U[0, 1)``
    (``cdf`` the running sum of :func:`noise_distribution`), as ``int32[shape]``."""
    u = jax.random.uniform(key, shape)
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1).astype(jnp.int32)


@partial(jax.jit, static_argnames=("negative",), donate_argnums=(0, 1))
def _train_steps(w_in: jax.Array, w_out: jax.Array, centers: jax.Array, contexts: jax.Array,
                 mask: jax.Array, lrs: jax.Array, cdf: jax.Array, key: jax.Array,
                 negative: int) -> tuple[jax.Array, jax.Array]:
    """``S`` SGD steps (``centers/contexts/mask [S, B]``, ``lrs [S]``), negatives drawn from
    the noise CDF by inverse transform."""
    def step(tables: tuple[jax.Array, jax.Array], batch: tuple[Any, ...]) -> tuple[Any, None]:
        c, o, m, lr, s = batch
        neg = draw_negatives(jax.random.fold_in(key, s), cdf, (c.shape[0], negative))
        return sgns_step(*tables, c, o, neg, m, lr), None

    steps = jnp.arange(centers.shape[0])
    (w_in, w_out), _ = jax.lax.scan(step, (w_in, w_out), (centers, contexts, mask, lrs, steps))
    return w_in, w_out


@partial(jax.jit, static_argnames=("window", "positions"), donate_argnums=(0, 1))
def _train_center_steps(w_in: jax.Array, w_out: jax.Array, tokens: jax.Array,
                        seq_ids: jax.Array, reach: jax.Array, lrs: jax.Array, cdf: jax.Array,
                        key: jax.Array, shares: jax.Array, window: int,
                        positions: int) -> tuple[jax.Array, jax.Array]:
    """``S`` :func:`sgns_center_step` steps over lanes ``[R, S · positions + 2·window]``
    (step ``s`` reads its window of columns), ``N = shares.shape[1]`` noise ids drawn per
    lane."""
    lanes = tokens.shape[0]

    def step(tables: tuple[jax.Array, jax.Array], batch: tuple[Any, ...]) -> tuple[Any, None]:
        lr, s = batch
        cols = [jax.lax.dynamic_slice_in_dim(a, s * positions, positions + 2 * window, 1)
                for a in (tokens, seq_ids, reach)]
        neg = draw_negatives(jax.random.fold_in(key, s), cdf, (lanes, shares.shape[1]))
        return sgns_center_step(*tables, *cols, neg, shares, lr, window), None

    steps = jnp.arange(lrs.shape[0])
    (w_in, w_out), _ = jax.lax.scan(step, (w_in, w_out), (lrs, steps))
    return w_in, w_out


def _host_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded deterministically from a jax key."""
    data = np.asarray(jax.random.key_data(key)).astype(np.uint64).reshape(-1)
    return np.random.default_rng(data.tolist())


def train_skipgram(
    corpus: Corpus,
    key: jax.Array,
    *,
    dim: int = 128,
    window: int = 10,
    negative: int = 5,
    sample: float = 0.0,
    epochs: int = 1,
    lr: float = 0.025,
    batch_size: int | None = None,
    chunk_tokens: int = 1 << 18,
    steps_per_call: int = 64,
    negatives_per: str = "lane",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Train SGNS on ``corpus``; returns ``(w_in, w_out)``, both ``float32[V, dim]``.

    ``w_in`` is the embedding table. ``batch_size`` defaults to ``min(8192, max(64, 4·V))``
    pairs per SGD step. Sequences are processed in chunks of about ``chunk_tokens`` tokens.
    ``negatives_per`` chooses how noise is drawn:

    * ``"lane"`` (default): ``LANE_POSITIONS · negative`` ids per lane of consecutive
      centers, shared by all the lane's pairs with weight ``1 / LANE_POSITIONS``
      (:func:`sgns_center_step`, :func:`noise_shares`); a step covers about
      ``batch_size / (window + 1)`` centers (the mean number of pairs per center is
      ``window + 1``), laid out in lanes of consecutive positions (sequence order shuffled
      within a chunk);
    * ``"center"``: the same lanes, ``negative`` ids per center position shared by that
      center's pairs (the default before issue 16: noisier, and worse on hard graphs);
    * ``"pair"``: ``negative`` fresh ids per pair, exactly as word2vec (:func:`sgns_step`),
      ``batch_size`` pairs per step, shuffled within a chunk.

    ``progress(done, total)`` is called after each chunk with raw tokens processed over
    ``epochs · T``. Same key, same tables.

    Raises:
        ValueError: a non-positive ``dim``, ``window``, ``epochs``, ``lr`` or ``batch_size``,
            a negative ``negative`` or ``sample``, an unknown ``negatives_per``, or an empty
            corpus.
    """
    for name, value in (("dim", dim), ("window", window), ("epochs", epochs),
                        ("steps_per_call", steps_per_call)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if int(negative) < 0:
        raise ValueError(f"negative must be >= 0, got {negative}")
    if not (np.isfinite(sample) and sample >= 0):
        raise ValueError(f"sample must be finite and >= 0, got {sample}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr}")
    if negatives_per not in NEGATIVES_PER:
        raise ValueError(f"negatives_per must be one of {NEGATIVES_PER}, got {negatives_per!r}")
    vocab = corpus.vocab_size
    if batch_size is None:
        batch_size = min(8192, max(64, 4 * vocab))
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    counts = corpus.counts()
    total = int(counts.sum())
    if total == 0:
        raise ValueError("the corpus is empty: no token to train on")
    keep_prob = keep_probabilities(counts, sample)
    cdf = jnp.asarray(np.cumsum(noise_distribution(counts)), jnp.float32)
    rng = _host_rng(jax.random.fold_in(key, 1))
    k_init, k_neg = jax.random.split(jax.random.fold_in(key, 0))
    w_in = jax.random.uniform(k_init, (vocab, dim), jnp.float32, -1.0, 1.0) / dim
    w_out = jnp.zeros((vocab, dim), jnp.float32)
    centers_per_step = max(1, round(int(batch_size) / (window + 1)))
    positions = min(LANE_POSITIONS, centers_per_step)
    lanes = -(-centers_per_step // positions)
    shares = (jnp.asarray(noise_shares(positions, int(negative), negatives_per))
              if negatives_per != "pair" else None)
    bounds = _chunk_bounds(corpus.offsets, chunk_tokens)
    call = 0
    for epoch in range(int(epochs)):
        for lo, hi in itertools.pairwise(bounds):
            toks, seqs = _chunk(corpus, lo, hi, rng if negatives_per != "pair" else None)
            kept = rng.random(toks.size) < keep_prob[toks]
            toks, seqs = toks[kept], seqs[kept]
            reach = draw_reach(rng, toks.size, window)
            start = epoch * total + lo
            if negatives_per == "pair":
                centers, contexts = window_pairs(toks, seqs, reach, window)
                order = rng.permutation(centers.size)
                centers, contexts = centers[order], contexts[order]
                n_steps = -(-centers.size // batch_size)
            else:
                lane_cols = center_lanes(toks, seqs, reach, window, lanes, positions)
                n_steps = (lane_cols[0].shape[1] - 2 * window) // positions
            lrs = learning_rates(lr, start, hi - lo, n_steps, epochs * total)
            for s0 in range(0, n_steps, steps_per_call):
                s1 = min(n_steps, s0 + steps_per_call)
                step_key = jax.random.fold_in(k_neg, call)
                if negatives_per == "pair":
                    c, o, m, r = _pack(centers, contexts, lrs, s0, s1, batch_size)
                    w_in, w_out = _train_steps(w_in, w_out, c, o, m, r, cdf, step_key,
                                               int(negative))
                else:
                    cols, r = _pack_lanes(lane_cols, lrs, s0, s1, positions, window)
                    w_in, w_out = _train_center_steps(w_in, w_out, *cols, r, cdf, step_key,
                                                      shares, int(window), positions)
                call += 1
            if progress is not None:
                progress(epoch * total + hi, epochs * total)
    return w_in, w_out


def _chunk(corpus: Corpus, lo: int, hi: int,
           rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Tokens ``lo..hi`` (whole sequences) and their sequence numbers; with ``rng``, the
    sequences in shuffled order."""
    first, last = np.searchsorted(corpus.offsets, [lo, hi])
    starts = corpus.offsets[first:last].astype(np.int64)
    lengths = np.diff(corpus.offsets[first:last + 1])
    seqs = np.arange(first, last, dtype=np.int64)
    if rng is not None:
        order = rng.permutation(seqs.size)
        starts, lengths, seqs = starts[order], lengths[order], seqs[order]
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    index = shift + np.arange(hi - lo)
    return corpus.tokens[index], np.repeat(seqs, lengths).astype(np.int32)


def _chunk_bounds(offsets: np.ndarray, chunk_tokens: int) -> list[int]:
    """Token positions splitting the corpus at sequence boundaries, about ``chunk_tokens``
    apart (a longer sequence is a chunk of its own)."""
    bounds = [0]
    end = int(offsets[-1])
    while bounds[-1] < end:
        target = bounds[-1] + max(1, int(chunk_tokens))
        i = int(np.searchsorted(offsets, target, side="right")) - 1
        nxt = int(offsets[i]) if int(offsets[i]) > bounds[-1] else None
        if nxt is None:  # one sequence longer than a chunk: take it whole
            nxt = int(offsets[np.searchsorted(offsets, bounds[-1], side="right")])
        bounds.append(min(nxt, end))
    return bounds


def _pack(centers: np.ndarray, contexts: np.ndarray, lrs: np.ndarray, s0: int, s1: int,
          batch: int) -> tuple[jax.Array, ...]:
    """Steps ``s0..s1`` as ``[S, B]`` arrays; ``S`` rounded up to a power of two (fewer
    compiles), the padding masked out."""
    steps = 1 << (s1 - s0 - 1).bit_length()
    size = steps * batch
    c = np.zeros(size, np.int32)
    o = np.zeros(size, np.int32)
    m = np.zeros(size, np.float32)
    part_c = centers[s0 * batch: s1 * batch]
    n = part_c.size
    c[:n], o[:n], m[:n] = part_c, contexts[s0 * batch: s0 * batch + n], 1.0
    r = np.zeros(steps, np.float32)
    r[: s1 - s0] = lrs[s0:s1]
    return (jnp.asarray(c.reshape(steps, batch)), jnp.asarray(o.reshape(steps, batch)),
            jnp.asarray(m.reshape(steps, batch)), jnp.asarray(r))


def _pack_lanes(lane_cols: tuple[np.ndarray, ...], lrs: np.ndarray, s0: int, s1: int,
                positions: int, window: int) -> tuple[tuple[jax.Array, ...], jax.Array]:
    """Steps ``s0..s1`` of :func:`center_lanes` columns, the step count rounded up to a power
    of two (fewer compiles) with padding columns (``seq_ids`` -1) that train nothing."""
    steps = 1 << (s1 - s0 - 1).bit_length()
    width = steps * positions + 2 * window
    cols = []
    for values, fill in zip(lane_cols, (0, -1, 0), strict=True):
        part = values[:, s0 * positions: s1 * positions + 2 * window]
        out = np.full((values.shape[0], width), fill, np.int32)
        out[:, :part.shape[1]] = part
        cols.append(jnp.asarray(out))
    r = np.zeros(steps, np.float32)
    r[: s1 - s0] = lrs[s0:s1]
    return tuple(cols), jnp.asarray(r)
