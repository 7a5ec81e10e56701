"""Optimizers for embedding models.

* :func:`ftrl` — FTRL-Proximal as an optax transform, equal to TensorFlow's ``ApplyFtrlV2``;
* :func:`partitioned` / :func:`label_by_path` — one optax transform per group of parameters,
  chosen by path (``"frozen"`` = ``optax.set_to_zero()``), usable with ``nnx.Optimizer``;
* :func:`sparse_sgd`, :func:`sparse_adagrad`, :func:`sparse_ftrl`, :func:`sparse_adam` —
  row-sparse steps for big tables, updated in place (``rule.step`` donates its inputs);
  :func:`sparse_frozen` and :func:`sparse_rows_in` hold a table (or all but a range of its
  rows) fixed, keeping its slots: the online phase's frozen embeddings;
  :func:`sparse_accumulated` applies a rule once per ``k`` mini-batches (``optax.MultiSteps``).
"""

from jaxembed.optim.ftrl import FtrlHyperparams, FtrlState, ftrl, ftrl_hyperparams, ftrl_kernel
from jaxembed.optim.partition import FROZEN, label_by_path, param_path, partitioned
from jaxembed.optim.sparse import (
    SparseAccumulatedState,
    SparseAdagradState,
    SparseAdamState,
    SparseRule,
    dedupe_rows,
    sparse_accumulated,
    sparse_adagrad,
    sparse_adam,
    sparse_frozen,
    sparse_ftrl,
    sparse_rows_in,
    sparse_sgd,
)

__all__ = [
    "FROZEN",
    "FtrlHyperparams",
    "FtrlState",
    "SparseAccumulatedState",
    "SparseAdagradState",
    "SparseAdamState",
    "SparseRule",
    "dedupe_rows",
    "ftrl",
    "ftrl_hyperparams",
    "ftrl_kernel",
    "label_by_path",
    "param_path",
    "partitioned",
    "sparse_accumulated",
    "sparse_adagrad",
    "sparse_adam",
    "sparse_frozen",
    "sparse_ftrl",
    "sparse_rows_in",
    "sparse_sgd",
]
