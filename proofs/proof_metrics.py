"""Proofs for :mod:`jaxembed.metrics`: the sorted, vectorized metrics against their literal
definitions.

Equations proven (``P``/``N`` positives/negatives, ``w`` weights):

* AUC = Σ_{i∈P} Σ_{j∈N} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (Σ_P w · Σ_N w)   (pairwise)
* AUC = (R⁺ − |P|(|P| + 1)/2) / (|P||N|) with tie-averaged ranks R   (Mann–Whitney)
* GAUC = Σ_u n_u AUC_u / Σ_u n_u over groups holding both classes
* LL = −(1/n) Σ y log p + (1 − y) log(1 − p), p clipped to [ε, 1 − ε]
* NE = LL / H(ȳ);  C = Σ p / Σ y
* AUC is invariant under strictly increasing maps of the scores, and
  AUC(y, −s) = AUC(1 − y, s) = 1 − AUC(y, s).

Data are drawn with many ties (scores from a pool of 1 to 4 values), ``±0.0`` and ``±inf``
scores, zero weights and single-class groups. No gradient is checked: AUC is piecewise
constant in the scores and the metrics are host-side numpy evaluation code, not a training
path.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxembed import metrics

SIZES = (2, 3, 8, 21, 64)
SCORE_POOLS = (
    (0.0,),
    (0.0, -0.0, 1.0),
    (-math.inf, 0.5, 0.25, math.inf),
    (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0),
)


@st.composite
def labeled_scores(draw, weighted: bool = False, both_classes: bool = True):
    """``(labels int8[n], scores float64[n], weights or None)`` with many ties.

    Half the time scores come from a tiny pool (so most pairs tie), else continuous normals
    rounded to quarters (some ties). ``both_classes`` forces at least one 0 and one 1 label
    with positive weight.
    """
    n = draw(st.sampled_from(SIZES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rate = draw(st.sampled_from([0.05, 0.3, 0.5, 0.9]))
    labels = (rng.random(n) < rate).astype(np.int8)
    if draw(st.booleans()):
        pool = np.array(draw(st.sampled_from(SCORE_POOLS)))
        scores = pool[rng.integers(0, pool.size, n)]
    else:
        scores = np.round(rng.normal(0.0, 2.0, n) * 4.0) / 4.0
    weights = None
    if weighted:
        weights = rng.choice([0.0, 0.5, 1.0, 3.0], size=n)
    if both_classes:
        labels[0], labels[1] = 1, 0
        if weights is not None:
            weights[:2] = 1.0
    return labels, scores, weights


def pairwise_auc(labels, scores, weights=None) -> float:
    """Literal O(n²) definition: every (positive, negative) pair, ties count one half."""
    w = np.ones(len(labels)) if weights is None else weights
    num = den = 0.0
    for i in range(len(labels)):
        for j in range(len(labels)):
            if labels[i] == 1 and labels[j] == 0:
                pair = w[i] * w[j]
                den += pair
                if scores[i] > scores[j]:
                    num += pair
                elif scores[i] == scores[j]:
                    num += 0.5 * pair
    return num / den


def rank_auc(labels, scores) -> float:
    """Mann–Whitney U from tie-averaged 1-based ranks, computed by literal counting."""
    n = len(scores)
    ranks = [
        sum(scores[j] < scores[i] for j in range(n))
        + (sum(scores[j] == scores[i] for j in range(n)) + 1) / 2
        for i in range(n)
    ]
    n_pos = int(np.sum(labels))
    n_neg = n - n_pos
    r_pos = sum(r for r, y in zip(ranks, labels, strict=True) if y == 1)
    return (r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@given(labeled_scores(weighted=False))
def test_auc_equals_pairwise_definition(data):
    """AUC = Σ_{P×N} ([s_i > s_j] + ½[s_i = s_j]) / (|P||N|)."""
    labels, scores, _ = data
    assert math.isclose(
        metrics.auc(labels, scores), pairwise_auc(labels, scores), rel_tol=1e-12, abs_tol=1e-12
    )


@given(labeled_scores(weighted=True))
def test_weighted_auc_equals_pairwise_definition(data):
    """AUC = Σ_{P×N} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (Σ_P w · Σ_N w)."""
    labels, scores, weights = data
    assert math.isclose(
        metrics.auc(labels, scores, weights),
        pairwise_auc(labels, scores, weights),
        rel_tol=1e-12,
        abs_tol=1e-12,
    )


@given(labeled_scores(weighted=False))
def test_auc_equals_average_rank_formula(data):
    """AUC = (R⁺ − |P|(|P| + 1)/2) / (|P||N|), ranks averaged over ties."""
    labels, scores, _ = data
    assert math.isclose(
        metrics.auc(labels, scores), rank_auc(labels, scores), rel_tol=1e-12, abs_tol=1e-12
    )


@given(labeled_scores(weighted=True), st.sampled_from(["exp", "affine", "cube"]))
def test_auc_invariances(data, transform):
    """AUC(y, f(s)) = AUC(y, s) for strictly increasing f; AUC(y, −s) = 1 − AUC(y, s) =
    AUC(1 − y, s)."""
    labels, scores, weights = data
    finite = np.where(np.isfinite(scores), scores, np.sign(scores) * 50.0)
    f = {"exp": np.exp, "affine": lambda x: 3.0 * x - 7.0, "cube": lambda x: x**3}[transform]
    base = metrics.auc(labels, finite, weights)
    assert math.isclose(metrics.auc(labels, f(finite), weights), base, abs_tol=1e-12)
    assert math.isclose(metrics.auc(labels, -finite, weights), 1.0 - base, abs_tol=1e-12)
    assert math.isclose(metrics.auc(1 - labels, finite, weights), 1.0 - base, abs_tol=1e-12)


@given(labeled_scores(weighted=False), st.sampled_from([1, 2, 5]), st.integers(0, 2**32 - 1))
def test_gauc_is_impression_weighted_mean_of_group_aucs(data, num_groups, seed):
    """GAUC = Σ_u n_u AUC_u / Σ_u n_u over groups u holding both classes (others skipped)."""
    labels, scores, _ = data
    groups = np.random.default_rng(seed).integers(0, num_groups, len(labels))
    groups[:2] = 0  # group 0 holds both classes, so GAUC is defined
    num = den = 0.0
    for g in np.unique(groups):
        y, s = labels[groups == g], scores[groups == g]
        if 0 < y.sum() < y.size:
            num += y.size * pairwise_auc(y, s)
            den += y.size
    assert math.isclose(
        metrics.gauc(labels, scores, groups), num / den, rel_tol=1e-12, abs_tol=1e-12
    )


@given(
    labeled_scores(weighted=False, both_classes=False),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1e-7, 1e-3, 0.2]),
)
def test_logloss_calibration_ne_literal(data, seed, eps):
    """LL = −(1/n) Σ y log p + (1 − y) log(1 − p) with p clipped to [ε, 1 − ε];
    C = Σ p / Σ y;  NE = LL / H(ȳ)."""
    labels, _, _ = data
    rng = np.random.default_rng(seed)
    probs = rng.choice([0.0, 1e-9, 0.1, 0.5, 0.9, 1.0], size=labels.size)
    probs = np.where(rng.random(labels.size) < 0.5, probs, rng.random(labels.size))
    total = 0.0
    for y, p in zip(labels.tolist(), probs.tolist(), strict=True):
        p = min(max(p, eps), 1.0 - eps)
        total -= math.log(p) if y == 1 else math.log1p(-p)
    ll = total / labels.size
    assert math.isclose(metrics.logloss(labels, probs, eps=eps), ll, rel_tol=1e-12)
    clicks = int(labels.sum())
    if clicks:
        assert math.isclose(
            metrics.calibration(labels, probs), sum(probs.tolist()) / clicks, rel_tol=1e-12
        )
    if 0 < clicks < labels.size:
        q = clicks / labels.size
        entropy = -(q * math.log(q) + (1.0 - q) * math.log(1.0 - q))
        assert math.isclose(
            metrics.normalized_entropy(labels, probs, eps=eps), ll / entropy, rel_tol=1e-12
        )
