r"""Negative down-sampling and the calibration that undoes it.

Keeping every positive and each negative with probability :math:`w` shifts the click rate a
model learns from :math:`r` to

.. math:: p = \frac{r}{r + (1 - r)\, w},

and solving for :math:`r` gives the calibration of He et al. (2014), *Practical Lessons from
Predicting Clicks on Ads at Facebook*, §6.2:

.. math:: q = \frac{p}{p + (1 - p) / w}.

``proofs/proof_calibration.py`` proves :math:`q(p(r)) = r` symbolically and checks on generated
data that calibrated rates recover the true one. In logit space the calibration is a shift,
:math:`\operatorname{logit} q = \operatorname{logit} p + \log w`, which is how
:func:`calibrate_logits` applies it to a model's output without losing precision.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array


def _check_rate(rate: float) -> float:
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"negative sampling rate must be in (0, 1], got {rate!r}")
    return float(rate)


def downsample_negatives(labels, rate: float, seed: int) -> np.ndarray:
    """bool mask keeping every positive and each negative with probability ``rate``."""
    rate = _check_rate(rate)
    labels = np.asarray(labels)
    if not np.isin(labels, (0, 1)).all():
        bad = labels[~np.isin(labels, (0, 1))][0]
        raise ValueError(f"labels must be 0 or 1, got {bad!r}")
    keep_negative = np.random.default_rng(seed).random(labels.shape) < rate
    return (labels == 1) | keep_negative


def sampled_rate(true_rate, rate: float):
    """``p = r / (r + (1 - r) w)``: the click rate after negative down-sampling at ``w``."""
    rate = _check_rate(rate)
    return true_rate / (true_rate + (1.0 - true_rate) * rate)


def calibrate(probs, rate: float):
    """``q = p / (p + (1 - p) / w)``: a probability learned on down-sampled data, corrected."""
    rate = _check_rate(rate)
    return probs / (probs + (1.0 - probs) / rate)


def calibrate_logits(logits: Array, rate: float) -> Array:
    """``logit q = logit p + log w`` (the same correction, exact in logit space)."""
    return jnp.asarray(logits) + jnp.log(_check_rate(rate))
