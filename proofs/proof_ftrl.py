r"""FTRL-Proximal: :func:`jaxembed.optim.ftrl` against McMahan et al. and TensorFlow.

The transform, per coordinate (TensorFlow's ``ApplyFtrlV2``; :math:`p` = learning_rate_power,
:math:`\lambda_s` = l2_shrinkage, :math:`l_2' = l_2 + \beta/(2\alpha)`):

.. math::

    n' = n + g^2,\quad
    z' = z + (g + 2\lambda_s w) - \frac{n'^{-p} - n^{-p}}{\alpha} w,\quad
    w' = \begin{cases} 0 & |z'| \le \lambda_1 \\
         \dfrac{\operatorname{sign}(z')\lambda_1 - z'}{n'^{-p}/\alpha + 2 l_2'} & \text{else}
         \end{cases}

Proven here:

(a) with :math:`p = -1/2`, :math:`n_0 = 0`, weights from 0, it *is* Algorithm 1 of McMahan et
    al. (2013) — a literal float64 transcription trained on a logistic loss, with the mapping
    :math:`\alpha` = learning_rate, :math:`\beta` = beta, :math:`\lambda_1` = l1,
    :math:`\lambda_2 = 2\,l_2` (the paper's :math:`\lambda_2` weighs :math:`\tfrac12\|w\|^2`,
    TensorFlow's ``l2`` weighs :math:`\|w\|^2`; :math:`\beta` enters both as
    :math:`(\beta+\sqrt n)/\alpha`). Gradients come from ``jax.grad`` of the log loss.
(b) with no regularization and :math:`w_0 = 0`:
    :math:`w_{t+1} = w_t - \alpha\, g_t / n_{t+1}^{-p}` — for :math:`p=-1/2` the Adagrad
    update with the *current* :math:`g_t^2` already in the accumulator and no epsilon,
    ``optax.adagrad(α, initial_accumulator_value=n0, eps=0)``; for :math:`p = 0` plain SGD,
    ``optax.sgd(α)``. Derivation (induction on :math:`w_t = -\alpha z_t / n_t^{-p}`, true at
    :math:`t=0` since :math:`z_0 = w_0 = 0`):
    :math:`z_{t+1} = z_t + g_t + (n_{t+1}^{-p} - n_t^{-p})\,z_t / n_t^{-p}
    = g_t + z_t\, n_{t+1}^{-p}/n_t^{-p}`, so
    :math:`w_{t+1} = -\alpha z_{t+1}/n_{t+1}^{-p} = -\alpha g_t/n_{t+1}^{-p} + w_t`.
    (If :math:`n_t = 0` then :math:`z_t = w_t = 0` and the same line holds, 0/0 read as 0.)
(c) L1: :math:`w' = 0` exactly (bitwise) whenever :math:`|z'| \le \lambda_1`, and otherwise
    :math:`w' \ne 0`, :math:`\operatorname{sign} w' = -\operatorname{sign} z'`, and :math:`w'`
    minimizes :math:`\phi(w) = z' w + \lambda_1 |w| + \tfrac12 q w^2` (the FTRL-Proximal step).
(d) TensorFlow's and Keras's published test vectors (cited at each case).
(e) a literal numpy float32 transcription of TensorFlow's ``ApplyFtrlV2`` kernel equals the
    transform step for step on hypothesis-drawn hyperparameters and gradients (zeros
    included, which reach the 0/0 guard of a zero accumulator), to float32 rounding: XLA
    rewrites ``x / α`` as ``x · (1/α)``, so results agree to a few ulp of the terms rather than
    bitwise; the accumulator agrees bitwise. Also under ``jit`` and through
    ``optax.apply_updates`` for many steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from jaxembed.optim.ftrl import ftrl, ftrl_hyperparams, ftrl_kernel

EPS32 = float(np.finfo(np.float32).eps)
DIM = 8  # one shape for every example: eager ops and jit compile once


@st.composite
def hyperparams(draw, *, power=None, accumulator=None):
    """FTRL keyword arguments over the whole valid range (powers, zero accumulator, ...)."""
    kwargs = {
        "learning_rate": draw(st.sampled_from([0.05, 0.5, 3.0]) | st.floats(0.01, 5.0)),
        "learning_rate_power": draw(
            power
            if power is not None
            else st.sampled_from([-0.5, 0.0, -0.25, -1.0]) | st.floats(-1.5, 0.0)
        ),
        "initial_accumulator_value": draw(
            accumulator
            if accumulator is not None
            else st.sampled_from([0.0, 0.1, 1.0]) | st.floats(0.0, 2.0)
        ),
        "l1": draw(st.sampled_from([0.0, 0.001, 0.5]) | st.floats(0.0, 2.0)),
        "l2": draw(st.sampled_from([0.0, 2.0]) | st.floats(0.0, 3.0)),
        "l2_shrinkage": draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 1.0)),
        "beta": draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 2.0)),
    }
    if (
        kwargs["initial_accumulator_value"] == 0.0
        and kwargs["learning_rate_power"] < 0.0
        and kwargs["l2"] == 0.0
        and kwargs["beta"] == 0.0
    ):
        kwargs["l2_shrinkage"] = 0.0  # the one combination ftrl rejects (weights ±inf)
    return kwargs


@st.composite
def gradient_steps(draw, steps: int):
    """``[steps, DIM]`` float32 gradients of scale 0.01, 1 or 10; about a third exact zeros."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = rng.normal(0.0, draw(st.sampled_from([0.01, 1.0, 10.0])), size=(steps, DIM))
    g[rng.random(g.shape) < 0.3] = 0.0
    return g.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# literal references


