r"""Regularizers and constraints for embedding tables, as Keras users know them.

Keras attaches ``embeddings_regularizer`` and ``embeddings_constraint`` to its ``Embedding``
layer; jaxembed's layers take the same two hooks, in a functional form that fits ``jit``:

**Regularizers** are callables ``penalty(table, ids) -> scalar``, where ``ids`` are the ids the
batch looked up (an int array or a :class:`~jaxembed.Bags`; padding ``-1`` is ignored). A layer
built with ``embeddings_regularizer=r`` returns ``r(table, ids)`` from
``layer.regularization(ids)``; add it to the data loss::

    def loss_fn(model, ids, y):
        return data_loss(model(ids), y) + model.regularization(ids)

* :func:`l2_table` — :math:`\lambda \sum_{j,k} W_{jk}^2` (Keras ``l2``): every row, every step;
  its gradient :math:`2\lambda W` is dense.
* :func:`l2_rows` — the sparse-friendly form: only the rows the batch touched,
  :math:`\lambda \sum_{j \in \mathrm{batch}} \lVert W_j \rVert^2` (each distinct id once; with
  ``unique=False`` once per occurrence, i.e. weighted by frequency in the batch). Its gradient
  touches exactly the rows the data gradient touches, so a row-sparse optimizer stays sparse.
  This is the "mini-batch aware" L2 of Zhou et al. (2018) without its ``1/n_j`` factor.

**Constraints** are callables ``table -> table`` applied *after* the optimizer step, like
``keras.constraints``: a layer built with ``embeddings_constraint=c`` replaces its table by
``c(table)`` when :func:`apply_constraints` (or ``layer.apply_constraints()``) is called::

    optimizer.update(model, grads)
    apply_constraints(model)          # every layer of the model that has a constraint

* :func:`max_norm_constraint` — rescale each row with :math:`\lVert W_j \rVert > c` to norm
  :math:`c`; rows within the ball are left exactly as they are.

References:
    Zhou, G. et al. (2018). Deep Interest Network for Click-Through Rate Prediction. KDD.
    Srivastava, N. et al. (2014). Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting. JMLR (the max-norm constraint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxembed.bags import PAD_ID, Bags

Regularizer = Callable[[Any, Any], Any]
"""``penalty(table [V, K], ids int[...] | Bags) -> scalar``."""

Constraint = Callable[[Any], Any]
"""``constraint(table [V, K]) -> table [V, K]``, applied after each optimizer step."""

__all__ = [
    "Constraint",
    "Regularizer",
    "apply_constraints",
    "l2_rows",
    "l2_table",
    "max_norm",
    "max_norm_constraint",
    "regularization",
]


def _flat_ids(ids: Any) -> Any:
    if isinstance(ids, Bags):
        ids = ids.ids
    ids = jnp.asarray(ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"regularizer ids must be integers or Bags, got dtype {ids.dtype}")
    return ids.reshape(-1)


def _row_sq_norms(table: Any) -> Any:
    t = table.astype(jnp.promote_types(table.dtype, jnp.float32))
    return jnp.sum(t * t, axis=-1)


@dataclass(frozen=True)
class L2Table:
    """``weight · Σ W²`` over the whole table (Keras ``regularizers.l2``)."""

    weight: float

    def __call__(self, table: Any, ids: Any = None) -> Any:
        del ids
        return self.weight * jnp.sum(_row_sq_norms(table))


@dataclass(frozen=True)
class L2Rows:
    """``weight · Σ_{j in batch} ‖W_j‖²`` (distinct ids; per occurrence when not ``unique``)."""

    weight: float
    unique: bool = True

    def __call__(self, table: Any, ids: Any) -> Any:
        flat = _flat_ids(ids)
        if flat.shape[0] == 0:
            return jnp.zeros((), jnp.promote_types(table.dtype, jnp.float32))
        if self.unique:
            flat = jnp.sort(flat)
            first = jnp.concatenate([jnp.ones((1,), bool), flat[1:] != flat[:-1]])
            count = first & (flat != PAD_ID)
        else:
            count = flat != PAD_ID
        rows = jnp.take(table, jnp.where(count, flat, 0), axis=0, mode="clip")
        return self.weight * jnp.sum(jnp.where(count, _row_sq_norms(rows), 0.0))


def l2_table(weight: float) -> L2Table:
    """The L2 penalty of the whole table: ``weight · Σ_{j,k} W_jk²`` (Keras ``l2(weight)``)."""
    _check_weight(weight)
    return L2Table(float(weight))


def l2_rows(weight: float, *, unique: bool = True) -> L2Rows:
    """The L2 penalty of the rows the batch looked up: ``weight · Σ_{j ∈ batch} ‖W_j‖²``.

    With ``unique=True`` each distinct id counts once however often it occurs; with
    ``unique=False`` every occurrence counts (frequent ids are shrunk harder). Padding is
    ignored. The penalty and its gradient touch only rows present in ``ids``.
    """
    _check_weight(weight)
    return L2Rows(float(weight), bool(unique))


def _check_weight(weight: float) -> None:
    if not weight >= 0:
        raise ValueError(f"regularizer weight must be >= 0, got {weight!r}")


def max_norm_constraint(table: Any, max_norm: float) -> Any:
    r"""Renormalize each row of ``table`` to L2 norm at most ``max_norm``.

    :math:`W_j \leftarrow W_j \cdot c / \lVert W_j \rVert` when :math:`\lVert W_j \rVert > c`,
    else :math:`W_j` unchanged. This is ``keras.constraints.MaxNorm(c, axis=1)`` (the axis that
    holds an embedding row) without Keras' ``1e-7`` in the denominator, which would shrink
    every row slightly; and it is what ``torch.nn.Embedding(max_norm=c)`` does to the rows it
    looks up, applied here to the whole table after an update. (To clip looked-up rows in the
    forward pass without touching the table, TensorFlow style, use the layers' ``max_norm``.)
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    norms = jnp.sqrt(_row_sq_norms(table))[:, None]
    over = norms > max_norm
    scale = jnp.where(over, max_norm / jnp.where(over, norms, 1.0), 1.0)
    return (table * scale).astype(table.dtype)


def max_norm(value: float) -> Constraint:
    """A constraint hook: ``table -> max_norm_constraint(table, value)``."""
    if not value > 0:
        raise ValueError(f"max_norm must be > 0, got {value!r}")
    return partial(max_norm_constraint, max_norm=float(value))


def regularization(regularizer: Regularizer | None, table: Any, ids: Any) -> Any:
    """``regularizer(table, ids)``, or ``0`` without a regularizer (what the layers return)."""
    if regularizer is None:
        return jnp.zeros((), jnp.float32)
    return regularizer(table, ids)


def apply_constraints(model: nnx.Module) -> None:
    """Apply every embedding constraint in ``model`` in place (call after each update).

    Walks the module tree and calls ``apply_constraints()`` on each layer that has an
    ``embeddings_constraint``; works on a model inside ``nnx.jit`` too.
    """
    for _, module in nnx.iter_modules(model):
        if getattr(module, "embeddings_constraint", None) is not None:
            module.apply_constraints()
