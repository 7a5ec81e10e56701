"""``jaxembed node2vec`` and ``jaxembed word2vec``: embeddings from an edge list or a corpus.

Both write the word2vec text format (or binary, ``--binary``) that gensim and the word2vec tool
read, show rich progress bars on stderr, and take PecanPy / word2vec style flags::

    jaxembed node2vec edges.txt --dim 64 --q 0.5 --out nodes.txt --labels y.txt --plot nodes.png
    jaxembed word2vec corpus.txt --dim 100 --window 5 --min-count 5 --out words.txt

``add_node2vec_parser`` / ``add_word2vec_parser`` register the subcommands on an
``argparse`` subparsers object; each sets ``handler`` (``handler(args) -> exit code``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from jaxembed._atomic import atomic_path
from jaxembed.commands import _args
from jaxembed.samples import sample_path

__all__ = [
    "add_node2vec_parser",
    "add_word2vec_parser",
    "check_node2vec",
    "check_word2vec",
    "pca_2d",
    "plot_embedding",
    "read_node_labels",
    "run_node2vec",
    "run_word2vec",
]


def add_node2vec_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``node2vec EDGES ...`` on ``subparsers``."""
    p = subparsers.add_parser(
        "node2vec", help="node embeddings from an edge list (node2vec / DeepWalk)",
        description="Random walks (p = q = 1: DeepWalk) and skip-gram on an edge list "
        "('u v [weight]' per line, '#' comments); writes word2vec text vectors keyed by node.",
        epilog=f"try: jaxembed node2vec {sample_path('karate.edgelist')} --dim 16 --labels "
        f"{sample_path('karate.labels')} --plot karate.png   (Zachary's karate club, shipped)")
    p.add_argument("edges", metavar="EDGES", type=_args.text_file,
                   help="edge list file: 'u v [weight]' per line")
    p.add_argument("--directed", action="store_true", help="arcs are one-way (default: no)")
    p.add_argument("--dim", type=_args.positive_int, default=128, metavar="N",
                   help="embedding size, floats per node")
    p.add_argument("--walk-length", type=_args.int_at_least(2), default=80, metavar="N",
                   help="nodes per walk")
    p.add_argument("--num-walks", type=_args.positive_int, default=10, metavar="N",
                   help="walks started from each node")
    p.add_argument("--window", type=_args.positive_int, default=10, metavar="N",
                   help="skip-gram window, nodes on each side")
    p.add_argument("--p", type=_args.positive_float, default=1.0,
                   help="return parameter p (> 0; large: rarely step back)")
    p.add_argument("--q", type=_args.positive_float, default=1.0,
                   help="in-out parameter q (> 0; small: explore outward)")
    p.add_argument("--negative", type=_args.positive_int, default=5, metavar="N",
                   help="negative samples per (node, context) pair")
    p.add_argument("--epochs", type=_args.positive_int, default=1, metavar="N",
                   help="passes over the walks")
    p.add_argument("--seed", type=_args.nonneg_int, default=0, help="random seed")
    p.add_argument("--out", default="vectors.txt", type=_args.output_file, metavar="FILE",
                   help="output vectors file (word2vec text format)")
    p.add_argument("--binary", action="store_true",
                   help="write the word2vec binary format instead of text")
    p.add_argument("--labels", metavar="FILE", type=_args.text_file,
                   help="node labels, 'node label' per line (the label is the rest of the "
                   "line; colours the plot; needs --plot)")
    p.add_argument("--plot", metavar="PNG", type=_args.output_file,
                   help="write a 2-D PCA projection as a PNG")
    p.set_defaults(handler=run_node2vec, check=check_node2vec)
    return p


