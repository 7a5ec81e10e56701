r"""LINE: large-scale information network embedding (first- and second-order proximity).

For a directed edge list with weights :math:`w_{ij}` (an undirected edge is both directions),
LINE fits two models by edge sampling and negative sampling (Tang et al. 2015).

* **First order** — the edge probability :math:`p_1(i, j) = \sigma(u_i^\top u_j)` with one
  vector :math:`u_i` per node;
* **second order** — the context probability :math:`p_2(j \mid i) \propto \exp(u_i^\top c_j)`
  with a separate context vector :math:`c_j`, approximated by negative sampling.

Each step draws an edge :math:`(i, j)` with probability :math:`w_{ij} / \sum w` (an alias
table over the edges, so that the step size does not depend on the weight) and :math:`K`
noise nodes :math:`n_k \sim P_n(v) \propto d_v^{3/4}`, :math:`d_v = \sum_j w_{vj}` the
weighted out-degree, and lowers the per-edge loss

.. math::

    \ell(i, j) = -\log \sigma(u_i^\top t_j) - \sum_{k=1}^{K} \log \sigma(-u_i^\top t_{n_k}),

with :math:`t = u` (first order) or :math:`t = c` (second order). Writing :math:`x_0 =
u_i^\top t_j`, :math:`x_k = u_i^\top t_{n_k}` and :math:`g_0 = \sigma(x_0) - 1`,
:math:`g_k = \sigma(x_k)`, the gradients are

.. math::

    \partial \ell / \partial u_i = \sum_{k=0}^{K} g_k\, t_{(k)}, \qquad
    \partial \ell / \partial t_{(k)} = g_k\, u_i ,

all taken at the values before the step (as the reference C code, which accumulates the
source's error and applies it after the targets). Plain SGD with the reference's linear decay
:math:`\rho_s = \rho_0 \max(1 - s / (S + 1), 10^{-4})` after :math:`s` of :math:`S` samples.

**Batches.** A step processes ``batch_size`` edges at once inside one ``jit``-compiled
``lax.fori_loop``: rows are gathered, per-edge gradients computed, and added back with
row-sparse scatters (``table.at[ids].add``, duplicates summing), never a dense ``N × d``
gradient. This is the reference's lock-free (Hogwild) update with the edges of a batch seeing
the same snapshot. Vertex vectors start uniform in :math:`[-\tfrac{1}{2d}, \tfrac{1}{2d})`,
context vectors at zero (as the reference).

**Output.** ``order='both'`` trains the two models separately, ``dim/2`` each, L2-normalizes
each row of each, and concatenates ``[first | second]`` (the paper's LINE(1st+2nd)).

``proofs/proof_line_sdne.py`` proves :func:`line_edge_gradients` equal to the derivative of
:func:`line_loss`, :func:`line_sgd_step` equal to a literal per-edge loop, the noise
distribution equal to :math:`d^{3/4}/\sum d^{3/4}`, and the alias table's implied
distribution equal to its weights.

References
----------
Tang, J., Qu, M., Wang, M., Zhang, M., Yan, J. & Mei, Q. (2015). LINE: Large-scale
Information Network Embedding. WWW.
Vose, M. D. (1991). A linear algorithm for generating random numbers with a given
distribution. IEEE Transactions on Software Engineering 17(9).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxembed.graph.csr import Graph

__all__ = [
    "alias_draw",
    "alias_table",
    "as_graph",
    "directed_edges",
    "line",
    "line_edge_gradients",
    "line_loss",
    "line_sgd_step",
    "noise_distribution",
]

Order = Literal["first", "second", "both"]
ORDERS = ("first", "second", "both")


def as_graph(graph: Any) -> Graph:
    """A :class:`~jaxembed.graph.Graph` as it is, or one built from an edge tuple.

    A tuple ``(src, dst)`` or ``(src, dst, weights)`` is a list of **undirected** edges,
    passed to :meth:`Graph.from_edges` (both arcs stored, duplicates merged, ids checked).
    """
    if isinstance(graph, Graph):
        return graph
    if isinstance(graph, tuple | list) and len(graph) in (2, 3):
        return Graph.from_edges(*graph)
    raise TypeError(
        "graph must be a jaxembed.graph.Graph or a tuple (src, dst) / (src, dst, weights) of "
        f"undirected edges, got {type(graph).__name__}"
    )


def directed_edges(graph: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(src int64[E], dst int64[E], weights float64[E], num_nodes)``: the stored arcs.

    ``graph`` as in :func:`as_graph`; an undirected edge gives both of its arcs.
    """
    graph = as_graph(graph)
    indptr = np.asarray(graph.indptr, dtype=np.int64)
    src = np.repeat(np.arange(graph.num_nodes, dtype=np.int64), np.diff(indptr))
    dst = np.asarray(graph.indices, dtype=np.int64)
    return src, dst, np.asarray(graph.weights, dtype=np.float64), graph.num_nodes


