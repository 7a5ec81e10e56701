"""Evaluation plots: the ROC curve and the calibration (reliability) diagram, as PNG files.

The ROC curve is computed here (no scikit-learn at run time): rows sorted by decreasing
score, true- and false-positive rates accumulated at each distinct score. The reliability
diagram bins the predicted probabilities into ``bins`` equal-count bins and plots each bin's
mean prediction against its observed click rate (a calibrated model lies on the diagonal).
"""

from __future__ import annotations

import os

import numpy as np

from jaxembed._atomic import atomic_path


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` at every distinct score threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="stable")
    y, s = labels[order].astype(np.float64), scores[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(1.0 - y)[last]
    tpr = np.r_[0.0, tp / max(tp[-1], 1.0)]
    fpr = np.r_[0.0, fp / max(fp[-1], 1.0)]
    return fpr, tpr


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 20
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(mean prediction, observed rate)`` of ``bins`` equal-count bins."""
    order = np.argsort(probs, kind="stable")
    parts = np.array_split(order, min(bins, max(probs.size, 1)))
    return (np.array([probs[p].mean() for p in parts if p.size]),
            np.array([labels[p].mean() for p in parts if p.size]))


def save_plots(labels: np.ndarray, probs: np.ndarray, folder: str, title: str,
               auc: float) -> list[str]:
    """Write ``roc.png`` and ``calibration.png`` into ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    fpr, tpr = roc_curve(labels, probs)
    mean, rate = reliability(labels, probs)
    paths = []
    for name, draw in (("roc.png", lambda ax: (
            ax.plot(fpr, tpr, label=f"AUC {auc:.4f}"), ax.plot([0, 1], [0, 1], "--", c="gray"),
            ax.set(xlabel="false-positive rate", ylabel="true-positive rate",
                   title=f"ROC: {title}"))),
                       ("calibration.png", lambda ax: (
            ax.plot(mean, rate, "o-", label="equal-count bins"),
            ax.plot([0, 1], [0, 1], "--", c="gray"),
            ax.set(xlabel="mean predicted probability", ylabel="observed click rate",
                   title=f"calibration: {title}")))):
        fig, ax = plt.subplots(figsize=(5, 5))
        draw(ax)
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = os.path.join(folder, name)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
