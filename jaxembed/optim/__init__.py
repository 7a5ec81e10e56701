"""Optimizers for embedding models.

* :func:`ftrl` — FTRL-Proximal as an optax transform, equal to TensorFlow's ``ApplyFtrlV2``;
* :func:`partitioned` / :func:`label_by_path` — one optax transform per group of parameters,
  chosen by path (``"frozen"`` = ``optax.set_to_zero()``), usable with ``nnx.Optimizer``;
* :func:`sparse_sgd`, :func:`sparse_adagrad`, :func:`sparse_ftrl`, :func:`sparse_adam` —
  row-sparse steps for big tables, updated in place (``rule.step`` donates its inputs).
"""

from jaxembed.optim.ftrl import FtrlHyperparams, FtrlState, ftrl, ftrl_hyperparams, ftrl_kernel
from jaxembed.optim.partition import FROZEN, label_by_path, param_path, partitioned
from jaxembed.optim.sparse import (
    SparseAdagradState,
    SparseAdamState,
    SparseRule,
    dedupe_rows,
    sparse_adagrad,
    sparse_adam,
    sparse_ftrl,
    sparse_sgd,
)

__all__ = [
    "FROZEN",
    "FtrlHyperparams",
    "FtrlState",
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
    "sparse_adagrad",
    "sparse_adam",
    "sparse_ftrl",
    "sparse_sgd",
]
