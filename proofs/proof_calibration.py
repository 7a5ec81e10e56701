"""Negative down-sampling calibration: q = p / (p + (1 - p) / w) restores the true rate.

Keeping positives and a fraction w of negatives turns a click rate r into
p = r / (r + (1 - r) w); the calibration inverts it exactly (symbolically, with sympy), and on
generated clicks the calibrated empirical rate of the down-sampled data matches the true rate
within its binomial error.
"""

import numpy as np
import sympy
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.stream.calibration import (
    calibrate,
    calibrate_logits,
    downsample_negatives,
    sampled_rate,
)


def test_calibration_inverts_downsampling_symbolically():
    """With p = r / (r + (1 - r) w): p / (p + (1 - p) / w) - r simplifies to 0; and our two
    functions are these formulas (checked on a symbolic r at exactly representable w)."""
    r, w = sympy.symbols("r w", positive=True)
    p = r / (r + (1 - r) * w)
    q = p / (p + (1 - p) / w)
    assert sympy.simplify(q - r) == 0
    for exact_w in (0.25, 0.5, 1.0):
        ours_p = sampled_rate(r, exact_w)
        assert sympy.simplify(ours_p - p.subs(w, sympy.nsimplify(exact_w))) == 0
        assert sympy.simplify(calibrate(ours_p, exact_w) - r) == 0


@given(rate=st.floats(0.01, 1.0), true_rate=st.floats(0.001, 0.999))
def test_calibrate_inverts_sampled_rate(rate, true_rate):
    """q(p(r)) = r in floating point, and the logit form agrees: logit q = logit p + log w."""
    p = sampled_rate(true_rate, rate)
    np.testing.assert_allclose(calibrate(p, rate), true_rate, rtol=1e-9)
    logit = np.log(p / (1 - p))
    q = 1 / (1 + np.exp(-np.asarray(calibrate_logits(np.float32(logit), rate))))
    np.testing.assert_allclose(q, true_rate, rtol=1e-4)


@given(rate=st.sampled_from([0.05, 0.1, 0.3, 1.0]), true_rate=st.sampled_from([0.02, 0.1, 0.4]),
       seed=st.integers(0, 2**31))
def test_calibrated_empirical_rate_recovers_truth(rate, true_rate, seed):
    """On 200k generated impressions, calibrate(mean label after down-sampling) ≈ r (5 sigma)."""
    n = 200_000
    labels = (np.random.default_rng(seed).random(n) < true_rate).astype(np.int8)
    keep = downsample_negatives(labels, rate, seed=seed + 1)
    assert keep[labels == 1].all()
    p_hat = labels[keep].mean()
    q_hat = calibrate(p_hat, rate)
    sigma = np.sqrt(true_rate * (1 - true_rate) / n) / min(rate, 1.0) ** 0.5
    assert abs(q_hat - true_rate) < 5 * sigma + 1e-3
