"""Graph embeddings: Graph (CSR), random walks (DeepWalk, node2vec), the shared skip-gram
trainer, the DeepWalk / node2vec embeddings built from them, LINE, SDNE, evaluation helpers
and generated labelled graphs."""

from jaxembed.graph.csr import Graph
from jaxembed.graph.evaluate import EdgeSplit, link_prediction, node_classification, split_edges
from jaxembed.graph.generate import (
    LabelledGraph,
    karate_club,
    lfr_graph,
    small_labelled_graphs,
    stochastic_block_model,
)
from jaxembed.graph.line import line
from jaxembed.graph.node2vec import deepwalk, node2vec
from jaxembed.graph.sdne import SDNE, sdne
from jaxembed.graph.skipgram import Corpus, train_skipgram
from jaxembed.graph.walks import (
    first_order_step,
    random_walks,
    second_order_step,
    transition_probabilities,
)

__all__ = [
    "SDNE",
    "Corpus",
    "EdgeSplit",
    "Graph",
    "LabelledGraph",
    "deepwalk",
    "first_order_step",
    "karate_club",
    "lfr_graph",
    "line",
    "link_prediction",
    "node2vec",
    "node_classification",
    "random_walks",
    "sdne",
    "second_order_step",
    "small_labelled_graphs",
    "split_edges",
    "stochastic_block_model",
    "train_skipgram",
    "transition_probabilities",
]
