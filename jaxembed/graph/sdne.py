r"""SDNE: structural deep network embedding (a deep autoencoder over adjacency rows).

Node :math:`i`'s input is its adjacency row :math:`s_i \in \mathbb{R}^N`. An MLP encoder
maps it to the embedding :math:`y_i` and a mirrored decoder reconstructs
:math:`\hat s_i` (Wang, Cui & Zhu 2016). The loss is

.. math::

    \mathcal{L} = \underbrace{\sum_i \lVert (\hat s_i - s_i) \odot b_i \rVert_2^2}_{\text{2nd}}
        + \alpha \underbrace{\sum_{i,j} s_{ij} \lVert y_i - y_j \rVert_2^2}_{\text{1st}}
        + \nu \underbrace{\tfrac12 \sum_k \big(\lVert W^{(k)} \rVert_F^2
              + \lVert \hat W^{(k)} \rVert_F^2\big)}_{\text{reg}},

with :math:`b_{ij} = \beta` where :math:`s_{ij} > 0` and :math:`1` elsewhere (non-zero
entries cost more to miss), the first-order sum over ordered pairs (an undirected edge counts
in both directions), and :math:`W^{(k)}, \hat W^{(k)}` the encoder and decoder kernels (biases
are not penalized). Every layer applies ``activation`` (the paper's sigmoid), the code layer
and the reconstruction included.

**Mini-batches.** Each epoch shuffles the nodes (``jax.random.permutation``) into batches of
``batch_size``; a batch :math:`U` of :math:`b` nodes builds its rows :math:`s_i, i \in U`, on
the device from the CSR arrays (one scatter of at most ``b · max_degree`` weights into a
``b × N`` block), and its sub-adjacency :math:`s_{ij}, i, j \in U` by gathering the batch's
columns. The batch loss scales each term so that its expectation is the full-graph loss:

.. math::

    \hat{\mathcal{L}}_U = \frac{N}{b}\,\mathcal{L}_{2nd}(U)
        + \alpha\,\frac{N (N-1)}{b (b-1)}\,\mathcal{L}_{1st}(U \times U) + \nu\,\mathcal{L}_{reg}

(a pair :math:`i \ne j` lands in one batch with probability :math:`b(b-1)/(N(N-1))`), so
with ``batch_size ≥ N`` it *is* the full loss and ``α, β, ν`` mean what they mean in the
paper. Training is Adam (``optax.adam``) with one ``jax.jit``-compiled ``lax.scan`` per epoch.

``proofs/proof_line_sdne.py`` proves :func:`sdne_loss` equal to a literal numpy transcription
of the formula above (value and gradient) and :func:`adjacency_rows` equal to the dense
adjacency matrix.

References
----------
Wang, D., Cui, P. & Zhu, W. (2016). Structural Deep Network Embedding. KDD.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from jaxembed.graph.line import as_graph

__all__ = ["SDNE", "adjacency_rows", "sdne", "sdne_loss", "sdne_loss_terms"]


class SDNE(nnx.Module):
    """The SDNE autoencoder: ``N → dims[0] → … → dims[-1]`` and back to ``N``.

    ``model(rows)`` returns ``(y, s_hat)`` for adjacency rows ``f[B, N]``: the embeddings
    ``f[B, dims[-1]]`` and the reconstructions ``f[B, N]``.
    """

    def __init__(self, num_nodes: int, dims: Sequence[int] = (256, 128), *,
                 activation: Callable[[jax.Array], jax.Array] = jax.nn.sigmoid,
                 rngs: nnx.Rngs) -> None:
        sizes = (int(num_nodes), *(int(d) for d in dims))
        pairs = list(itertools.pairwise(sizes))
        self.encoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in pairs])
        self.decoder = nnx.List([nnx.Linear(b, a, rngs=rngs) for a, b in reversed(pairs)])
        self.activation = activation

    def encode(self, rows: jax.Array) -> jax.Array:
        """Embeddings ``y = f(… f(s W⁽¹⁾ + b⁽¹⁾) …)`` of adjacency rows ``f[B, N]``."""
        for layer in self.encoder:
            rows = self.activation(layer(rows))
        return rows

    def decode(self, y: jax.Array) -> jax.Array:
        """Reconstructions ``ŝ`` of the rows from embeddings ``y``."""
        for layer in self.decoder:
            y = self.activation(layer(y))
        return y

    def __call__(self, rows: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = self.encode(rows)
        return y, self.decode(y)

    def kernels(self) -> list[jax.Array]:
        """The weight matrices ``W⁽ᵏ⁾`` and ``Ŵ⁽ᵏ⁾`` that the L2 term penalizes."""
        return [layer.kernel[...] for layer in (*self.encoder, *self.decoder)]


def adjacency_rows(indptr: jax.Array, indices: jax.Array, weights: jax.Array, nodes: jax.Array,
                   num_nodes: int, max_degree: int) -> jax.Array:
    """Dense adjacency rows ``s[nodes]`` as ``f32[B, N]`` from CSR arrays; jit-friendly.

    ``nodes int[B]``; ``-1`` gives a zero row (padding). Each row scatters its node's
    ``≤ max_degree`` arc weights (``s_ij`` is the weight of arc ``i → j``).
    """
    rows = jnp.zeros((nodes.shape[0], num_nodes), jnp.float32)
    if indices.shape[0] == 0:  # no arc at all
        return rows
    valid = nodes >= 0
    node = jnp.where(valid, nodes, 0)
    start = indptr[node]
    degree = indptr[node + 1] - start
    offset = jnp.arange(max_degree)
    keep = (offset[None, :] < degree[:, None]) & valid[:, None]
    pos = jnp.where(keep, start[:, None] + offset[None, :], 0)
    values = jnp.where(keep, weights[pos], 0.0).astype(jnp.float32)
    return rows.at[jnp.arange(nodes.shape[0])[:, None], indices[pos]].add(values)


def sdne_loss_terms(model: SDNE, rows: jax.Array, adj: jax.Array, mask: jax.Array,
                    beta: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``(L_2nd, L_1st, L_reg)`` of a batch, unscaled (see the module docstring).

    ``rows f[B, N]`` the batch's adjacency rows, ``adj f[B, B]`` its sub-adjacency
    (``adj[a, b] = s_{U_a U_b}``), ``mask f[B]`` 1 for real nodes and 0 for padding.
    The first-order sum is computed without a ``B × B × d`` tensor, from
    :math:`\sum_{ij} s_{ij}\lVert y_i - y_j\rVert^2 = \sum_i (r_i + c_i)\lVert y_i\rVert^2
    - 2\sum_{ij} s_{ij}\, y_i^\top y_j` (``r``, ``c`` the row and column sums of ``s``).
    """
    y, s_hat = model(rows)
    b = jnp.where(rows > 0, beta, 1.0)
    l2nd = jnp.sum(mask[:, None] * ((s_hat - rows) * b) ** 2)
    s = adj * mask[:, None] * mask[None, :]
    sq = jnp.sum(y * y, axis=1)
    l1st = jnp.sum((s.sum(axis=1) + s.sum(axis=0)) * sq) - 2.0 * jnp.sum(y * (s @ y))
    lreg = 0.5 * sum(jnp.sum(w * w) for w in model.kernels())
    return l2nd, l1st, lreg


