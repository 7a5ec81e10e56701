"""``jaxembed bench graph``: node2vec walks and skip-gram against PecanPy and gensim.

On a generated stochastic block model (``nodes`` nodes in ``blocks`` blocks, mean degree about
``degree``, 80 % of it inside the block) it prints three tables, each with the peer measured
in the same run:

1. **second-order walks** — :func:`jaxembed.graph.random_walks` (``jit``, all walkers in
   parallel; first call = compile + run) against PecanPy's ``SparseOTF`` (numba, ``workers``
   threads; its first call compiles too);
2. **skip-gram training** on the same walks — :func:`jaxembed.graph.train_skipgram` (default
   ``negatives_per="center"``; with ``per_pair=True`` also word2vec's exact per-pair
   negatives) against gensim ``Word2Vec(sg=1, workers=2)``, same hyperparameters;
3. **node2vec end to end** (warm walks + warm training) and the **macro-F1** of one-vs-rest
   logistic regression on the block labels (half the nodes for training) — ours against
   PecanPy walks + gensim, and our walks + gensim (to tell walk quality from training).

Ratios are ``jaxembed / peer`` (below 1: jaxembed is faster). Peers are optional: a missing
one prints "not installed".
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import jax
import numpy as np

from jaxembed.bench.timing import machine


def _sbm(nodes: int, blocks: int, degree: float, seed: int) -> tuple[np.ndarray, ...]:
    """``(src, dst, labels)``: mean degree ``degree``, 80 % of it inside the block."""
    from jaxembed.graph.generate import stochastic_block_model

    size = nodes / blocks
    p_in = min(1.0, 0.8 * degree / max(size - 1, 1))
    p_out = min(1.0, 0.2 * degree / max(nodes - size, 1))
    return stochastic_block_model(nodes, blocks, p_in, p_out, seed=seed)


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def _ratio(ours: float, peer: float | None) -> str:
    return "-" if peer is None else f"{ours / peer:.2f}"


def _macro_f1(emb: Any, labels: np.ndarray) -> float:
    from jaxembed.graph.evaluate import node_classification

    return node_classification(np.asarray(emb), labels, train_fractions=(0.5,),
                               repeats=3)[0.5]["macro_f1"]


def run(nodes: int = 10_000, blocks: int = 10, degree: float = 20.0, walk_length: int = 80,
        walks_per_node: int = 10, p: float = 1.0, q: float = 0.5, dim: int = 128,
        window: int = 10, negative: int = 5, epochs: int = 1, seed: int = 0,
        workers: int | None = None, per_pair: bool = False) -> None:
    """Print the walk, skip-gram and end-to-end tables (see the module docstring)."""
    from jaxembed.bench.peers import import_gensim_word2vec, import_pecanpy
    from jaxembed.graph.csr import Graph
    from jaxembed.graph.skipgram import Corpus, train_skipgram
    from jaxembed.graph.walks import random_walks

    workers = workers or os.cpu_count() or 1
    src, dst, labels = _sbm(nodes, blocks, degree, seed)
    graph = Graph.from_edges(src, dst, num_nodes=nodes)
    print(f"machine: {machine()}")
    print(f"graph: SBM {nodes} nodes, {blocks} blocks, {src.size} edges (max degree "
          f"{graph.max_degree}); walks {walks_per_node}/node x {walk_length} nodes, p={p} q={q}")
    key = jax.random.key(seed)

    # 1. walks
    walks, cold = _timed(lambda: random_walks(graph, key, walk_length, walks_per_node, p, q))
    _, warm = _timed(lambda: random_walks(graph, jax.random.fold_in(key, 1), walk_length,
                                          walks_per_node, p, q))
    steps = nodes * walks_per_node * (walk_length - 1)
    try:
        pecanpy = import_pecanpy()
    except Exception as err:  # an installed but broken peer (numba/numpy mismatch)
        print(f"PecanPy: import failed ({err!r})")
        pecanpy = None
    peer_walks, peer_cold, peer_warm, peer_fixed = None, None, None, None
    with tempfile.TemporaryDirectory() as tmp:
        edge_file = os.path.join(tmp, "edges.tsv")
        with open(edge_file, "w") as f:
            f.writelines(f"{u}\t{v}\n" for u, v in zip(src.tolist(), dst.tolist(), strict=True))
        if pecanpy is not None:
            g = pecanpy.SparseOTF(p=p, q=q, workers=workers, verbose=False, random_state=seed)
            g.read_edg(edge_file, weighted=False, directed=False)
            # PecanPy's walk_length counts steps: walk_length - 1 gives walks of walk_length
            peer_walks, peer_cold = _timed(lambda: g.simulate_walks(walks_per_node,
                                                                    walk_length - 1))
            _, peer_warm = _timed(lambda: g.simulate_walks(walks_per_node, walk_length - 1))
            # every simulate_walks call re-jits its numba walker: the cost of a 1-step call
            _, peer_fixed = _timed(lambda: g.simulate_walks(1, 1))
    print(f"\n1. second-order walks ({steps / 1e6:.1f} M steps)")
    print(f"{'sampler':<34}{'cold s':>9}{'warm s':>9}{'M steps/s':>11}{'warm / peer':>13}")
    print(f"{'jaxembed random_walks (jit)':<34}{cold:>9.2f}{warm:>9.2f}{steps / warm / 1e6:>11.1f}"
          f"{_ratio(warm, peer_warm):>13}")
    if pecanpy is None:
        print("PecanPy: not installed (pip install pecanpy)")
    else:
        print(f"{f'PecanPy SparseOTF ({workers} threads)':<34}{peer_cold:>9.2f}{peer_warm:>9.2f}"
              f"{steps / peer_warm / 1e6:>11.1f}{'1.00':>13}")
        print(f"{'PecanPy, 1 walk of 2 nodes per node':<34}{'':>9}{peer_fixed:>9.2f}"
              "   (its per-call numba compile, included above)")

    # 2. skip-gram on the same walks
    corpus = Corpus.from_walks(jax.device_get(walks), nodes)
    hyper = dict(dim=dim, window=window, negative=negative, epochs=epochs)
    _, sg_cold = _timed(lambda: train_skipgram(corpus, key, **hyper))
    (emb, _), sg_warm = _timed(lambda: train_skipgram(corpus, jax.random.fold_in(key, 1),
                                                      **hyper))
    pair_emb = pair_cold = pair_warm = None
    if per_pair:
        _, pair_cold = _timed(lambda: train_skipgram(corpus, key, negatives_per="pair",
                                                     **hyper))
        (pair_emb, _), pair_warm = _timed(lambda: train_skipgram(
            corpus, jax.random.fold_in(key, 1), negatives_per="pair", **hyper))
    Word2Vec = import_gensim_word2vec()

    def gensim(sentences: list[list[str]]) -> tuple[np.ndarray, float]:
        model, seconds = _timed(lambda: Word2Vec(
            sentences, vector_size=dim, window=window, negative=negative, epochs=epochs,
            min_count=0, sample=0, sg=1, workers=2, seed=seed))
        table = np.stack([model.wv[str(i)] if str(i) in model.wv else np.zeros(dim)
                          for i in range(nodes)])
        return table, seconds

    gensim_s = gensim_emb = None
    if Word2Vec is not None:
        gensim_emb, gensim_s = gensim([list(map(str, row)) for row in corpus_rows(walks)])
    tokens = corpus.tokens.size * epochs
    print(f"\n2. skip-gram on the same walks ({tokens / 1e6:.1f} M tokens, dim {dim}, "
          f"window {window}, negative {negative}, epochs {epochs})")
    print(f"{'trainer':<34}{'cold s':>9}{'warm s':>9}{'k tok/s':>11}{'warm / peer':>13}")
    print(f"{'jaxembed train_skipgram':<34}{sg_cold:>9.2f}{sg_warm:>9.2f}"
          f"{tokens / sg_warm / 1e3:>11.0f}{_ratio(sg_warm, gensim_s):>13}")
    if pair_warm is not None:
        print(f"{'  ... negatives per pair':<34}{pair_cold:>9.2f}{pair_warm:>9.2f}"
              f"{tokens / pair_warm / 1e3:>11.0f}{_ratio(pair_warm, gensim_s):>13}")
    if gensim_s is None:
        print("gensim: not installed (pip install gensim)")
    else:
        print(f"{'gensim Word2Vec sg (2 workers)':<34}{'':>9}{gensim_s:>9.2f}"
              f"{tokens / gensim_s / 1e3:>11.0f}{'1.00':>13}")

    # 3. end to end (warm walks + warm training) and macro-F1 on the block labels
    ours_total = warm + sg_warm
    peer_total = peer_f1 = None
    if peer_walks is not None and Word2Vec is not None:
        peer_emb, peer_train = gensim([list(map(str, w)) for w in peer_walks])
        peer_total = peer_warm + peer_train
        peer_f1 = _macro_f1(peer_emb, labels)
    print(f"\n3. node2vec end to end (warm), macro-F1 of the {blocks} blocks "
          "(50 % train, 3 splits)")
    print(f"{'pipeline':<34}{'seconds':>9}{'macro-F1':>10}{'time / peer':>13}")
    print(f"{'jaxembed walks + skip-gram':<34}{ours_total:>9.2f}{_macro_f1(emb, labels):>10.3f}"
          f"{_ratio(ours_total, peer_total):>13}")
    if pair_emb is not None:
        print(f"{'jaxembed walks + per-pair sg':<34}{warm + pair_warm:>9.2f}"
              f"{_macro_f1(pair_emb, labels):>10.3f}{_ratio(warm + pair_warm, peer_total):>13}")
    if gensim_emb is not None:
        print(f"{'jaxembed walks + gensim':<34}{'':>9}{_macro_f1(gensim_emb, labels):>10.3f}")
    if peer_total is None:
        print("PecanPy + gensim: not installed")
    else:
        print(f"{'PecanPy walks + gensim':<34}{peer_total:>9.2f}{peer_f1:>10.3f}{'1.00':>13}")


def corpus_rows(walks: Any) -> list[list[int]]:
    """Walks as python lists (gensim's input)."""
    return np.asarray(walks).tolist()
