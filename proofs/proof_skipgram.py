"""Skip-gram with negative sampling: the row-sparse step is dense SGD on the SGNS loss, and the
pairs, negatives and subsampling follow word2vec.

Equations (:mod:`jaxembed.graph.skipgram`):

    ℓ(c, o) = -log σ(u_o · v_c) - Σ_j [n_j ≠ o] log σ(-u_{n_j} · v_c)             (loss)
    (v, u) ← (v, u) - lr · ∇ Σ_i mask_i ℓ(c_i, o_i)                               (step)
    (v, u) ← (v, u) - lr · ∇ Σ_(p,q) ℓ(t_p, t_q; n, a_p)   lane noise n, shares a   (lane)
    a_pl = 1/P (lane) or [l in center p's own k] (center), Σ_l a_pl = k            (shares)
    lanes: every window pair is the pair of exactly one lane center column        (layout)
    pairs  = {(t_i, t_{i±d}) : 1 <= d <= reach_i, same sequence}                   (window)
    reach_i = W - b_i, b_i ~ U{0..W-1}:  P(offset d used) = (W - d + 1) / W          (dynamic)
    lr_s = lr0 · max(1 - (start + (s + 1/2)/n · span) / (epochs·T), 1e-4)            (schedule)
    P(n = w) = count(w)^0.75 / Σ count^0.75                                        (noise)
    keep(w) = min(1, (sqrt(f / (s·T)) + 1) · (s·T) / f)                            (subsampling)

The step's fast path forms gradients only for gathered rows and scatter-adds them; the literal
reference is ``table - lr * jax.grad(sgns_loss)`` over the whole tables, and the loss itself is
checked against a float64 loop. The lane step (``negatives_per="lane"`` / ``"center"``: lanes
of centers, matrix products of logits per lane, a lane's noise ids shared by its centers with
weights ``a``) is checked the same way against ``sgns_loss`` on the pairs listed by a plain
loop over its lanes, each pair carrying the lane's noise ids weighted by its center's shares
(arbitrary non-negative shares, so both modes and any bug in the weighting are covered); the
lane layout is checked to list each window pair once.
Ids repeat (centers, contexts and negatives collide, and negatives equal their positive) and
some pairs are masked or padded, so every accumulation rule is hit.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2

from jaxembed.graph.skipgram import (
    _train_center_steps,
    center_lanes,
    draw_negatives,
    draw_reach,
    keep_probabilities,
    learning_rates,
    noise_distribution,
    noise_shares,
    sgns_center_step,
    sgns_loss,
    sgns_step,
    window_pairs,
)

VOCAB = 16  # one shape bucket (so jit compiles once); collisions come from the id pool
BATCH = 16
NEGATIVES = 3
DIM = 4
LANES, CENTERS, WINDOW = 3, 5, 2  # center-step bucket: 3 lanes of 5 centers, halo 2
COLS = CENTERS + 2 * WINDOW
MAX_PAIRS = LANES * CENTERS * 2 * WINDOW


@st.composite
def center_batches(draw):
    """Tables ``[16, 4]`` and lanes ``[3, 9]`` for :func:`sgns_center_step`: ids from a pool
    of 1..16 (so centers, contexts and negatives collide), 1..3 sequences per lane with
    padding (``seq_ids`` -1) at either end, reach 0..2, ``5 · 3`` noise ids per lane with
    random non-negative shares ``[5, 15]`` (some zero)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = draw(st.integers(1, VOCAB))
    w_in = rng.normal(0, 0.5, (VOCAB, DIM)).astype(np.float32)
    w_out = rng.normal(0, 0.5, (VOCAB, DIM)).astype(np.float32)
    tokens = rng.integers(0, pool, (LANES, COLS)).astype(np.int32)
    seq_ids = np.sort(rng.integers(0, 3, (LANES, COLS)), axis=1).astype(np.int32)
    for row in seq_ids:
        lead, tail = rng.integers(0, COLS + 1, 2)
        row[:min(lead, COLS // 2)] = -1
        row[COLS - min(tail, COLS // 2):] = -1
    reach = rng.integers(0, WINDOW + 1, (LANES, COLS)).astype(np.int32)
    negatives = rng.integers(0, pool, (LANES, CENTERS * NEGATIVES)).astype(np.int32)
    shares = rng.uniform(0, 1, (CENTERS, CENTERS * NEGATIVES)) * (rng.random((CENTERS, 1)) > 0.2)
    lr = draw(st.sampled_from([0.025, 0.1, 1.0]))
    return w_in, w_out, tokens, seq_ids, reach, negatives, shares.astype(np.float32), \
        np.float32(lr)


def _literal_lane_pairs(tokens, seq_ids, reach, window):
    """``[(lane, center column, context column)]``: a plain loop over every center column."""
    pairs = []
    for r in range(tokens.shape[0]):
        for p in range(window, tokens.shape[1] - window):
            for q in range(tokens.shape[1]):
                if (q != p and abs(q - p) <= reach[r, p] and seq_ids[r, p] >= 0
                        and seq_ids[r, q] == seq_ids[r, p]):
                    pairs.append((r, p, q))
    return pairs


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


_center_step = jax.jit(sgns_center_step, static_argnames="window")


@given(center_batches())
def test_lane_step_is_dense_sgd_on_shared_negatives(batch):
    """sgns_center_step(v, u) = (v, u) - lr ∇ Σ_(p,q) ℓ(t_p, t_q; n, a_p): the pairs listed by
    a loop over the lanes, each with its lane's noise ids weighted by its center's shares,
    through the literal sgns_loss."""
    w_in, w_out, tokens, seq_ids, reach, negatives, shares, lr = batch
    pairs = _literal_lane_pairs(tokens, seq_ids, reach, WINDOW)
    pool = negatives.shape[1]
    centers = np.zeros(MAX_PAIRS, np.int32)
    contexts = np.zeros(MAX_PAIRS, np.int32)
    negs = np.zeros((MAX_PAIRS, pool), np.int32)
    weights = np.zeros((MAX_PAIRS, pool), np.float32)
    mask = np.zeros(MAX_PAIRS, np.float32)
    for i, (r, p, q) in enumerate(pairs):
        centers[i], contexts[i], negs[i], mask[i] = tokens[r, p], tokens[r, q], \
            negatives[r], 1.0
        weights[i] = shares[p - WINDOW]
    _, (g_in, g_out) = _loss_grad(w_in, w_out, centers, contexts, negs, mask, weights)
    new_in, new_out = _center_step(jnp.asarray(w_in), jnp.asarray(w_out), tokens, seq_ids,
                                   reach, negatives, shares, lr, window=WINDOW)
    np.testing.assert_allclose(new_in, w_in - lr * np.asarray(g_in), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new_out, w_out - lr * np.asarray(g_out), rtol=1e-5, atol=1e-5)


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 3]), st.sampled_from([1, 2, 3]),
       st.sampled_from([1, 2, 4]), st.sampled_from([0, 1, 7, 30]))
def test_center_lanes_list_every_window_pair_once(seed, window, lanes, positions, length):
    """Over all lane center columns, the pairs are exactly window_pairs of the stream (as a
    multiset: none lost at a lane or step boundary, none doubled by the halos)."""
    rng = np.random.default_rng(seed)
    tokens = np.arange(length, dtype=np.int32)  # distinct ids: a pair names its positions
    seq_ids = np.sort(rng.integers(0, 4, length))
    reach = rng.integers(1, window + 1, length)
    tok, seq, rch = center_lanes(tokens, seq_ids, reach, window, lanes, positions)
    assert tok.shape == seq.shape == rch.shape and tok.shape[0] == lanes
    assert (tok.shape[1] - 2 * window) % positions == 0
    assert (tok.shape[1] - 2 * window) * lanes >= length
    listed = sorted((int(tok[r, p]), int(tok[r, q]))
                    for r, p, q in _literal_lane_pairs(tok, seq, rch, window))
    centers, contexts = window_pairs(tokens, seq_ids, reach, window)
    assert listed == sorted(zip(centers.tolist(), contexts.tolist(), strict=True))


@given(st.integers(0, 2**32 - 1))
def test_center_scan_is_the_loop_of_steps(seed):
    """The jitted scan over steps (column windows cut by step, one lr per step) equals
    sgns_center_step applied step by step (negative = 0: no random draws to line up)."""
    rng = np.random.default_rng(seed)
    steps = 4
    tokens = rng.integers(0, VOCAB, (LANES, steps * CENTERS + 2 * WINDOW)).astype(np.int32)
    seq_ids = np.sort(rng.integers(0, 3, tokens.shape), axis=1).astype(np.int32)
    reach = rng.integers(1, WINDOW + 1, tokens.shape).astype(np.int32)
    lrs = rng.uniform(0.01, 0.5, steps).astype(np.float32)
    w_in = rng.normal(0, 0.5, (VOCAB, DIM)).astype(np.float32)
    w_out = rng.normal(0, 0.5, (VOCAB, DIM)).astype(np.float32)
    cdf = jnp.linspace(1.0 / VOCAB, 1.0, VOCAB)
    no_shares = np.zeros((CENTERS, 0), np.float32)
    scanned = _train_center_steps(jnp.asarray(w_in), jnp.asarray(w_out), tokens, seq_ids,
                                  reach, lrs, cdf, jax.random.key(0), no_shares, WINDOW,
                                  CENTERS)
    tables = (jnp.asarray(w_in), jnp.asarray(w_out))
    no_negatives = np.zeros((LANES, 0), np.int32)
    for s in range(steps):
        cut = slice(s * CENTERS, (s + 1) * CENTERS + 2 * WINDOW)
        tables = _center_step(*tables, tokens[:, cut], seq_ids[:, cut], reach[:, cut],
                              no_negatives, no_shares, lrs[s], window=WINDOW)
    for got, want in zip(scanned, tables, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@given(st.sampled_from([1, 3, 16]), st.sampled_from([0, 1, 5]))
def test_noise_shares(positions, negative):
    """Lane: every center weights each of the lane's P·k draws by 1/P; center: its own k
    draws by 1, the others' by 0. Both give each center a total weight of k."""
    lane = noise_shares(positions, negative, "lane")
    center = noise_shares(positions, negative, "center")
    for p in range(positions):
        for l in range(positions * negative):
            assert lane[p, l] == np.float32(1 / positions)
            assert center[p, l] == (1.0 if l // negative == p else 0.0)
    np.testing.assert_allclose(lane.sum(1), negative, rtol=1e-6)
    np.testing.assert_allclose(center.sum(1), negative)


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


@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 5, 10]))
def test_dynamic_window_uses_offset_d_with_probability_w_minus_d_plus_1_over_w(seed, window):
    """On one long sequence of distinct ids, the share of interior centers that pair with their
    neighbour at offset d (on one side) is (W - d + 1) / W, within 6 binomial sigmas; d > W
    never pairs. This is gensim's and word2vec's reduced window, b ~ U{0..W-1}."""
    rng = np.random.default_rng(seed)
    length = 20_000
    reach = draw_reach(rng, length, window)
    assert reach.min() >= 1 and reach.max() <= window
    tokens = np.arange(length, dtype=np.int32)
    centers, contexts = window_pairs(tokens, np.zeros(length, np.int64), reach, window)
    forward = contexts - centers
    interior = (centers >= window) & (centers < length - window)
    n = length - 2 * window
    for d in range(1, window + 2):
        used = int(np.sum(interior & (forward == d)))
        p = max(window - d + 1, 0) / window
        assert abs(used - n * p) <= 6 * math.sqrt(n * p * (1 - p)) + 1e-9, (d, used, n * p)


@given(st.floats(1e-3, 1.0), st.integers(1, 4), st.integers(1, 5), st.integers(1, 40))
def test_learning_rates_decay_linearly_over_all_tokens(lr, epochs, chunks, steps):
    """Chunks of a run (each ``span`` tokens, ``steps`` steps) get the literal
    lr0 · max(1 - (start + (s + 1/2)/n · span)/(epochs · T), 1e-4); over the run the rates
    fall monotonically from about lr0 to about 0, and their mean is lr0 / 2 (a linear ramp)."""
    span = 1000
    total = epochs * chunks * span
    run = []
    for c in range(epochs * chunks):
        got = learning_rates(lr, c * span, span, steps, total)
        for s_, value in enumerate(got.tolist()):
            done = c * span + (s_ + 0.5) / steps * span
            assert math.isclose(value, lr * max(1 - done / total, 1e-4), rel_tol=1e-12)
        run += got.tolist()
    assert all(a >= b for a, b in itertools.pairwise(run))
    assert run[0] <= lr and run[0] >= lr * (1 - 1 / (epochs * chunks * steps))
    assert math.isclose(float(np.mean(run)), lr / 2, rel_tol=1e-3, abs_tol=1e-12)
