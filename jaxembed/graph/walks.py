"""Random walks on a :class:`~jaxembed.graph.Graph`: DeepWalk (first order) and node2vec
(second order), every walker advancing in parallel inside ``jit``.

**First order (DeepWalk, ``p = q = 1``).** From node ``v`` the next node is ``x`` with

    P(x | v) = w(v, x) / Σ_x' w(v, x')

drawn by inverse CDF: ``U ~ Uniform[0, 1)``, then the first arc ``e`` of ``v``'s CSR slice with
``cumweights[e] > U · W_v`` (``W_v`` the slice total), found by a binary search over the
slice. A node without out-arcs keeps the walker where it is.

**Second order (node2vec).** Having come from ``t`` to ``v``, the next node is ``x`` with

    P(x | t, v) ∝ w(v, x) · α_pq(t, x),   α = 1/p if x = t;  1 if x is a neighbour of t;  1/q else

("neighbour of ``t``" means an out-neighbour: ``x`` in ``t``'s CSR slice, a binary search).
There are no per-edge alias tables. Instead each step is **rejection sampling**: propose
``x ~ P(x | v)`` (first order, above) and accept with probability ``α(t, x) / α_max``,
``α_max = max(1/p, 1, 1/q)``. An accepted proposal is distributed exactly as ``P(x | t, v)``
(the proposal density times the acceptance probability is proportional to the target), and
this holds whatever happened in earlier rejected rounds, since each round uses fresh
randomness. The implementation runs

1. ``rounds`` vectorized proposal rounds for all walkers at once; each walker keeps its first
   accepted proposal;
2. then an **exact fallback** for the walkers still rejected: a ``lax.while_loop`` that
   gathers up to ``chunk`` of them (``jnp.nonzero(..., size=chunk)``), gives each one more
   proposal round, and repeats until every walker has accepted.

Step 2 is the same rejection sampler continued, so the result is exact in distribution for
any ``rounds >= 0`` (``proofs/proof_walks.py`` checks ``rounds = 0, 1, 4``). The loop ends with
probability 1: each round accepts with probability at least ``min(1/p, 1, 1/q) / α_max``,
so after ``r`` rounds at most a fraction ``(1 - that)^r`` of walkers remain.

The first step of a walk is first order (there is no ``t`` yet), as in node2vec.

References:
    Perozzi, Al-Rfou, Skiena. "DeepWalk: Online Learning of Social Representations". KDD 2014.
    Grover, Leskovec. "node2vec: Scalable Feature Learning for Networks". KDD 2016.
    Liu, Krishnan. "PecanPy: a fast, efficient and parallelized Python implementation of
    node2vec". Bioinformatics 2021 (the SparseOTF sampler computes biases on the fly).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxembed.graph.csr import Graph

__all__ = [
    "first_order_step",
    "random_walks",
    "second_order_step",
    "transition_probabilities",
]

DEFAULT_ROUNDS = 4
"""Vectorized rejection rounds before the compacting fallback loop."""


def _steps(max_degree: int) -> int:
    """Binary-search iterations that resolve any slice of ``<= max_degree`` entries."""
    return max(1, int(max_degree).bit_length())


def _first_greater(values: jax.Array, lo: jax.Array, hi: jax.Array, target: jax.Array,
                   steps: int) -> jax.Array:
    """Per walker, the first position ``e ∈ [lo, hi)`` with ``values[e] > target`` (else ``hi``);
    ``values`` must be non-decreasing on each ``[lo, hi)``."""
    last = values.shape[0] - 1

    def halve(_: int, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        lo, hi = bounds
        active = lo < hi
        mid = (lo + hi) // 2
        right = values[jnp.clip(mid, 0, last)] <= target
        return jnp.where(active & right, mid + 1, lo), jnp.where(active & ~right, mid, hi)

    return jax.lax.fori_loop(0, steps, halve, (lo, hi))[0]


def _sample_neighbor(graph: Graph, cur: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """First-order proposal from ``cur`` with uniforms ``u``: ``(next, has_neighbours)``."""
    lo, hi = graph.indptr[cur], graph.indptr[cur + 1]
    has = hi > lo
    total = graph.cumweights[jnp.maximum(hi - 1, 0)]
    pos = _first_greater(graph.cumweights, lo, hi, u * total, _steps(graph.max_degree))
    pos = jnp.clip(pos, lo, jnp.maximum(hi - 1, lo))  # U·W rounding up to W stays in the slice
    return jnp.where(has, graph.indices[pos], cur), has


def _is_neighbor(graph: Graph, node: jax.Array, x: jax.Array) -> jax.Array:
    """Whether ``x`` is an out-neighbour of ``node`` (binary search in the sorted slice)."""
    lo, hi = graph.indptr[node], graph.indptr[node + 1]
    pos = _first_greater(graph.indices, lo, hi, x - 1, _steps(graph.max_degree))
    found = graph.indices[jnp.clip(pos, 0, graph.indices.shape[0] - 1)] == x
    return (pos < hi) & found


def first_order_step(graph: Graph, key: jax.Array, cur: jax.Array) -> jax.Array:
    """One DeepWalk step for every walker: ``x ~ w(cur, x) / Σ w(cur, ·)``; no out-arc: stay."""
    if graph.num_arcs == 0:
        return cur
    nxt, _ = _sample_neighbor(graph, cur, jax.random.uniform(key, cur.shape))
    return nxt


def _propose(graph: Graph, key: jax.Array, prev: jax.Array, cur: jax.Array, inv_p: jax.Array,
             inv_q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One rejection round: a first-order proposal and whether it is accepted."""
    k_step, k_accept = jax.random.split(key)
    x, has = _sample_neighbor(graph, cur, jax.random.uniform(k_step, cur.shape))
    bias = jnp.where(x == prev, inv_p, jnp.where(_is_neighbor(graph, prev, x), 1.0, inv_q))
    top = jnp.maximum(jnp.maximum(inv_p, inv_q), 1.0)
    accept = jax.random.uniform(k_accept, cur.shape) * top < bias
    return x, accept | ~has


