"""Click-model metrics: AUC, group AUC, logloss, calibration and normalized entropy.

All metrics are host-side numpy in float64 (exact counts up to 2**53 impressions), vectorized
(one sort, no Python loop over pairs or groups), and accept numpy or jax arrays of any shape as
long as ``labels`` and the scores have the same shape (they are flattened together). They are
evaluation code, not part of a gradient path: a traced value raises TypeError.

Definitions (``y_i ∈ {0, 1}`` labels, ``s_i`` scores, ``p_i ∈ [0, 1]`` predicted probabilities,
``w_i ≥ 0`` weights, ``P`` the positives and ``N`` the negatives):

* AUC (Mann–Whitney U with ties counted one half)::

      AUC = Σ_{i∈P} Σ_{j∈N} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (Σ_{i∈P} w_i · Σ_{j∈N} w_j)

  With unit weights this is the average-rank formula ``(R⁺ − |P|(|P|+1)/2) / (|P||N|)``, where
  ``R⁺`` sums the (tie-averaged) ranks of the positives. It is computed by sorting the scores
  once and, for each block of tied scores, counting the negative weight strictly below the
  block plus half the negative weight inside it.
* GAUC (impression-weighted per-group AUC; Zhou et al. 2018)::

      GAUC = Σ_u n_u AUC_u / Σ_u n_u,    u over groups holding both a click and a non-click

  ``n_u`` is the number of impressions of group ``u``. Groups with a single class have no
  defined AUC and are skipped (in numerator and denominator alike).
* logloss with ``p`` clipped to ``[ε, 1 − ε]`` (``ε = LOGLOSS_EPS = 1e-7`` unless given)::

      LL = −(1/n) Σ_i (y_i log p_i + (1 − y_i) log(1 − p_i))
* calibration ``C = Σ_i p_i / Σ_i y_i`` (1 is perfect; above 1 over-predicts clicks).
* normalized entropy ``NE = LL / H(ȳ)`` with ``H(q) = −(q log q + (1 − q) log(1 − q))`` the
  entropy of the empirical base rate ``ȳ`` (He et al. 2014): below 1 means better than always
  predicting the base rate.

References
----------
He, X. et al. (2014). Practical lessons from predicting clicks on ads at Facebook. ADKDD.
Zhou, G. et al. (2018). Deep Interest Network for click-through rate prediction. KDD.
Mann, H. B. & Whitney, D. R. (1947). On a test of whether one of two random variables is
stochastically larger than the other. Annals of Mathematical Statistics 18(1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxembed._validate import is_traced

__all__ = ["LOGLOSS_EPS", "auc", "calibration", "gauc", "logloss", "normalized_entropy"]

LOGLOSS_EPS = 1e-7
"""Default clipping of probabilities in :func:`logloss`: ``p ← clip(p, ε, 1 − ε)``."""


def _host(x: Any, what: str) -> np.ndarray:
    if is_traced(x):
        raise TypeError(
            f"{what} is a traced jax value: metrics are host-side numpy; compute them outside "
            "jit/grad/vmap"
        )
    return np.asarray(x)


def _where(shape: tuple[int, ...], flat_index: int) -> str:
    pos = np.unravel_index(flat_index, shape)
    return str(int(pos[0])) if len(pos) == 1 else str(tuple(int(i) for i in pos))


def _labels(labels: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat float64 labels in {0, 1} and the original shape; raise on anything else."""
    y = _host(labels, "labels")
    if y.size == 0:
        raise ValueError("labels is empty: a metric needs at least one impression")
    if y.dtype == bool:
        return y.ravel().astype(np.float64), y.shape
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise TypeError(f"labels must be 0/1 numbers or booleans, got dtype {y.dtype}")
    flat = y.ravel().astype(np.float64)
    bad = (flat != 0.0) & (flat != 1.0)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"labels: value {float(flat[i])!r} at position {_where(y.shape, i)} is not 0 or 1"
        )
    return flat, y.shape


