"""Semantic retrieval: hashing, chunked top-k, the dual encoder, the index, the CLI."""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.commands.search import add_index_parser, add_search_parser, builtin_index_dir
from jaxembed.text import corpus as corpus_module
from jaxembed.text.corpus import Corpus, association_pairs, split_sentences
from jaxembed.text.retrieval import (
    SentenceIndex,
    evaluate_next_sentence,
    next_sentence_experiment,
    train_dual_encoder,
)
from jaxembed.text.retrieval_index import pad_to_chunks, top_k, top_k_reference
from jaxembed.text.retrieval_model import DualEncoder, NgramHasher, idf_weights

TINY = {"num_buckets": 4096, "dim": 16, "hidden": 16, "batch_size": 32}

# --- features ------------------------------------------------------------------------------------


def test_hasher_is_deterministic_and_padded():
    hasher = NgramHasher(num_buckets=1000, max_ngrams=8)
    ids = hasher.ids(["The cat sat", "", "cat"])
    assert ids.shape == (3, 8)  # 3 unigrams + 2 bigrams -> bucket 8
    assert (ids[0, :5] >= 0).all() and (ids[0, 5:] == -1).all()
    assert (ids[1] == -1).all()
    assert ids[2, 0] == ids[0, 1]  # "cat" hashes alike in both texts, case folded
    np.testing.assert_array_equal(ids, NgramHasher(num_buckets=1000, max_ngrams=8).ids(
        ["The cat sat", "", "cat"]))
    assert hasher.ids(["a b c d e f g h i j"], width=4).shape == (1, 4)


def test_hasher_rejects_bad_texts():
    with pytest.raises(TypeError, match="single str"):
        NgramHasher().ids("text")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        NgramHasher().ids(["ok", 3])
    with pytest.raises(ValueError, match="num_buckets"):
        NgramHasher(num_buckets=0)


def test_idf_weights_match_the_formula():
    ids = np.array([[0, 0, 1], [1, 2, -1], [-1, -1, -1]])
    idf = idf_weights(ids, 4)
    n = 3
    expected = [np.log((1 + n) / (1 + 1)) + 1, np.log((1 + n) / (1 + 2)) + 1,
                np.log((1 + n) / (1 + 1)) + 1, 0.0]
    np.testing.assert_allclose(idf, expected, rtol=1e-6)


# --- chunked top-k -------------------------------------------------------------------------------
@given(st.sampled_from([(3, 50, 8, 16), (1, 64, 4, 64), (5, 33, 2, 7)]),
       st.integers(1, 7), st.booleans(), st.integers(0, 2**32 - 1))
def test_chunked_top_k_equals_full_sort(shape, k, ties, seed):
    """top_k over chunks = the first k of a stable sort of all scores (ties: lower id)."""
    b, n, d, chunk = shape
    rng = np.random.default_rng(seed)
    if ties:  # few distinct small integers: many equal scores
        q = rng.integers(-2, 3, (b, d)).astype(np.float32)
        v = rng.integers(-2, 3, (n, d)).astype(np.float32)
    else:
        q = rng.normal(size=(b, d)).astype(np.float32)
        v = rng.normal(size=(n, d)).astype(np.float32)
    k = min(k, chunk)
    scores, ids = top_k(q, pad_to_chunks(v, chunk), k, num_valid=n)
    ref_scores, ref_ids = top_k_reference(q, v, k)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    if ties:  # exact integer scores: the same ids, ties broken towards the lower id
        np.testing.assert_array_equal(ids, ref_ids)
    else:  # float32 vs float64 may swap near-equal scores: the ids found score the same
        ids = np.asarray(ids)
        assert (ids >= 0).all() and (ids < n).all()
        rescored = np.take_along_axis(q.astype(np.float64) @ v.astype(np.float64).T, ids, 1)
        np.testing.assert_allclose(rescored, ref_scores, rtol=1e-5, atol=1e-5)


