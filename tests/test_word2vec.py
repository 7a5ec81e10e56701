"""word2vec: vocabulary, training quality on a corpus with planted topics, KeyedVectors,
word2vec file formats (and gensim interoperability), and the word2vec CLI."""

from __future__ import annotations

import argparse

import jax
import numpy as np
import pytest

from jaxembed.bench.word2vec import purity, topic_corpus
from jaxembed.commands.graph_text import add_word2vec_parser
from jaxembed.text.keyed_vectors import KeyedVectors
from jaxembed.text.word2vec import build_vocab, word2vec


def test_build_vocab_orders_by_count_then_first_appearance():
    sentences = [["b", "a", "c"], ["a", "d"], [], ["d", "a", "e", "b"]]
    keys, counts, corpus = build_vocab(sentences, min_count=2)
    assert keys == ["a", "b", "d"] and counts.tolist() == [3, 2, 2]
    # rare words are dropped from the sentences, sentence boundaries kept
    assert corpus.tokens.tolist() == [1, 0, 0, 2, 2, 0, 1]
    assert corpus.offsets.tolist() == [0, 2, 4, 4, 7]


@pytest.mark.parametrize(
    ("sentences", "error", "match"),
    [("a b c", TypeError, "one str"),
     ([["a"], "b c"], TypeError, "sentence 1 is a str"),
     ([["a", 3]], TypeError, "sentence 0, token 1 is a int"),
     ([["a", "b"]], ValueError, "no token occurs min_count=5 times")],
)
def test_build_vocab_bad_input(sentences, error, match):
    with pytest.raises(error, match=match):
        build_vocab(sentences, min_count=5)


@pytest.fixture(scope="module")
def topics():
    return topic_corpus()  # 8 topics x 20 words, 10 stop words, 2000 sentences of 12 tokens


@pytest.fixture(scope="module")
def trained(topics):
    sentences, _ = topics
    return word2vec(sentences, jax.random.key(0), dim=16, window=5, min_count=1, epochs=3)


def test_neighbours_recover_planted_topics(topics, trained):
    """>= 90% of each topic word's 5 nearest neighbours share its topic (random: 1/8)."""
    _, topic_of = topics
    assert trained.vectors.shape == (170, 16) and trained.vectors.dtype == np.float32
    assert purity(trained.index_to_key, trained.vectors, topic_of) >= 0.9
    top = [w for w, _ in trained.most_similar("t3_w0", topn=5)]
    assert all(w.startswith("t3_") for w in top)
    assert trained.similarity("t3_w0", "t3_w1") > trained.similarity("t3_w0", "t4_w1")


def test_word2vec_is_reproducible(topics, trained):
    again = word2vec(topics[0], jax.random.key(0), dim=16, window=5, min_count=1, epochs=3)
    assert again.index_to_key == trained.index_to_key
    np.testing.assert_array_equal(again.vectors, trained.vectors)


def test_keyed_vectors_queries():
    kv = KeyedVectors(["x", "y", "z", "zero"], [[1, 0], [1, 1], [-1, 0], [0, 0]])
    assert kv.key_to_index == {"x": 0, "y": 1, "z": 2, "zero": 3}
    assert kv.similarity("x", "y") == pytest.approx(np.sqrt(0.5))
    assert kv.similarity("x", "zero") == 0.0
    assert [w for w, _ in kv.most_similar("x", topn=3)] == ["y", "zero", "z"]
    assert kv.most_similar([0, 1], topn=1)[0][0] == "y"
    np.testing.assert_array_equal(kv["z"], [-1, 0])
    with pytest.raises(KeyError, match="'nope' is not in the vocabulary"):
        kv.similarity("x", "nope")
    with pytest.raises(ValueError, match="appears twice"):
        KeyedVectors(["a", "a"], np.zeros((2, 3)))


@pytest.mark.parametrize("binary", [False, True])
def test_save_and_load_round_trip(tmp_path, trained, binary):
    path = tmp_path / "vectors.bin"
    trained.save_word2vec_format(path, binary=binary)
    back = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert back.index_to_key == trained.index_to_key
    np.testing.assert_array_equal(back.vectors, trained.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_files_interoperate_with_gensim(tmp_path, trained, binary):
    models = pytest.importorskip("gensim.models")
    ours = tmp_path / "ours.txt"
    trained.save_word2vec_format(ours, binary=binary)
    theirs = models.KeyedVectors.load_word2vec_format(str(ours), binary=binary)
    assert list(theirs.index_to_key) == trained.index_to_key
    np.testing.assert_allclose(theirs.vectors, trained.vectors)
    back = tmp_path / "gensim.txt"
    theirs.save_word2vec_format(str(back), binary=binary)
    np.testing.assert_allclose(KeyedVectors.load_word2vec_format(back, binary=binary).vectors,
                               trained.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_cli(tmp_path, topics, binary):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(" ".join(s) + "\n\n" for s in topics[0][:400]))
    out = tmp_path / "words.vec"
    parser = argparse.ArgumentParser(prog="jaxembed")
    add_word2vec_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["word2vec", str(corpus), "--dim", "8", "--window", "3", "--min-count", "2",
            "--epochs", "1", "--out", str(out)] + (["--binary"] if binary else [])
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
    kv = KeyedVectors.load_word2vec_format(out, binary=binary)
    assert kv.vector_size == 8 and "s0" in kv and len(kv) == 170
