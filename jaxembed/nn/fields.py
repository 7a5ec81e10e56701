r"""Field embeddings of a schema's model: the tables, the gathered rows, and pooling.

Every model of the zoo (:mod:`jaxembed.models`) reads its fields through one
:class:`FieldEmbeddings`. Its tables are :class:`EmbeddingTable` (``[rows, dim]``) and
:class:`LinearTable` (``[rows, 1]``, a linear model's per-id weights) variables, each tagged
with a ``table_key`` and the batch ``fields`` whose ids index it. A model's forward pass is
split in two:

1. :func:`gather_rows` — for each table and each field that indexes it, the rows
   ``R[b, l] = m_{bl} W[i_{bl}]`` of the field's Bags (``m`` the padding mask, so padding gives
   zero rows): ``rows[table_key][field] f[B, L, K]``;
2. ``model.head(rows, batch)`` — everything else (pooling, interactions, MLPs).

A trainer differentiates the loss with respect to the gathered rows rather than the tables:
``∂L/∂W = Σ_{b,l} e_{i_{bl}} ∂L/∂R[b, l]`` is then a row-sparse update of just the touched
rows (:mod:`jaxembed.optim.sparse`), never a dense ``[V, K]`` gradient. ``model(batch)`` is
``head(gather_rows(model, batch), batch)``.

Pooling a field is the embedding equation on the gathered rows,

.. math::

    \mathrm{pool}(R, x)_b = \sum_l \tilde w_{bl} R[b, l] = (\tilde x_b @ W),

with :math:`\tilde w` the combiner-normalized weights (:func:`jaxembed.lookup.pooling_weights`),
so ``pool_rows(gather(W, bags), bags, c) == bag_lookup(W, bags, c)`` in values and gradients
(``proofs/proof_fields.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxembed.bags import Bags
from jaxembed.lookup import pooling_weights
from jaxembed.models.inputs import ModelInputs

__all__ = [
    "EmbeddingTable",
    "FieldEmbeddings",
    "LinearTable",
    "Rows",
    "Table",
    "gather",
    "gather_rows",
    "module_rows",
    "pool_rows",
    "table_fields",
]

Rows = dict[str, dict[str, jax.Array]]
"""Gathered rows: ``rows[table_key][field] f[B, L, K]``."""


class Table(nnx.Param):
    """A parameter updated row-sparsely: metadata ``table_key`` (its name in :data:`Rows`) and
    ``fields`` (the batch entries whose ids index it)."""


class EmbeddingTable(Table):
    """An embedding table ``[rows, dim]`` (row-sparse Adagrad/Adam by default)."""


class LinearTable(Table):
    """A linear model's per-id weights ``[rows, 1]`` (row-sparse FTRL by default)."""


def gather(table: Float[Array, "V K"], bags: Bags) -> Float[Array, "B L K"]:
    """``R[b, l] = m_{bl} W[i_{bl}]``: the rows of every slot, zero on padding."""
    mask = bags.mask
    rows = jnp.take(table, jnp.where(mask, bags.ids, 0), axis=0)
    return jnp.where(mask[..., None], rows, jnp.zeros((), rows.dtype))


def pool_rows(rows: Float[Array, "B L K"], bags: Bags, combiner: str) -> Float[Array, "B K"]:
    """``Σ_l w̃[b, l] R[b, l]``: a field's gathered rows pooled by its combiner (sum, mean,
    sqrtn); equal to :func:`jaxembed.bag_lookup` on the table the rows came from."""
    weights = pooling_weights(bags, combiner, rows.dtype)
    return jnp.einsum("bl,blk->bk", weights, rows)


def table_fields(module: nnx.Module) -> dict[str, tuple[str, ...]]:
    """``{table_key: fields}`` of every :class:`Table` in ``module``."""
    out = {}
    for _, variable in nnx.to_flat_state(nnx.state(module, Table)):
        meta = variable.get_metadata()
        out[meta["table_key"]] = tuple(meta["fields"])
    return out


def gather_rows(tables: Mapping[str, jax.Array], fields: Mapping[str, tuple[str, ...]],
                batch: Mapping[str, Any]) -> Rows:
    """``rows[key][field] = gather(tables[key], batch[field])`` for every table and field."""
    return {key: {name: gather(tables[key], batch[name]) for name in fields[key]}
            for key in tables}


def module_rows(module: nnx.Module, batch: Mapping[str, Any]) -> Rows:
    """:func:`gather_rows` from the live tables of ``module`` (the eager forward pass)."""
    tables, fields = {}, {}
    for _, variable in nnx.to_flat_state(nnx.state(module, Table)):
        meta = variable.get_metadata()
        tables[meta["table_key"]] = variable[...]
        fields[meta["table_key"]] = tuple(meta["fields"])
    return gather_rows(tables, fields, batch)


