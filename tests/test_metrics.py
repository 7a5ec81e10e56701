"""Behaviour and bad input of jaxembed.metrics; scikit-learn as the peer where it has the metric."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxembed import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def _data(n=2_000, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.2).astype(np.int32)
    scores = rng.integers(0, 7, n).astype(np.float64) if ties else rng.normal(size=n)
    scores = scores + 0.8 * labels  # informative, so AUC is away from 1/2
    return labels, scores, rng


@pytest.mark.parametrize("ties", [True, False])
def test_auc_matches_sklearn(ties):
    labels, scores, rng = _data(ties=ties)
    weights = rng.choice([0.0, 0.5, 1.0, 4.0], size=labels.size)
    assert metrics.auc(labels, scores) == pytest.approx(
        sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.auc(labels, scores, weights) == pytest.approx(
        sklearn_metrics.roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)


def test_gauc_matches_per_group_sklearn():
    labels, scores, rng = _data(n=3_000)
    groups = rng.integers(0, 60, labels.size)
    num = den = 0.0
    for g in np.unique(groups):
        y, s = labels[groups == g], scores[groups == g]
        if 0 < y.sum() < y.size:
            num += y.size * sklearn_metrics.roc_auc_score(y, s)
            den += y.size
    assert metrics.gauc(labels, scores, groups) == pytest.approx(num / den, abs=1e-12)
    names = np.array([f"user{g}" for g in groups])  # string keys work too
    assert metrics.gauc(labels, scores, names) == pytest.approx(num / den, abs=1e-12)


def test_gauc_skips_single_class_groups():
    labels = np.array([1, 0, 0, 1, 1, 0, 0])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.4])
    groups = np.array([0, 0, 1, 1, 1, 2, 2])  # group 2 has only negatives
    auc0 = 1.0  # group 0: 0.9 > 0.1
    auc1 = 0.5  # group 1: positives 0.2 and 0.8 against the negative 0.5
    assert metrics.gauc(labels, scores, groups) == pytest.approx((2 * auc0 + 3 * auc1) / 5)


def test_logloss_matches_sklearn_and_clips():
    labels, _, rng = _data()
    probs = rng.uniform(0.01, 0.99, labels.size)
    assert metrics.logloss(labels, probs) == pytest.approx(
        sklearn_metrics.log_loss(labels, probs), rel=1e-12)
    # a certain mistake costs -log(eps), not infinity
    assert metrics.logloss([1], [0.0]) == pytest.approx(-math.log(metrics.LOGLOSS_EPS))
    assert metrics.logloss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3))
    assert metrics.logloss([1, 0], [1.0, 0.0]) == pytest.approx(-math.log1p(-1e-7))


def test_known_values():
    assert metrics.auc([0, 1], [0.1, 0.9]) == 1.0
    assert metrics.auc([1, 0], [0.1, 0.9]) == 0.0
    assert metrics.auc([0, 1, 1, 0], [0.3, 0.3, 0.3, 0.3]) == 0.5
    assert metrics.auc([True, False], [np.inf, -np.inf]) == 1.0
    y = np.array([1, 0, 0, 0])
    base = np.full(4, 0.25)
    assert metrics.normalized_entropy(y, base) == pytest.approx(1.0)
    assert metrics.calibration(y, base) == pytest.approx(1.0)
    assert metrics.calibration(y, 2 * base) == pytest.approx(2.0)
    assert metrics.normalized_entropy(y, [0.9, 0.1, 0.1, 0.1]) < 1.0


def test_jax_arrays_and_any_shape():
    labels, scores, _ = _data(n=64)
    expected = metrics.auc(labels, scores)
    assert metrics.auc(jnp.asarray(labels), jnp.asarray(scores, dtype=jnp.float32)) == (
        pytest.approx(expected))
    assert metrics.auc(labels.reshape(8, 8), scores.reshape(8, 8)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: metrics.auc([], []), ValueError, "empty"),
        (lambda: metrics.auc([0, 1], [0.1, 0.2, 0.3]), ValueError, r"shape \(3,\)"),
        (lambda: metrics.auc([0, 1], [[0.1], [0.2]]), ValueError, r"shape \(2, 1\)"),
        (lambda: metrics.auc([0, 2], [0.1, 0.2]), ValueError, "value 2.0 at position 1"),
        (lambda: metrics.auc([0, 0.5], [0.1, 0.2]), ValueError, "0.5 at position 1"),
        (lambda: metrics.auc([0, 1, 1], [0.1, np.nan, 0.2]), ValueError, "nan at position 1"),
        (lambda: metrics.auc([1, 1], [0.1, 0.2]), ValueError, r"no negative \(0\)"),
        (lambda: metrics.auc([0, 1], [0.1, 0.2], [1.0, 0.0]), ValueError, "no positive"),
        (lambda: metrics.auc([0, 1], [0.1, 0.2], [1.0, -1.0]), ValueError, "-1.0 at position 1"),
        (lambda: metrics.auc(["a", "b"], [0.1, 0.2]), TypeError, "dtype"),
        (lambda: metrics.auc([0, 1], ["x", "y"]), TypeError, "numeric"),
        (lambda: metrics.gauc([0, 1], [0.1, 0.2], [0, 1]), ValueError, "none of the 2 groups"),
        (lambda: metrics.gauc([0, 1], [0.1, 0.2], [0]), ValueError, "groups has shape"),
        (lambda: metrics.logloss([0, 1], [0.1, 1.5]), ValueError, "1.5 at position 1"),
        (lambda: metrics.logloss([0, 1], [0.1, np.nan]), ValueError, "nan at position 1"),
        (lambda: metrics.logloss([0, 1], [0.1, 0.2], eps=0.0), ValueError, "eps"),
        (lambda: metrics.calibration([0, 0], [0.1, 0.2]), ValueError, "no 1 labels"),
        (lambda: metrics.normalized_entropy([1, 1], [0.1, 0.2]), ValueError, "every label is 1"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_traced_values_are_rejected():
    with pytest.raises(TypeError, match="host-side"):
        jax.jit(lambda s: metrics.auc(jnp.array([0, 1]), s))(jnp.array([0.1, 0.2]))
