"""The offline metrics of a CTR prediction: AUC, logloss, GAUC, calibration, NE; the masked
mean loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxembed import metrics
from jaxembed.nn.ctr import sigmoid_cross_entropy


def report(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """The offline metrics of a prediction: AUC, logloss, GAUC (per ``groups``, e.g. users),
    calibration (Σp / Σy) and normalized entropy."""
    labels = np.asarray(labels).astype(np.int8)
    return {
        "auc": metrics.auc(labels, probs),
        "logloss": metrics.logloss(labels, probs),
        "gauc": metrics.gauc(labels, probs, groups),
        "calibration": metrics.calibration(labels, probs),
        "ne": metrics.normalized_entropy(labels, probs),
    }


def mean_loss(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean sigmoid cross-entropy over the rows where ``mask`` is true (all by default)."""

    losses = sigmoid_cross_entropy(logits, labels)
    if mask is None:
        return jnp.mean(losses)
    return jnp.sum(jnp.where(mask, losses, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
