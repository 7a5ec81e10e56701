r"""Evaluating node embeddings: node classification and link prediction.

**Node classification** (the DeepWalk / LINE / node2vec protocol). For each train fraction
:math:`f` and each of ``repeats`` random splits, a one-vs-rest logistic regression is fitted
on the embeddings of :math:`\lceil fN \rceil` nodes and scored on the rest with

.. math::

    F_1^\text{micro} = \frac{2 \sum_c TP_c}{2 \sum_c TP_c + \sum_c FP_c + \sum_c FN_c},
    \qquad
    F_1^\text{macro} = \frac{1}{C} \sum_c \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c},

averaged over the repeats. Single-label nodes (``labels int[N]``) get the class of largest
score; multi-label nodes (``labels {0,1}[N, C]``) get their ``k`` best-scored classes, ``k``
the number of labels they truly have (Tang et al. 2009, as DeepWalk). Macro-F1 averages over
the classes present in the test nodes' truth or predictions.

**Link prediction** (Grover & Leskovec 2016). :func:`split_edges` hides a fraction of the
edges as positive test pairs (by default never an edge of a random spanning forest, so the
residual graph keeps the components of the original) and draws as many node pairs that are
not edges as negative test pairs. The caller embeds the residual graph;
:func:`link_prediction` then represents a pair :math:`(u, v)` by the Hadamard product
:math:`e_u \odot e_v` (or another operator), fits a logistic regression on the training edges
against as many sampled non-edges, and returns the AUC on the test pairs
(:func:`jaxembed.metrics.auc`).

Everything is host-side numpy, SciPy and scikit-learn (imported when called), deterministic
for a given ``seed``.

References
----------
Perozzi, B., Al-Rfou, R. & Skiena, S. (2014). DeepWalk: online learning of social
representations. KDD.
Grover, A. & Leskovec, J. (2016). node2vec: scalable feature learning for networks. KDD.
Tang, L., Rajan, S. & Narayanan, V. K. (2009). Large scale multi-label classification via
metalabeler. WWW.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxembed.metrics import auc

__all__ = [
    "EDGE_OPERATORS",
    "EdgeSplit",
    "edge_features",
    "link_prediction",
    "node_classification",
    "sample_non_edges",
    "split_edges",
    "split_rng",
]

EDGE_OPERATORS = {
    "hadamard": lambda a, b: a * b,
    "average": lambda a, b: (a + b) / 2.0,
    "l1": lambda a, b: np.abs(a - b),
    "l2": lambda a, b: (a - b) ** 2,
}
"""Binary operators from node embeddings to edge features (node2vec, Table 1)."""


def _embeddings(emb: Any) -> np.ndarray:
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"emb must be 2-D [num_nodes, dim], got shape {x.shape}")
    bad = ~np.isfinite(x)
    if np.any(bad):
        i, j = np.unravel_index(int(np.argmax(bad)), x.shape)
        raise ValueError(f"emb: value {x[i, j]} at position ({i}, {j}) is not finite")
    return x


def _label_matrix(labels: Any, num_nodes: int) -> tuple[np.ndarray, bool]:
    """``(Y {0,1}[N, C], multilabel)`` from int labels ``[N]`` or a 0/1 matrix ``[N, C]``."""
    y = np.asarray(labels)
    if y.shape[0:1] != (num_nodes,) or y.ndim not in (1, 2):
        raise ValueError(
            f"labels must have shape ({num_nodes},) or ({num_nodes}, C) to match emb, "
            f"got {y.shape}"
        )
    if y.ndim == 2:
        ok = (y == 0) | (y == 1)
        if not np.all(ok):
            i, j = np.unravel_index(int(np.argmin(ok)), y.shape)
            raise ValueError(f"labels: value {y[i, j]!r} at ({i}, {j}) is not 0 or 1")
        return y.astype(np.int64), True
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integer class codes, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        i = int(np.argmin(y))
        raise ValueError(f"labels: class {int(y[i])} at position {i} is negative")
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(f"labels hold {classes.size} class(es): classification needs >= 2")
    out = (y[:, None] == classes[None, :]).astype(np.int64)
    return out, False


def _top_k(scores: np.ndarray, k: np.ndarray) -> np.ndarray:
    """0/1 matrix marking each row's ``k[row]`` largest scores (ties broken by column)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return (ranks < k[:, None]).astype(np.int64)