def second_order_step(graph: Graph, key: jax.Array, prev: jax.Array, cur: jax.Array,
                      p: float | jax.Array, q: float | jax.Array, *,
                      rounds: int | jax.Array = DEFAULT_ROUNDS,
                      chunk: int | None = None) -> jax.Array:
    """One node2vec step for every walker (having come from ``prev`` to ``cur``), by rejection
    sampling: ``rounds`` vectorized rounds, then the exact compacting fallback (see the module
    docstring). ``rounds`` may be traced; ``chunk`` (static, default
    ``max(256, walkers // 8)``) bounds the fallback's width.
    """
    if graph.num_arcs == 0:
        return cur
    inv_p, inv_q = 1.0 / jnp.asarray(p, jnp.float32), 1.0 / jnp.asarray(q, jnp.float32)
    n = cur.shape[0]

    def full_round(r: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[Any, ...]:
        nxt, done = state
        x, ok = _propose(graph, jax.random.fold_in(key, r), prev, cur, inv_p, inv_q)
        return jnp.where(ok & ~done, x, nxt), done | ok

    nxt, done = jax.lax.fori_loop(0, rounds, full_round, (cur, jnp.zeros(cur.shape, bool)))
    width = min(n, chunk if chunk is not None else max(256, n // 8))

    def pending(state: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        return ~jnp.all(state[1])

    def another_round(state: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Any, ...]:
        nxt, done, it = state
        (slots,) = jnp.nonzero(~done, size=width, fill_value=n)  # n: empty slot, dropped
        live = jnp.minimum(slots, n - 1)
        x, ok = _propose(graph, jax.random.fold_in(key, rounds + it), prev[live], cur[live],
                         inv_p, inv_q)
        ok = ok & (slots < n)
        nxt = nxt.at[slots].set(jnp.where(ok, x, nxt[live]), mode="drop")
        done = done.at[slots].set(ok, mode="drop")
        return nxt, done, it + 1

    nxt, _, _ = jax.lax.while_loop(pending, another_round, (nxt, done, jnp.int32(0)))
    return nxt


@partial(jax.jit, static_argnames=("walk_length", "second_order"))
def _walk(graph: Graph, key: jax.Array, starts: jax.Array, p: jax.Array, q: jax.Array,
          rounds: jax.Array, walk_length: int, second_order: bool) -> jax.Array:
    first = first_order_step(graph, jax.random.fold_in(key, 0), starts)

    def step(carry: tuple[jax.Array, jax.Array], t: jax.Array) -> tuple[Any, jax.Array]:
        prev, cur = carry
        k = jax.random.fold_in(key, t)
        if second_order:
            nxt = second_order_step(graph, k, prev, cur, p, q, rounds=rounds)
        else:
            nxt = first_order_step(graph, k, cur)
        return (cur, nxt), nxt

    _, rest = jax.lax.scan(step, (starts, first), jnp.arange(1, walk_length - 1))
    return jnp.concatenate([starts[None], first[None], rest], axis=0).T


def random_walks(graph: Graph, key: jax.Array, walk_length: int = 80, walks_per_node: int = 10,
                 p: float = 1.0, q: float = 1.0, *, rounds: int = DEFAULT_ROUNDS) -> jax.Array:
    """``walks_per_node`` walks of ``walk_length`` nodes from every node.

    Returns ``int32[num_nodes * walks_per_node, walk_length]``; row ``i * walks_per_node + r``
    is walk ``r`` of node ``i`` and starts at ``i``. ``p = q = 1`` gives DeepWalk's weighted
    first-order walk; otherwise node2vec's second-order walk with return parameter ``p`` and
    in-out parameter ``q`` (exact rejection sampling, see the module docstring). A walker on a
    node without out-arcs stays there. Same key, same walks.

    Raises:
        ValueError: ``walk_length < 1``, ``walks_per_node < 1``, ``rounds < 0``, or ``p``/``q``
            not finite and ``> 0``.
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a jaxembed.graph.Graph, got {type(graph).__name__}")
    if int(walk_length) < 1:
        raise ValueError(f"walk_length must be >= 1, got {walk_length}")
    if int(walks_per_node) < 1:
        raise ValueError(f"walks_per_node must be >= 1, got {walks_per_node}")
    if int(rounds) < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    for name, value in (("p", p), ("q", q)):
        if not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value}")
    starts = jnp.repeat(jnp.arange(graph.num_nodes, dtype=jnp.int32), int(walks_per_node))
    if graph.num_nodes == 0 or int(walk_length) == 1:
        return starts[:, None]
    second_order = not (float(p) == 1.0 and float(q) == 1.0)
    # labels and direction do not change the walk: drop them from the static part, so graphs
    # of the same shape share one compiled walker
    graph = dataclasses.replace(graph, labels=None, directed=False)
    return _walk(graph, key, starts, jnp.float32(p), jnp.float32(q), jnp.int32(rounds),
                 int(walk_length), second_order)


def transition_probabilities(graph: Graph, prev: int | None, cur: int, p: float = 1.0,
                             q: float = 1.0) -> np.ndarray:
    """The literal node2vec step distribution ``P(x | prev, cur)`` as ``float64[num_nodes]``.

    ``prev=None`` gives the first-order ``w(cur, x) / Σ w(cur, ·)``. A node without out-arcs
    returns all mass on ``cur``. Written with plain loops as the reference the proofs compare
    the samplers against.
    """
    targets, weights = graph.neighbors(cur)
    probs = np.zeros(graph.num_nodes, np.float64)
    if targets.size == 0:
        probs[cur] = 1.0
        return probs
    prev_targets = set() if prev is None else set(graph.neighbors(prev)[0].tolist())
    for x, w in zip(targets.tolist(), weights.tolist(), strict=True):
        if prev is None:
            bias = 1.0
        elif x == prev:
            bias = 1.0 / p
        elif x in prev_targets:
            bias = 1.0
        else:
            bias = 1.0 / q
        probs[x] += w * bias
    return probs / probs.sum()