def mcmahan_algorithm1(xs, ys, alpha, beta, lambda1, lambda2):
    """Algorithm 1 of McMahan et al. (2013), per coordinate, in float64, as printed.

    Returns the weight vector used at each round ``t`` (before its update).
    """
    d = xs.shape[1]
    z, n = [0.0] * d, [0.0] * d
    used = []
    for x, y in zip(xs, ys, strict=True):
        active = [i for i in range(d) if x[i] != 0.0]
        w = [0.0] * d
        for i in active:
            if abs(z[i]) <= lambda1:
                w[i] = 0.0
            else:
                sgn = 1.0 if z[i] > 0 else -1.0
                w[i] = -(z[i] - sgn * lambda1) / ((beta + np.sqrt(n[i])) / alpha + lambda2)
        # inactive coordinates are not used this round; report the weight their state gives
        for i in range(d):
            if i not in active and abs(z[i]) > lambda1:
                sgn = 1.0 if z[i] > 0 else -1.0
                w[i] = -(z[i] - sgn * lambda1) / ((beta + np.sqrt(n[i])) / alpha + lambda2)
        used.append(list(w))
        p = 1.0 / (1.0 + np.exp(-sum(x[i] * w[i] for i in range(d))))
        for i in active:
            g = (p - y) * x[i]
            sigma = (np.sqrt(n[i] + g * g) - np.sqrt(n[i])) / alpha
            z[i] += g - sigma * w[i]
            n[i] += g * g
    return np.array(used)