def test_top_k_approx_finds_the_neighbours_and_checks_arguments():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 8)).astype(np.float32)
    q = rng.normal(size=(4, 8)).astype(np.float32)
    chunks = pad_to_chunks(v, 128)
    _, ids = top_k(q, chunks, 5, num_valid=300, approx=True, recall_target=0.99)
    _, ref = top_k_reference(q, v, 5)
    found = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(np.asarray(ids), ref,
                                                               strict=True)])
    assert found >= 0.8
    assert int(np.asarray(ids).max()) < 300  # never a padding row
    with pytest.raises(ValueError, match="k=200"):
        top_k(q, chunks, 200, num_valid=300)
    with pytest.raises(ValueError, match="k=0"):
        top_k(q, chunks, 0)
    with pytest.raises(ValueError, match="num_valid"):
        top_k(q, chunks, 1, num_valid=1000)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        top_k(q[:, :3], chunks, 1)


# --- the dual encoder ----------------------------------------------------------------------------
def test_empty_bags_have_finite_scores_and_gradients():
    from flax import nnx

    graphdef, state = nnx.split(DualEncoder(64, 8, 8, rngs=nnx.Rngs(0)))
    ids = jnp.array([[1, 2, -1], [-1, -1, -1]])

    @jax.jit
    def scores_and_grads(state):
        def total(s):
            return jnp.sum(nnx.merge(graphdef, s)(ids, ids))

        return nnx.merge(graphdef, state)(ids, ids), jax.grad(total)(state)

    scores, grads = scores_and_grads(state)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert bool(jnp.all(jnp.isfinite(scores)))


def test_dual_encoder_learns_associations_tfidf_cannot_see():
    """Statements name a topic's cue word, next sentences its answer word (no shared word
    but filler): TF-IDF is near chance, the trained dual encoder is far above it."""
    statements, responses, _ = association_pairs(100, 8, seed=0, words_per_topic=1)
    test_s, test_r, _ = association_pairs(100, 1, seed=1, words_per_topic=1)
    model, losses = train_dual_encoder(statements, responses, jax.random.key(0),
                                       **{**TINY, "dim": 32, "hidden": 32}, epochs=12,
                                       ngram_dropout=0.3, learning_rate=1e-2)
    assert losses[-1] < losses[0]
    result = evaluate_next_sentence(model, test_s, test_r, ks=(1, 10))
    assert result["candidates"] == 100
    dual, tfidf = result["dual_encoder"], result["tfidf"]
    assert dual[1] >= tfidf[1] + 0.1, result
    assert dual[10] >= tfidf[10] + 0.3, result


def test_evaluate_next_sentence_skips_the_statement_itself():
    statements = ["one two", "two three", "three four"]
    responses = ["two three", "three four", "four five"]
    known = sorted(set(statements + responses))

    class Echo:  # scores by exact text equality: would rank the statement itself first
        def encode_queries(self, texts):
            return np.eye(len(known))[[known.index(t) for t in texts]]

        encode_responses = encode_queries

    out = evaluate_next_sentence(Echo(), statements, responses, ks=(1, 3))
    assert out["candidates"] == 3 and out["tfidf"][3] == 1.0
    with pytest.raises(ValueError, match="ks"):
        evaluate_next_sentence(Echo(), statements, responses, ks=(4,))


def test_next_sentence_experiment_on_the_builtin_topics():
    corpus = corpus_module.builtin_corpus(("topics",))
    result = next_sentence_experiment(corpus, jax.random.key(0), holdout=0.1, epochs=1,
                                      max_eval_pairs=50, **TINY)
    assert result["queries"] == 50 and result["train_pairs"] > 1000
    for method in ("dual_encoder", "tfidf"):
        assert set(result[method]) == {1, 10}
        assert all(0.0 <= r <= 1.0 for r in result[method].values())
    with pytest.raises(ValueError, match="split"):
        next_sentence_experiment(corpus, jax.random.key(0), split="words")


def test_train_rejects_bad_input():
    with pytest.raises(ValueError, match="2 statements but 1"):
        train_dual_encoder(["a b", "c d"], ["e f"], jax.random.key(0))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        train_dual_encoder(["a b"], ["e f"], jax.random.key(0))
    with pytest.raises(TypeError, match=r"responses\[0\]"):
        train_dual_encoder(["a b", "c"], [None, "x"], jax.random.key(0))


# --- corpus --------------------------------------------------------------------------------------
def test_split_sentences_drops_code_and_keeps_headings():
    text = ("Title of the page\n*****************\n\nFirst sentence here. Second one (it is.)\n"
            "continues here.\n\n   code = block(1, 2, 3)\n\n>>> print('a b c')\n\n"
            "He said \"go now.\" Then it went.")
    assert split_sentences(text) == ["Title of the page", "First sentence here.",
                                     "Second one (it is.) continues here.",
                                     "He said \"go now.\"", "Then it went."]