def split_rng(seed: int, repeat: int) -> np.random.Generator:
    """The generator of split ``repeat``: ``SeedSequence(seed).spawn(repeat + 1)[repeat]``.

    A spawned child never reproduces ``default_rng(seed)``, the stream the graph generators
    draw from; ``default_rng([seed, 0])`` would (NumPy pads a seed's words with zeros), and
    then the split of repeat 0 on :func:`~jaxembed.graph.generate.stochastic_block_model`
    ``(seed=seed)`` is its node permutation: the training half holds exactly the first half
    of the blocks, and the classifier never sees the others.
    """
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(repeat),)))


def node_classification(emb: Any, labels: Any, train_fractions: Sequence[float] = (0.1, 0.5, 0.9),
                        repeats: int = 10, seed: int = 0, c: float = 1.0
                        ) -> dict[float, dict[str, float]]:
    """Macro- and micro-F1 of one-vs-rest logistic regression on the embeddings.

    Args:
      emb: ``f[N, d]`` node embeddings.
      labels: ``int[N]`` class codes, or a ``{0, 1}[N, C]`` multi-label matrix.
      train_fractions: fractions of the nodes to train on, each in ``(0, 1)``.
      repeats: random splits per fraction; split ``r`` shuffles with the ``r``-th child of
        ``np.random.SeedSequence(seed)`` (:func:`split_rng`), never with
        ``default_rng(seed)`` itself.
      seed: base seed.
      c: inverse L2 strength of the logistic regressions (scikit-learn's ``C``).

    Returns:
      ``{fraction: {"macro_f1", "micro_f1", "macro_f1_std", "micro_f1_std"}}``, means and
      standard deviations over the repeats.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    x = _embeddings(emb)
    n = x.shape[0]
    y, multilabel = _label_matrix(labels, n)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    results: dict[float, dict[str, float]] = {}
    for fraction in train_fractions:
        f = float(fraction)
        n_train = math.ceil(f * n)
        if not 0.0 < f < 1.0 or not 1 <= n_train < n:
            raise ValueError(
                f"train fraction {fraction!r} must be in (0, 1) and leave at least one node "
                f"to train on and one to test on ({n} nodes)"
            )
        macro, micro = [], []
        for r in range(repeats):
            perm = split_rng(seed, r).permutation(n)
            train, test = perm[:n_train], perm[n_train:]
            model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=1000))
            with warnings.catch_warnings():
                # a class missing from a small training split gets a constant predictor
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[train], y[train])
            scores = model.decision_function(x[test]).reshape(len(test), -1)
            k = y[test].sum(axis=1) if multilabel else np.ones(len(test), np.int64)
            pred = _top_k(scores, k)
            present = np.flatnonzero(y[test].any(axis=0) | pred.any(axis=0))
            macro.append(f1_score(y[test], pred, average="macro", labels=present,
                                  zero_division=0.0))
            micro.append(f1_score(y[test], pred, average="micro", labels=present,
                                  zero_division=0.0))
        results[f] = {
            "macro_f1": float(np.mean(macro)), "micro_f1": float(np.mean(micro)),
            "macro_f1_std": float(np.std(macro)), "micro_f1_std": float(np.std(micro)),
        }
    return results


class EdgeSplit(NamedTuple):
    """Train edges and test pairs, each ``int64[M, 2]`` with ``u < v`` per row."""

    train: np.ndarray
    test_pos: np.ndarray
    test_neg: np.ndarray


def _undirected_pairs(src: Any, dst: Any) -> np.ndarray:
    """Distinct undirected non-loop edges as sorted rows ``[u, v]``, ``u < v``."""
    s, d = np.asarray(src), np.asarray(dst)
    if s.ndim != 1 or s.shape != d.shape:
        raise ValueError(f"src and dst must be 1-D of equal length, got {s.shape} and {d.shape}")
    for name, a in (("src", s), ("dst", d)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name} must have an integer dtype, got {a.dtype}")
        if a.size and a.min() < 0:
            i = int(np.argmin(a))
            raise IndexError(f"{name}: node id {int(a[i])} at position {i} is negative")
    pairs = np.stack([np.minimum(s, d), np.maximum(s, d)], axis=1).astype(np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if pairs.size else pairs.reshape(0, 2)


def _codes(pairs: np.ndarray, n: int) -> np.ndarray:
    return pairs[:, 0] * n + pairs[:, 1]


def sample_non_edges(count: int, num_nodes: int, exclude: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct node pairs ``u < v`` that are not rows of ``exclude`` (``[M, 2]``,
    ``u < v``), uniformly by rejection in vectorized rounds."""
    total = num_nodes * (num_nodes - 1) // 2
    banned = np.unique(_codes(exclude, num_nodes)) if exclude.size else np.zeros(0, np.int64)
    if count > total - banned.size:
        raise ValueError(
            f"cannot draw {count} non-edges: only {total - banned.size} node pairs of "
            f"{num_nodes} nodes are not excluded"
        )
    found = np.zeros(0, np.int64)
    while found.size < count:
        want = 2 * (count - found.size) + 16
        u = rng.integers(0, num_nodes, size=want)
        v = rng.integers(0, num_nodes, size=want)
        keep = u != v
        code = np.minimum(u, v)[keep] * num_nodes + np.maximum(u, v)[keep]
        code = code[~np.isin(code, banned) & ~np.isin(code, found)]
        _, first = np.unique(code, return_index=True)
        found = np.concatenate([found, code[np.sort(first)]])
    found = found[:count]
    return np.stack([found // num_nodes, found % num_nodes], axis=1)


def _spanning_forest(pairs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of ``pairs`` forming a random spanning forest (minimum spanning tree
    under random weights)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    weight = rng.random(pairs.shape[0]) + 1.0  # > 0: scipy drops zero entries
    tree = minimum_spanning_tree(coo_matrix((weight, (pairs[:, 0], pairs[:, 1])), shape=(n, n)))
    tree = tree.tocoo()
    kept = np.stack([np.minimum(tree.row, tree.col), np.maximum(tree.row, tree.col)], axis=1)
    return np.isin(_codes(pairs, n), _codes(kept.astype(np.int64), n))


def split_edges(src: Any, dst: Any, fraction: float = 0.5, seed: int = 0, *,
                num_nodes: int | None = None, keep_connected: bool = True) -> EdgeSplit:
    """Hide ``fraction`` of the undirected edges as positive test pairs, plus as many negatives.

    Args:
      src, dst: undirected edges (either direction; duplicates and self-loops are dropped).
      fraction: share of the distinct edges to hide, in ``(0, 1)``.
      seed: numpy seed.
      num_nodes: defaults to ``max id + 1``.
      keep_connected: never hide an edge of a random spanning forest, so the residual graph
        has the same connected components (and no node loses all its edges).

    Returns:
      :class:`EdgeSplit` ``(train, test_pos, test_neg)``. Negatives are distinct pairs that
      are edges of neither the residual nor the hidden set.
    """
    pairs = _undirected_pairs(src, dst)
    n = int(pairs.max(initial=-1) + 1) if num_nodes is None else int(num_nodes)
    if pairs.size and pairs.max() >= n:
        raise IndexError(f"node id {int(pairs.max())} is out of range for num_nodes={n}")
    f = float(fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    count = round(f * pairs.shape[0])
    if count < 1:
        raise ValueError(f"fraction {fraction!r} of {pairs.shape[0]} edges hides no edge")
    removable = ~_spanning_forest(pairs, n, rng) if keep_connected else np.ones(len(pairs), bool)
    candidates = np.flatnonzero(removable)
    if count > candidates.size:
        raise ValueError(
            f"cannot hide {count} of {pairs.shape[0]} edges while keeping the graph connected: "
            f"only {candidates.size} edges lie outside a spanning forest"
        )
    hidden = np.zeros(len(pairs), bool)
    hidden[rng.choice(candidates, size=count, replace=False)] = True
    negatives = sample_non_edges(count, n, pairs, rng)
    return EdgeSplit(pairs[~hidden], pairs[hidden], negatives)


def _pairs_arg(pairs: Any, what: str, n: int) -> np.ndarray:
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{what} must have shape [M, 2], got {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        raise TypeError(f"{what} must have an integer dtype, got {p.dtype}")
    if p.size and (p.min() < 0 or p.max() >= n):
        bad = (p < 0) | (p >= n)
        i, j = np.unravel_index(int(np.argmax(bad)), p.shape)
        raise IndexError(f"{what}: node id {int(p[i, j])} at ({i}, {j}) is out of range for "
                         f"{n} embeddings")
    return p.astype(np.int64)


def edge_features(emb: Any, pairs: Any, operator: str = "hadamard") -> np.ndarray:
    """Features ``op(e_u, e_v)`` of node pairs ``[M, 2]`` (see :data:`EDGE_OPERATORS`)."""
    if operator not in EDGE_OPERATORS:
        raise ValueError(f"operator must be one of {sorted(EDGE_OPERATORS)}, got {operator!r}")
    x = _embeddings(emb)
    p = _pairs_arg(pairs, "pairs", x.shape[0])
    return EDGE_OPERATORS[operator](x[p[:, 0]], x[p[:, 1]])


def link_prediction(emb: Any, train_pos: Any, test_pos: Any, test_neg: Any, seed: int = 0, *,
                    operator: str = "hadamard", train_neg: Any | None = None,
                    c: float = 1.0) -> float:
    """AUC of a logistic regression on edge features, trained on ``train_pos`` vs non-edges.

    Args:
      emb: ``f[N, d]`` embeddings of the residual graph's nodes.
      train_pos: ``[M, 2]`` training edges (the residual graph).
      test_pos, test_neg: ``[M', 2]`` hidden edges and non-edges to score.
      seed: numpy seed for the training negatives.
      operator: edge feature (``'hadamard'``, ``'average'``, ``'l1'``, ``'l2'``).
      train_neg: training non-edges; by default as many as ``train_pos``, drawn uniformly
        among pairs in none of the three given sets.
      c: inverse L2 strength of the logistic regression.
    """
    from sklearn.linear_model import LogisticRegression

    x = _embeddings(emb)
    n = x.shape[0]
    pos = _pairs_arg(train_pos, "train_pos", n)
    t_pos = _pairs_arg(test_pos, "test_pos", n)
    t_neg = _pairs_arg(test_neg, "test_neg", n)
    if len(pos) == 0 or len(t_pos) == 0 or len(t_neg) == 0:
        raise ValueError(
            f"need training edges and both kinds of test pairs, got {len(pos)} train_pos, "
            f"{len(t_pos)} test_pos and {len(t_neg)} test_neg"
        )
    if train_neg is None:
        known = np.concatenate([pos, t_pos, t_neg])
        known = np.sort(known, axis=1)
        neg = sample_non_edges(len(pos), n, known[known[:, 0] != known[:, 1]],
                               np.random.default_rng(seed))
    else:
        neg = _pairs_arg(train_neg, "train_neg", n)
    features = np.concatenate([edge_features(x, pos, operator), edge_features(x, neg, operator)])
    target = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    model = LogisticRegression(C=c, max_iter=1000).fit(features, target)
    test = np.concatenate([t_pos, t_neg])
    scores = model.decision_function(edge_features(x, test, operator))
    labels = np.concatenate([np.ones(len(t_pos)), np.zeros(len(t_neg))])
    return auc(labels, scores)
