"""Graph: a weighted graph in compressed sparse row (CSR) form, as a JAX pytree.

Node ``u``'s out-neighbours are ``indices[indptr[u]:indptr[u+1]]``, **sorted ascending**, with
edge weights ``weights[...]`` at the same positions. Two derived arrays serve the samplers in
:mod:`jaxembed.graph.walks`:

* ``cumweights[e] = Σ_{e' ∈ [indptr[u], e]} weights[e']`` — the running sum of weights *within*
  ``u``'s slice (computed in float64, stored in float32), so a neighbour ``v`` is drawn with
  probability ``w(u, v) / Σ_v' w(u, v')`` by inverse CDF: the first ``e`` in the slice with
  ``cumweights[e] > U · cumweights[indptr[u+1] - 1]``, ``U ~ Uniform[0, 1)`` (a binary search);
* sorted neighbours make "is ``x`` a neighbour of ``t``" a binary search in ``t``'s slice.

Conventions (the same for every constructor):

* **Undirected** graphs store each edge ``{u, v}`` as the two arcs ``u→v`` and ``v→u``.
* **Self-loops** are kept; an undirected self-loop ``{u, u}`` is stored once (one arc).
* **Duplicate edges are merged by summing their weights** (so a multigraph's parallel edges,
  or an undirected edge listed as both ``u v`` and ``v u``, become one edge whose weight is the
  sum). The walk distribution is the same as keeping the duplicates as separate edges.
* **Weights** must be finite and ``> 0`` (a zero-weight edge is not an edge; omit it).
  Missing weights are 1.
* **Isolated nodes and dangling nodes** (no out-edge in a directed graph) are allowed; a walk
  that reaches one stays on it for the remaining steps.

Array fields are ``jax.Array`` leaves; ``num_nodes``, ``directed``, ``max_degree`` and the
optional node ``labels`` (the original node names, ``labels[i]`` is node ``i``) are static, so a
:class:`Graph` can be passed to ``jax.jit``-compiled functions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxembed import _validate

__all__ = ["Graph"]


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """A weighted graph with ``num_nodes`` nodes in CSR form (see the module docstring).

    Build one with :meth:`from_edges`, :meth:`from_edgelist`, :meth:`from_networkx` or
    :meth:`from_scipy`; the fields are:

    Attributes:
        indptr: ``int32[N + 1]``; node ``u``'s arcs are positions ``indptr[u]:indptr[u+1]``.
        indices: ``int32[E]``; the arc targets, sorted within each node's slice.
        weights: ``float32[E]``; the arc weights (``> 0``).
        cumweights: ``float32[E]``; running sum of ``weights`` within each node's slice.
        num_nodes: ``N``.
        directed: whether arcs are one-way (``False``: every edge is stored both ways).
        max_degree: the largest out-degree (bounds the binary searches of the samplers).
        labels: ``None`` or a tuple of ``N`` node names; ``labels[i]`` is node ``i``.
    """

    indptr: jax.Array
    indices: jax.Array
    weights: jax.Array
    cumweights: jax.Array
    num_nodes: int
    directed: bool
    max_degree: int
    labels: tuple[Hashable, ...] | None = None

    # --- pytree -----------------------------------------------------------------------------
    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        children = (self.indptr, self.indices, self.weights, self.cumweights)
        return children, (self.num_nodes, self.directed, self.max_degree, self.labels)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> Graph:
        return cls(*children, *aux)

    # --- views ------------------------------------------------------------------------------
    @property
    def num_arcs(self) -> int:
        """Stored arcs ``E`` (an undirected non-loop edge counts twice)."""
        return int(self.indices.shape[0])

    def degrees(self) -> np.ndarray:
        """Out-degree of every node (number of distinct out-neighbours), ``int[N]``."""
        return np.diff(np.asarray(self.indptr))

    def neighbors(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """``(targets, weights)`` of ``node``'s out-arcs, targets ascending."""
        if not 0 <= int(node) < self.num_nodes:
            raise IndexError(f"node {node} is out of range for a graph of {self.num_nodes} nodes")
        indptr = np.asarray(self.indptr)
        lo, hi = int(indptr[node]), int(indptr[node + 1])
        return np.asarray(self.indices)[lo:hi], np.asarray(self.weights)[lo:hi]

    def label_to_id(self) -> dict[Hashable, int]:
        """``{label: node id}`` (node ids are their own labels when ``labels`` is ``None``)."""
        names = self.labels if self.labels is not None else range(self.num_nodes)
        return {name: i for i, name in enumerate(names)}

    def node_names(self) -> list[str]:
        """Node names as strings (``str(label)``, or the id), e.g. for a word2vec file."""
        names = self.labels if self.labels is not None else range(self.num_nodes)
        return [str(name) for name in names]

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def from_edges(
        cls,
        src: Any,
        dst: Any,
        weights: Any = None,
        num_nodes: int | None = None,
        directed: bool = False,
        *,
        labels: Sequence[Hashable] | None = None,
    ) -> Graph:
        """A graph from edge lists ``src[i] → dst[i]`` (weight ``weights[i]``, default 1).

        ``num_nodes`` defaults to ``max(src, dst) + 1``. Undirected graphs store both arcs of
        each edge; duplicates are merged by summing weights; self-loops are kept.

        Raises:
            TypeError: non-integer ids or non-numeric weights.
            ValueError: shapes that differ, or a weight that is not finite and ``> 0``
                (naming its position), or ``labels`` of the wrong length.
            IndexError: a negative id or an id ``>= num_nodes`` (naming its position).
        """
        src = _validate.id_array(src, "src")
        dst = _validate.id_array(dst, "dst")
        src, dst = np.asarray(src).astype(np.int64), np.asarray(dst).astype(np.int64)
        if src.ndim != 1 or dst.ndim != 1 or src.shape != dst.shape:
            raise ValueError(
                f"src and dst must be 1-D of equal length, got shapes {src.shape} and {dst.shape}"
            )
        for name, ids in (("src", src), ("dst", dst)):
            if ids.size and ids.min() < 0:
                pos = int(np.argmax(ids < 0))
                raise IndexError(f"{name}: node id {int(ids[pos])} at position {pos} is negative")
        highest = int(max(src.max(initial=-1), dst.max(initial=-1)))
        if num_nodes is None:
            num_nodes = highest + 1
        num_nodes = int(num_nodes)
        if num_nodes < 0:
            raise ValueError(f"num_nodes must be >= 0, got {num_nodes}")
        for name, ids in (("src", src), ("dst", dst)):
            if ids.size and ids.max() >= num_nodes:
                pos = int(np.argmax(ids >= num_nodes))
                raise IndexError(
                    f"{name}: node id {int(ids[pos])} at position {pos} is out of range for "
                    f"num_nodes={num_nodes}"
                )
        if weights is None:
            w = np.ones(src.shape, np.float64)
        else:
            w = np.asarray(_validate.weight_array(weights, src.shape, "weights"), np.float64)
            if w.size and w.min() <= 0:
                pos = int(np.argmax(w <= 0))
                raise ValueError(
                    f"weights: value {w[pos]} at position {pos} is not > 0 (omit an edge "
                    "rather than giving it weight 0)"
                )
        if labels is not None:
            labels = tuple(labels)
            if len(labels) != num_nodes:
                raise ValueError(f"{len(labels)} labels for {num_nodes} nodes")
        if not directed:
            loop = src == dst
            src, dst = np.concatenate([src, dst[~loop]]), np.concatenate([dst, src[~loop]])
            w = np.concatenate([w, w[~loop]])
        return cls._from_arcs(src, dst, w, num_nodes, bool(directed), labels)

    @classmethod
    def _from_arcs(
        cls,
        src: np.ndarray,
        dst: np.ndarray,
        w: np.ndarray,
        num_nodes: int,
        directed: bool,
        labels: tuple[Hashable, ...] | None,
    ) -> Graph:
        """Sort arcs by (src, dst), merge duplicates (sum), and build the CSR arrays."""
        key = src * max(num_nodes, 1) + dst
        uniq, inverse = np.unique(key, return_inverse=True)
        merged = np.bincount(inverse.reshape(-1), weights=w, minlength=uniq.size)
        u_src, u_dst = uniq // max(num_nodes, 1), uniq % max(num_nodes, 1)
        counts = np.bincount(u_src, minlength=num_nodes)
        indptr = np.zeros(num_nodes + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        total = np.cumsum(merged)
        base = np.concatenate([[0.0], total])[indptr[:-1]]  # running total before each slice
        cum = total - np.repeat(base, counts)
        if indptr[-1] > np.iinfo(np.int32).max:
            raise ValueError(f"{indptr[-1]} arcs do not fit int32 indices")
        return cls(
            indptr=jnp.asarray(indptr, jnp.int32),
            indices=jnp.asarray(u_dst, jnp.int32),
            weights=jnp.asarray(merged, jnp.float32),
            cumweights=jnp.asarray(cum, jnp.float32),
            num_nodes=num_nodes,
            directed=directed,
            max_degree=int(counts.max(initial=0)),
            labels=labels,
        )

    @classmethod
    def from_edgelist(cls, path: str | os.PathLike, directed: bool = False) -> Graph:
        """Read a whitespace-separated edge list: one ``u v`` or ``u v w`` per line.

        ``#`` starts a comment (to the end of the line); blank lines are skipped. Node names
        are arbitrary tokens, numbered in order of first appearance; ``graph.labels[i]`` is the
        name of node ``i`` (a ``str``). A missing weight is 1.

        Raises:
            ValueError: naming the line number, for a line with other than 2 or 3 fields or a
                weight that is not a finite number ``> 0``.
        """
        ids: dict[str, int] = {}
        src: list[int] = []
        dst: list[int] = []
        weights: list[float] = []
        with open(path, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, start=1):
                fields = raw.split("#", 1)[0].split()
                if not fields:
                    continue
                if len(fields) not in (2, 3):
                    raise ValueError(
                        f"{path}: line {lineno}: expected 'u v' or 'u v weight', got "
                        f"{raw.rstrip()!r} ({len(fields)} fields)"
                    )
                weight = 1.0
                if len(fields) == 3:
                    try:
                        weight = float(fields[2])
                    except ValueError:
                        raise ValueError(
                            f"{path}: line {lineno}: weight {fields[2]!r} is not a number"
                        ) from None
                    if not (np.isfinite(weight) and weight > 0):
                        raise ValueError(
                            f"{path}: line {lineno}: weight {fields[2]!r} must be finite and > 0"
                        )
                src.append(ids.setdefault(fields[0], len(ids)))
                dst.append(ids.setdefault(fields[1], len(ids)))
                weights.append(weight)
        return cls.from_edges(
            np.asarray(src, np.int64), np.asarray(dst, np.int64),
            np.asarray(weights, np.float64), num_nodes=len(ids), directed=directed,
            labels=tuple(ids),
        )

    @classmethod
    def from_networkx(cls, g: Any, weight: str = "weight") -> Graph:
        """A graph from a networkx graph (``Graph``, ``DiGraph`` or a multigraph).

        Nodes are numbered in ``g.nodes`` order and kept as ``labels``; the edge attribute
        ``weight`` (default 1 where absent) is the weight; parallel edges are summed.
        """
        nodes = list(g.nodes)
        index = {node: i for i, node in enumerate(nodes)}
        edges = list(g.edges(data=weight, default=1.0))
        src = np.fromiter((index[u] for u, _, _ in edges), np.int64, len(edges))
        dst = np.fromiter((index[v] for _, v, _ in edges), np.int64, len(edges))
        try:
            w = np.fromiter((float(x) for _, _, x in edges), np.float64, len(edges))
        except (TypeError, ValueError) as err:
            raise TypeError(f"edge attribute {weight!r} must be numeric: {err}") from None
        return cls.from_edges(src, dst, w, num_nodes=len(nodes), directed=g.is_directed(),
                              labels=tuple(nodes))

    @classmethod
    def from_scipy(cls, matrix: Any, directed: bool | None = None) -> Graph:
        """A graph from a square scipy sparse adjacency matrix: ``A[u, v]`` is the weight of
        the arc ``u → v`` (explicit zeros are dropped, duplicate entries summed).

        The matrix is taken as the arc list as it is: an undirected graph is a symmetric
        matrix (both arcs present). ``directed=None`` means "directed unless symmetric";
        ``directed=False`` with a non-symmetric matrix raises ``ValueError``.
        """
        import scipy.sparse as sp

        if not sp.issparse(matrix):
            raise TypeError(f"expected a scipy sparse matrix, got {type(matrix).__name__}")
        a = sp.csr_array(matrix, dtype=np.float64)
        a.sum_duplicates()
        a.eliminate_zeros()
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"adjacency matrix must be square, got shape {a.shape}")
        if a.nnz and not np.all(np.isfinite(a.data)):
            raise ValueError("adjacency matrix holds a non-finite value")
        if a.nnz and a.data.min() < 0:
            coo = a.tocoo()
            k = int(np.argmax(coo.data < 0))
            raise ValueError(
                f"adjacency entry ({int(coo.row[k])}, {int(coo.col[k])}) = {coo.data[k]} is "
                "negative; weights must be > 0"
            )
        symmetric = (a != a.T).nnz == 0
        if directed is None:
            directed = not symmetric
        elif not directed and not symmetric:
            raise ValueError("directed=False needs a symmetric adjacency matrix")
        coo = a.tocoo()
        return cls._from_arcs(coo.row.astype(np.int64), coo.col.astype(np.int64),
                              coo.data, a.shape[0], bool(directed), None)