def tf_apply_ftrl_v2(var, accum, linear, grad, lr, l1, l2, l2_shrinkage, lr_power, beta):
    """numpy float32 transcription of TensorFlow's ``ApplyFtrlV2`` CPU kernel.

    From ``tensorflow/core/kernels/training_ops.cc`` (``struct ApplyFtrlV2<CPUDevice, T>``),
    with Keras's ``l2 + beta / (2 * lr)`` passed as the kernel's ``l2``. Float32 scalars, as the
    kernel casts them to the variable dtype. Returns ``(var, accum, linear, y)``, ``y`` being
    the kernel's quadratic (curvature) term, where ``y = 0`` gives TF's ``±inf``/``NaN``.
    """
    f = np.float32
    lr, l1, lr_power = f(lr), f(l1), f(lr_power)
    l2 = f(l2) + f(beta) / (f(2) * lr)
    if f(l2_shrinkage) > 0:  # TF's optimizer calls ApplyFtrl (no shrinkage) otherwise
        grad_with_shrinkage = grad + f(2) * f(l2_shrinkage) * var
    else:
        grad_with_shrinkage = grad
    new_accum = accum + grad * grad
    with np.errstate(divide="ignore", invalid="ignore"):
        if lr_power == f(-0.5):
            linear = linear + (
                grad_with_shrinkage - (np.sqrt(new_accum) - np.sqrt(accum)) / lr * var
            )
            y = np.sqrt(new_accum) / lr + f(2) * l2
        else:
            linear = linear + (
                grad_with_shrinkage - (new_accum**-lr_power - accum**-lr_power) / lr * var
            )
            y = new_accum**-lr_power / lr + f(2) * l2
        x = l1 * np.sign(linear) - linear
        var = np.where(np.abs(linear) > l1, x / y, f(0)).astype(np.float32)
    return var, new_accum.astype(np.float32), linear.astype(np.float32), y


def tf_step(w, n, z, g, kwargs):
    """:func:`tf_apply_ftrl_v2` with the hyperparameters taken from ``ftrl`` keyword arguments."""
    return tf_apply_ftrl_v2(
        w,
        n,
        z,
        g,
        kwargs["learning_rate"],
        kwargs["l1"],
        kwargs["l2"],
        kwargs["l2_shrinkage"],
        kwargs["learning_rate_power"],
        kwargs["beta"],
    )


def run_optax(tx, params, grads):
    """Eager trajectory of ``tx`` from ``params`` over ``grads``: list of (params, state)."""
    state = tx.init(params)
    out = []
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        out.append((np.asarray(params), state))
    return out


# ---------------------------------------------------------------------------------------------
# (a) McMahan et al. 2013, Algorithm 1


@jax.jit
def _logloss_grad(w, x, y):
    return jax.grad(lambda w: optax.sigmoid_binary_cross_entropy(x @ w, y))(w)


@given(
    seed=st.integers(0, 2**32 - 1),
    alpha=st.sampled_from([0.1, 1.0]) | st.floats(0.05, 2.0),
    beta=st.sampled_from([0.0, 1.0]) | st.floats(0.0, 2.0),
    lambda1=st.sampled_from([0.0, 0.5]) | st.floats(0.0, 1.5),
    l2=st.sampled_from([0.0, 0.5]) | st.floats(0.0, 2.0),
)
def test_equals_mcmahan_algorithm1(seed, alpha, beta, lambda1, l2):
    """(a) ftrl(α, p=-1/2, n0=0, l1=λ1, l2, beta=β) == Algorithm 1 with λ2 = 2·l2."""
    rng = np.random.default_rng(seed)
    steps = 10
    xs = (rng.random((steps, DIM)) < 0.4).astype(np.float64) * rng.choice([1.0, 2.0], (steps, DIM))
    xs[:, 0] = 1.0  # a bias feature
    ys = (rng.random(steps) < 0.5).astype(np.float64)
    expected = mcmahan_algorithm1(xs, ys, alpha, beta, lambda1, 2.0 * l2)

    tx = ftrl(
        alpha, learning_rate_power=-0.5, initial_accumulator_value=0.0, l1=lambda1, l2=l2, beta=beta
    )
    w = jnp.zeros(DIM, jnp.float32)
    state = tx.init(w)
    for t in range(steps):
        np.testing.assert_allclose(
            np.asarray(w), expected[t], rtol=2e-4, atol=2e-5, err_msg=f"round {t}"
        )
        g = _logloss_grad(w, jnp.asarray(xs[t], jnp.float32), jnp.asarray(ys[t], jnp.float32))
        np.testing.assert_allclose(  # jax.grad of the log loss is the paper's (p - y) x
            np.asarray(g),
            (1 / (1 + np.exp(-xs[t] @ np.asarray(w, np.float64))) - ys[t]) * xs[t],
            rtol=1e-5,
            atol=1e-6,
        )
        updates, state = tx.update(g, state, w)
        w = optax.apply_updates(w, updates)


