"""Evaluation of a CTR model on encoded features: AUC, logloss, GAUC, calibration, NE."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxembed import metrics
from jaxembed.features import Features
from jaxembed.nn.ctr import sigmoid_cross_entropy


def predict(model: nnx.Module, features: Features, batch_size: int) -> np.ndarray:
    """Click probabilities of every row; the last partial batch is padded with copies of its
    first row (one compiled shape), and the padding is dropped."""
    graphdef, state = nnx.split(model)
    probs = _compiled_predict(graphdef)
    out = []
    n = len(features)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = np.arange(start, start + batch_size)
        rows = np.where(rows < stop, rows, start)
        batch = jax.tree.map(lambda a, r=rows: a[r], features.batch(0, n))
        out.append(np.asarray(probs(state, batch))[: stop - start])
    return np.concatenate(out).astype(np.float64)


@functools.lru_cache(maxsize=16)
def _compiled_predict(graphdef: Any):
    @jax.jit
    def probs(state: Any, batch: dict) -> jax.Array:
        return jax.nn.sigmoid(nnx.merge(graphdef, state)(batch))

    return probs


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