def noise_distribution(degrees: Any, power: float = 0.75) -> np.ndarray:
    r"""The negative-sampling distribution :math:`P_n(v) = d_v^{p} / \sum_u d_u^{p}`.

    ``degrees`` are non-negative (weighted) degrees; a node of degree 0 gets probability 0.
    Returns float64 probabilities summing to 1.
    """
    d = np.asarray(degrees, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"degrees must be a non-empty 1-D array, got shape {d.shape}")
    bad = ~np.isfinite(d) | (d < 0)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"degrees: value {d[i]!r} at position {i} is not finite and >= 0")
    powered = np.where(d > 0, d ** power, 0.0)
    total = powered.sum()
    if total <= 0:
        raise ValueError("degrees are all zero: the graph has no edge to draw noise from")
    return powered / total


def alias_table(weights: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""Vose's alias table for drawing ``i`` with probability :math:`w_i / \sum w`.

    Returns ``(prob float64[n], alias int64[n])``: draw a column ``i`` uniformly, keep it with
    probability ``prob[i]``, else take ``alias[i]``. The implied distribution is

    .. math:: P(v) = \frac{1}{n}\Big(\mathrm{prob}_v + \sum_{i:\,\mathrm{alias}_i = v}
              (1 - \mathrm{prob}_i)\Big) = \frac{w_v}{\sum w}.

    Building is ``O(n)`` (one pass of Vose's algorithm on the host; equal weights skip it).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {w.shape}")
    bad = ~np.isfinite(w) | (w < 0)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"weights: value {w[i]!r} at position {i} is not finite and >= 0")
    total = w.sum()
    if total <= 0:
        raise ValueError("weights are all zero: nothing to draw")
    n = w.shape[0]
    alias = np.arange(n, dtype=np.int64)
    if np.all(w == w[0]):
        return np.ones(n, dtype=np.float64), alias
    q = (w * (n / total)).tolist()
    prob = [1.0] * n
    alias_list = alias.tolist()
    small = [i for i, v in enumerate(q) if v < 1.0]
    large = [i for i, v in enumerate(q) if v >= 1.0]
    while small and large:
        s, g = small.pop(), large[-1]
        prob[s], alias_list[s] = q[s], g
        q[g] = (q[g] + q[s]) - 1.0
        if q[g] < 1.0:
            small.append(large.pop())
    # whatever is left holds (up to rounding) exactly one column's worth: keep it whole
    return np.asarray(prob, dtype=np.float64), np.asarray(alias_list, dtype=np.int64)


def alias_draw(key: jax.Array, prob: jax.Array, alias: jax.Array,
               shape: tuple[int, ...]) -> jax.Array:
    """Draw ids of ``shape`` from an alias table (see :func:`alias_table`); jit-friendly."""
    k_col, k_coin = jax.random.split(key)
    col = jax.random.randint(k_col, shape, 0, prob.shape[0])
    coin = jax.random.uniform(k_coin, shape, dtype=prob.dtype)
    return jnp.where(coin < prob[col], col, alias[col])


def line_loss(u: jax.Array, t: jax.Array) -> jax.Array:
    r"""Per-edge negative-sampling loss :math:`-\log\sigma(u^\top t_0) - \sum_{k\ge1}
    \log\sigma(-u^\top t_k)`.

    ``u f[B, d]`` source rows, ``t f[B, 1 + K, d]``: the positive target then ``K`` noise
    rows. Returns ``f[B]``.
    """
    x = jnp.einsum("bd,bkd->bk", u, t)
    return -jax.nn.log_sigmoid(x[:, 0]) - jnp.sum(jax.nn.log_sigmoid(-x[:, 1:]), axis=1)


def line_edge_gradients(u: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Analytic gradients of :func:`line_loss` per edge: ``(∂ℓ/∂u f[B, d], ∂ℓ/∂t f[B, 1+K, d])``.

    With :math:`x_k = u^\top t_k`, :math:`g_0 = \sigma(x_0) - 1` and :math:`g_k = \sigma(x_k)`
    for the noise: :math:`\partial\ell/\partial u = \sum_k g_k t_k`,
    :math:`\partial\ell/\partial t_k = g_k u`.
    """
    x = jnp.einsum("bd,bkd->bk", u, t)
    label = jnp.zeros_like(x).at[:, 0].set(1.0)
    g = jax.nn.sigmoid(x) - label
    return jnp.einsum("bk,bkd->bd", g, t), g[:, :, None] * u[:, None, :]


def line_sgd_step(vertex: jax.Array, context: jax.Array | None, src: jax.Array,
                  targets: jax.Array, lr: jax.Array | float) -> tuple[jax.Array, jax.Array | None]:
    """One batched SGD step on ``B`` sampled edges; returns the updated ``(vertex, context)``.

    ``src int[B]`` sources, ``targets int[B, 1 + K]`` (positive target, then noise). With
    ``context=None`` it is a first-order step (targets index ``vertex``); otherwise second
    order (targets index ``context``). Gradients come from the rows before the step and are
    scatter-added (duplicates sum): ``vertex[src] -= lr ∂ℓ/∂u``, ``table[targets] -= lr ∂ℓ/∂t``.
    """
    table = vertex if context is None else context
    d = vertex.shape[1]
    grad_u, grad_t = line_edge_gradients(vertex[src], table[targets])
    flat_targets = targets.reshape(-1)
    flat_grad_t = grad_t.reshape(-1, d)
    vertex = vertex.at[src].add(-lr * grad_u)
    if context is None:
        return vertex.at[flat_targets].add(-lr * flat_grad_t), None
    return vertex, context.at[flat_targets].add(-lr * flat_grad_t)


@jax.jit(static_argnames=("num_nodes", "dim", "second", "negative", "batch_size"))
def _train_order(key: jax.Array, tables: dict[str, jax.Array], steps: jax.Array,
                 samples: jax.Array, lr: jax.Array, *, num_nodes: int, dim: int, second: bool,
                 negative: int, batch_size: int) -> jax.Array:
    """Initialize and run ``steps`` batched SGD steps of one order in one compiled loop."""
    k_init, key = jax.random.split(key)
    vertex = (jax.random.uniform(k_init, (num_nodes, dim), jnp.float32) - 0.5) / dim
    context = jnp.zeros((num_nodes, dim), jnp.float32) if second else None

    def body(step: jax.Array, carry: tuple[jax.Array, jax.Array | None]):
        vertex, context = carry
        k_edge, k_noise = jax.random.split(jax.random.fold_in(key, step))
        e = alias_draw(k_edge, tables["edge_prob"], tables["edge_alias"], (batch_size,))
        noise = alias_draw(k_noise, tables["noise_prob"], tables["noise_alias"],
                           (batch_size, negative))
        targets = jnp.concatenate([tables["dst"][e][:, None], noise], axis=1)
        done = step.astype(jnp.float32) * batch_size
        rate = lr * jnp.maximum(1.0 - done / (samples + 1.0), 1e-4)
        return line_sgd_step(vertex, context, tables["src"][e], targets, rate)

    vertex, _ = lax.fori_loop(0, steps, body, (vertex, context))
    return vertex


def _l2_normalize(x: jax.Array) -> jax.Array:
    norm = jnp.linalg.norm(x, axis=1, keepdims=True)
    return x / jnp.maximum(norm, jnp.finfo(x.dtype).tiny)


def _positive_int(value: Any, what: str, lowest: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lowest:
        raise ValueError(f"{what} must be an integer >= {lowest}, got {value!r}")
    return int(value)


def line(graph: Any, key: jax.Array, dim: int = 128, order: Order = "both", negative: int = 5,
         samples: int | None = None, batch_size: int = 256, lr: float = 0.025,
         normalize: bool = True) -> jax.Array:
    """Embed the nodes of a graph with LINE; returns ``f32[num_nodes, dim]``.

    Args:
      graph: a :class:`jaxembed.graph.Graph` or a tuple ``(src, dst[, weights])`` of
        undirected edges (see :func:`as_graph`).
      key: ``jax.random`` key; the same key gives the same embedding on the same backend.
      dim: output size; with ``order='both'`` it must be even (``dim/2`` per order).
      order: ``'first'``, ``'second'`` or ``'both'`` (normalized concatenation).
      negative: noise nodes ``K`` per edge, drawn from ``degree^0.75``.
      samples: total edge samples ``S`` per order (default ``100 ×`` the number of arcs).
      batch_size: edges per jit-compiled step.
      lr: starting learning rate ``ρ_0``, decayed linearly to ``ρ_0 · 1e-4``.
      normalize: L2-normalize each row of each order (always done for ``'both'``).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    dim = _positive_int(dim, "dim")
    if order == "both" and dim % 2:
        raise ValueError(f"order='both' splits dim in two halves, so dim must be even; got {dim}")
    negative = _positive_int(negative, "negative", lowest=0)
    batch_size = _positive_int(batch_size, "batch_size")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    src, dst, weights, num_nodes = directed_edges(graph)
    if src.size == 0 or weights.sum() <= 0:
        raise ValueError("the graph has no edge of positive weight: LINE samples edges")
    samples = 100 * src.shape[0] if samples is None else _positive_int(samples, "samples")
    edge_prob, edge_alias = alias_table(weights)
    noise_prob, noise_alias = alias_table(
        noise_distribution(np.bincount(src, weights=weights, minlength=num_nodes))
    )
    if max(num_nodes, src.shape[0]) >= 2**31:
        raise ValueError(
            f"{num_nodes} nodes / {src.shape[0]} arcs: LINE indexes with int32 (< 2**31 each)"
        )
    tables = {
        "src": jnp.asarray(src, jnp.int32), "dst": jnp.asarray(dst, jnp.int32),
        "edge_prob": jnp.asarray(edge_prob, jnp.float32),
        "edge_alias": jnp.asarray(edge_alias, jnp.int32),
        "noise_prob": jnp.asarray(noise_prob, jnp.float32),
        "noise_alias": jnp.asarray(noise_alias, jnp.int32),
    }
    steps = math.ceil(samples / batch_size)
    parts = []
    for k, which in zip(jax.random.split(key), ("first", "second"), strict=True):
        if order in (which, "both"):
            emb = _train_order(
                k, tables, steps, float(samples), float(lr), num_nodes=num_nodes,
                dim=dim // 2 if order == "both" else dim, second=which == "second",
                negative=negative, batch_size=batch_size,
            )
            parts.append(_l2_normalize(emb) if normalize or order == "both" else emb)
    return jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
