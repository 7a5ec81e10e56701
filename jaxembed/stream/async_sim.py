r"""Asynchronous stale updates versus mini-batch accumulation, simulated on the same data.

With ``τ`` workers pushing gradients to a parameter server without waiting, each applied
gradient was computed on parameters ``τ`` steps old:

.. math:: \theta_{t+1} = \theta_t - \eta\, g(\theta_{t-\tau};\ \text{batch}_t).

Accumulation instead sums the ``τ`` workers' gradients, all computed at the same parameters,
and applies them once (``optax.MultiSteps`` over ``sgd(η τ)``, which averages then scales):

.. math:: \theta_{t+\tau} = \theta_t - \eta \sum_{i<\tau} g(\theta_t;\ \text{batch}_{t+i}).

Both use every batch once with the same step ``η`` per gradient. On a quadratic with
curvature ``λ``, accumulation is stable while ``η τ λ < 2``; the delayed recursion is stable
only while ``η λ < 2 \sin(\pi / (2 (2τ + 1)))`` (about ``π / (4τ)``), so for a given ``η`` the
asynchronous run blows up at a staleness where accumulation still converges — the blow-up
the production system fixed by accumulating mini-batches. :func:`sweep` measures it on a
logistic regression over generated data and :func:`plot` draws it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

DIVERGED = 1e3  # a final loss above this (or NaN) counts as blown up
_EVAL = 4096  # examples the training loss is tracked on after each step


@dataclass(frozen=True)
class Problem:
    """A logistic regression: features ``x`` [N, D], labels ``y`` [N], batch size."""

    x: jax.Array
    y: jax.Array
    batch_size: int


def make_problem(num_examples: int = 65536, dim: int = 32, batch_size: int = 16,
                 seed: int = 0) -> Problem:
    """Generated data: correlated Gaussian features (a wide curvature spread), true weights,
    labels drawn from the true click probability."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(4.0, 0.25, dim)
    x = rng.standard_normal((num_examples, dim)) * scales
    w_true = rng.standard_normal(dim) / np.sqrt(dim)
    p = 1.0 / (1.0 + np.exp(-(x @ w_true)))
    y = (rng.random(num_examples) < p).astype(np.float32)
    return Problem(jnp.asarray(x, jnp.float32), jnp.asarray(y), batch_size)


def _loss(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """Half mean squared error of a linear click-probability model: its Hessian is
    ``xᵀx / n``, so the stability bounds of the module docstring are exact for it."""
    return 0.5 * jnp.mean(jnp.square(x @ w - y))


def _batches(x: jax.Array, y: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    num_batches = x.shape[0] // batch_size
    n = num_batches * batch_size
    return x[:n].reshape(num_batches, batch_size, -1), y[:n].reshape(num_batches, batch_size)


def run_async(problem: Problem, staleness: int, learning_rate: float) -> jax.Array:
    """Full-data loss after each step of SGD whose gradients are ``staleness`` steps old."""
    return _async_losses(problem.x, problem.y, problem.batch_size, staleness, learning_rate)


def run_accumulated(problem: Problem, staleness: int, learning_rate: float) -> jax.Array:
    """Full-data loss after each step of ``optax.MultiSteps`` accumulating ``staleness``
    gradients per update (``staleness = 0`` is plain SGD)."""
    return _accumulated_losses(problem.x, problem.y, problem.batch_size, staleness,
                               learning_rate)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _async_losses(x, y, batch_size, staleness, learning_rate):
    xs, ys = _batches(x, y, batch_size)
    grad = jax.grad(_loss)

    def step(carry, batch):
        history, t = carry  # history[k] = θ at step t - k, k = 0..τ
        stale = history[staleness]
        w = history[0] - learning_rate * grad(stale, *batch)
        history = jnp.concatenate([w[None], history[:-1]], axis=0)
        return (history, t + 1), _loss(w, x[:_EVAL], y[:_EVAL])

    history = jnp.zeros((staleness + 1, x.shape[1]))
    _, losses = jax.lax.scan(step, (history, 0), (xs, ys))
    return losses


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _accumulated_losses(x, y, batch_size, staleness, learning_rate):
    xs, ys = _batches(x, y, batch_size)
    every = max(staleness, 1)
    tx = optax.MultiSteps(optax.sgd(learning_rate * every), every_k_schedule=every)
    w0 = jnp.zeros(x.shape[1])

    def step(carry, batch):
        w, state = carry
        updates, state = tx.update(jax.grad(_loss)(w, *batch), state, w)
        w = optax.apply_updates(w, updates)
        return (w, state), _loss(w, x[:_EVAL], y[:_EVAL])

    _, losses = jax.lax.scan(step, (w0, tx.init(w0)), (xs, ys))
    return losses


def sweep(problem: Problem, stalenesses=(0, 8, 16, 32, 48, 56, 64, 80, 96),
          learning_rate: float = 0.002) -> dict[str, np.ndarray]:
    """Final loss of both schemes for each staleness (NaN/inf kept as they are)."""
    finals_async, finals_acc, curves = [], [], {}
    for tau in stalenesses:
        a = np.asarray(run_async(problem, tau, learning_rate))
        b = np.asarray(run_accumulated(problem, tau, learning_rate))
        finals_async.append(a[-1])
        finals_acc.append(b[-1])
        curves[tau] = (a, b)
    return {"staleness": np.asarray(stalenesses), "async": np.asarray(finals_async),
            "accumulate": np.asarray(finals_acc), "curves": curves}


def blown_up(losses: np.ndarray) -> np.ndarray:
    """True where a final loss is NaN, infinite or above ``DIVERGED``."""
    losses = np.asarray(losses, dtype=np.float64)
    return ~np.isfinite(losses) | (losses > DIVERGED)


def plot(result: dict, path: str, learning_rate: float) -> None:
    """Two panels: final loss against staleness, and the loss curves at the largest one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxembed._atomic import atomic_path

    def cap(values: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(values), np.minimum(values, DIVERGED), DIVERGED)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(result["staleness"], cap(result["async"]), "o-", label="asynchronous (stale)")
    left.plot(result["staleness"], cap(result["accumulate"]), "s-",
              label="mini-batch accumulation")
    left.set(yscale="log", xlabel="staleness τ (workers)",
             ylabel="final training loss (capped at 1e3)",
             title=f"SGD, η = {learning_rate} per gradient")
    left.legend()
    only_async = blown_up(result["async"]) & ~blown_up(result["accumulate"])
    taus = result["staleness"]
    tau = int(taus[np.argmax(only_async)] if only_async.any() else taus[-1])
    a, b = result["curves"][tau]
    right.plot(cap(a), label=f"asynchronous, τ = {tau}")
    right.plot(cap(b), label=f"accumulation, τ = {tau}")
    right.set(yscale="log", xlabel="step", ylabel="training loss (capped at 1e3)",
              title=f"loss curves at τ = {tau}")
    right.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
