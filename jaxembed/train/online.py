"""The online phase: the offline model keeps learning from a live click stream.

As the production system ran it: the embedding tables are **frozen**, the wide part learns by
**FTRL** (continuing the FTRL state of the offline fit, so the first online step does not
reset its weights) and the deep dense layers by plain **SGD with a small rate** — one
``optax.partition`` built by :func:`jaxembed.optim.partition.partitioned` from path rules.
``accumulate = k`` wraps it in ``optax.MultiSteps``: ``k`` mini-batches make one update,
the remedy for the blow-up of asynchronous stale updates (:mod:`jaxembed.stream.async_sim`).

The stream is rebuilt from a log's timestamps: each page view and each click is an event
arriving after its own log delay; the :class:`~jaxembed.stream.joiner.PairwiseJoiner` emits
each page view with its positives and sibling negatives together, and the learner trains on
mini-batches of the emitted impressions in arrival order.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxembed.data.search_log import SearchLog
from jaxembed.features import Features
from jaxembed.optim.ftrl import FtrlState, ftrl
from jaxembed.optim.partition import param_path, partitioned
from jaxembed.stream.joiner import Click, PageView, PairwiseJoiner
from jaxembed.train.evaluate import mean_loss

ONLINE_RULES = (("^wide/kernel$", "ftrl"), ("embed/embedding$", "frozen"))
"""Path rules of the online partition; every other parameter is ``"sgd"``."""


@dataclasses.dataclass(frozen=True)
class OnlineConfig:
    """Hyperparameters of the online phase (FTRL's must match the offline wide rule's).

    ``negative_rate = w < 1`` keeps each emitted negative with probability ``w`` (every
    positive is kept); a model trained so predicts ``p`` where the true rate is
    ``q = p / (p + (1 - p) / w)`` — serve it through
    :func:`jaxembed.stream.calibration.calibrate_logits`.
    """

    batch_size: int = 256
    sgd_learning_rate: float = 1e-3
    ftrl_learning_rate: float = 0.2
    ftrl_l1: float = 0.0
    ftrl_l2: float = 0.1
    accumulate: int = 1
    window: float = 600.0
    max_pending: int = 100_000
    view_delay: float = 30.0
    click_delay: float = 120.0
    negative_rate: float = 1.0
    seed: int = 0


def stream_events(log: SearchLog, config: OnlineConfig) -> list[PageView | Click]:
    """The log as events in arrival order: a page view arrives up to ``view_delay`` seconds
    after it happened, a click up to ``click_delay`` after it happened. Items are the log's
    row numbers, so each emitted example names its row."""
    rng = np.random.default_rng([config.seed, 7])
    starts = np.flatnonzero(np.r_[True, log.pageview_id[1:] != log.pageview_id[:-1]])
    bounds = np.r_[starts, len(log)]
    events: list[PageView | Click] = []
    arrival: list[float] = []
    view_lag = rng.uniform(0, config.view_delay, len(starts))
    for g, (a, b) in enumerate(itertools.pairwise(bounds)):
        pv = int(log.pageview_id[a])
        time = float(log.pv_time[a])
        events.append(PageView(pv, time, int(log.user_id[a]), tuple(range(a, b))))
        arrival.append(time + view_lag[g])
    clicked = np.flatnonzero(log.label == 1)
    click_lag = rng.uniform(0, config.click_delay, clicked.shape[0])
    for row, lag in zip(clicked, click_lag, strict=True):
        events.append(Click(int(log.pageview_id[row]), float(log.click_time[row]), int(row)))
        arrival.append(float(log.click_time[row]) + lag)
    order = np.argsort(np.asarray(arrival), kind="stable")
    return [events[i] for i in order]


def _with_offline_ftrl_state(opt_state: Any, ftrl_state: FtrlState | None) -> Any:
    """Put the offline FTRL slots of ``wide/kernel`` into the partition's FTRL state."""
    if ftrl_state is None:
        return opt_state

    def fill(node: Any) -> Any:
        if not isinstance(node, FtrlState):
            return node

        def take(slot: Any, offline: Any) -> Any:
            def leaf(path, value):
                return offline if param_path(path) == "wide/kernel" else value
            return jax.tree_util.tree_map_with_path(leaf, slot)

        return FtrlState(take(node.accumulators, ftrl_state.accumulators),
                         take(node.linear, ftrl_state.linear))

    return jax.tree.map(fill, opt_state, is_leaf=lambda n: isinstance(n, FtrlState))