def _normal(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
    return std * jax.random.normal(key, shape, jnp.float32)


class FieldEmbeddings(nnx.Module):
    r"""The tables of a :class:`~jaxembed.models.inputs.ModelInputs`.

    * ``embedding[t]``: an :class:`EmbeddingTable` ``[rows_t, dim_t]`` per table, drawn from
      :math:`\mathcal N(0, \mathrm{init\_std}^2)`, indexed by every field with ``table = t``;
    * with ``linear=True``, ``linear[t]``: a :class:`LinearTable` ``[rows_t, 1]`` of zeros per
      table (the first-order terms :math:`\sum_i w_i x_i` of LR/FM/DeepFM), and ``dense_linear``
      ``[num_dense]`` zeros for the numeric features, and ``bias``; ``embed=False`` leaves
      out the embedding tables (a linear model);
    * with ``wide=True`` and ``inputs.wide_size > 0``, ``wide/kernel``: a :class:`LinearTable`
      ``[wide_size, 1]`` over ``batch["wide"]`` (the hashed crosses).
    """

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs, embed: bool = True,
                 linear: bool = False, wide: bool = False, init_std: float = 0.01) -> None:
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std!r}")
        self.inputs = inputs
        users = {t.name: tuple(f.name for f in inputs.fields if f.table == t.name)
                 for t in inputs.tables}
        self.embedding = nnx.Dict({
            t.name: EmbeddingTable(_normal(rngs.params(), (t.rows, t.dim), init_std),
                                   table_key=f"embedding:{t.name}", fields=users[t.name])
            for t in inputs.tables if embed and users[t.name]})
        self.has_linear = bool(linear)
        self.linear = nnx.Dict({
            t.name: LinearTable(jnp.zeros((t.rows, 1)), table_key=f"linear:{t.name}",
                                fields=users[t.name])
            for t in inputs.tables if linear and users[t.name]})
        self.dense_linear = nnx.Param(jnp.zeros((inputs.num_dense if linear else 0,)))
        self.bias = nnx.Param(jnp.zeros(()))
        self.has_wide = bool(wide and inputs.wide_size)
        self.wide = nnx.Dict({"kernel": LinearTable(
            jnp.zeros((inputs.wide_size, 1)), table_key="wide", fields=("wide",))}
            if self.has_wide else {})

    def rows(self, rows: Rows, field: str) -> jax.Array:
        """The gathered embedding rows ``f[B, L, dim]`` of ``field``."""
        return rows[f"embedding:{self.inputs.field(field).table}"][field]

    def pooled(self, rows: Rows, batch: Mapping[str, Any], field: str) -> jax.Array:
        """``field``'s embedding ``f[B, dim]``: its rows pooled by its combiner."""
        spec = self.inputs.field(field)
        return pool_rows(self.rows(rows, field), batch[field], spec.combiner)

    def stacked(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """Every field's pooled embedding, ``f[B, F, dim]`` (all fields must share one dim)."""
        dims = {f.name: self.inputs.dim(f.name) for f in self.inputs.fields}
        if len(set(dims.values())) != 1:
            first = self.inputs.fields[0].name
            odd = next(name for name, dim in dims.items() if dim != dims[first])
            raise ValueError(f"stacking field embeddings needs one dim: field {odd!r} has dim "
                             f"{dims[odd]}, field {first!r} has {dims[first]}")
        return jnp.stack([self.pooled(rows, batch, f.name) for f in self.inputs.fields], 1)

    def concatenated(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """Every field's pooled embedding side by side, ``f[B, Σ dim]``."""
        return jnp.concatenate([self.pooled(rows, batch, f.name) for f in self.inputs.fields],
                               axis=-1)

    def first_order(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        r"""The linear terms :math:`c + \sum_f \sum_l w_{i_{fl}} \tilde x_{fl} +
        \langle u, \mathrm{dense} \rangle` (plus the wide crosses' weights when present),
        ``f[B]``; needs ``linear=True``."""
        if not self.has_linear:
            raise ValueError("first_order needs FieldEmbeddings(linear=True)")
        out = self.bias[...] + jnp.asarray(batch["dense"]) @ self.dense_linear[...]
        for f in self.inputs.fields:
            out = out + pool_rows(rows[f"linear:{f.table}"][f.name], batch[f.name],
                                  f.combiner)[:, 0]
        return out + self.wide_logit(rows, batch)

    def wide_logit(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The wide crosses' weights summed with the slots' weights, ``f[B]`` (0 without a
        wide part)."""
        if not self.has_wide:
            return jnp.zeros(())
        return pool_rows(rows["wide"]["wide"], batch["wide"], "sum")[:, 0]
