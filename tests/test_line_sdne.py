"""LINE and SDNE: they separate a stochastic block model, predict its hidden links, are
deterministic per key, and reject bad input by name.

The graph: 200 nodes in 4 blocks, ``p_in = 0.3``, ``p_out = 0.01``, with 30% of the edges
hidden for link prediction; both methods embed the residual graph once (module fixtures) and
both tasks use that embedding. Chance macro-F1 is 0.25; thresholds: macro-F1 ≥ 0.9 and link
AUC ≥ 0.7 (an oracle that knows the blocks and nothing else scores about 0.86 here).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxembed.graph.csr import Graph
from jaxembed.graph.evaluate import link_prediction, node_classification, split_edges
from jaxembed.graph.generate import stochastic_block_model
from jaxembed.graph.line import alias_draw, alias_table, line
from jaxembed.graph.sdne import sdne

MACRO_F1_MIN = 0.9
AUC_MIN = 0.7


@pytest.fixture(scope="module")
def sbm():
    src, dst, labels = stochastic_block_model(200, 4, 0.3, 0.01, seed=3)
    split = split_edges(src, dst, 0.3, seed=0)
    graph = Graph.from_edges(split.train[:, 0], split.train[:, 1], num_nodes=200)
    return graph, labels, split


@pytest.fixture(scope="module")
def line_embedding(sbm):
    graph, _, _ = sbm
    return np.asarray(line(graph, jax.random.key(0), dim=32, order="both", samples=200_000))


@pytest.fixture(scope="module")
def sdne_embedding(sbm):
    graph, _, _ = sbm
    return np.asarray(sdne(graph, jax.random.key(0), dims=(64, 16), epochs=50, batch_size=64,
                           lr=1e-2))


@pytest.mark.parametrize("method", ["line_embedding", "sdne_embedding"])
def test_embedding_separates_blocks_and_predicts_links(method, sbm, request):
    _, labels, split = sbm
    emb = request.getfixturevalue(method)
    assert emb.shape == (200, 32 if method == "line_embedding" else 16)
    assert np.all(np.isfinite(emb))
    scores = node_classification(emb, labels, train_fractions=(0.5,), repeats=2, seed=0)
    assert scores[0.5]["macro_f1"] >= MACRO_F1_MIN, scores
    auc = link_prediction(emb, split.train, split.test_pos, split.test_neg, seed=0)
    assert auc >= AUC_MIN, auc


def test_line_both_is_two_normalized_halves(line_embedding):
    np.testing.assert_allclose(np.linalg.norm(line_embedding[:, :16], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(line_embedding[:, 16:], axis=1), 1.0, rtol=1e-5)


def test_line_same_key_same_embedding_and_orders(sbm):
    # same shapes as the fixtures: the compiled loops are reused
    graph = sbm[0]
    kw = {"dim": 16, "samples": 2048}
    a = line(graph, jax.random.key(1), order="first", **kw)
    b = line(graph, jax.random.key(1), order="first", **kw)
    c = line(graph, jax.random.key(2), order="first", **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    raw = line(graph, jax.random.key(1), order="second", normalize=False, **kw)
    assert raw.shape == (200, 16)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_sdne_same_key_same_embedding(sbm):
    kw = {"dims": (64, 16), "epochs": 2, "batch_size": 64, "lr": 1e-2}
    a = sdne(sbm[0], jax.random.key(1), **kw)
    b = sdne(sbm[0], jax.random.key(1), **kw)
    assert a.shape == (200, 16)
    np.testing.assert_array_equal(a, b)


def test_tuple_input_is_the_undirected_graph(sbm):
    graph, _, split = sbm
    kw = {"dim": 16, "order": "first", "samples": 2048}
    from_tuple = line((split.train[:, 0], split.train[:, 1]), jax.random.key(3), **kw)
    np.testing.assert_array_equal(from_tuple, line(graph, jax.random.key(3), **kw))


def test_alias_draw_frequencies_follow_weights():
    weights = np.array([0.0, 1.0, 2.0, 7.0, 0.5, 9.5])
    prob, alias = alias_table(weights)
    draws = np.asarray(alias_draw(jax.random.key(0), jax.numpy.asarray(prob, "float32"),
                                  jax.numpy.asarray(alias, "int32"), (200_000,)))
    freq = np.bincount(draws, minlength=6) / draws.size
    p = weights / weights.sum()
    sigma = np.sqrt(p * (1 - p) / draws.size)
    assert np.all(np.abs(freq - p) <= 5 * sigma + 1e-12), (freq, p)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"order": "third"}, ValueError, "order"),
        ({"dim": 7}, ValueError, "even"),
        ({"dim": 0}, ValueError, "dim"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"negative": -1}, ValueError, "negative"),
        ({"samples": 0}, ValueError, "samples"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_line_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        line(([0, 1], [1, 2]), jax.random.key(0), **kwargs)


def test_line_and_sdne_reject_bad_graphs():
    with pytest.raises(TypeError, match="Graph or a tuple"):
        line("edges.txt", jax.random.key(0))
    with pytest.raises(IndexError, match="-1"):
        line(([0, -1], [1, 2]), jax.random.key(0))
    with pytest.raises(ValueError, match="no edge"):
        line(Graph.from_edges([], [], num_nodes=3), jax.random.key(0))
    with pytest.raises(ValueError, match="dims"):
        sdne(([0, 1], [1, 2]), jax.random.key(0), dims=(4, 0))
    with pytest.raises(ValueError, match="epochs"):
        sdne(([0, 1], [1, 2]), jax.random.key(0), epochs=-1)
    with pytest.raises(ValueError, match="beta"):
        sdne(([0, 1], [1, 2]), jax.random.key(0), beta=float("nan"))