def sdne_loss(model: SDNE, rows: jax.Array, adj: jax.Array, mask: jax.Array, *, alpha: float,
              beta: float, nu: float, num_nodes: int | None = None) -> jax.Array:
    """The SDNE loss of a batch; with ``num_nodes`` the terms are scaled to estimate the
    full-graph loss (``N/b`` and ``N(N-1)/(b(b-1))``, ``b = Σ mask``), without it they are
    the plain sums (the paper's loss when the batch is the whole graph)."""
    l2nd, l1st, lreg = sdne_loss_terms(model, rows, adj, mask, beta)
    if num_nodes is not None:
        n, b = float(num_nodes), jnp.sum(mask)
        l2nd = l2nd * n / jnp.maximum(b, 1.0)
        l1st = jnp.where(b > 1, l1st * n * (n - 1) / jnp.maximum(b * (b - 1), 1.0), 0.0)
    return l2nd + alpha * l1st + nu * lreg


def _batches(key: jax.Array, num_nodes: int, batch_size: int) -> jax.Array:
    """A shuffled ``int[num_batches, batch_size]`` cover of the nodes, ``-1``-padded."""
    count = math.ceil(num_nodes / batch_size)
    order = jax.random.permutation(key, num_nodes)
    pad = jnp.full(count * batch_size - num_nodes, -1, order.dtype)
    return jnp.concatenate([order, pad]).reshape(count, batch_size)


class _Setup(NamedTuple):
    """What the compiled SDNE functions specialize on (hashable, passed as static)."""

    num_nodes: int
    dims: tuple[int, ...]
    activation: Callable[[jax.Array], jax.Array]
    max_degree: int
    batch: int

    def model(self, rngs: nnx.Rngs) -> SDNE:
        return SDNE(self.num_nodes, self.dims, activation=self.activation, rngs=rngs)

    @property
    def graphdef(self) -> nnx.GraphDef:
        return _graphdef(self)


@functools.cache
def _graphdef(setup: _Setup) -> nnx.GraphDef:
    return nnx.graphdef(nnx.eval_shape(lambda: setup.model(nnx.Rngs(0))))


def _rows(setup: _Setup, csr: tuple[jax.Array, ...], nodes: jax.Array) -> jax.Array:
    return adjacency_rows(*csr, nodes, setup.num_nodes, setup.max_degree)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(setup: _Setup, key: jax.Array) -> nnx.State:
    """Fresh parameters: the module's own initializers, drawn from ``key``."""
    return nnx.split(setup.model(nnx.Rngs(key)))[1]