# ---------------------------------------------------------------------------------------------
# (b) Adagrad (p = -1/2) and SGD (p = 0) without regularization


@given(
    lr=st.sampled_from([0.1, 3.0]) | st.floats(0.01, 5.0),
    n0=st.sampled_from([0.0, 0.1, 1.0]),
    grads=gradient_steps(8),
)
def test_unregularized_is_adagrad(lr, n0, grads):
    """(b) p = -1/2: w_{t+1} = w_t - α g_t / sqrt(n_t + g_t²) == optax.adagrad(eps=0)."""
    w0 = jnp.zeros(DIM, jnp.float32)
    ours = run_optax(ftrl(lr, initial_accumulator_value=n0), w0, grads)
    adagrad = run_optax(optax.adagrad(lr, initial_accumulator_value=n0, eps=0.0), w0, grads)
    for t, ((a, _), (b, _)) in enumerate(zip(ours, adagrad, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * lr, err_msg=f"step {t}")


@given(
    lr=st.sampled_from([0.1, 3.0]) | st.floats(0.01, 5.0),
    n0=st.sampled_from([0.0, 0.1, 1.0]),
    grads=gradient_steps(8),
)
def test_constant_rate_is_sgd(lr, n0, grads):
    """(b) p = 0: n^0 = 1, σ = 0, so z = Σg and w = -α Σg == optax.sgd(α) from w = 0."""
    w0 = jnp.zeros(DIM, jnp.float32)
    ours = run_optax(ftrl(lr, learning_rate_power=0.0, initial_accumulator_value=n0), w0, grads)
    sgd = run_optax(optax.sgd(lr), w0, grads)
    for t, ((a, _), (b, _)) in enumerate(zip(ours, sgd, strict=True)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * lr * (t + 1), err_msg=f"step {t}")


# ---------------------------------------------------------------------------------------------
# (c) L1 gives exact zeros, and the closed form is the proximal minimizer


def _phi(w, z, q, l1):
    """The per-coordinate FTRL-Proximal objective z·w + λ1|w| + q·w²/2."""
    return z * w + l1 * np.abs(w) + 0.5 * q * w * w


# Found on a GPU run: a new weight (-8e-34) far below half an ulp of the old one (1.3e-3)
# rounds to 0 through params + (new - params); the kernel's own weight is non-zero.
@example(
    kwargs={
        "learning_rate": 0.05,
        "learning_rate_power": -0.5,
        "initial_accumulator_value": 0.0,
        "l1": 0.0,
        "l2": 0.0,
        "l2_shrinkage": 6.2e-31,
        "beta": 0.1,
    },
    grads=np.zeros((6, DIM), np.float32),
    w0=np.full((1, DIM), 1.2573e-3, np.float32),
)
@given(kwargs=hyperparams(), grads=gradient_steps(6), w0=gradient_steps(1))
def test_l1_exact_zeros_and_proximal_minimizer(kwargs, grads, w0):
    """(c) w' = 0 bitwise iff |z'| <= λ1 (or q = 0); else sign w' = -sign z' and w' = argmin φ.

    Checked on the kernel's own w' and, for the zeros, on the transform's params after
    ``optax.apply_updates`` too (``w + (0 - w)`` is exactly 0).
    """
    tx, hp = ftrl(**kwargs), ftrl_hyperparams(**kwargs)
    lr, power = kwargs["learning_rate"], kwargs["learning_rate_power"]
    params = jnp.asarray(w0[0])
    state = tx.init(params)
    for t, g in enumerate(grads):
        # the kernel and the transform, from the same (w, n, z, g)
        w, n, z = ftrl_kernel(params, state.accumulators, state.linear, jnp.asarray(g), hp)
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_array_equal(state.linear, z)
        np.testing.assert_array_equal(state.accumulators, n)
        kernel_w, applied = np.asarray(w), np.asarray(params)
        z64, n64 = np.asarray(z, np.float64), np.asarray(n, np.float64)
        q = n64**-power / lr + 2.0 * kwargs["l2"] + kwargs["beta"] / lr
        q32 = np.asarray(n, np.float32) ** np.float32(-power) / np.float32(lr) + np.float32(
            2.0 * kwargs["l2"] + kwargs["beta"] / lr
        )
        inside = (np.abs(z64) <= np.float32(kwargs["l1"])) | (q32 == 0)
        assert np.all(kernel_w[inside].view(np.uint32) == 0), f"step {t}: non-zero inside"
        assert np.all(applied[inside].view(np.uint32) == 0), f"step {t}: applied non-zero"
        outside = ~inside
        assert np.all(kernel_w[outside] != 0.0), f"step {t}: zero weight with |z| > l1"
        assert np.all(np.sign(kernel_w[outside]) == -np.sign(z64[outside])), f"step {t}: sign"
        # φ(w) = z w + λ1|w| + q w²/2 is minimized by the closed form (float64 check)
        wd = kernel_w.astype(np.float64)
        at = _phi(wd, z64, q, kwargs["l1"])
        for delta in (1e-2, -1e-2):
            moved = _phi(wd + delta * (1.0 + np.abs(wd)), z64, q, kwargs["l1"])
            assert np.all(at[outside] <= moved[outside] + 1e-5 * (1 + np.abs(at[outside]))), (
                f"step {t}: closed-form weight does not minimize φ"
            )


# ---------------------------------------------------------------------------------------------
# (d) TensorFlow / Keras published vectors

# Each case: (ftrl kwargs, steps, var0, var1, expected var0, expected var1), with
# grads0 = [0.1, 0.2], grads1 = [0.01, 0.02], learning_rate = 3.0 and
# initial_accumulator_value = 0.1 unless the case says otherwise. Source:
# tensorflow/tensorflow, tensorflow/python/keras/optimizer_v2/ftrl_test.py (FtrlOptimizerTest;
# the same numbers are in tensorflow/python/training/ftrl_test.py), compared there with
# assertAllCloseAccordingToType, i.e. rtol = atol = 1e-6 for float32.
TF_CASES = {
    # doTestFtrlwithoutRegularization (3 steps from zeros)
    "testFtrlWithoutRegularization": (
        {},
        3,
        [0.0, 0.0],
        [0.0, 0.0],
        [-2.60260963, -4.29698515],
        [-0.28432083, -0.56694895],
    ),
    "testFtrlwithoutRegularization2": (
        {},
        3,
        [1.0, 2.0],
        [4.0, 3.0],
        [-2.55607247, -3.98729396],
        [-0.28232238, -0.56096673],
    ),
    "testFtrlWithL1": (
        {"l1": 0.001},
        10,
        [1.0, 2.0],
        [4.0, 3.0],
        [-7.66718769, -10.91273689],
        [-0.93460727, -1.86147261],
    ),
    "testFtrlWithBeta": (
        {"beta": 0.1},
        10,
        [1.0, 2.0],
        [4.0, 3.0],
        [-6.096838, -9.162214],
        [-0.717741, -1.425132],
    ),
    "testFtrlWithL2_Beta": (
        {"l2": 0.1, "beta": 0.1},
        10,
        [1.0, 2.0],
        [4.0, 3.0],
        [-2.735487, -4.704625],
        [-0.294335, -0.586556],
    ),
    "testFtrlWithL1_L2": (
        {"l1": 0.001, "l2": 2.0},
        10,
        [1.0, 2.0],
        [4.0, 3.0],
        [-0.24059935, -0.46829352],
        [-0.02406147, -0.04830509],
    ),
    "testFtrlWithL1_L2_L2Shrinkage": (
        {"l1": 0.001, "l2": 2.0, "l2_shrinkage": 0.1},
        10,
        [1.0, 2.0],
        [4.0, 3.0],
        [-0.22578995, -0.44345796],
        [-0.14378493, -0.13229476],
    ),
}


@pytest.mark.parametrize("name", sorted(TF_CASES))
def test_tensorflow_vectors(name):
    """(d) TensorFlow's FtrlOptimizerTest expected values, float32, at TF's tolerance."""
    kwargs, steps, var0, var1, want0, want1 = TF_CASES[name]
    tx = ftrl(3.0, initial_accumulator_value=0.1, **kwargs)
    params = {"var0": jnp.asarray(var0, jnp.float32), "var1": jnp.asarray(var1, jnp.float32)}
    grads = {
        "var0": jnp.asarray([0.1, 0.2], jnp.float32),
        "var1": jnp.asarray([0.01, 0.02], jnp.float32),
    }
    state, step = tx.init(params), jax.jit(tx.update)
    for _ in range(steps):
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["var0"], want0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(params["var1"], want1, rtol=1e-6, atol=1e-6)


def test_tensorflow_shrinkage_does_not_change_accumulator():
    """(d) testFtrlWithL2ShrinkageDoesNotChangeLrSchedule: n is the same with and without
    l2_shrinkage (the accumulator takes the raw g², never the shrunk gradient), and the shrunk
    weights are smaller in magnitude."""
    grads = jnp.asarray([0.1, 0.2], jnp.float32)
    runs = []
    for shrinkage in (0.1, 0.0):
        tx = ftrl(3.0, initial_accumulator_value=0.1, l1=0.001, l2=2.0, l2_shrinkage=shrinkage)
        runs.append(run_optax(tx, jnp.asarray([1.0, 2.0], jnp.float32), [grads] * 10)[-1])
    (w0, s0), (w1, s1) = runs
    assert np.all(w0**2 < w1**2)
    np.testing.assert_array_equal(s0.accumulators, s1.accumulators)


def test_keras_golden_values():
    """(d) keras-team/keras, keras/src/optimizers/ftrl_test.py: test_single_step and
    test_correctness_with_golden (power -0.2, l1, l2, shrinkage and beta together; Keras
    compares at rtol = atol = 5e-4 after rounding its golden values to 4 decimals)."""
    tx = ftrl(0.5)
    w = jnp.asarray([1.0, 2.0, 3.0, 4.0], jnp.float32)
    updates, _ = tx.update(jnp.asarray([1.0, 6.0, 7.0, 2.0], jnp.float32), tx.init(w), w)
    np.testing.assert_allclose(
        optax.apply_updates(w, updates), [0.2218, 1.3954, 2.3651, 2.8814], rtol=1e-4, atol=1e-4
    )

    golden = np.array(
        [
            [0.0] * 10,
            [
                -0.0034,
                -0.0077,
                -0.0118,
                -0.0157,
                -0.0194,
                -0.023,
                -0.0263,
                -0.0294,
                -0.0325,
                -0.0354,
            ],
            [
                -0.0078,
                -0.0162,
                -0.0242,
                -0.0317,
                -0.0387,
                -0.0454,
                -0.0516,
                -0.0575,
                -0.0631,
                -0.0685,
            ],
            [
                -0.0121,
                -0.0246,
                -0.0363,
                -0.0472,
                -0.0573,
                -0.0668,
                -0.0757,
                -0.0842,
                -0.0922,
                -0.0999,
            ],
            [
                -0.0164,
                -0.0328,
                -0.0481,
                -0.0623,
                -0.0753,
                -0.0875,
                -0.099,
                -0.1098,
                -0.1201,
                -0.1299,
            ],
        ]
    )
    tx = ftrl(
        0.05,
        learning_rate_power=-0.2,
        initial_accumulator_value=0.4,
        l1=0.05,
        l2=0.15,
        l2_shrinkage=0.01,
        beta=0.3,
    )
    x = jnp.ones(10, jnp.float32)
    state, step = tx.init(x), jax.jit(tx.update)
    updates, state = step(jnp.full(10, 0.01, jnp.float32), state, x)
    x = optax.apply_updates(x, updates)
    grads = jnp.asarray(np.arange(0.1, 1.1, 0.1), jnp.float32)
    for row in golden:
        np.testing.assert_allclose(x, row, rtol=5e-4, atol=5e-4)
        updates, state = step(grads, state, x)
        x = optax.apply_updates(x, updates)


# ---------------------------------------------------------------------------------------------
# (e) literal TensorFlow kernel, step for step


def _rounding_bound(w, n, z, g, kwargs):
    """Per-element bound on float32 rounding differences of (w', z') for one step.

    Each of the few operations rounds once (≤ eps/2 relative to its result); we allow 16 eps
    times the magnitudes involved: for z' the terms |z|, |g_s|, |σ w|; for w' the error of z'
    carried through the division by q plus its own roundings.
    """
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    w, n, z, g = f64(w), f64(n), f64(z), f64(g)
    lr, p = kwargs["learning_rate"], kwargs["learning_rate_power"]
    gs = g + 2 * kwargs["l2_shrinkage"] * w
    n1 = n + g * g
    root1, root0 = n1**-p, n**-p
    sigma_w = np.abs((root1 - root0) / lr * w) + (root1 + root0) / lr * np.abs(w)
    z_bound = 16 * EPS32 * (np.abs(z) + np.abs(gs) + sigma_w)
    z1 = z + gs - (root1 - root0) / lr * w
    q = root1 / lr + 2 * kwargs["l2"] + kwargs["beta"] / lr
    with np.errstate(divide="ignore", invalid="ignore"):
        w_bound = np.where(q > 0, (z_bound + 16 * EPS32 * (np.abs(z1) + kwargs["l1"])) / q, 0.0)
    return w_bound, z_bound


# Found on a GPU run: l2 = 1e-155 is 0 in float32, so with n0 = 0 and a zero gradient the
# curvature is 0 while shrinkage makes z non-zero: TF gives -inf, ftrl documents 0.
ZERO_CURVATURE = {
    "kwargs": {
        "learning_rate": 0.05,
        "learning_rate_power": -0.5,
        "initial_accumulator_value": 0.0,
        "l1": 0.0,
        "l2": 1.25e-155,
        "l2_shrinkage": 0.1,
        "beta": 0.0,
    },
    "grads": np.tile(np.asarray([0.0, 1e-3], np.float32), (12, DIM // 2)),
    "w0": np.full((1, DIM), 0.01304, np.float32),
}


@example(**ZERO_CURVATURE)
@given(kwargs=hyperparams(), grads=gradient_steps(12), w0=gradient_steps(1))
def test_step_for_step_equals_tensorflow_kernel(kwargs, grads, w0):
    """(e) From the same (w, n, z, g), one step of the kernel == ApplyFtrlV2 in numpy float32:
    n' bitwise, z' and w' within float32 rounding, zeros where TF has zeros; 12 steps."""
    hp = ftrl_hyperparams(**kwargs)
    w = w0[0].astype(np.float32)
    n = np.full(DIM, kwargs["initial_accumulator_value"], np.float32)
    z = np.zeros(DIM, np.float32)
    for t, g in enumerate(grads):
        ours = [
            np.asarray(a)
            for a in ftrl_kernel(jnp.asarray(w), jnp.asarray(n), jnp.asarray(z), jnp.asarray(g), hp)
        ]
        *theirs, curvature = tf_step(w, n, z, g, kwargs)
        w_bound, z_bound = _rounding_bound(w, n, z, g, kwargs)
        np.testing.assert_array_equal(ours[1], theirs[1], err_msg=f"step {t}: accumulator")
        assert np.all(np.abs(ours[2] - theirs[2]) <= z_bound), f"step {t}: linear"
        assert np.all(np.isfinite(ours[0])), f"step {t}: non-finite weight"
        flat = curvature == 0  # TF divides by zero here (±inf / NaN); ftrl documents 0
        assert np.all(ours[0][flat] == 0.0), f"step {t}: weight at zero curvature"
        ok = np.abs(ours[0] - theirs[0]) <= w_bound
        assert np.all(ok[~flat]), f"step {t}: weight"
        w, n, z = ours  # continue from our state, so each step is compared on equal inputs


@example(**ZERO_CURVATURE)
@given(kwargs=hyperparams(), grads=gradient_steps(12), w0=gradient_steps(1))
def test_trajectory_equals_tensorflow_kernel(kwargs, grads, w0):
    """(e) 12 steps through tx.update + optax.apply_updates follow the numpy ApplyFtrlV2
    trajectory (float32 rounding, accumulated over the steps)."""
    w = w0[0].astype(np.float32)
    n = np.full(DIM, kwargs["initial_accumulator_value"], np.float32)
    z = np.zeros(DIM, np.float32)
    reference = []
    for g in grads:
        w, n, z, curvature = tf_step(w, n, z, g, kwargs)
        w = np.where(curvature == 0, np.float32(0), w)  # ftrl's documented zero-curvature 0
        reference.append(w)
    scale = max(1.0, float(np.max(np.abs(reference))))
    ours = [w for w, _ in run_optax(ftrl(**kwargs), jnp.asarray(w0[0]), grads)]
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * scale)


JIT_CASES = [
    {"learning_rate": 0.5},
    {
        "learning_rate": 0.1,
        "learning_rate_power": -0.3,
        "initial_accumulator_value": 0.0,
        "l1": 0.05,
        "l2": 0.1,
        "beta": 0.5,
    },
    {"learning_rate": 2.0, "learning_rate_power": 0.0, "l1": 0.2, "l2_shrinkage": 0.1},
]


@pytest.mark.parametrize("kwargs", JIT_CASES)
def test_jit_on_pytree_equals_kernel(kwargs):
    """(e) Under jit, on a pytree (dict of two shapes), 12 steps follow ApplyFtrlV2."""
    rng = np.random.default_rng(7)
    params = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": [rng.normal(size=5).astype(np.float32)],
    }
    grads = [
        {
            "a": rng.normal(size=(3, 4)).astype(np.float32),
            "b": [rng.normal(size=5).astype(np.float32)],
        }
        for _ in range(12)
    ]
    tx = ftrl(**kwargs)
    full = ftrl_hyperparams(**kwargs)._asdict()  # every hyperparameter, defaults filled in
    step = jax.jit(tx.update)
    jparams = jax.tree.map(jnp.asarray, params)
    state = tx.init(jparams)
    ref = {
        key: (w, np.full(w.shape, full["initial_accumulator_value"], np.float32), 0 * w)
        for key, w in (("a", params["a"]), ("b", params["b"][0]))
    }
    for t, g in enumerate(grads):
        updates, state = step(jax.tree.map(jnp.asarray, g), state, jparams)
        jparams = optax.apply_updates(jparams, updates)
        for key, leaf in (("a", g["a"]), ("b", g["b"][0])):
            ref[key] = tf_step(*ref[key][:3], leaf, full)
        np.testing.assert_allclose(
            jparams["a"], ref["a"][0], rtol=1e-4, atol=1e-5, err_msg=f"step {t}"
        )
        np.testing.assert_allclose(
            jparams["b"][0], ref["b"][0], rtol=1e-4, atol=1e-5, err_msg=f"step {t}"
        )
