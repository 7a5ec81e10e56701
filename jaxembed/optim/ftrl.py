"""FTRL-Proximal as an optax ``GradientTransformation``, step for step TensorFlow's FTRL.

FTRL keeps two slots per coordinate — the accumulator ``n`` of squared gradients and the
linear term ``z`` — and computes the new weight *directly* from them; the weight is never
moved by a gradient step. :func:`ftrl_kernel` is that per-coordinate computation (shared with
the row-sparse rule in :mod:`jaxembed.optim.sparse`); :func:`ftrl` wraps it as an optax
transform whose updates are ``new_params - params``. Results agree with TensorFlow's kernel to
float rounding (a few ulp per step), not always bitwise: XLA computes ``x / α`` as ``x · (1/α)``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["FtrlHyperparams", "FtrlState", "ftrl", "ftrl_hyperparams", "ftrl_kernel"]


class FtrlState(NamedTuple):
    """State of :func:`ftrl`: one accumulator ``n`` and one linear term ``z`` per parameter."""

    accumulators: optax.Params  # n: initial_accumulator_value + Σ g²
    linear: optax.Params  # z: Σ (g_shrink - σ·w)


class FtrlHyperparams(NamedTuple):
    """Validated FTRL hyperparameters (Python floats), as :func:`ftrl_hyperparams` returns."""

    learning_rate: float
    learning_rate_power: float
    initial_accumulator_value: float
    l1: float
    l2: float
    l2_shrinkage: float
    beta: float


def _number(name: str, value: Any) -> float:
    try:
        if isinstance(value, str | bytes):
            raise TypeError(value)
        number = float(value)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError) as err:
        raise TypeError(f"ftrl: {name} must be a concrete real number, got {value!r}") from err
    if not math.isfinite(number):
        raise ValueError(f"ftrl: {name} must be finite, got {number}")
    return number


def ftrl_hyperparams(
    learning_rate: float,
    *,
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1: float = 0.0,
    l2: float = 0.0,
    l2_shrinkage: float = 0.0,
    beta: float = 0.0,
) -> FtrlHyperparams:
    """Check FTRL hyperparameters: Keras's rules, plus finiteness.

    Raises:
      ValueError: naming the offending value, when ``learning_rate <= 0``,
        ``learning_rate_power > 0``, a value is not finite, or any of
        ``initial_accumulator_value, l1, l2, l2_shrinkage, beta`` is negative.
      TypeError: when a value is not a concrete real number.
    """
    lr = _number("learning_rate", learning_rate)
    power = _number("learning_rate_power", learning_rate_power)
    values = {
        "initial_accumulator_value": _number(
            "initial_accumulator_value", initial_accumulator_value
        ),
        "l1": _number("l1", l1),
        "l2": _number("l2", l2),
        "l2_shrinkage": _number("l2_shrinkage", l2_shrinkage),
        "beta": _number("beta", beta),
    }
    if lr <= 0.0:
        raise ValueError(f"ftrl: learning_rate must be > 0, got {lr}")
    if power > 0.0:
        raise ValueError(f"ftrl: learning_rate_power must be <= 0 (0 = constant rate), got {power}")
    for name, value in values.items():
        if value < 0.0:
            raise ValueError(f"ftrl: {name} must be >= 0, got {value}")
    return FtrlHyperparams(learning_rate=lr, learning_rate_power=power, **values)


def _two_l2(hp: FtrlHyperparams, dtype: Any) -> Any:
    """``2·(l2 + beta/(2·lr))`` in ``dtype``, in Keras/TensorFlow's order of operations."""
    t = np.dtype(dtype).type
    adjusted = t(hp.l2) + t(hp.beta) / (t(2.0) * t(hp.learning_rate))
    return t(2.0) * adjusted


