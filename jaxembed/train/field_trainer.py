r"""The training step of every schema-built model: gathered rows, row-sparse tables, optax.

One jit-compiled step per mini-batch of encoded arrays (:mod:`jaxembed.data.loader`):

1. ``rows = gather_rows(tables, batch)`` — the rows of every table that every field looks up
   (:mod:`jaxembed.nn.fields`), zero on padding;
2. ``loss, (∂L/∂rows, ∂L/∂rest) = value_and_grad(head loss)``, the loss the masked mean
   logistic loss plus ``embedding_l2 · Σ ||R[b, l]||² / n`` over the gathered embedding rows;
3. the other parameters take an optax step (Adam by default);
4. each table takes a **row-sparse** step on the touched rows only
   (:mod:`jaxembed.optim.sparse`): for table ``W`` looked up by fields ``f``,
   ``ids = concat_f ids_f``, ``grads = concat_f ∂L/∂R_f`` and ``∂L/∂W = Σ e_{id} grad``.

The default partition by parameter kind (overridable through :class:`FitConfig`):
embedding tables lazy Adam (or Adagrad), linear tables (a model's per-id weights, the wide
crosses) FTRL, everything else Adam. The online partition of :func:`jaxembed.update` is the
same step configured otherwise: ``freeze_embeddings`` (embedding tables frozen, except the
rows ``grown_rows`` added for new ids), ``dense_optimizer = "sgd"``, ``accumulate = k``
(``optax.MultiSteps`` on the dense layers, :func:`~jaxembed.optim.sparse.sparse_accumulated`
on the tables: one update per ``k`` mini-batches). A learning rate of 0 holds its group
fixed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxembed.bags import Bags
from jaxembed.nn.ctr import sigmoid_cross_entropy
from jaxembed.nn.fields import LinearTable, Table, gather_rows
from jaxembed.optim.partition import param_path
from jaxembed.optim.sparse import (
    SparseRule,
    sparse_accumulated,
    sparse_adagrad,
    sparse_adam,
    sparse_frozen,
    sparse_ftrl,
    sparse_rows_in,
)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Hyperparameters of :func:`jaxembed.fit` (their defaults, and where each was measured,
    are the options table of ``docs/own-data.md``)."""

    epochs: int = 10
    batch_size: int | str = "auto"
    """Rows per step, or ``"auto"`` (the default): :func:`auto_batch_size` of the training
    rows (``fit`` stores the resolved number in the run's ``model.json``)."""
    learning_rate: float = 3e-3
    embedding_optimizer: str = "adam"
    embedding_learning_rate: float = 1e-3
    embedding_l2: float = 1e-6
    linear_learning_rate: float = 0.2
    linear_initial_accumulator: float = 1e-3
    """FTRL's starting ``n`` on the linear tables (Keras: 0.1). The loss is a batch *mean*, so
    a row's gradient is about ``1/batch_size`` of an example's: from 0.1, ``sqrt(n)`` hardly
    moves and FTRL runs as plain SGD at ``alpha / 0.32``; from 1e-3 each id's rate
    ``alpha / sqrt(n)`` adapts to its own gradients (``docs/benchmarks.md``)."""
    linear_l1: float = 0.0
    linear_l2: float = 1e-3
    patience: int = 2
    window: int = 4
    seed: int = 0
    dense_optimizer: str = "adam"
    freeze_embeddings: bool = False
    accumulate: int = 1
    grown_rows: tuple[tuple[str, int, int], ...] = ()
    negative_rate: float = 1.0
    """The rate at which the training log kept its negatives (``jaxembed join --downsample``);
    :func:`jaxembed.predict`, :func:`jaxembed.evaluate` and the served function calibrate the
    model's ``p`` to ``p / (p + (1 - p) / negative_rate)``. Training itself, and the
    validation metrics of each epoch, see the down-sampled rate (AUC is the same either way)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "grown_rows", tuple(
            (str(key), int(lo), int(hi)) for key, lo, hi in self.grown_rows))
        for name in ("epochs", "batch_size", "window", "accumulate"):
            value = getattr(self, name)
            if name == "batch_size" and value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                also = " or 'auto'" if name == "batch_size" else ""
                raise ValueError(f"{name} must be an integer >= 1{also}, got {value!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) \
                or self.patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")
        for name in ("learning_rate", "embedding_learning_rate", "linear_learning_rate"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 (0 holds the group fixed), got "
                                 f"{getattr(self, name)!r}")
        for name in ("embedding_l2", "linear_l1", "linear_l2", "linear_initial_accumulator"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if isinstance(self.negative_rate, bool) or not 0.0 < self.negative_rate <= 1.0:
            raise ValueError(f"negative_rate must be a number in (0, 1], "
                             f"got {self.negative_rate!r}")
        if self.embedding_optimizer not in ("adam", "adagrad"):
            raise ValueError(f"embedding_optimizer must be 'adam' or 'adagrad', "
                             f"got {self.embedding_optimizer!r}")
        if self.dense_optimizer not in ("adam", "sgd"):
            raise ValueError(f"dense_optimizer must be 'adam' or 'sgd', "
                             f"got {self.dense_optimizer!r}")
        if not isinstance(self.freeze_embeddings, bool):
            raise ValueError(f"freeze_embeddings must be true or false, "
                             f"got {self.freeze_embeddings!r}")
        for key, lo, hi in self.grown_rows:
            if not 0 <= lo <= hi:
                raise ValueError(f"grown_rows of table {key!r}: need 0 <= {lo} <= {hi}")


AUTO_BATCH = (256, 1024)
"""The smallest and largest batch ``batch_size="auto"`` picks."""
AUTO_STEPS = 1024
"""The steps an epoch ``batch_size="auto"`` keeps at least, where ``AUTO_BATCH`` allows."""


def auto_batch_size(rows: int) -> int:
    r"""The batch of ``batch_size="auto"`` for ``rows`` training rows: the largest power of
    two ``b`` with ``b · AUTO_STEPS <= rows``, clipped to ``AUTO_BATCH``,

    .. math:: b = \min(1024, \max(256, 2^{\lfloor \log_2 (rows / 1024) \rfloor})),

    so a log of up to 524,287 training rows trains at DeepCTR's batch of 256, a larger one
    at 512 (from 524,288 rows) or 1024 (from 1,048,576 rows, 1,024 steps an epoch or more).
    Measured on validation rows (``docs/benchmarks.md``, "Batch size (third round)"): at
    40k training rows, 256 against 1024 raised the best validation AUC of 12 of 15
    model-and-log pairs (mean of two seeds, by up to 0.028) and lowered 3 (by 0.002-0.003);
    at 160k it raised 6 of 7 pairs tried (by 0.001-0.008, one equal); at 800k it made no
    difference. With few steps an epoch, early stopping ends the fit before the tables have
    learned their frequent ids."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be an integer >= 1, got {rows!r}")
    lo, hi = AUTO_BATCH
    return min(hi, max(lo, 1 << max(rows // AUTO_STEPS, 1).bit_length() - 1))


SCORING_ROWS = 1024
"""The rows a scoring call takes at most, where the training batch is smaller."""


def scoring_batch(batch_size: int) -> int:
    """Rows per scoring call (each epoch's validation, ``evaluate``, ``predict``) of a run
    trained at ``batch_size``: the largest multiple of it up to :data:`SCORING_ROWS`, at least
    one batch (a multiple, so that it still splits over a mesh as the batch does). Scoring has
    no update to keep small: on the 2-core test machine, 40k rows scored in calls of 1024
    took 0.18 s against 0.22-0.23 s in calls of 256 (wide_deep, Criteo-format log)."""
    return batch_size * max(1, SCORING_ROWS // batch_size)


def table_rule(kind: type, config: FitConfig, key: str = "") -> SparseRule:
    """The row-sparse rule of a table variable class (linear: FTRL; embedding: Adam or
    Adagrad; frozen embeddings keep their slots and train only their ``grown_rows``; a
    learning rate of 0 freezes the table; ``accumulate = k``: one step per ``k``
    mini-batches). ``key``: the table's ``table_key``."""
    if issubclass(kind, LinearTable):
        inner = sparse_ftrl(max(config.linear_learning_rate, 1e-30), l1=config.linear_l1,
                            l2=config.linear_l2,
                            initial_accumulator_value=config.linear_initial_accumulator)
        if config.linear_learning_rate == 0:
            return sparse_frozen(inner)
    else:
        rate = max(config.embedding_learning_rate, 1e-30)
        inner = (sparse_adagrad(rate) if config.embedding_optimizer == "adagrad"
                 else sparse_adam(rate))
        grown = [(lo, hi) for k, lo, hi in config.grown_rows if k == key and hi > lo]
        if config.embedding_learning_rate == 0 or (config.freeze_embeddings and not grown):
            return sparse_frozen(inner)
        if config.freeze_embeddings:
            inner = sparse_rows_in(inner, *grown[0])
    return sparse_accumulated(inner, config.accumulate) if config.accumulate > 1 else inner


def dense_transform(config: FitConfig) -> optax.GradientTransformation:
    """The optax rule of the parameters that are not tables: Adam or SGD at
    ``learning_rate`` (0: held fixed), ``accumulate = k`` mini-batches per update
    (``optax.MultiSteps``: the mean of ``k`` gradients taken at the same parameters)."""
    if config.learning_rate == 0:
        tx = optax.set_to_zero()
    elif config.dense_optimizer == "sgd":
        tx = optax.sgd(config.learning_rate)
    else:
        tx = optax.adam(config.learning_rate)
    return optax.MultiSteps(tx, config.accumulate) if config.accumulate > 1 else tx


def to_bags(batch: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The model's batch of encoded arrays (works on traced arrays: no validation)."""
    out: dict[str, Any] = {name: Bags.tree_unflatten(None, (batch[f"ids/{name}"], None))
                           for name in fields}
    out["dense"] = batch["dense"]
    if "wide" in batch:
        out["wide"] = Bags.tree_unflatten(None, (batch["wide"], None))
    return out


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Static facts of a model's tables: keys, the fields indexing each, the rule kinds."""

    keys: tuple[str, ...]
    fields: tuple[tuple[str, ...], ...]
    kinds: tuple[type, ...]
    batch_fields: tuple[str, ...]
    embedding: tuple[bool, ...]


class FieldTrainer:
    """Holds a model split into its tables and the rest, with their optimizer states;
    :meth:`step` trains on one batch of encoded arrays."""

    def __init__(self, model: nnx.Module, config: FitConfig) -> None:
        self.config = config
        self.graphdef, tables, self.rest = nnx.split(model, Table, ...)
        meta = {"/".join(str(k) for k in path): variable
                for path, variable in nnx.to_flat_state(tables)}
        flat, self.table_def = jax.tree_util.tree_flatten_with_path(tables)
        variables = [meta[param_path(path)] for path, _ in flat]
        keys = tuple(v.get_metadata()["table_key"] for v in variables)
        fields = tuple(tuple(v.get_metadata()["fields"]) for v in variables)
        inputs = model.inputs
        self.layout = _Layout(keys, fields, tuple(type(v) for v in variables),
                              tuple(f.name for f in inputs.fields),
                              tuple(not isinstance(v, LinearTable) for v in variables))
        self.tables = [leaf for _, leaf in flat]
        self.rules = [table_rule(kind, config, key)
                      for kind, key in zip(self.layout.kinds, self.layout.keys, strict=True)]
        # an abstract model (``registry.build(..., abstract=True)``, parameters to be
        # restored) gets abstract optimizer states too, made concrete on the first step
        states = self.initial_states
        self.table_states, self.dense_state = (
            jax.eval_shape(states, self.tables, self.rest) if is_abstract(self.tables)
            else states(self.tables, self.rest))
        self._step = _compiled_step(self.graphdef, self.table_def, self.layout, config)
        self._predict = _compiled_predict(self.graphdef, self.table_def, self.layout)

    def initial_states(self, tables: list, rest: Any) -> tuple[list, Any]:
        """``(table_states, dense_state)``: the rules' initial optimizer states of these
        parameters (pure: ``jax.eval_shape`` of it gives their shapes)."""
        return ([rule.init(t) for rule, t in zip(self.rules, tables, strict=True)],
                dense_transform(self.config).init(rest))

    def model(self) -> nnx.Module:
        """The model with the current parameters."""
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.table_def, self.tables),
                         self.rest)

    def params(self) -> dict:
        """The parameters (what a run keeps of its best epoch)."""
        return {"tables": list(self.tables), "rest": self.rest}

    def set_params(self, params: Mapping[str, Any]) -> None:
        self.tables = list(params["tables"])
        self.rest = params["rest"]

    def payload(self) -> dict:
        """Everything a checkpoint holds to continue training."""
        return {"tables": self.tables, "table_states": self.table_states, "rest": self.rest,
                "dense_state": self.dense_state}

    def load(self, payload: Mapping[str, Any]) -> None:
        self.tables = list(payload["tables"])
        self.table_states = list(payload["table_states"])
        self.rest = payload["rest"]
        self.dense_state = payload["dense_state"]

    def step(self, batch: Mapping[str, np.ndarray]) -> jax.Array:
        """Train on one batch; returns its mean loss (before the update)."""
        arrays = {k: v for k, v in batch.items() if k != "group"}
        self.tables, self.table_states, self.rest, self.dense_state, loss = self._step(
            *self._training_state(), arrays)
        return loss

    def _training_state(self) -> tuple:
        """``(tables, table_states, rest, dense_state)`` as the step takes them: jax arrays
        committed to the default device. The step's outputs are committed arrays; inputs that
        are not (freshly initialised or host arrays) would make the second call a different
        program to ``jit`` (lowered and compiled again, or read again from the persistent
        cache: 0.2 s to seconds). After the first step this is one pass over the leaves."""
        state = (self.tables, self.table_states, self.rest, self.dense_state)
        if all(isinstance(x, jax.Array) and x.committed for x in jax.tree.leaves(state)):
            return state
        if is_abstract((self.tables, self.rest)):
            raise ValueError("this trainer's model was built abstractly: load or set its "
                             "parameters before training it")
        if is_abstract((self.table_states, self.dense_state)):
            # parameters restored without their optimizer state: the rules' initial state
            self.table_states, self.dense_state = self.initial_states(self.tables, self.rest)
            state = (self.tables, self.table_states, self.rest, self.dense_state)
        return jax.device_put(state, next(iter(jax.device_put(np.zeros(())).devices())))

    def probability_function(self) -> Callable:
        """The pure ``probabilities(tables, rest, batch)`` of this model's structure (on
        logical tables: what :meth:`params` returns)."""
        return probability_function(self.graphdef, self.table_def, self.layout)

    def probabilities(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Click probabilities of a batch of encoded arrays."""
        arrays = {k: v for k, v in batch.items() if k not in ("group", "label", "mask")}
        return np.asarray(self._predict(self.tables, self.rest, arrays))


def is_abstract(tree: Any) -> bool:
    """Whether any leaf of ``tree`` is a ``jax.ShapeDtypeStruct`` (a shape without a value)."""
    return any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(tree))


def _rows(tables: list, layout: _Layout, bags: Mapping[str, Any]) -> dict:
    return gather_rows(dict(zip(layout.keys, tables, strict=True)),
                       dict(zip(layout.keys, layout.fields, strict=True)), bags)


def _table_tree(table_def: Any, tables: Any, placement: Any) -> Any:
    """The tables as the model holds them; with a placement (sharded storage) abstract
    stand-ins of the logical tables (``head`` reads gathered rows, never the tables)."""
    return jax.tree.unflatten(table_def, tables if placement is None
                              else list(placement.stand_ins))


def _placed_rows(tables: Any, layout: _Layout, bags: Mapping[str, Any], placement: Any) -> dict:
    return _rows(tables, layout, bags) if placement is None else placement.rows(tables, bags)


def probability_function(graphdef: Any, table_def: Any, layout: _Layout,
                         placement: Any = None) -> Callable:
    """``probabilities(tables, rest, batch) -> f[B]``: the click probabilities of a batch of
    encoded arrays, gathered rows then ``head`` (pure; jitted for training, exported with
    ``jax.export`` for serving). ``placement`` (a
    :class:`jaxembed.train.field_sharding.FieldPlacement`) reads ``tables`` as sharded
    storage instead of logical ``[V, K]`` tables."""

    def probabilities(tables, rest, batch):
        bags = to_bags(batch, layout.batch_fields)
        model = nnx.merge(graphdef, _table_tree(table_def, tables, placement), rest)
        return jax.nn.sigmoid(model.head(_placed_rows(tables, layout, bags, placement), bags))

    return probabilities


@functools.lru_cache(maxsize=32)
def _compiled_predict(graphdef: Any, table_def: Any, layout: _Layout, placement: Any = None
                      ) -> Callable:
    return jax.jit(probability_function(graphdef, table_def, layout, placement))


@functools.lru_cache(maxsize=32)
def _compiled_step(graphdef: Any, table_def: Any, layout: _Layout, config: FitConfig,
                   placement: Any = None) -> Callable:
    """The jitted step. ``placement`` (a :class:`jaxembed.train.field_sharding.
    FieldPlacement`, hashable) holds the tables as sharded storage: it gathers the rows
    (``placement.rows``) and applies each table's rule to the rows it stores
    (``placement.update``); the rest of the step is the same."""
    rules = [table_rule(kind, config, key)
             for kind, key in zip(layout.kinds, layout.keys, strict=True)]
    dense_tx = dense_transform(config)

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
    def step(tables, table_states, rest, dense_state, batch):
        bags = to_bags(batch, layout.batch_fields)
        mask = batch["mask"]
        count = jnp.maximum(mask.sum(), 1.0)
        table_tree = _table_tree(table_def, tables, placement)
        rows = _placed_rows(tables, layout, bags, placement)

        def loss_fn(rows, rest):
            logits = nnx.merge(graphdef, table_tree, rest).head(rows, bags)
            loss = (sigmoid_cross_entropy(logits, batch["label"]) * mask).sum() / count
            penalty = sum(jnp.sum(r * r) for key, emb in zip(layout.keys, layout.embedding,
                                                               strict=True) if emb
                          for r in rows[key].values())
            return loss + config.embedding_l2 * penalty / count, loss

        (_, loss), (d_rows, d_rest) = jax.value_and_grad(loss_fn, argnums=(0, 1),
                                                         has_aux=True)(rows, rest)
        updates, dense_state = dense_tx.update(d_rest, dense_state, rest)
        rest = optax.apply_updates(rest, updates)
        touched = [(jnp.concatenate([jnp.where(bags[f].mask, bags[f].ids, -1).reshape(-1)
                                     for f in fields]),
                    jnp.concatenate([d_rows[key][f].reshape(-1, d_rows[key][f].shape[-1])
                                     for f in fields]))
                   for key, fields in zip(layout.keys, layout.fields, strict=True)]
        if placement is not None:
            new_tables, new_states = placement.update(rules, tables, table_states, touched)
            return new_tables, new_states, rest, dense_state, loss
        new_tables, new_states = [], []
        for table, state, rule, (ids, grads) in zip(tables, table_states, rules, touched,
                                                    strict=True):
            table, state = rule.update(table, state, ids, grads)
            new_tables.append(table)
            new_states.append(state)
        return new_tables, new_states, rest, dense_state, loss

    return step
