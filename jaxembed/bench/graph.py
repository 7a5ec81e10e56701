"""``jaxembed bench graph``: node2vec walks and skip-gram against PecanPy and gensim.

On a generated stochastic block model (``nodes`` nodes in ``blocks`` blocks, mean degree about
``degree``, 80 % of it inside the block) it prints three tables, each with the peer measured
in the same run:

1. **second-order walks** — :func:`jaxembed.graph.random_walks` (``jit``, all walkers in
   parallel; first call = compile + run) against PecanPy's ``SparseOTF`` (numba, ``workers``
   threads; its first call compiles too);
2. **skip-gram training** on the same walks — :func:`jaxembed.graph.train_skipgram` (default
   ``negatives_per="lane"``; with ``per_pair=True`` also the per-center form, the default
   before, and word2vec's exact per-pair negatives) against gensim
   ``Word2Vec(sg=1, workers=2)``, same hyperparameters;
3. **node2vec end to end** (warm walks + warm training) and the **macro-F1** of one-vs-rest
   logistic regression on the block labels (half the nodes for training) — ours against
   PecanPy walks + gensim, and our walks + gensim (to tell walk quality from training).

With ``seeds > 0`` a fourth table compares **quality on the same walks** (what isolates the
trainer): macro-F1 (mean and range over ``seeds`` graphs and walk keys) of our skip-gram with
the default ``negatives_per="lane"``, with per-center negatives (``"center"``, the default
before), of gensim on the same walks, and of PecanPy walks + gensim, on a harder block model
(``nodes`` nodes, ``blocks`` blocks, mean degree 10, 40 % of it inside the block: the 80 %
model above is solved perfectly by every trainer) and on an LFR benchmark graph (1000 nodes,
mixing 0.4, :func:`jaxembed.graph.generate.lfr_graph`), the held-out check: pool sizes were
chosen on other block-model seeds (100, 101), never on these graphs; and on a real labelled
graph, Zachary's karate club (34 members, the two factions after the split; networkx ships it),
where the seed changes only the walks and the training. Its last row is the **paired**
difference, our lane trainer minus gensim on the same walks, per seed: mean (min..max). The
graphs' seed-to-seed spread cancels in it, so a trainer gap shows as a range that excludes 0.

Ratios are ``jaxembed / peer`` (below 1: jaxembed is faster). Peers are optional: a missing
one prints "not installed".
"""

from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from typing import Any

import jax
import numpy as np

from jaxembed.bench.timing import machine


def _sbm(nodes: int, blocks: int, degree: float, seed: int,
         inside: float = 0.8) -> tuple[np.ndarray, ...]:
    """``(src, dst, labels)``: mean degree ``degree``, a fraction ``inside`` of it inside the
    block."""
    from jaxembed.graph.generate import stochastic_block_model

    size = nodes / blocks
    p_in = min(1.0, inside * degree / max(size - 1, 1))
    p_out = min(1.0, (1.0 - inside) * degree / max(nodes - size, 1))
    return stochastic_block_model(nodes, blocks, p_in, p_out, seed=seed)


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def _ratio(ours: float, peer: float | None) -> str:
    return "-" if peer is None else f"{ours / peer:.2f}"


def _macro_f1(emb: Any, labels: np.ndarray, repeats: int = 3) -> float:
    from jaxembed.graph.evaluate import node_classification

    return node_classification(np.asarray(emb), labels, train_fractions=(0.5,),
                               repeats=repeats)[0.5]["macro_f1"]


def run(nodes: int = 10_000, blocks: int = 10, degree: float = 20.0, walk_length: int = 80,
        walks_per_node: int = 10, p: float = 1.0, q: float = 0.5, dim: int = 128,
        window: int = 10, negative: int = 5, epochs: int = 1, seed: int = 0,
        workers: int | None = None, per_pair: bool = False, seeds: int = 0) -> None:
    """Print the walk, skip-gram and end-to-end tables, and with ``seeds > 0`` the quality
    table (see the module docstring)."""
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
    pair_emb = pair_cold = pair_warm = center_cold = center_warm = None
    if per_pair:
        _, center_cold = _timed(lambda: train_skipgram(corpus, key, negatives_per="center",
                                                       **hyper))
        _, center_warm = _timed(lambda: train_skipgram(
            corpus, jax.random.fold_in(key, 1), negatives_per="center", **hyper))
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
    if center_warm is not None:
        print(f"{'  ... negatives per center':<34}{center_cold:>9.2f}{center_warm:>9.2f}"
              f"{tokens / center_warm / 1e3:>11.0f}{_ratio(center_warm, gensim_s):>13}")
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
    if seeds > 0:
        quality(nodes, blocks, seeds, walk_length, walks_per_node, p, q, dim, window, negative,
                epochs, workers)


def corpus_rows(walks: Any) -> list[list[int]]:
    """Walks as python lists (gensim's input)."""
    return np.asarray(walks).tolist()


def _gensim_table(Word2Vec: Any, walks: Any, num_nodes: int, seed: int,
                  hyper: dict[str, int]) -> np.ndarray:
    """gensim skip-gram (``workers=2``, no subsampling) on ``walks``, as a ``[N, dim]`` table."""
    model = Word2Vec([list(map(str, row)) for row in np.asarray(walks).tolist()],
                     vector_size=hyper["dim"], window=hyper["window"],
                     negative=hyper["negative"], epochs=hyper["epochs"], min_count=0, sample=0,
                     sg=1, workers=2, seed=seed)
    return np.stack([model.wv[str(i)] if str(i) in model.wv else np.zeros(hyper["dim"])
                     for i in range(num_nodes)])