def add_word2vec_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``word2vec CORPUS ...`` on ``subparsers``."""
    p = subparsers.add_parser(
        "word2vec", help="word vectors from a text corpus (skip-gram, negative sampling)",
        description="Skip-gram word2vec on a corpus with one sentence per line, tokens "
        "separated by whitespace; writes the word2vec text (or binary) format.",
        epilog=f"try: jaxembed word2vec {sample_path('topics.txt')} --dim 16 --epochs 2   "
        "(1,000 generated sentences on 8 topics, shipped)")
    p.add_argument("corpus", metavar="CORPUS", type=_args.text_file,
                   help="UTF-8 text file, one sentence per line")
    p.add_argument("--dim", type=_args.positive_int, default=100, metavar="N",
                   help="vector size, floats per word")
    p.add_argument("--window", type=_args.positive_int, default=5, metavar="N",
                   help="context window, words on each side")
    p.add_argument("--negative", type=_args.positive_int, default=5, metavar="N",
                   help="negative samples per (word, context) pair")
    p.add_argument("--min-count", type=_args.positive_int, default=5, metavar="N",
                   help="drop words seen fewer times than this")
    p.add_argument("--sample", type=_args.nonneg_float, default=1e-3, metavar="T",
                   help="subsampling threshold, a word frequency (0 = off)")
    p.add_argument("--epochs", type=_args.positive_int, default=5, metavar="N",
                   help="passes over the corpus")
    p.add_argument("--seed", type=_args.nonneg_int, default=0, help="random seed")
    p.add_argument("--out", default="vectors.txt", type=_args.output_file, metavar="FILE",
                   help="output vectors file (word2vec text format)")
    p.add_argument("--binary", action="store_true",
                   help="write the word2vec binary format instead of text")
    p.set_defaults(handler=run_word2vec, check=check_word2vec)
    return p


COUNT_LIMIT = 16 << 20
"""Corpora up to this many bytes (16 MiB) have their words counted by the checks."""


def check_word2vec(args: argparse.Namespace) -> None:
    """A corpus small enough to count quickly (:data:`COUNT_LIMIT`) is counted before
    training: one with no words, or none as frequent as --min-count, stops here."""
    _args.distinct_paths(CORPUS=args.corpus, **{"--out": args.out})
    if os.path.getsize(args.corpus) > COUNT_LIMIT:
        return  # word2vec's own first pass raises the same ValueError
    from collections import Counter

    counts: Counter[str] = Counter()
    for tokens in _sentences(args.corpus):
        counts.update(tokens)
    if not counts:
        raise _args.UsageError(f"{args.corpus!r} has no words (only white space)")
    top = max(counts.values())
    if top < args.min_count:
        raise _args.UsageError(f"--min-count {args.min_count} drops every word of "
                               f"{args.corpus!r} (the most frequent occurs {top} times); "
                               "lower --min-count or give a larger corpus")


def check_node2vec(args: argparse.Namespace) -> None:
    """Read the edge list (and labels) before any walk: a malformed line, an empty graph
    or a label for an unknown node stops here, with the line named."""
    from jaxembed.graph.csr import Graph

    if args.labels and not args.plot:
        raise _args.UsageError("--labels only colours the --plot; give --plot FILE.png too")
    _args.distinct_paths(EDGES=args.edges, **{"--labels": args.labels, "--out": args.out,
                                             "--plot": args.plot})
    graph = Graph.from_edgelist(args.edges, directed=args.directed)
    if graph.num_arcs == 0:
        raise _args.UsageError(f"{args.edges!r} has no edges (only comments or blank lines)")
    args.graph = graph
    args.node_labels = read_node_labels(args.labels, graph) if args.labels else None


@contextlib.contextmanager
def _progress(description: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A rich display on stderr: a spinner for ``description`` (walks, reading) until the
    first ``advance(done, total)``, then a bar of skip-gram training progress in ``unit``
    with its rate and time left."""
    from jaxembed._progress import progress_bar

    with progress_bar(transient=True) as bar:  # a failure leaves only its one line
        first = bar.add_task(description, total=None)
        training = None

        def advance(done: int, total: int) -> None:
            nonlocal training
            if training is None:
                bar.update(first, total=1, completed=1)
                training = bar.add_task("training skip-gram", total=total, unit=unit)
            bar.update(training, completed=done)

        yield advance


def _wrote(kv: Any, what: str, args: argparse.Namespace, seconds: float) -> None:
    form = "binary" if args.binary else "text"
    print(f"trained in {seconds:.1f} s; wrote {len(kv.index_to_key):,} {what} vectors of dim "
          f"{kv.vectors.shape[1]} (word2vec {form} format) to {os.path.abspath(args.out)}",
          file=sys.stderr)


