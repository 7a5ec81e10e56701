r"""Labelled graphs with known ground truth: stochastic block models and networkx's classics.

**Stochastic block model.** ``n`` nodes are split into ``k`` blocks of sizes differing by at
most one (node ids shuffled, so an id says nothing about its block); each unordered pair
``{i, j}``, ``i ≠ j``, is an edge independently with probability

.. math::  P(\{i, j\} \in E) = p_\text{in} \text{ if } z_i = z_j \text{ else } p_\text{out}.

It is sampled one block pair ``(a, b)``, ``a ≤ b``, at a time without visiting every pair:
the number of edges is drawn once, ``m_{ab} \sim \mathrm{Binomial}(n_{ab}, p_{ab})`` with
``n_{ab} = |a| |b|`` (``|a|(|a|-1)/2`` when ``a = b``), then ``m_{ab}`` distinct pair indices
are drawn uniformly from ``[0, n_{ab})`` and decoded to node pairs (row-major for ``a ≠ b``,
the upper triangle for ``a = b``). Given the count the chosen set is uniform, so every pair is
an edge independently with probability ``p_{ab}``; the work is ``O(k^2 + m)`` plus numpy's
sampling without replacement.

**Classic labelled graphs** (shipped with networkx, no download): Zachary's karate club with
each member's club after the split (``'Mr. Hi'`` / ``'Officer'``), and Davis's southern women
(a bipartite women–events graph, labelled by side). The Florentine families graph carries no
labels, so it is not offered.

**LFR benchmark** (Lancichinetti, Fortunato & Radicchi 2008, networkx's generator): power-law
degrees (exponent ``tau1``) and community sizes (``tau2``), each node sharing a fraction
``mu`` of its edges with other communities; the label is the node's community. Harder and
less regular than a block model (hubs, unequal communities), it is the held-out check of
``jaxembed bench graph``.

References
----------
Holland, P. W., Laskey, K. B. & Leinhardt, S. (1983). Stochastic blockmodels: first steps.
Social Networks 5(2).
Zachary, W. W. (1977). An information flow model for conflict and fission in small groups.
Journal of Anthropological Research 33(4).
Davis, A., Gardner, B. B. & Gardner, M. R. (1941). Deep South. University of Chicago Press.
Lancichinetti, A., Fortunato, S. & Radicchi, F. (2008). Benchmark graphs for testing community
detection algorithms. Physical Review E 78(4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "LabelledGraph",
    "karate_club",
    "lfr_graph",
    "small_labelled_graphs",
    "stochastic_block_model",
    "triangle_pairs",
]


@dataclasses.dataclass(frozen=True)
class LabelledGraph:
    """An undirected graph with one class label per node.

    Unpacks as ``src, dst, labels, names = graph`` (each undirected edge once, ``src < dst``;
    ``labels int[N]`` codes into :attr:`classes`; ``names`` the node names).
    """

    src: np.ndarray
    dst: np.ndarray
    labels: np.ndarray
    names: list[str]
    classes: list[str]

    @property
    def num_nodes(self) -> int:
        """Number of nodes ``N`` (``len(labels)``)."""
        return int(self.labels.shape[0])

    def __iter__(self) -> Iterator[Any]:
        return iter((self.src, self.dst, self.labels, self.names))


def _probability(value: Any, what: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], got {value!r}")
    return p


def triangle_pairs(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode upper-triangle pair indices ``k ∈ [0, n(n-1)/2)`` to ``(i, j)``, ``i < j``.

    Row-major order, as ``np.triu_indices(n, 1)``: row ``i`` starts at
    ``o(i) = i(2n - i - 1)/2``, and ``i`` is the largest row with ``o(i) ≤ k``. The float
    square root gives ``i`` up to rounding; one integer correction step each way makes it
    exact.
    """
    k = np.asarray(k, dtype=np.int64)

    def offset(i: np.ndarray) -> np.ndarray:
        return i * (2 * n - i - 1) // 2

    b = 2.0 * n - 1.0
    i = np.floor((b - np.sqrt(np.maximum(b * b - 8.0 * k, 0.0))) / 2.0).astype(np.int64)
    i = np.clip(i, 0, max(n - 2, 0))
    i = np.where(offset(i) > k, i - 1, i)
    i = np.where(offset(i + 1) <= k, i + 1, i)
    j = k - offset(i) + i + 1
    return i, j