def quality(nodes: int = 1000, blocks: int = 10, seeds: int = 3, walk_length: int = 80,
            walks_per_node: int = 10, p: float = 1.0, q: float = 0.5, dim: int = 128,
            window: int = 10, negative: int = 5, epochs: int = 1, workers: int = 2,
            repeats: int = 5) -> dict[str, dict[str, list[float]]]:
    """Macro-F1 on the same walks, seeds ``0 .. seeds - 1`` (see the module docstring); prints
    the table and returns ``{graph: {trainer: [f1 per seed]}}``."""
    from jaxembed.bench.peers import import_gensim_word2vec, import_pecanpy
    from jaxembed.graph.csr import Graph
    from jaxembed.graph.generate import karate_club, lfr_graph
    from jaxembed.graph.skipgram import Corpus, train_skipgram
    from jaxembed.graph.walks import random_walks

    Word2Vec = import_gensim_word2vec()
    try:
        pecanpy = import_pecanpy()
    except Exception:  # an installed but broken peer: the table says "-"
        pecanpy = None
    hyper = dict(dim=dim, window=window, negative=negative, epochs=epochs)
    graphs = {
        f"SBM {nodes} nodes, {blocks} blocks, degree 10, 40 % inside":
            lambda s: _sbm(nodes, blocks, 10.0, s, inside=0.4),
        "LFR 1000 nodes, mu 0.4 (held out)": lambda s: tuple(lfr_graph(1000, 0.4, s))[:3],
        "karate club (real, 2 factions)": lambda s: tuple(karate_club())[:3],
    }
    trainers = ["lane (default)", "center (before)", "gensim, same walks", "PecanPy + gensim"]
    results: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {"lane (default)": 0.0, "gensim, same walks": 0.0}
    for name, build in graphs.items():
        scores: dict[str, list[float]] = {t: [] for t in trainers}
        for s in range(seeds):
            src, dst, labels = build(s)
            n = int(labels.shape[0])
            graph = Graph.from_edges(src, dst, num_nodes=n)
            key = jax.random.key(s)
            walks = jax.device_get(random_walks(graph, key, walk_length, walks_per_node, p, q))
            corpus = Corpus.from_walks(walks, n)
            for trainer, mode in (("lane (default)", "lane"), ("center (before)", "center")):
                (emb, _), took = _timed(partial(train_skipgram, corpus, jax.random.fold_in(
                    key, 1), negatives_per=mode, **hyper))
                scores[trainer].append(_macro_f1(emb, labels, repeats))
                seconds[trainer] = seconds.get(trainer, 0.0) + took
            if Word2Vec is not None:
                emb, took = _timed(partial(_gensim_table, Word2Vec, walks, n, s, hyper))
                scores["gensim, same walks"].append(_macro_f1(emb, labels, repeats))
                seconds["gensim, same walks"] += took
            if Word2Vec is not None and pecanpy is not None:
                peer_walks = _pecanpy_walks(pecanpy, src, dst, p, q, workers, s,
                                            walks_per_node, walk_length)
                emb = _gensim_table(Word2Vec, peer_walks, n, s, hyper)
                scores["PecanPy + gensim"].append(_macro_f1(emb, labels, repeats))
        results[name] = scores
    print(f"\n4. macro-F1 on the same walks, mean (min-max) over seeds 0..{seeds - 1} "
          f"(50 % train, {repeats} splits; walks {walks_per_node}/node x {walk_length}, "
          f"p={p} q={q}, dim {dim}, window {window}, negative {negative}, epochs {epochs})")
    print(f"{'trainer':<22}" + "".join(f"{name[:34]:>36}" for name in graphs))
    for trainer in trainers:
        cells = []
        for name in graphs:
            v = results[name][trainer]
            cells.append(f"{np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" if v else "-")
        print(f"{trainer:<22}" + "".join(f"{c:>36}" for c in cells))
    if all(results[name]["gensim, same walks"] for name in graphs):
        print(f"{'lane - gensim, paired':<22}" + "".join(
            f"{_paired(results[name]['lane (default)'], results[name]['gensim, same walks']):>36}"
            for name in graphs))
    if seconds["gensim, same walks"] > 0:
        print("training seconds over all graphs: " + ", ".join(
            f"{t} {sec:.1f}" for t, sec in seconds.items())
            + f"; lane / gensim {seconds['lane (default)'] / seconds['gensim, same walks']:.2f}")
    return results


def _paired(ours: list[float], peer: list[float]) -> str:
    """The per-seed difference ``ours - peer`` on the same walks: mean (min-max). A trainer
    difference shows as a shift of the whole range; seed-to-seed spread of the graphs cancels."""
    diff = np.asarray(ours) - np.asarray(peer)
    return f"{diff.mean():+.3f} ({diff.min():+.3f}..{diff.max():+.3f})"


def _pecanpy_walks(pecanpy: Any, src: np.ndarray, dst: np.ndarray, p: float, q: float,
                   workers: int, seed: int, walks_per_node: int,
                   walk_length: int) -> np.ndarray:
    """PecanPy ``SparseOTF`` walks (node ids as ints) on the undirected edges."""
    with tempfile.TemporaryDirectory() as tmp:
        edge_file = os.path.join(tmp, "edges.tsv")
        with open(edge_file, "w") as f:
            f.writelines(f"{u}\t{v}\n" for u, v in zip(src.tolist(), dst.tolist(), strict=True))
        g = pecanpy.SparseOTF(p=p, q=q, workers=workers, verbose=False, random_state=seed)
        g.read_edg(edge_file, weighted=False, directed=False)
        return np.array([[int(x) for x in w] for w in g.simulate_walks(walks_per_node,
                                                                       walk_length - 1)])
