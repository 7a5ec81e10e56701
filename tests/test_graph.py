"""Graph (CSR) construction, random walks, DeepWalk / node2vec quality and the node2vec CLI."""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from jaxembed.commands.graph_text import add_node2vec_parser, add_word2vec_parser, pca_2d
from jaxembed.graph import Corpus, Graph, deepwalk, node2vec, random_walks, train_skipgram
from jaxembed.text.keyed_vectors import KeyedVectors


def _arcs(graph: Graph) -> dict[tuple[int, int], float]:
    indptr, indices = np.asarray(graph.indptr), np.asarray(graph.indices)
    weights = np.asarray(graph.weights)
    return {(u, int(indices[e])): float(weights[e])
            for u in range(graph.num_nodes) for e in range(indptr[u], indptr[u + 1])}


# one configuration for every karate test (and the CLI test), so jit compiles it once
WALKS = {"walk_length": 20, "walks_per_node": 10}


def _karate():
    nxg = nx.karate_club_graph()
    club = np.array([nxg.nodes[n]["club"] == "Officer" for n in nxg.nodes])
    return Graph.from_networkx(nxg), club


# --- construction ----------------------------------------------------------------------------
def test_from_edges_csr_layout():
    g = Graph.from_edges([2, 0, 0, 1], [0, 3, 1, 1], [1.0, 2.0, 3.0, 4.0], num_nodes=5)
    assert g.num_nodes == 5 and not g.directed
    assert _arcs(g) == {(0, 1): 3.0, (0, 2): 1.0, (0, 3): 2.0, (1, 0): 3.0, (1, 1): 4.0,
                        (2, 0): 1.0, (3, 0): 2.0}
    indptr, indices = np.asarray(g.indptr), np.asarray(g.indices)
    for u in range(5):  # neighbours sorted, cumulative weights per slice
        sl = slice(indptr[u], indptr[u + 1])
        assert np.all(np.diff(indices[sl]) > 0)
        cumulative = np.cumsum(np.asarray(g.weights)[sl])
        np.testing.assert_allclose(np.asarray(g.cumweights)[sl], cumulative)
    assert g.degrees().tolist() == [3, 2, 1, 1, 0]  # node 4 isolated, self-loop kept once
    assert g.max_degree == 3


def test_duplicates_merge_by_summing_weights():
    g = Graph.from_edges([0, 1, 0], [1, 0, 1], [1.0, 2.0, 0.5])
    assert _arcs(g) == {(0, 1): 3.5, (1, 0): 3.5}
    d = Graph.from_edges([0, 1, 0], [1, 0, 1], [1.0, 2.0, 0.5], directed=True)
    assert _arcs(d) == {(0, 1): 1.5, (1, 0): 2.0}


@pytest.mark.parametrize(
    ("src", "dst", "weights", "num_nodes", "error", "match"),
    [
        ([0, -1], [1, 0], None, None, IndexError, "src: node id -1 at position 1"),
        ([0, 1], [1, 7], None, 5, IndexError, "dst: node id 7 at position 1"),
        ([0, 1], [1, 2], [1.0, 0.0], None, ValueError, "value 0.0 at position 1"),
        ([0, 1], [1, 2], [1.0, np.nan], None, ValueError, "not finite"),
        ([0, 1], [1], None, None, ValueError, "equal length"),
        ([0.5], [1], None, None, TypeError, "integer dtype"),
    ],
)
def test_from_edges_bad_input(src, dst, weights, num_nodes, error, match):
    with pytest.raises(error, match=match):
        Graph.from_edges(src, dst, weights, num_nodes=num_nodes)


def test_from_edgelist(tmp_path):
    path = tmp_path / "edges.txt"
    path.write_text("# a comment\nalice bob 2.5\n\nbob carol   # trailing comment\ncarol carol 1\n")
    g = Graph.from_edgelist(path)
    assert g.labels == ("alice", "bob", "carol")
    assert _arcs(g) == {(0, 1): 2.5, (1, 0): 2.5, (1, 2): 1.0, (2, 1): 1.0, (2, 2): 1.0}
    assert g.label_to_id()["carol"] == 2
    assert g.node_names() == ["alice", "bob", "carol"]