def _values(x: Any, shape: tuple[int, ...], what: str, *, unit: bool = False) -> np.ndarray:
    """Flat float64 values of ``shape`` without NaN (and inside [0, 1] when ``unit``)."""
    v = _host(x, what)
    if v.shape != shape:
        raise ValueError(f"{what} has shape {v.shape} but labels have shape {shape}")
    if not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)
            or v.dtype == bool):
        raise TypeError(f"{what} must be numeric, got dtype {v.dtype}")
    flat = v.ravel().astype(np.float64)
    bad = np.isnan(flat)
    if unit:
        bad |= (flat < 0.0) | (flat > 1.0)
    if np.any(bad):
        i = int(np.argmax(bad))
        need = "a probability in [0, 1]" if unit else "a number (NaN)"
        raise ValueError(
            f"{what}: value {float(flat[i])!r} at position {_where(shape, i)} is not {need}"
        )
    return flat


def _weights(weights: Any, shape: tuple[int, ...]) -> np.ndarray:
    w = _values(weights, shape, "weights")
    bad = ~np.isfinite(w) | (w < 0.0)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(
            f"weights: value {float(w[i])!r} at position {_where(shape, i)} is not finite and >= 0"
        )
    return w


def _pair_counts(y: np.ndarray, s: np.ndarray, w: np.ndarray, groups: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group ``g`` (codes ``0..G-1``, all present): the Mann–Whitney numerator
    ``Σ_{i∈P_g, j∈N_g} w_i w_j ([s_i > s_j] + ½[s_i = s_j])``, ``W⁺_g`` and ``W⁻_g``.

    One lexicographic sort by (group, score); a *block* is a run of equal (group, score).
    A block's positives beat the negatives of earlier blocks of its group and tie with the
    negatives inside it.
    """
    order = np.lexsort((s, groups))
    g, s, y, w = groups[order], s[order], y[order], w[order]
    starts = np.empty(g.size, dtype=bool)
    starts[0] = True
    starts[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    block = np.cumsum(starts) - 1
    pos = np.bincount(block, weights=w * y)
    neg = np.bincount(block, weights=w * (1.0 - y))
    block_group = g[starts]
    neg_before = np.cumsum(neg) - neg  # negative weight in all earlier blocks (any group)
    group_starts = np.r_[True, block_group[1:] != block_group[:-1]]
    below = neg_before - neg_before[group_starts][block_group]
    numerator = np.bincount(block_group, weights=pos * (below + 0.5 * neg))
    return numerator, np.bincount(block_group, weights=pos), np.bincount(block_group, weights=neg)


def auc(labels: Any, scores: Any, weights: Any | None = None) -> float:
    """Area under the ROC curve, exact, ties counted one half (Mann–Whitney U).

    ``AUC = Σ_{i∈P,j∈N} w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (W⁺ W⁻)``; equals
    ``sklearn.metrics.roc_auc_score(labels, scores, sample_weight=weights)``.

    Args:
      labels: 0/1 (or bool) array.
      scores: array of the same shape; any real scores (logits, probabilities), ``±inf``
        allowed, NaN rejected. Only their order matters.
      weights: optional non-negative per-impression weights (same shape).

    Raises:
      ValueError: empty input, mismatched shapes, a label not in {0, 1}, a NaN score, a
        negative or non-finite weight, or only one class present (with positive weight):
        the AUC is then undefined.
    """
    y, shape = _labels(labels)
    s = _values(scores, shape, "scores")
    w = np.ones_like(y) if weights is None else _weights(weights, shape)
    numerator, w_pos, w_neg = _pair_counts(y, s, w, np.zeros(y.size, dtype=np.int64))
    if w_pos[0] == 0.0 or w_neg[0] == 0.0:
        missing = "positive (1)" if w_pos[0] == 0.0 else "negative (0)"
        raise ValueError(
            f"AUC is undefined: no {missing} labels with positive weight among {y.size} "
            "impressions"
        )
    return float(numerator[0] / (w_pos[0] * w_neg[0]))


def gauc(labels: Any, scores: Any, groups: Any) -> float:
    """Group AUC: per-group AUC averaged with impression weights.

    ``GAUC = Σ_u n_u AUC_u / Σ_u n_u`` over the groups ``u`` (usually users) that hold both
    classes; groups with only clicks or only non-clicks have no AUC and are skipped, so they
    count neither in the numerator nor in the denominator.

    Args:
      labels: 0/1 (or bool) array.
      scores: array of the same shape (NaN rejected).
      groups: group key per impression (integers or strings), same shape.

    Raises:
      ValueError: as :func:`auc`, or when no group holds both classes.
    """
    y, shape = _labels(labels)
    s = _values(scores, shape, "scores")
    g = _host(groups, "groups")
    if g.shape != shape:
        raise ValueError(f"groups has shape {g.shape} but labels have shape {shape}")
    _, codes = np.unique(g.ravel(), return_inverse=True)
    numerator, n_pos, n_neg = _pair_counts(y, s, np.ones_like(y), codes.ravel())
    valid = (n_pos > 0) & (n_neg > 0)
    if not np.any(valid):
        raise ValueError(
            f"GAUC is undefined: none of the {n_pos.size} groups holds both a 0 and a 1 label"
        )
    per_group = numerator[valid] / (n_pos[valid] * n_neg[valid])
    impressions = n_pos[valid] + n_neg[valid]
    return float(np.sum(impressions * per_group) / np.sum(impressions))


def logloss(labels: Any, probs: Any, *, eps: float = LOGLOSS_EPS) -> float:
    """Mean binary cross-entropy ``−(1/n) Σ y log p + (1 − y) log(1 − p)``, natural log.

    ``p`` is clipped to ``[eps, 1 − eps]`` first, so a confident mistake costs at most
    ``−log eps`` (about 16.1 for the default ``eps = 1e-7``) instead of infinity.

    Raises:
      ValueError: empty input, mismatched shapes, a label not in {0, 1}, a probability
        outside [0, 1] or NaN, or ``eps`` outside (0, 0.5).
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
    y, shape = _labels(labels)
    p = np.clip(_values(probs, shape, "probs", unit=True), eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def calibration(labels: Any, probs: Any) -> float:
    """Predicted over observed clicks, ``Σ p_i / Σ y_i`` (1 is calibrated).

    Raises:
      ValueError: as :func:`logloss`, or when there is no click (``Σ y = 0``).
    """
    y, shape = _labels(labels)
    p = _values(probs, shape, "probs", unit=True)
    clicks = float(np.sum(y))
    if clicks == 0.0:
        raise ValueError(f"calibration is undefined: no 1 labels among {y.size} impressions")
    return float(np.sum(p) / clicks)


def normalized_entropy(labels: Any, probs: Any, *, eps: float = LOGLOSS_EPS) -> float:
    """Logloss divided by the entropy of the empirical base rate (He et al. 2014).

    ``NE = LL / H(ȳ)``, ``H(q) = −(q log q + (1 − q) log(1 − q))``, ``ȳ = (1/n) Σ y_i``.
    Predicting ``ȳ`` for every impression gives ``NE = 1``; lower is better.

    Raises:
      ValueError: as :func:`logloss`, or when all labels are equal (``H(ȳ) = 0``).
    """
    ll = logloss(labels, probs, eps=eps)
    y, _ = _labels(labels)
    q = float(np.mean(y))
    if q in (0.0, 1.0):
        raise ValueError(
            f"normalized entropy is undefined: every label is {int(q)}, so the base-rate "
            "entropy is 0"
        )
    return ll / float(-(q * np.log(q) + (1.0 - q) * np.log1p(-q)))
