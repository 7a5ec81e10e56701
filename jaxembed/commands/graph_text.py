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
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "add_node2vec_parser",
    "add_word2vec_parser",
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
        "('u v [weight]' per line, '#' comments); writes word2vec text vectors keyed by node.")
    p.add_argument("edges", metavar="EDGES", help="edge list file: 'u v [weight]' per line")
    p.add_argument("--directed", action="store_true", help="arcs are one-way (default: no)")
    p.add_argument("--dim", type=int, default=128, help="embedding size (default 128)")
    p.add_argument("--walk-length", type=int, default=80, help="nodes per walk (default 80)")
    p.add_argument("--num-walks", type=int, default=10, help="walks per node (default 10)")
    p.add_argument("--window", type=int, default=10, help="skip-gram window (default 10)")
    p.add_argument("--p", type=float, default=1.0, help="return parameter p (default 1)")
    p.add_argument("--q", type=float, default=1.0, help="in-out parameter q (default 1)")
    p.add_argument("--negative", type=int, default=5, help="negatives per pair (default 5)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the walks (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="vectors.txt", help="output vectors file")
    p.add_argument("--binary", action="store_true", help="write the word2vec binary format")
    p.add_argument("--labels", metavar="FILE", help="node labels, 'node label' per line "
                   "(the label is the rest of the line; colours the plot)")
    p.add_argument("--plot", metavar="PNG", help="write a 2-D PCA projection as a PNG")
    p.set_defaults(handler=run_node2vec)
    return p


def add_word2vec_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``word2vec CORPUS ...`` on ``subparsers``."""
    p = subparsers.add_parser(
        "word2vec", help="word vectors from a text corpus (skip-gram, negative sampling)",
        description="Skip-gram word2vec on a corpus with one sentence per line, tokens "
        "separated by whitespace; writes the word2vec text (or binary) format.")
    p.add_argument("corpus", metavar="CORPUS", help="text file, one sentence per line")
    p.add_argument("--dim", type=int, default=100, help="vector size (default 100)")
    p.add_argument("--window", type=int, default=5, help="context window (default 5)")
    p.add_argument("--negative", type=int, default=5, help="negatives per pair (default 5)")
    p.add_argument("--min-count", type=int, default=5, help="drop rarer words (default 5)")
    p.add_argument("--sample", type=float, default=1e-3, help="subsampling threshold "
                   "(default 1e-3, 0 = off)")
    p.add_argument("--epochs", type=int, default=5, help="passes over the corpus (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="vectors.txt", help="output vectors file")
    p.add_argument("--binary", action="store_true", help="write the word2vec binary format")
    p.set_defaults(handler=run_word2vec)
    return p


@contextlib.contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich display on stderr: a spinner for ``description`` (walks, reading) until the
    first ``advance(done, total)``, then a bar of skip-gram training progress in tokens."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        first = bar.add_task(description, total=None)
        training = None

        def advance(done: int, total: int) -> None:
            nonlocal training
            if training is None:
                bar.update(first, total=1, completed=1)
                training = bar.add_task("training skip-gram", total=total)
            bar.update(training, completed=done)

        yield advance


def run_node2vec(args: argparse.Namespace) -> int:
    """Handler of ``jaxembed node2vec``."""
    from jaxembed.graph.csr import Graph
    from jaxembed.graph.node2vec import node2vec
    from jaxembed.text.keyed_vectors import KeyedVectors

    graph = Graph.from_edgelist(args.edges, directed=args.directed)
    labels = read_node_labels(args.labels, graph) if args.labels else None
    with _progress(f"walking {graph.num_nodes} nodes, {graph.num_arcs} arcs") as step:
        vectors = node2vec(graph, jax.random.key(args.seed), dim=args.dim,
                           walk_length=args.walk_length, walks_per_node=args.num_walks,
                           window=args.window, p=args.p, q=args.q, negative=args.negative,
                           epochs=args.epochs, progress=step)
    kv = KeyedVectors(graph.node_names(), np.asarray(vectors))
    kv.save_word2vec_format(args.out, binary=args.binary)
    if args.plot:
        plot_embedding(kv.vectors, labels, args.plot,
                       title=f"node2vec p={args.p:g} q={args.q:g} (PCA)")
    return 0


def run_word2vec(args: argparse.Namespace) -> int:
    """Handler of ``jaxembed word2vec``."""
    from jaxembed.text.word2vec import word2vec

    with _progress(f"reading {args.corpus}") as step:
        kv = word2vec(_sentences(args.corpus), jax.random.key(args.seed), dim=args.dim,
                      window=args.window, negative=args.negative, min_count=args.min_count,
                      sample=args.sample, epochs=args.epochs, progress=step)
    kv.save_word2vec_format(args.out, binary=args.binary)
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
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".png", dir=target.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