def test_builtin_corpus_is_deterministic_with_context():
    a = corpus_module.builtin_corpus(("topics",))
    b = corpus_module.builtin_corpus(("topics",))
    assert a.sentences == b.sentences and len(a) > 1000
    i = int(a.pair_indices()[5])
    before, _ = a.context(i + 1)
    assert before == a.sentences[i] and a.pairs()[1][5] == a.sentences[i + 1]
    with pytest.raises(IndexError):
        a.context(len(a))
    with pytest.raises(ValueError, match="source"):
        corpus_module.builtin_corpus(("novels",))
    docs = corpus_module.builtin_corpus(("docstrings",), packages=["textwrap"])
    assert any(name.startswith("textwrap") for name in docs.doc_names)


# --- index and CLI -------------------------------------------------------------------------------
DOCS = {
    "cats.txt": "Cats sleep most of the day. They wake up at night to hunt mice. "
                "A hungry cat chases every mouse it sees. Then the cat sleeps again.",
    "ships.txt": "The ship left the harbour at dawn. Its sails filled with a strong wind. "
                 "The captain steered towards the island. The crew cheered at the sight.",
}


def _parser():
    parser = argparse.ArgumentParser(prog="jaxembed")
    sub = parser.add_subparsers(dest="command", required=True)
    add_search_parser(sub)
    add_index_parser(sub)
    return parser


def test_index_save_load_search(tmp_path):
    corpus = Corpus.from_documents(sorted(DOCS.items()))
    model, _ = train_dual_encoder(*corpus.pairs(), jax.random.key(0), epochs=2, **TINY)
    index = SentenceIndex(model, corpus, chunk_size=3)
    hits = index.search(["the captain and the crew", "a cat and a mouse"], k=3)
    assert [len(h) for h in hits] == [3, 3]
    assert all(h[0].score >= h[1].score >= h[2].score for h in hits)
    first = hits[0][0]
    assert (first.before, first.after) == corpus.context(first.index)
    index.save(tmp_path / "idx")
    again = SentenceIndex.load(tmp_path / "idx")
    assert again.corpus.sentences == corpus.sentences
    np.testing.assert_allclose(again.vectors, index.vectors)
    (reloaded,) = again.search(["the captain and the crew"], k=3)
    assert [h.index for h in reloaded] == [h.index for h in hits[0]]
    np.testing.assert_allclose([h.score for h in reloaded], [h.score for h in hits[0]],
                               rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="not a sentence index"):
        SentenceIndex.load(tmp_path)


def test_cli_index_then_search(tmp_path, capsys):
    files = []
    for name, text in sorted(DOCS.items()):
        (tmp_path / name).write_text(text, encoding="utf-8")
        files.append(str(tmp_path / name))
    parser = _parser()
    options = ["--dim", "16", "--buckets", "4096", "--epochs", "1", "--batch-size", "4"]
    args = parser.parse_args(["index", *files, "--out", str(tmp_path / "idx"), *options])
    assert args.handler(args) == 0
    args = parser.parse_args(["search", "where", "did", "the", "ship", "go", "--index",
                              str(tmp_path / "idx"), "-k", "2"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. [") and "2. [" in out and ">>" in out
    with pytest.raises(SystemExit):  # the file is checked while parsing (docs/cli.md)
        parser.parse_args(["index", str(tmp_path / "missing.txt"), "--out", "x"])
    assert "no such file" in capsys.readouterr().err


def test_cli_builtin_search_builds_then_reuses_its_cache(tmp_path, capsys, monkeypatch):
    calls = []
    original = corpus_module.builtin_corpus

    def small_corpus():
        calls.append(1)
        return original(("topics",))

    monkeypatch.setattr(corpus_module, "builtin_corpus", small_corpus)
    parser = _parser()
    argv = ["search", "assignment statement", "--cache-dir", str(tmp_path), "--dim", "16",
            "--buckets", "4096", "--epochs", "1", "-k", "3"]
    for _ in range(2):
        args = parser.parse_args(argv)
        assert args.handler(args) == 0
    assert calls == [1]  # the second search loads the cached index
    assert builtin_index_dir(str(tmp_path), args).is_dir()
    assert capsys.readouterr().out.count("1. [") == 2