def run_node2vec(args: argparse.Namespace) -> int:
    """Handler of ``jaxembed node2vec``."""
    from jaxembed.graph.node2vec import node2vec
    from jaxembed.text.keyed_vectors import KeyedVectors

    if getattr(args, "graph", None) is None:  # called without cli.main's checks
        check_node2vec(args)
    graph = args.graph
    start = time.perf_counter()
    with _progress(f"walking {graph.num_nodes} nodes, {graph.num_arcs} arcs", "tokens") as step:
        vectors = node2vec(graph, jax.random.key(args.seed), dim=args.dim,
                           walk_length=args.walk_length, walks_per_node=args.num_walks,
                           window=args.window, p=args.p, q=args.q, negative=args.negative,
                           epochs=args.epochs, progress=step)
    kv = KeyedVectors(graph.node_names(), np.asarray(vectors))
    kv.save_word2vec_format(args.out, binary=args.binary)
    _wrote(kv, "node", args, time.perf_counter() - start)
    if args.plot:
        plot_embedding(kv.vectors, args.node_labels, args.plot,
                       title=f"node2vec p={args.p:g} q={args.q:g} (PCA)")
        print(f"wrote the 2-D PCA plot to {os.path.abspath(args.plot)}", file=sys.stderr)
    return 0


def run_word2vec(args: argparse.Namespace) -> int:
    """Handler of ``jaxembed word2vec``."""
    from jaxembed.text.word2vec import word2vec

    start = time.perf_counter()
    with _progress(f"reading {os.path.basename(args.corpus)}", "tokens") as step:
        kv = word2vec(_sentences(args.corpus), jax.random.key(args.seed), dim=args.dim,
                      window=args.window, negative=args.negative, min_count=args.min_count,
                      sample=args.sample, epochs=args.epochs, progress=step)
    kv.save_word2vec_format(args.out, binary=args.binary)
    _wrote(kv, "word", args, time.perf_counter() - start)
    return 0


def _sentences(path: str) -> Iterator[list[str]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            tokens = line.split()
            if tokens:
                yield tokens


def read_node_labels(path: str | os.PathLike, graph: Any) -> list[str | None]:
    """Read ``node label`` lines (``#`` comments; the label is the rest of the line) into
    one label per node of ``graph`` (``None`` for nodes the file does not name).

    Raises:
        ValueError: naming the line, for a line without exactly two fields, a node the graph
            does not have, or a node labelled twice.
    """
    index = {str(name): i for i, name in enumerate(graph.node_names())}
    labels: list[str | None] = [None] * graph.num_nodes
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            fields = raw.split("#", 1)[0].split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}: line {lineno}: expected 'node label', got "
                                 f"{raw.rstrip()!r}")
            node, label = fields[0], fields[1].strip()
            if node not in index:
                raise ValueError(f"{path}: line {lineno}: node {node!r} is not in the graph")
            if labels[index[node]] is not None:
                raise ValueError(f"{path}: line {lineno}: node {node!r} is labelled twice")
            labels[index[node]] = label
    return labels


def pca_2d(x: Any) -> np.ndarray:
    """The rows of ``x`` projected on their top two principal axes (numpy SVD of the
    centered matrix), ``float64[N, 2]`` (a missing second axis gives zeros)."""
    x = np.asarray(x, np.float64)
    centered = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    out = np.zeros((x.shape[0], 2))
    out[:, : min(2, vt.shape[0])] = centered @ vt[:2].T
    return out


def plot_embedding(vectors: Any, labels: list[str | None] | None, path: str | os.PathLike,
                   title: str = "embedding (PCA)") -> None:
    """Scatter the 2-D PCA projection of ``vectors``, coloured by ``labels``, to a PNG
    (matplotlib Agg backend; written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = pca_2d(vectors)
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    names = [("unlabelled" if lab is None else lab) for lab in labels] if labels else None
    if names is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=12)
    else:
        for name in sorted(set(names)):
            sel = np.array([n == name for n in names])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=12, label=name)
        ax.legend(loc="best", fontsize="small")
    ax.set_title(title)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
