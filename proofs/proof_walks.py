"""Random walks: the samplers draw exactly the DeepWalk / node2vec step distributions.

Equations (:mod:`jaxembed.graph.walks`), for a walker that came from ``t`` to ``v``:

    first order:   P(x | v)    = w(v, x) / Σ_x' w(v, x')
    second order:  P(x | t, v) ∝ w(v, x) · α(t, x),
                   α = 1/p if x = t;  1 if x is an out-neighbour of t;  1/q otherwise

and a node without out-arcs keeps its walker. The fast path is inverse-CDF sampling with binary
searches, plus rejection sampling (vectorized rounds, then a compacting exact fallback loop) for
the second order; the literal reference is :func:`transition_probabilities` (plain loops).
Each proof draws many walkers from one state and compares the empirical frequencies with the
reference by a chi-square test at significance 1e-6 (so a correct sampler fails with
negligible probability, while a sampler that swaps ``p`` and ``q`` fails — checked by
planting that bug).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.stats import chi2

from jaxembed.graph import Graph, random_walks, transition_probabilities
from jaxembed.graph.walks import first_order_step, second_order_step

NODES = 8  # one shape bucket: every drawn graph has 8 nodes and room for 64 arcs
ARCS = NODES * NODES
SAMPLES = 10000
ALPHA = 1e-6
PQ = st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0])


@st.composite
def small_graphs(draw, max_edges: int = 20) -> Graph:
    """An 8-node graph: random (possibly repeated) edges and self-loops, weights in
    {0.5, 1, 2, 3}, directed or not; isolated and dangling nodes occur."""
    n_edges = draw(st.integers(0, max_edges))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    src = rng.integers(0, NODES, n_edges)
    dst = rng.integers(0, NODES, n_edges)
    weights = rng.choice([0.5, 1.0, 2.0, 3.0], n_edges)
    return Graph.from_edges(src, dst, weights, num_nodes=NODES, directed=draw(st.booleans()))


def bucketed(graph: Graph) -> Graph:
    """The same arcs in arrays padded to the 8-node bucket (so ``jit`` compiles once).

    Entries past ``indptr[-1]`` are never read; ``max_degree = 8`` only lengthens the binary
    searches; ``directed`` is metadata the samplers do not read.
    """
    pad = ARCS - graph.num_arcs
    return dataclasses.replace(
        graph,
        indices=jnp.pad(graph.indices, (0, pad)),
        weights=jnp.pad(graph.weights, (0, pad)),
        cumweights=jnp.pad(graph.cumweights, (0, pad)),
        max_degree=NODES,
        directed=False,
    )


_second = jax.jit(second_order_step, static_argnames=("chunk",))
_first = jax.jit(first_order_step)


def assert_matches(samples: np.ndarray, probs: np.ndarray) -> None:
    """Chi-square goodness of fit of ``samples`` to ``probs`` (and no mass where p = 0)."""
    counts = np.bincount(samples, minlength=probs.size)
    outside = counts[probs == 0]
    assert outside.sum() == 0, f"sampled nodes of probability 0: {counts * (probs == 0)}"
    support = probs > 0
    expected = samples.size * probs[support]
    stat = float(np.sum((counts[support] - expected) ** 2 / expected))
    dof = int(support.sum()) - 1
    if dof == 0:
        return
    bound = chi2.ppf(1 - ALPHA, dof)
    assert stat <= bound, (
        f"chi-square {stat:.1f} > {bound:.1f} (dof {dof}); counts {counts.tolist()}, "
        f"expected {np.round(samples.size * probs, 1).tolist()}"
    )


def _arcs(graph: Graph) -> list[tuple[int, int]]:
    indptr, indices = np.asarray(graph.indptr), np.asarray(graph.indices)
    return [(u, int(v)) for u in range(graph.num_nodes) for v in indices[indptr[u]:indptr[u + 1]]]


@given(small_graphs(), PQ, PQ, st.sampled_from([0, 1, 4]), st.data())
def test_second_order_step_is_node2vec(graph, p, q, rounds, data):
    """P(x | t, v) ∝ w(v, x) α(t, x): from a fixed (t, v), 10000 walkers' next nodes fit the
    literal probabilities, for 0, 1 and 4 vectorized rounds before the fallback loop."""
    arcs = [(t, v) for t, v in _arcs(graph) if graph.degrees()[v] > 0]
    assume(arcs)
    prev, cur = data.draw(st.sampled_from(arcs))
    key = jax.random.key(data.draw(st.integers(0, 2**31 - 1)))
    walkers = jnp.full(SAMPLES, cur, jnp.int32)
    nxt = _second(bucketed(graph), key, jnp.full(SAMPLES, prev, jnp.int32), walkers,
                  jnp.float32(p), jnp.float32(q), rounds=jnp.int32(rounds))
    assert_matches(np.asarray(nxt), transition_probabilities(graph, prev, cur, p, q))


@given(small_graphs(), st.data())
def test_first_order_step_is_weighted(graph, data):
    """P(x | v) = w(v, x) / Σ w(v, ·); a node without out-arcs keeps its walkers."""
    cur = data.draw(st.integers(0, NODES - 1))
    key = jax.random.key(data.draw(st.integers(0, 2**31 - 1)))
    nxt = _first(bucketed(graph), key, jnp.full(SAMPLES, cur, jnp.int32))
    assert_matches(np.asarray(nxt), transition_probabilities(graph, None, cur))


WALK_LENGTH, WALKS_PER_NODE = 6, 1000  # one walk shape for both walk proofs (one compile)


@given(small_graphs(), PQ, PQ, st.integers(0, 2**31 - 1))
def test_walks_follow_arcs_from_their_start(graph, p, q, seed):
    """Row i·R + r starts at node i; each step follows an arc, or stays on a node without
    out-arcs."""
    walks = np.asarray(random_walks(bucketed(graph), jax.random.key(seed), WALK_LENGTH,
                                    WALKS_PER_NODE, p, q))
    assert walks.shape == (NODES * WALKS_PER_NODE, WALK_LENGTH)
    np.testing.assert_array_equal(walks[:, 0], np.repeat(np.arange(NODES), WALKS_PER_NODE))
    allowed = np.zeros((NODES, NODES), bool)
    for a, b in _arcs(graph):
        allowed[a, b] = True
    stuck = graph.degrees() == 0
    allowed[stuck, stuck] = True
    a, b = walks[:, :-1], walks[:, 1:]
    bad = ~allowed[a, b]
    assert not bad.any(), f"step {a[bad][0]} -> {b[bad][0]} is not an arc"


def test_whole_walks_have_node2vec_transitions():
    """Inside random_walks (scan bookkeeping of t and v included), the steps taken from each
    frequent (t, v) state fit P(x | t, v): counts of (t, v, x) triples over many walks."""
    src = [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 2]
    dst = [1, 2, 2, 3, 3, 4, 5, 5, 0, 6, 2]
    weights = [1.0, 2.0, 1.0, 3.0, 0.5, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    graph = Graph.from_edges(src, dst, weights, num_nodes=NODES)  # node 7 isolated
    p, q = 0.5, 3.0
    walks = np.asarray(random_walks(bucketed(graph), jax.random.key(7), WALK_LENGTH,
                                    WALKS_PER_NODE, p, q))
    t, v, x = walks[:, :-2].ravel(), walks[:, 1:-1].ravel(), walks[:, 2:].ravel()
    checked = 0
    for prev, cur in _arcs(graph):
        sel = (t == prev) & (v == cur)
        if sel.sum() >= 1000:
            assert_matches(x[sel], transition_probabilities(graph, prev, cur, p, q))
            checked += 1
    assert checked >= 6
