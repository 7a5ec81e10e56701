"""Evaluation helpers on cases with known answers, and the labelled-graph generators."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from jaxembed.graph.evaluate import (
    EDGE_OPERATORS,
    edge_features,
    link_prediction,
    node_classification,
    sample_non_edges,
    split_edges,
    split_rng,
)
from jaxembed.graph.generate import (
    LabelledGraph,
    karate_club,
    lfr_graph,
    small_labelled_graphs,
    stochastic_block_model,
    triangle_pairs,
)

# --- node classification -----------------------------------------------------------------


def test_perfect_embedding_scores_f1_one():
    # 10% of 300 nodes trains on every class (a class never seen cannot be predicted)
    labels = np.arange(300) % 3
    emb = np.eye(3)[labels]
    scores = node_classification(emb, labels, train_fractions=(0.1, 0.5, 0.9), repeats=2)
    assert set(scores) == {0.1, 0.5, 0.9}
    for s in scores.values():
        assert s["macro_f1"] == 1.0 and s["micro_f1"] == 1.0
        assert s["macro_f1_std"] == 0.0


def test_perfect_multilabel_embedding_scores_f1_one():
    rng = np.random.default_rng(0)
    y = (rng.random((80, 4)) < 0.4).astype(int)
    y[y.sum(axis=1) == 0, 0] = 1  # every node has a label
    emb = (2 * y - 1) * 3.0
    scores = node_classification(emb, y, train_fractions=(0.5,), repeats=2)
    assert scores[0.5]["macro_f1"] == 1.0 and scores[0.5]["micro_f1"] == 1.0


def test_node_classification_is_deterministic_and_random_is_near_chance():
    rng = np.random.default_rng(1)
    emb, labels = rng.normal(size=(120, 4)), np.arange(120) % 2
    a = node_classification(emb, labels, train_fractions=(0.5,), repeats=3, seed=7)
    b = node_classification(emb, labels, train_fractions=(0.5,), repeats=3, seed=7)
    assert a == b
    assert a[0.5]["micro_f1"] < 0.75


@pytest.mark.parametrize(
    ("emb", "labels", "kwargs", "error", "match"),
    [
        (np.zeros((4, 2)), [0, 1, 0], {}, ValueError, "shape"),
        (np.zeros(4), [0, 1, 0, 1], {}, ValueError, "2-D"),
        (np.full((4, 2), np.nan), [0, 1, 0, 1], {}, ValueError, "not finite"),
        (np.zeros((4, 2)), [0, 1, 0, 1], {"train_fractions": (1.0,)}, ValueError, "fraction"),
        (np.zeros((4, 2)), [0, 1, 0, 1], {"train_fractions": (0.0,)}, ValueError, "fraction"),
        (np.zeros((4, 2)), [0, 0, 0, 0], {}, ValueError, "class"),
        (np.zeros((4, 2)), [0.5, 1, 0, 1], {}, TypeError, "integer"),
        (np.zeros((4, 2)), [[0, 2]] * 4, {}, ValueError, "not 0 or 1"),
        (np.zeros((4, 2)), [0, 1, 0, 1], {"repeats": 0}, ValueError, "repeats"),
    ],
)
def test_node_classification_rejects_bad_input(emb, labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        node_classification(emb, labels, **kwargs)


# --- link prediction ---------------------------------------------------------------------


def _components(pairs: np.ndarray, n: int) -> int:
    m = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(m, directed=False)[0]


def test_split_edges_partitions_and_keeps_components():
    src, dst, _ = stochastic_block_model(150, 3, 0.2, 0.02, seed=0)
    split = split_edges(src, dst, 0.4, seed=5)
    edges = {(int(u), int(v)) for u, v in zip(src, dst, strict=True)}
    train = {tuple(p) for p in split.train.tolist()}
    pos = {tuple(p) for p in split.test_pos.tolist()}
    neg = {tuple(p) for p in split.test_neg.tolist()}
    assert train | pos == edges and not train & pos
    assert len(pos) == round(0.4 * len(edges)) == len(neg) == len(split.test_neg)
    assert not neg & edges and all(u < v for u, v in neg)
    assert _components(split.train, 150) == _components(np.array(sorted(edges)), 150)
    again = split_edges(dst, src, 0.4, seed=5)  # either direction, same split
    for a, b in zip(split, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_split_edges_refuses_to_disconnect():
    path = np.arange(9)
    with pytest.raises(ValueError, match="spanning forest"):
        split_edges(path, path + 1, 0.5)
    hidden = split_edges(path, path + 1, 0.5, keep_connected=False)
    assert len(hidden.test_pos) == 4


def test_perfect_embedding_predicts_links_with_auc_one():
    # four disjoint 6-cliques; a node's embedding is its clique's one-hot code
    block = np.repeat(np.arange(4), 6)
    u, v = np.triu_indices(24, 1)
    same = block[u] == block[v]
    split = split_edges(u[same], v[same], 0.3, seed=1, num_nodes=24, keep_connected=False)
    emb = np.eye(4)[block]
    for operator in EDGE_OPERATORS:
        if operator == "average":
            continue  # (e_u + e_v)/2 cannot tell same-clique pairs apart linearly
        auc = link_prediction(emb, split.train, split.test_pos, split.test_neg,
                              operator=operator)
        assert auc == 1.0, operator


def test_edge_features_and_non_edges():
    emb = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    np.testing.assert_array_equal(edge_features(emb, [[0, 1]]), [[3.0, -2.0]])
    np.testing.assert_array_equal(edge_features(emb, [[0, 1]], "l1"), [[2.0, 3.0]])
    rng = np.random.default_rng(0)
    got = sample_non_edges(2, 3, np.array([[0, 1]]), rng)
    assert {tuple(p) for p in got.tolist()} == {(0, 2), (1, 2)}
    with pytest.raises(ValueError, match="cannot draw 3 non-edges"):
        sample_non_edges(3, 3, np.array([[0, 1]]), rng)
    with pytest.raises(IndexError, match="out of range"):
        edge_features(emb, [[0, 3]])
    with pytest.raises(ValueError, match="operator"):
        edge_features(emb, [[0, 1]], "cosine")


# --- generators --------------------------------------------------------------------------


def test_triangle_pairs_match_triu_indices():
    for n in (2, 3, 7, 50):
        i, j = triangle_pairs(np.arange(n * (n - 1) // 2), n)
        ti, tj = np.triu_indices(n, 1)
        np.testing.assert_array_equal(i, ti)
        np.testing.assert_array_equal(j, tj)
    n = 1_000_003  # float rounding near the end of a huge triangle
    k = np.array([0, n - 2, n - 1, n * (n - 1) // 2 - 1])
    i, j = triangle_pairs(k, n)
    np.testing.assert_array_equal(i, [0, 0, 1, n - 2])
    np.testing.assert_array_equal(j, [1, n - 1, 2, n - 1])


def test_sbm_is_deterministic_simple_and_balanced():
    a = stochastic_block_model(301, 3, 0.1, 0.01, seed=4)
    b = stochastic_block_model(301, 3, 0.1, 0.01, seed=4)
    c = stochastic_block_model(301, 3, 0.1, 0.01, seed=5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    src, dst, labels = a
    assert np.all(src < dst)
    assert len(np.unique(src * 301 + dst)) == len(src)
    assert sorted(np.bincount(labels).tolist()) == [100, 100, 101]
    assert not np.array_equal(labels, np.sort(labels))  # ids are shuffled


def test_sbm_block_densities():
    n, k, p_in, p_out = 900, 3, 0.1, 0.01
    src, dst, labels = stochastic_block_model(n, k, p_in, p_out, seed=0)
    same = labels[src] == labels[dst]
    pairs_in = k * (n // k) * (n // k - 1) / 2
    pairs_out = n * (n - 1) / 2 - pairs_in
    for count, pairs, p in ((same.sum(), pairs_in, p_in), ((~same).sum(), pairs_out, p_out)):
        sigma = np.sqrt(pairs * p * (1 - p))
        assert abs(count - pairs * p) < 5 * sigma, (count, pairs * p)


def test_sbm_extremes_and_bad_input():
    src, _, _ = stochastic_block_model(10, 2, 1.0, 0.0, seed=0)
    assert len(src) == 2 * 10  # two complete 5-cliques
    src, _, labels = stochastic_block_model(1, 1, 0.5, 0.5)
    assert src.size == 0 and labels.tolist() == [0]
    with pytest.raises(ValueError, match="p_in"):
        stochastic_block_model(10, 2, 1.5, 0.1)
    with pytest.raises(ValueError, match="num_blocks"):
        stochastic_block_model(10, 11, 0.5, 0.1)
    with pytest.raises(ValueError, match="num_nodes"):
        stochastic_block_model(0, 1, 0.5, 0.1)


def test_networkx_labelled_graphs():
    src, _, labels, names = karate_club()
    assert len(src) == 78 and labels.shape == (34,) and names[0] == "0"
    g = karate_club()
    assert isinstance(g, LabelledGraph) and g.classes == ["Mr. Hi", "Officer"]
    assert g.labels[0] == 0 and g.labels[33] == 1  # Mr. Hi and the officer themselves
    graphs = small_labelled_graphs()
    davis = graphs["davis_southern_women"]
    assert davis.num_nodes == 32 and len(davis.src) == 89
    assert np.bincount(davis.labels).tolist() == [14, 18]  # events, women
    assert "Evelyn Jefferson" in davis.names


@pytest.mark.parametrize("seed", [0, 3])
def test_splits_do_not_replay_the_sbm_node_order(seed):
    """Regression: splits once drew from default_rng([seed, r]), which for r = 0 is
    default_rng(seed), the stream that stochastic_block_model(seed=seed) permutes node ids
    with; the first training half then held exactly blocks 0..k/2-1 (macro-F1 near 0 for a
    perfect embedding, the bench's 0.68)."""
    _, _, labels = stochastic_block_model(200, 4, 0.1, 0.01, seed=seed)
    for r in range(3):
        train = split_rng(seed, r).permutation(200)[:100]
        assert np.unique(labels[train]).size == 4
    emb = np.eye(4)[labels] * 3.0  # a perfect embedding of the blocks
    scores = node_classification(emb, labels, train_fractions=(0.5,), repeats=3, seed=seed)
    assert scores[0.5]["macro_f1"] == 1.0


def test_lfr_graph_labels_are_its_communities():
    import networkx as nx

    g = lfr_graph(300, 0.3, seed=2, min_community=30, max_community=80)
    a = lfr_graph(300, 0.3, seed=2, min_community=30, max_community=80)
    np.testing.assert_array_equal(g.src, a.src)
    np.testing.assert_array_equal(g.labels, a.labels)
    assert g.num_nodes == 300 and np.all(g.src < g.dst)
    assert g.classes == [f"c{i}" for i in range(g.labels.max() + 1)]
    ref = nx.LFR_benchmark_graph(300, 3.0, 1.5, 0.3, average_degree=10, max_degree=50,
                                 min_community=30, max_community=80, seed=2)
    for v in range(0, 300, 7):  # nodes in one community share a label, others do not
        members = ref.nodes[v]["community"]
        assert all(g.labels[u] == g.labels[v] for u in members)
        assert np.sum(g.labels == g.labels[v]) == len(members)
    with pytest.raises(ValueError, match="mu"):
        lfr_graph(100, 1.5)
