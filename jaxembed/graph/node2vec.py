"""DeepWalk and node2vec: node embeddings from random walks read as sentences.

Both generate ``walks_per_node`` walks of ``walk_length`` nodes from every node
(:func:`jaxembed.graph.random_walks`) and train skip-gram with negative sampling on them
(:func:`jaxembed.graph.skipgram.train_skipgram`): a node's embedding is trained to predict the
nodes near it on walks. DeepWalk walks first order (``p = q = 1``); node2vec biases the walk by
the return parameter ``p`` and the in-out parameter ``q`` (small ``q``: outward, DFS-like,
community structure; small ``p``: stay local, BFS-like, structural roles).

DeepWalk's paper trained with hierarchical softmax; here both use negative sampling, as the
node2vec reference code and PecanPy do (through gensim). Walk ids are node ids, so row ``i``
of the result is node ``i``'s embedding. A node that no walk visits (impossible: every node
starts its own walks) would keep its random initial vector; an isolated node's walks stay on
it, so it is trained only against itself and the noise.

References:
    Perozzi, Al-Rfou, Skiena. "DeepWalk: Online Learning of Social Representations". KDD 2014.
    Grover, Leskovec. "node2vec: Scalable Feature Learning for Networks". KDD 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jaxembed.graph.csr import Graph
from jaxembed.graph.skipgram import Corpus, train_skipgram
from jaxembed.graph.walks import DEFAULT_ROUNDS, random_walks

__all__ = ["deepwalk", "node2vec"]


def node2vec(
    graph: Graph,
    key: jax.Array,
    dim: int = 128,
    walk_length: int = 80,
    walks_per_node: int = 10,
    window: int = 10,
    p: float = 1.0,
    q: float = 1.0,
    negative: int = 5,
    epochs: int = 1,
    *,
    sample: float = 0.0,
    lr: float = 0.025,
    batch_size: int | None = None,
    rounds: int = DEFAULT_ROUNDS,
    negatives_per: str = "lane",
    progress: Callable[[int, int], None] | None = None,
) -> jax.Array:
    """node2vec embeddings, ``float32[num_nodes, dim]`` (row ``i`` is node ``i``).

    Walks: :func:`~jaxembed.graph.random_walks` with ``p``, ``q``; training:
    :func:`~jaxembed.graph.skipgram.train_skipgram` with ``window``, ``negative``, ``epochs``,
    ``sample`` (0 = no subsampling), ``lr`` (linear decay), ``batch_size`` and
    ``negatives_per`` (``"lane"``: noise drawn per lane of centers and shared by all their
    pairs, the fast default; ``"center"``: per center, shared by its pairs, measurably worse
    on hard graphs, ``docs/graph.md``; ``"pair"``: word2vec's own draw per pair).
    ``progress(done, total)`` reports training progress in tokens. Same key, same embeddings.
    """
    k_walk, k_train = jax.random.split(key)
    walks = random_walks(graph, k_walk, walk_length, walks_per_node, p, q, rounds=rounds)
    corpus = Corpus.from_walks(jax.device_get(walks), graph.num_nodes)
    w_in, _ = train_skipgram(corpus, k_train, dim=dim, window=window, negative=negative,
                             sample=sample, epochs=epochs, lr=lr, batch_size=batch_size,
                             negatives_per=negatives_per, progress=progress)
    return w_in


def deepwalk(
    graph: Graph,
    key: jax.Array,
    dim: int = 128,
    walk_length: int = 80,
    walks_per_node: int = 10,
    window: int = 10,
    negative: int = 5,
    epochs: int = 1,
    **kwargs: object,
) -> jax.Array:
    """DeepWalk embeddings: :func:`node2vec` with ``p = q = 1`` (first-order weighted walks)."""
    return node2vec(graph, key, dim, walk_length, walks_per_node, window, 1.0, 1.0, negative,
                    epochs, **kwargs)  # type: ignore[arg-type]