@functools.partial(jax.jit, static_argnums=0)
def _epoch(setup: _Setup, params: nnx.State, opt_state: Any, key: jax.Array,
           csr: tuple[jax.Array, ...], hyper: dict[str, jax.Array]) -> tuple[nnx.State, Any]:
    """One pass over the shuffled nodes: a ``lax.scan`` of Adam steps on the batch loss."""
    tx = optax.adam(hyper["lr"])

    def step(carry: tuple[nnx.State, Any], nodes: jax.Array):
        params, opt_state = carry

        def loss_fn(p: nnx.State) -> jax.Array:
            rows = _rows(setup, csr, nodes)
            adj = rows[:, jnp.where(nodes >= 0, nodes, 0)]
            mask = (nodes >= 0).astype(jnp.float32)
            return sdne_loss(nnx.merge(setup.graphdef, p), rows, adj, mask,
                             alpha=hyper["alpha"], beta=hyper["beta"], nu=hyper["nu"],
                             num_nodes=setup.num_nodes)

        updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    batches = _batches(key, setup.num_nodes, setup.batch)
    return lax.scan(step, (params, opt_state), batches)[0]


@functools.partial(jax.jit, static_argnums=0)
def _embed(setup: _Setup, params: nnx.State, csr: tuple[jax.Array, ...]) -> jax.Array:
    """Encode every node, a batch at a time; ``f32[N, dims[-1]]``."""
    n, batch = setup.num_nodes, setup.batch
    nodes = jnp.arange(math.ceil(n / batch) * batch).reshape(-1, batch)
    nodes = jnp.where(nodes < n, nodes, -1)
    model = nnx.merge(setup.graphdef, params)
    out = lax.map(lambda ids: model.encode(_rows(setup, csr, ids)), nodes)
    return out.reshape(-1, out.shape[-1])[:n]


def _check_positive(value: Any, what: str, *, integer: bool = False, zero: bool = False) -> None:
    ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    if integer:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    if not ok_type or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        need = "an integer" if integer else "a finite number"
        raise ValueError(f"{what} must be {need} {'>= 0' if zero else '> 0'}, got {value!r}")


def sdne(graph: Any, key: jax.Array, dims: Sequence[int] = (256, 128), alpha: float = 1e-2,
         beta: float = 5.0, nu: float = 1e-4, epochs: int = 50, batch_size: int = 256,
         lr: float = 1e-3, activation: Callable[[jax.Array], jax.Array] = jax.nn.sigmoid
         ) -> jax.Array:
    """Embed the nodes of a graph with SDNE; returns ``f32[num_nodes, dims[-1]]``.

    Args:
      graph: a :class:`jaxembed.graph.Graph` or a tuple ``(src, dst[, weights])`` of
        undirected edges (see :func:`jaxembed.graph.line.as_graph`). Rows are the arc weights;
        with the default sigmoid output, weights in ``(0, 1]`` can be reconstructed exactly.
      key: ``jax.random`` key (initialization and shuffling).
      dims: hidden sizes of the encoder, the last one the embedding size.
      alpha: weight ``α`` of the first-order term.
      beta: ``β ≥ 1`` typically: the reconstruction weight of non-zero entries.
      nu: weight ``ν`` of the L2 term on the kernels.
      epochs: passes over the shuffled nodes.
      batch_size: nodes per step (``≥ N`` trains on the exact full loss).
      lr: Adam learning rate.
      activation: the nonlinearity of every layer.
    """
    graph = as_graph(graph)
    dims = tuple(dims)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1
                       for d in dims):
        raise ValueError(f"dims must be a non-empty sequence of positive integers, got {dims!r}")
    dims = tuple(int(d) for d in dims)
    for name, value in (("alpha", alpha), ("beta", beta), ("nu", nu)):
        _check_positive(value, name, zero=True)
    _check_positive(lr, "lr")
    _check_positive(epochs, "epochs", integer=True, zero=True)
    _check_positive(batch_size, "batch_size", integer=True)
    n = graph.num_nodes
    if n < 1:
        raise ValueError("the graph has no node to embed")
    k_init, k_train = jax.random.split(key)
    setup = _Setup(n, dims, activation, graph.max_degree, min(batch_size, n))
    params = _init_params(setup, k_init)
    csr = (graph.indptr, graph.indices, graph.weights)
    hyper = {"alpha": alpha, "beta": beta, "nu": nu, "lr": lr}
    opt_state = optax.adam(lr).init(params)
    for e in range(epochs):
        params, opt_state = _epoch(setup, params, opt_state, jax.random.fold_in(k_train, e),
                                   csr, hyper)
    return _embed(setup, params, csr)