@pytest.mark.parametrize(
    ("text", "match"),
    [("a b\nc\n", "line 2: expected 'u v' or 'u v weight'"),
     ("a b 1 2\n", "line 1: .*4 fields"),
     ("a b\n# x\nb c heavy\n", "line 3: weight 'heavy' is not a number"),
     ("a b -1\n", "line 1: weight '-1' must be finite and > 0")],
)
def test_from_edgelist_malformed(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        Graph.from_edgelist(path)


def test_from_networkx_and_scipy_agree():
    nxg = nx.karate_club_graph()
    g = Graph.from_networkx(nxg)
    adjacency = nx.to_scipy_sparse_array(nxg, weight="weight", format="csr")
    h = Graph.from_scipy(adjacency)
    assert not h.directed and g.labels == tuple(range(34))
    np.testing.assert_array_equal(g.indptr, h.indptr)
    np.testing.assert_array_equal(g.indices, h.indices)
    np.testing.assert_allclose(g.weights, h.weights)
    multi = nx.MultiDiGraph([(0, 1), (0, 1), (1, 2)])
    assert _arcs(Graph.from_networkx(multi)) == {(0, 1): 2.0, (1, 2): 1.0}


def test_from_scipy_direction_and_errors():
    a = sp.csr_array(np.array([[0, 1.0], [0, 0]]))
    assert Graph.from_scipy(a).directed
    with pytest.raises(ValueError, match="symmetric"):
        Graph.from_scipy(a, directed=False)
    with pytest.raises(ValueError, match=r"\(0, 1\) = -2.0"):
        Graph.from_scipy(sp.csr_array(np.array([[0, -2.0], [-2.0, 0]])))
    with pytest.raises(TypeError, match="scipy sparse"):
        Graph.from_scipy(np.eye(2))


def test_graph_is_a_pytree_usable_in_jit():
    g = Graph.from_edges([0, 1], [1, 2], [1.0, 3.0])
    leaves, treedef = jax.tree_util.tree_flatten(g)
    assert len(leaves) == 4
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert back.num_nodes == 3 and back.max_degree == 2
    total = jax.jit(lambda graph: jnp.sum(graph.weights))(g)
    assert float(total) == 8.0


# --- walks -----------------------------------------------------------------------------------
def test_walks_on_isolated_and_dangling_nodes():
    g = Graph.from_edges([0, 1], [1, 2], num_nodes=4, directed=True)  # 2 dangling, 3 isolated
    walks = np.asarray(random_walks(g, jax.random.key(0), walk_length=5, walks_per_node=2,
                                    p=0.5, q=2.0))
    assert walks.shape == (8, 5) and walks.dtype == np.int32
    np.testing.assert_array_equal(walks[0], [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(walks[6], [3, 3, 3, 3, 3])
    np.testing.assert_array_equal(walks[4], [2, 2, 2, 2, 2])


def test_walks_are_reproducible_and_key_dependent():
    g = _karate()[0]
    a = random_walks(g, jax.random.key(3), **WALKS, q=0.5)
    b = random_walks(g, jax.random.key(3), **WALKS, q=0.5)
    c = random_walks(g, jax.random.key(4), **WALKS, q=0.5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert random_walks(g, jax.random.key(0), 1, 2).shape == (68, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"walk_length": 0}, "walk_length"), ({"walks_per_node": 0}, "walks_per_node"),
     ({"p": 0.0}, "p must be"), ({"q": float("inf")}, "q must be"), ({"rounds": -1}, "rounds")],
)
def test_walk_arguments_are_checked(kwargs, match):
    g = Graph.from_edges([0], [1])
    with pytest.raises(ValueError, match=match):
        random_walks(g, jax.random.key(0), **kwargs)


# --- embeddings ------------------------------------------------------------------------------
def _cv_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    return float(cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=5).mean())


@pytest.mark.parametrize("method", ["deepwalk", "node2vec"])
def test_embeddings_separate_karate_factions(method):
    """5-fold logistic-regression accuracy of the club label from 16-d embeddings >= 0.85
    (the faction split is recoverable from the graph; a random embedding scores ~0.5)."""
    graph, club = _karate()
    kwargs = dict(dim=16, window=5, **WALKS)
    if method == "deepwalk":
        emb = deepwalk(graph, jax.random.key(0), **kwargs)
    else:
        emb = node2vec(graph, jax.random.key(0), p=1.0, q=0.5, **kwargs)
    assert emb.shape == (34, 16) and emb.dtype == jnp.float32
    assert _cv_accuracy(np.asarray(emb), club) >= 0.85


def test_skipgram_is_reproducible():
    walks = np.asarray(random_walks(_karate()[0], jax.random.key(1), **WALKS))
    corpus = Corpus.from_walks(walks, 34)
    a, _ = train_skipgram(corpus, jax.random.key(5), dim=16, window=5)
    b, _ = train_skipgram(corpus, jax.random.key(5), dim=16, window=5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="window"):
        train_skipgram(corpus, jax.random.key(5), window=0)


# --- CLI -------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxembed")
    commands = parser.add_subparsers(dest="command", required=True)
    add_node2vec_parser(commands)
    add_word2vec_parser(commands)
    return parser


def test_node2vec_cli_writes_vectors_and_plot(tmp_path):
    nxg = nx.karate_club_graph()
    edges = tmp_path / "karate.txt"
    edges.write_text("".join(f"n{u} n{v}\n" for u, v in nxg.edges()))
    labels = tmp_path / "club.txt"
    labels.write_text("".join(f"n{n} {nxg.nodes[n]['club']}\n" for n in nxg.nodes))
    out, png = tmp_path / "nodes.txt", tmp_path / "nodes.png"
    args = _parser().parse_args([
        "node2vec", str(edges), "--dim", "16", "--walk-length", "20", "--num-walks", "10",
        "--window", "5", "--q", "0.5", "--seed", "1", "--out", str(out), "--labels",
        str(labels), "--plot", str(png)])
    assert args.handler(args) == 0
    kv = KeyedVectors.load_word2vec_format(out)
    assert len(kv) == 34 and kv.vector_size == 16 and "n33" in kv
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_node2vec_cli_rejects_unknown_label_node(tmp_path):
    edges = tmp_path / "e.txt"
    edges.write_text("a b\n")
    labels = tmp_path / "y.txt"
    labels.write_text("a x\nzzz y\n")
    args = _parser().parse_args(["node2vec", str(edges), "--labels", str(labels),
                                 "--plot", str(tmp_path / "v.png"),
                                 "--out", str(tmp_path / "v.txt")])
    with pytest.raises(ValueError, match="line 2: node 'zzz' is not in the graph"):
        args.handler(args)


def test_pca_2d_projects_on_top_axes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 1)) * np.array([[10.0, 0.0, 0.0]]) + rng.normal(size=(50, 3)) * 0.01
    xy = pca_2d(x)
    assert xy.shape == (50, 2)
    assert abs(np.corrcoef(xy[:, 0], x[:, 0])[0, 1]) > 0.999