def stochastic_block_model(
    num_nodes: int, num_blocks: int, p_in: float, p_out: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw an undirected stochastic block model graph.

    Args:
      num_nodes: ``N ≥ 1`` nodes.
      num_blocks: ``1 ≤ k ≤ N`` blocks of sizes ``⌊N/k⌋`` or ``⌈N/k⌉``.
      p_in: edge probability inside a block.
      p_out: edge probability between blocks.
      seed: numpy seed; the same seed gives the same graph.

    Returns:
      ``(src, dst, labels)``: ``int64[E]`` edge ends with ``src < dst`` (each undirected edge
      once, no self-loops, sorted by ``(src, dst)``) and ``labels int64[N]``, the block of
      each node.
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int | np.integer) or num_nodes < 1:
        raise ValueError(f"num_nodes must be a positive integer, got {num_nodes!r}")
    if (isinstance(num_blocks, bool) or not isinstance(num_blocks, int | np.integer)
            or not 1 <= num_blocks <= num_nodes):
        raise ValueError(
            f"num_blocks must be an integer in [1, num_nodes={num_nodes}], got {num_blocks!r}"
        )
    p_in = _probability(p_in, "p_in")
    p_out = _probability(p_out, "p_out")
    rng = np.random.default_rng(seed)
    n, k = int(num_nodes), int(num_blocks)
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    starts = np.concatenate([[0], np.cumsum(sizes)])
    # node at sorted position t gets id perm[t]; sorted positions are contiguous per block
    perm = rng.permutation(n)
    labels = np.empty(n, dtype=np.int64)
    labels[perm] = np.repeat(np.arange(k), sizes)
    srcs, dsts = [], []
    for a in range(k):
        for b in range(a, k):
            na, nb = int(sizes[a]), int(sizes[b])
            pairs = na * (na - 1) // 2 if a == b else na * nb
            p = p_in if a == b else p_out
            if pairs == 0 or p == 0.0:
                continue
            m = int(rng.binomial(pairs, p))
            chosen = rng.choice(pairs, size=m, replace=False)
            if a == b:
                i, j = triangle_pairs(chosen, na)
            else:
                i, j = np.divmod(chosen, nb)
            srcs.append(perm[starts[a] + i])
            dsts.append(perm[starts[b] + j])
    src = np.concatenate(srcs) if srcs else np.zeros(0, dtype=np.int64)
    dst = np.concatenate(dsts) if dsts else np.zeros(0, dtype=np.int64)
    lo, hi = np.minimum(src, dst).astype(np.int64), np.maximum(src, dst).astype(np.int64)
    order = np.lexsort((hi, lo))
    return lo[order], hi[order], labels


def _from_networkx(graph: Any, attribute: str) -> LabelledGraph:
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    values = [str(graph.nodes[node][attribute]) for node in nodes]
    classes = sorted(set(values))
    code = {c: i for i, c in enumerate(classes)}
    labels = np.array([code[v] for v in values], dtype=np.int64)
    ends = np.array([(index[u], index[v]) for u, v in graph.edges()], dtype=np.int64)
    lo, hi = ends.min(axis=1), ends.max(axis=1)
    order = np.lexsort((hi, lo))
    return LabelledGraph(lo[order], hi[order], labels, [str(n) for n in nodes], classes)


def karate_club() -> LabelledGraph:
    """Zachary's karate club: 34 members, 78 friendships, labels = club after the split.

    ``classes == ['Mr. Hi', 'Officer']`` (17 members each, as networkx labels them). Needs networkx.
    """
    import networkx as nx

    return _from_networkx(nx.karate_club_graph(), "club")


def small_labelled_graphs() -> dict[str, LabelledGraph]:
    """The labelled graphs networkx ships: ``karate_club`` and ``davis_southern_women``.

    Davis's southern women is bipartite (18 women, 14 events, 89 attendances); its label is
    the side, ``classes == ['events', 'women']``. Needs networkx.
    """
    import networkx as nx

    davis = nx.davis_southern_women_graph()
    side = {0: "women", 1: "events"}
    for node in davis.nodes:
        davis.nodes[node]["side"] = side[davis.nodes[node]["bipartite"]]
    return {"karate_club": karate_club(), "davis_southern_women": _from_networkx(davis, "side")}


def lfr_graph(num_nodes: int = 1000, mu: float = 0.4, seed: int = 0, *, average_degree: float = 10,
              max_degree: int = 50, tau1: float = 3.0, tau2: float = 1.5,
              min_community: int = 40, max_community: int = 100) -> LabelledGraph:
    """An LFR benchmark graph labelled by community (networkx's ``LFR_benchmark_graph``).

    Communities are numbered by their smallest node (label ``i`` is community ``i``,
    ``classes == ['c0', 'c1', ...]``).
    networkx raises ``ExceededMaxIterations`` for parameters it cannot realise. Needs networkx.
    """
    import networkx as nx

    mu = _probability(mu, "mu")
    graph = nx.LFR_benchmark_graph(int(num_nodes), tau1, tau2, mu, average_degree=average_degree,
                                   max_degree=max_degree, min_community=min_community,
                                   max_community=max_community, seed=int(seed))
    graph.remove_edges_from(list(nx.selfloop_edges(graph)))
    communities = sorted({frozenset(graph.nodes[v]["community"]) for v in graph}, key=min)
    for i, members in enumerate(communities):
        for v in members:
            graph.nodes[v]["label"] = f"c{i:03d}"
    labelled = _from_networkx(graph, "label")  # zero-padded names sort as the numbers
    return dataclasses.replace(labelled, classes=[f"c{i}" for i in range(len(communities))])
