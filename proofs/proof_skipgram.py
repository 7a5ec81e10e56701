"""Skip-gram with negative sampling: the row-sparse step is dense SGD on the SGNS loss, and the
pairs, negatives and subsampling follow word2vec.

Equations (:mod:`jaxembed.graph.skipgram`):

    ℓ(c, o) = -log σ(u_o · v_c) - Σ_j [n_j ≠ o] log σ(-u_{n_j} · v_c)             (loss)
    (v, u) ← (v, u) - lr · ∇ Σ_i mask_i ℓ(c_i, o_i)                               (step)
    pairs  = {(t_i, t_{i±d}) : 1 <= d <= reach_i, same sequence}                   (window)
    P(n = w) = count(w)^0.75 / Σ count^0.75                                        (noise)
    keep(w) = min(1, (sqrt(f / (s·T)) + 1) · (s·T) / f)                            (subsampling)

The step's fast path forms gradients only for gathered rows and scatter-adds them; the literal
reference is ``table - lr * jax.grad(sgns_loss)`` over the whole tables, and the loss itself is
checked against a float64 loop. Ids repeat (centers, contexts and negatives collide, and
negatives equal their positive) and some pairs are masked, so every accumulation rule is hit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2

from jaxembed.graph.skipgram import (
    draw_negatives,
    keep_probabilities,
    noise_distribution,
    sgns_loss,
    sgns_step,
    window_pairs,
)

VOCAB = 16  # one shape bucket (so jit compiles once); collisions come from the id pool
BATCH = 16
NEGATIVES = 3
DIM = 4


@st.composite
def sgns_batches(draw):
    """Tables ``[16, 4]`` and a batch of 16 pairs with 3 negatives each, ids drawn from a pool
    of 1..16 ids so that they collide; about a quarter masked."""
    vocab = VOCAB
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = draw(st.integers(1, vocab))
    w_in = rng.normal(0, 0.5, (vocab, DIM)).astype(np.float32)
    w_out = rng.normal(0, 0.5, (vocab, DIM)).astype(np.float32)
    centers = rng.integers(0, pool, BATCH).astype(np.int32)
    contexts = rng.integers(0, pool, BATCH).astype(np.int32)
    negatives = rng.integers(0, pool, (BATCH, NEGATIVES)).astype(np.int32)
    mask = (rng.random(BATCH) > 0.25).astype(np.float32)
    lr = draw(st.sampled_from([0.025, 0.1, 1.0]))
    return w_in, w_out, centers, contexts, negatives, mask, np.float32(lr)


def _literal_loss(w_in, w_out, centers, contexts, negatives, mask) -> float:
    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))

    total = 0.0
    for i in range(len(centers)):
        if mask[i] == 0:
            continue
        v = w_in[centers[i]].astype(np.float64)
        total -= log_sigmoid(float(v @ w_out[contexts[i]]))
        for n in negatives[i]:
            if n != contexts[i]:
                total -= log_sigmoid(-float(v @ w_out[n]))
    return total


_step = jax.jit(sgns_step)
_loss_grad = jax.jit(jax.value_and_grad(sgns_loss, argnums=(0, 1)))


@given(sgns_batches())
def test_sparse_step_is_dense_sgd(batch):
    """sgns_step(v, u) = (v, u) - lr ∇ Σ mask·ℓ, and Σ mask·ℓ equals the float64 loop."""
    w_in, w_out, centers, contexts, negatives, mask, lr = batch
    loss, (g_in, g_out) = _loss_grad(w_in, w_out, centers, contexts, negatives, mask)
    np.testing.assert_allclose(
        float(loss), _literal_loss(w_in, w_out, centers, contexts, negatives, mask),
        rtol=1e-5, atol=1e-5)
    new_in, new_out = _step(jnp.asarray(w_in), jnp.asarray(w_out), centers, contexts,
                            negatives, mask, lr)
    np.testing.assert_allclose(new_in, w_in - lr * np.asarray(g_in), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_out, w_out - lr * np.asarray(g_out), rtol=1e-5, atol=1e-6)


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 5]), st.sampled_from([1, 7, 30]))
def test_window_pairs_are_the_literal_windows(seed, window, length):
    """Position i pairs with i ± d for 1 <= d <= reach_i inside its own sequence."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 5, length).astype(np.int32)
    seq_ids = np.sort(rng.integers(0, 3, length))
    reach = rng.integers(1, window + 1, length)
    centers, contexts = window_pairs(tokens, seq_ids, reach, window)
    expected = [
        (int(tokens[i]), int(tokens[j]))
        for i in range(length)
        for j in range(length)
        if i != j and abs(i - j) <= reach[i] and seq_ids[i] == seq_ids[j]
    ]
    assert sorted(zip(centers.tolist(), contexts.tolist(), strict=True)) == sorted(expected)


@given(st.integers(0, 2**32 - 1), st.sampled_from([3, 16, 33]))
def test_negatives_follow_unigram_075(seed, vocab):
    """Inverse-transform negatives fit count^0.75 / Σ count^0.75 (chi-square, α = 1e-6);
    ids of count 0 are never drawn."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, vocab) ** 2
    counts[0] = max(int(counts[0]), 1)
    probs = noise_distribution(counts)
    literal = np.array([c**0.75 for c in counts.tolist()]) / sum(c**0.75 for c in counts)
    np.testing.assert_allclose(probs, literal, rtol=1e-12)
    cdf = jnp.asarray(np.cumsum(probs), jnp.float32)
    samples = np.asarray(draw_negatives(jax.random.key(seed % 2**31), cdf, (40000,)))
    drawn = np.bincount(samples, minlength=vocab)
    assert drawn[probs == 0].sum() == 0
    support = probs > 1e-4  # float32 cdf steps below this are at the rounding level
    expected = samples.size * probs[support]
    stat = float(np.sum((drawn[support] - expected) ** 2 / expected))
    dof = int(support.sum()) - 1
    assert dof == 0 or stat <= chi2.ppf(1 - 1e-6, dof), (stat, dof)


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=20),
       st.sampled_from([0.0, 1e-5, 1e-3, 0.1]))
def test_subsampling_keep_probability(counts, sample):
    """keep(w) is the word2vec C expression, clipped to 1; sample = 0 keeps everything."""
    keep = keep_probabilities(np.array(counts), sample)
    total = sum(counts)
    for c, k in zip(counts, keep.tolist(), strict=True):
        if sample == 0:
            assert k == 1.0
        else:
            ran = (math.sqrt(c / (sample * total)) + 1) * (sample * total) / c
            assert math.isclose(k, min(ran, 1.0), rel_tol=1e-12)