def _transform(config: OnlineConfig) -> optax.GradientTransformation:
    """The online partition: FTRL on the wide kernel, frozen tables, SGD elsewhere."""
    tx = partitioned(
        {"ftrl": ftrl(config.ftrl_learning_rate, l1=config.ftrl_l1, l2=config.ftrl_l2),
         "sgd": optax.sgd(config.sgd_learning_rate)},
        rules=ONLINE_RULES, default="sgd")
    return optax.MultiSteps(tx, config.accumulate) if config.accumulate > 1 else tx


@functools.lru_cache(maxsize=16)
def _compiled_step(graphdef: Any, config: OnlineConfig):
    """The jitted online step for one model structure and config (cached)."""
    tx = _transform(config)

    @functools.partial(jax.jit, donate_argnums=(0, 2))
    def step(params, other, opt_state, batch, labels):
        def loss_fn(params):
            return mean_loss(nnx.merge(graphdef, params, other)(batch), labels)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


class OnlineLearner:
    """Applies the online partition to a model, one mini-batch at a time."""

    def __init__(self, model: nnx.Module, config: OnlineConfig,
                 ftrl_state: FtrlState | None = None) -> None:
        self.config = config
        self.graphdef, self.params, self.other = nnx.split(model, nnx.Param, ...)
        self.tx = _transform(config)
        inner = self.tx.init(self.params)
        self.opt_state = _with_offline_ftrl_state(inner, ftrl_state)
        self._step = _compiled_step(self.graphdef, config)

    def model(self) -> nnx.Module:
        return nnx.merge(self.graphdef, self.params, self.other)

    def step(self, batch: dict, labels: Any) -> jax.Array:
        self.params, self.opt_state, loss = self._step(
            self.params, self.other, self.opt_state, batch, jnp.asarray(labels))
        return loss


def run(learner: OnlineLearner, log: SearchLog, features: Features,
        progress: Any = None) -> dict[str, Any]:
    """Stream ``log`` through the joiner into ``learner``; ``features`` are the log's
    encoded rows. Returns the joiner's counters, the loss per step and the examples seen."""
    config = learner.config
    joiner = PairwiseJoiner(config.window, config.max_pending)
    events = stream_events(log, config)
    whole = features.batch(0, len(features))
    pending: list[int] = []
    losses: list[float] = []
    task = None if progress is None else progress.add_task("online", total=len(events),
                                                              unit="events")

    def train_on(rows: np.ndarray) -> None:
        batch = jax.tree.map(lambda a: a[rows], whole)
        losses.append(learner.step(batch, features.labels[rows]))

    keep_rng = np.random.default_rng([config.seed, 11])

    def sampled(examples) -> list[int]:
        if config.negative_rate >= 1.0:
            return [example.item for example in examples]
        draws = keep_rng.random(len(examples))
        return [e.item for e, u in zip(examples, draws, strict=True)
                if e.label == 1 or u < config.negative_rate]

    for i, event in enumerate(events):
        pending.extend(sampled(joiner.push(event)))
        while len(pending) >= config.batch_size:
            train_on(np.asarray(pending[: config.batch_size]))
            del pending[: config.batch_size]
        if progress is not None and i % 5000 == 0:
            progress.update(task, completed=i + 1)
    pending.extend(sampled(joiner.flush()))
    while len(pending) >= config.batch_size:
        train_on(np.asarray(pending[: config.batch_size]))
        del pending[: config.batch_size]
    if progress is not None:
        progress.update(task, completed=len(events))
    return {"stats": joiner.stats, "losses": [float(x) for x in losses],
            "negative_rate": config.negative_rate,
            "examples": len(losses) * config.batch_size, "left_over": len(pending)}
