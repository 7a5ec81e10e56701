r"""Pieces the zoo's models share: the deep tower, numeric features as fields, one common dim.

* :func:`tower` — ReLU layers ``hidden`` then a linear output (the "deep part" of DeepFM,
  DCN-V2, xDeepFM, AutoInt+ and DIN);
* :func:`deep_input` — every field's pooled embedding side by side with the numeric features,
  :math:`[e_1, \dots, e_F, \mathrm{dense}]`, the deep tower's input;
* :class:`DenseFields` — numeric feature :math:`j` as one more field whose embedding is
  :math:`u_j \cdot \mathrm{dense}_j` (AutoInt; the numeric part of FM's interactions), and
  :func:`numeric_vectors`, which builds it for a model's ``dense_interactions`` option;
* :func:`common_dim` — the one embedding width that models stacking their fields need, or a
  ``ValueError`` naming the field whose width differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxembed.models.inputs import ModelInputs
from jaxembed.nn.ctr import MLP
from jaxembed.nn.fields import FieldEmbeddings, Rows

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
}
"""The nonlinearities a hyperparameter may name."""


def activation(name: str | None, what: str) -> Callable[[jax.Array], jax.Array] | None:
    """The function called ``name`` (``None``: the identity, returned as ``None``)."""
    if name is None:
        return None
    if name not in ACTIVATIONS:
        raise ValueError(f"{what} must be one of {sorted(ACTIVATIONS)} or None, got {name!r}")
    return ACTIVATIONS[name]


def widths(value: Sequence[int], what: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    """``value`` as a tuple of positive ints, or a ``ValueError`` naming ``what``."""
    try:
        out = tuple(value)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of positive ints, got {value!r}") from None
    for w in out:
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 1:
            raise ValueError(f"{what} must be positive ints, got {value!r}")
    if not out and not allow_empty:
        raise ValueError(f"{what} needs at least one width, got {value!r}")
    return tuple(int(w) for w in out)


def count(value: Any, what: str, *, low: int = 1) -> int:
    """``value`` as an int ``>= low``, or a ``ValueError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{what} must be an int >= {low}, got {value!r}")
    return int(value)


def tower(in_features: int, hidden: Sequence[int], *, rngs: nnx.Rngs, out: int = 1) -> MLP:
    """ReLU layers ``hidden`` then a linear layer of ``out`` units."""
    hidden = widths(hidden, "hidden")
    return MLP(in_features, (*hidden, out), [jax.nn.relu] * len(hidden) + [None], rngs=rngs)


def deep_width(inputs: ModelInputs) -> int:
    """The width of :func:`deep_input`: :math:`\\sum_f \\dim_f + \\mathrm{num\\_dense}`."""
    return sum(inputs.dim(f.name) for f in inputs.fields) + inputs.num_dense


def dense(batch: Mapping[str, Any]) -> jax.Array:
    """``batch["dense"]`` as float32 ``[B, num_dense]``."""
    return jnp.asarray(batch["dense"], jnp.float32)


def deep_input(fields: FieldEmbeddings, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
    """``[e_1, ..., e_F, dense]``: the pooled fields side by side with the numeric features."""
    return jnp.concatenate([fields.concatenated(rows, batch), dense(batch)], axis=-1)


def common_dim(inputs: ModelInputs, model: str) -> int:
    """The embedding width every field shares; a ``ValueError`` naming the first field whose
    table has another width."""
    first = inputs.fields[0]
    dim = inputs.dim(first.name)
    for f in inputs.fields[1:]:
        if inputs.dim(f.name) != dim:
            raise ValueError(
                f"{model} needs every field to have one embedding dim: field {f.name!r} "
                f"(table {f.table!r}) has dim {inputs.dim(f.name)}, but field {first.name!r} "
                f"has dim {dim}; give the tables one dim")
    return dim


class DenseFields(nnx.Module):
    r"""Numeric features as fields: :math:`e_j = u_j \cdot \mathrm{dense}_j`, ``f[B, D, dim]``.

    ``u`` is a dense ``[num_dense, dim]`` parameter drawn from
    :math:`\mathcal N(0, \mathrm{init\_std}^2)` (small and touched every step, so it is not a
    row-sparse table).
    """

    def __init__(self, num_dense: int, dim: int, *, rngs: nnx.Rngs,
                 init_std: float = 0.01) -> None:
        self.num_dense = num_dense
        self.u = nnx.Param(init_std * jax.random.normal(rngs.params(), (num_dense, dim)))

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return dense(batch)[:, :, None] * self.u[...][None]


def numeric_vectors(inputs: ModelInputs, dim: int, dense_interactions: bool, *,
                    rngs: nnx.Rngs, init_std: float) -> DenseFields | None:
    """The numeric features' vectors :math:`u_j` when they take part in a model's
    interactions (``dense_interactions``: FM's pairwise sum, AutoInt's attention), else
    None."""
    if not isinstance(dense_interactions, bool):
        raise ValueError(f"dense_interactions must be true or false, got {dense_interactions!r}")
    return (DenseFields(inputs.num_dense, dim, rngs=rngs, init_std=init_std)
            if dense_interactions else None)