def ftrl_kernel(
    weight: jax.Array,
    accumulator: jax.Array,
    linear: jax.Array,
    grad: jax.Array,
    hp: FtrlHyperparams,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One FTRL step for arrays of coordinates: ``(w, n, z, g) -> (w', n', z')``.

    The operations and their order are those of TensorFlow's ``ApplyFtrlV2`` CPU kernel
    (``tensorflow/core/kernels/training_ops.cc``)::

        g_s = g + 2·l2_shrinkage·w          (shrinkage enters z only, never n)
        n'  = n + g²
        σ   = (n'^(-p) - n^(-p)) / α        (sqrt for p = -0.5, as TF special-cases it)
        z'  = z + (g_s - σ·w)
        q   = n'^(-p) / α + 2·l2            (l2 already includes beta/(2α))
        w'  = (sign(z')·l1 - z') / q   if |z'| > l1 and q > 0   else 0

    The one departure from TensorFlow is ``q = 0`` (zero curvature), where TF divides by zero
    (``±inf``, or ``NaN`` for ``0/0``) and this kernel gives 0; see :func:`ftrl`.
    """
    dtype = weight.dtype
    lr = jnp.asarray(hp.learning_rate, dtype)
    grad = grad.astype(dtype)
    if hp.l2_shrinkage > 0.0:
        shrunk = grad + jnp.asarray(2.0 * hp.l2_shrinkage, dtype) * weight
    else:  # TF dispatches to ApplyFtrl (no shrinkage term) here
        shrunk = grad
    new_accumulator = accumulator + grad * grad
    if hp.learning_rate_power == -0.5:
        new_root, old_root = jnp.sqrt(new_accumulator), jnp.sqrt(accumulator)
    else:
        exponent = jnp.asarray(-hp.learning_rate_power, dtype)
        new_root = jnp.power(new_accumulator, exponent)
        old_root = jnp.power(accumulator, exponent)
    new_linear = linear + (shrunk - (new_root - old_root) / lr * weight)
    l1 = jnp.asarray(hp.l1, dtype)
    quadratic = new_root / lr + jnp.asarray(_two_l2(hp, dtype), dtype)
    # A select on |z'| > l1, as TF's kernel (not Keras 3's clip, which gives 0/0 = NaN at q = 0),
    # and a guard for q = 0 (zero curvature) where TF would divide by zero.
    zero = jnp.zeros((), dtype)
    curved = quadratic > zero
    active = (jnp.abs(new_linear) > l1) & curved
    new_weight = jnp.where(
        active, (jnp.sign(new_linear) * l1 - new_linear) / jnp.where(curved, quadratic, 1), zero
    )
    return new_weight, new_accumulator, new_linear


def ftrl(
    learning_rate: float,
    *,
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1: float = 0.0,
    l2: float = 0.0,
    l2_shrinkage: float = 0.0,
    beta: float = 0.0,
) -> optax.GradientTransformation:
    r"""FTRL-Proximal (Follow The Regularized Leader), as in TensorFlow and Keras.

    Per coordinate, with gradient :math:`g_t` at weight :math:`w_t`, learning rate
    :math:`\alpha`, power :math:`p \le 0`, accumulator :math:`n_0` =
    ``initial_accumulator_value`` and :math:`z_0 = 0`:

    .. math::

        g^s_t &= g_t + 2\,\lambda_{s}\,w_t \qquad (\lambda_s = \text{l2\_shrinkage})\\
        n_{t+1} &= n_t + g_t^2 \\
        \sigma_t &= \big(n_{t+1}^{-p} - n_t^{-p}\big) / \alpha \\
        z_{t+1} &= z_t + g^s_t - \sigma_t\,w_t \\
        w_{t+1} &= \begin{cases} 0 & |z_{t+1}| \le \lambda_1 \\
            -\dfrac{z_{t+1} - \operatorname{sign}(z_{t+1})\,\lambda_1}
                   {(\beta + n_{t+1}^{-p})/\alpha + 2\lambda_2} & \text{otherwise.}\end{cases}

    The accumulator takes the raw squared gradient (shrinkage changes ``z`` only); ``beta``
    enters as TensorFlow's ``l2 + beta/(2α)``. With :math:`p = -1/2`, :math:`n_0 = 0`, this is
    Algorithm 1 of McMahan et al. (2013) with :math:`\lambda_2^{\text{paper}} = 2\,l_2`
    (TensorFlow's ``l2`` multiplies :math:`\|w\|^2`, the paper's :math:`\lambda_2` multiplies
    :math:`\tfrac12\|w\|^2`). With :math:`p = 0` the rate is the constant :math:`\alpha`.

    FTRL computes :math:`w_{t+1}` itself, so ``update(grads, state, params)`` needs ``params``
    and returns ``updates = new_params - params``; ``optax.apply_updates`` then gives
    ``params + (new_params - params)``: exactly ``new_params`` where it is 0 (so L1 zeros are
    exact) and otherwise within one rounding, i.e. half an ulp of
    ``max(|params|, |new_params|)`` (a new weight far smaller than the old one can round to 0).

    Zero curvature: with ``initial_accumulator_value=0``, :math:`p < 0` and ``l2 = beta = 0``,
    a coordinate whose gradients so far are all 0 (or whose squares underflow to 0, e.g.
    :math:`|g| < 2^{-75}` in float32, :math:`2^{-63}` where denormals flush to zero as on
    GPUs, :math:`2^{-12}` in float16) has
    :math:`q = 0`. Its ``z`` is usually 0 too and TensorFlow's select on
    :math:`|z| > \lambda_1` gives an exact 0 rather than 0/0; but ``l2_shrinkage > 0`` (or a
    gradient that is non-zero while its square underflows) makes ``z`` non-zero and TensorFlow's
    weight ``±inf``. Here the weight is 0 wherever :math:`q = 0` — the FTRL objective has no
    minimizer there, and 0 is the weight of a coordinate without evidence. Like TensorFlow,
    FTRL sets a coordinate to :math:`w = -z/q` even when its gradient is 0: a weight that
    starts non-zero but never receives a gradient snaps to 0 on the first step (start FTRL
    weights at 0, as the paper does).

    Args:
      learning_rate: :math:`\alpha > 0`.
      learning_rate_power: :math:`p \le 0`; ``-0.5`` is the paper's per-coordinate rate,
        ``0`` a constant rate.
      initial_accumulator_value: :math:`n_0 \ge 0`.
      l1: L1 strength :math:`\lambda_1 \ge 0`; weights are exactly 0 while
        :math:`|z| \le \lambda_1`.
      l2: L2 strength :math:`\ge 0` (TensorFlow's ``l2_regularization_strength``).
      l2_shrinkage: shrinkage-type L2 :math:`\ge 0`, added to the gradient (``z`` only).
      beta: :math:`\beta \ge 0` of the paper's per-coordinate rate
        :math:`\alpha / (\beta + \sqrt{n})`.

    Returns:
      An ``optax.GradientTransformation`` with state :class:`FtrlState`.

    Raises:
      ValueError / TypeError: for invalid hyperparameters (see :func:`ftrl_hyperparams`).

    References:
      McMahan et al., 2013, `Ad Click Prediction: a View from the Trenches
      <https://research.google.com/pubs/archive/41159.pdf>`_ (Algorithm 1).

      TensorFlow ``tf.raw_ops.ApplyFtrlV2`` (``tensorflow/core/kernels/training_ops.cc``)
      and ``keras.optimizers.Ftrl``.
    """
    hp = ftrl_hyperparams(
        learning_rate,
        learning_rate_power=learning_rate_power,
        initial_accumulator_value=initial_accumulator_value,
        l1=l1,
        l2=l2,
        l2_shrinkage=l2_shrinkage,
        beta=beta,
    )

    def init_fn(params: optax.Params) -> FtrlState:
        return FtrlState(
            accumulators=optax.tree.full_like(params, hp.initial_accumulator_value),
            linear=optax.tree.zeros_like(params),
        )

    def update_fn(
        updates: optax.Updates, state: FtrlState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, FtrlState]:
        if params is None:
            raise ValueError(
                "ftrl computes the new weights from the old ones: call "
                "update(grads, state, params) with params (got params=None)"
            )
        treedef = jax.tree.structure(updates)
        flat = [
            treedef.flatten_up_to(tree)
            for tree in (updates, params, state.accumulators, state.linear)
        ]
        steps, accumulators, linear = [], [], []
        for g, w, n, z in zip(*flat, strict=True):
            new_w, new_n, new_z = ftrl_kernel(w, n, z, g, hp)
            steps.append(new_w - w)
            accumulators.append(new_n)
            linear.append(new_z)
        return treedef.unflatten(steps), FtrlState(
            accumulators=treedef.unflatten(accumulators), linear=treedef.unflatten(linear)
        )

    return optax.GradientTransformation(init_fn, update_fn)
