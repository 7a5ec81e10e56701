r"""Hybrid ranking: the dense score and BM25, each standardized per query, summed with a weight.

The dense score :math:`s_D(q, d) = u_Q(q)^\top u_R(d)` lies in :math:`[-1, 1]`; BM25 is
unbounded and its scale depends on the query's length and rarity. Each is standardized over
the query's candidates :math:`d_1 \dots d_N` before they are added:

.. math::

    z(s)_{q,j} = \frac{s_{q,j} - \mu_q(s)}{\sigma_q(s)}, \quad
    \mu_q(s) = \frac1N \sum_{j} s_{q,j}, \quad
    \sigma_q(s) = \sqrt{\frac1N \sum_{j} (s_{q,j} - \mu_q(s))^2},

(:math:`z = 0` for a row whose scores are all equal, :math:`\sigma_q = 0`) and

.. math::

    s_H(q, d_j) = z(s_D)_{q,j} + w\, z(s_{\mathrm{BM25}})_{q,j},

with the weight :math:`w \ge 0` tuned on held-out pairs (:func:`tune_weight`): the value of a
grid that gives the best mean reciprocal rank. Standardizing per query makes the sum
insensitive to each score's scale and shift (both change from query to query for BM25), so
one :math:`w` serves every query. :func:`hybrid_literal` is the formula row by row in plain
Python, the reference twin (``proofs/proof_bm25.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RANKINGS", "hybrid_literal", "hybrid_scores", "reciprocal_ranks", "standardize",
           "tune_weight"]

RANKINGS = ("hybrid", "dense", "bm25")
"""The rankings a :class:`~jaxembed.text.retriever.Retriever` and the CLI offer."""


def standardize(scores: Any) -> np.ndarray:
    """``f64[Q, N]``: each row minus its mean, over its (population) standard deviation; a
    constant row becomes zeros."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [queries, candidates], got shape {scores.shape}")
    centred = scores - scores.mean(axis=1, keepdims=True)
    sigma = np.sqrt(np.mean(centred * centred, axis=1, keepdims=True))
    return np.divide(centred, sigma, out=np.zeros_like(centred), where=sigma > 0)


def _check_weight(weight: float) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float | np.floating) or not (
            math.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
    return float(weight)


def hybrid_scores(dense: Any, lexical: Any, weight: float) -> np.ndarray:
    """``f64[Q, N]``: :math:`z(s_D) + w\\, z(s_{BM25})` (module docstring)."""
    dense, lexical = np.asarray(dense), np.asarray(lexical)
    if dense.shape != lexical.shape:
        raise ValueError(f"dense scores {dense.shape} and lexical scores {lexical.shape} differ "
                         "in shape")
    return standardize(dense) + _check_weight(weight) * standardize(lexical)


def hybrid_literal(dense: Sequence[Sequence[float]], lexical: Sequence[Sequence[float]],
                   weight: float) -> list[list[float]]:
    """The reference twin: the module docstring's formulas, row by row, in Python floats."""
    out = []
    for d_row, l_row in zip(dense, lexical, strict=True):
        zs = []
        for row in (d_row, l_row):
            n = len(row)
            mu = sum(row) / n
            sigma = math.sqrt(sum((x - mu) ** 2 for x in row) / n)
            zs.append([(x - mu) / sigma if sigma > 0 else 0.0 for x in row])
        out.append([a + weight * b for a, b in zip(zs[0], zs[1], strict=True)])
    return out


def reciprocal_ranks(scores: Any, targets: Any) -> np.ndarray:
    """``f64[Q]``: :math:`1 / \\mathrm{rank}` of each row's target column (rank 1 = best;
    ties rank in column order, as a stable sort)."""
    scores = np.asarray(scores, np.float64)
    targets = np.asarray(targets)
    rows = np.arange(len(targets))
    target = scores[rows, targets]
    higher = np.sum(scores > target[:, None], axis=1)
    ties = np.sum((scores == target[:, None])
                  & (np.arange(scores.shape[1])[None, :] < targets[:, None]), axis=1)
    return 1.0 / (1.0 + higher + ties)


def tune_weight(dense: Any, lexical: Any, targets: Any,
                grid: Sequence[float] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0, 1.5, 2.0,
                                         3.0)) -> float:
    """The :math:`w` of ``grid`` whose hybrid ranks ``targets`` (the right candidate of each
    query) best, by mean reciprocal rank; the smallest such :math:`w` on a tie."""
    zd, zl = standardize(dense), standardize(lexical)
    if zd.shape != zl.shape:
        raise ValueError(f"dense scores {zd.shape} and lexical scores {zl.shape} differ")
    best, best_mrr = None, -1.0
    for w in grid:
        mrr = float(np.mean(reciprocal_ranks(zd + _check_weight(w) * zl, targets)))
        if mrr > best_mrr:
            best, best_mrr = float(w), mrr
    if best is None:
        raise ValueError("grid is empty")
    return best
