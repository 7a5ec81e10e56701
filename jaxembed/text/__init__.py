"""Text embeddings: word2vec and KeyedVectors, Tweet2Vec, dual-encoder sentence retrieval,
word-vector file formats (word2vec text/binary, GloVe text), the built-in corpus."""

from jaxembed.text.corpus import Corpus, builtin_corpus
from jaxembed.text.keyed_vectors import KeyedVectors
from jaxembed.text.retrieval import (
    DualEncoder,
    NgramHasher,
    RetrievalModel,
    SentenceIndex,
    evaluate_next_sentence,
    next_sentence_experiment,
    top_k,
    train_dual_encoder,
)
from jaxembed.text.tweet2vec import (
    CharCodec,
    Tweet2Vec,
    char_conv,
    char_conv_literal,
    synonym_swap,
)
from jaxembed.text.vectors_io import (
    read_glove_text,
    read_word2vec_binary,
    read_word2vec_text,
    write_glove_text,
    write_word2vec_binary,
    write_word2vec_text,
)
from jaxembed.text.word2vec import build_vocab, word2vec

__all__ = [
    "CharCodec",
    "Corpus",
    "DualEncoder",
    "KeyedVectors",
    "NgramHasher",
    "RetrievalModel",
    "SentenceIndex",
    "Tweet2Vec",
    "build_vocab",
    "builtin_corpus",
    "char_conv",
    "char_conv_literal",
    "evaluate_next_sentence",
    "next_sentence_experiment",
    "read_glove_text",
    "read_word2vec_binary",
    "read_word2vec_text",
    "synonym_swap",
    "top_k",
    "train_dual_encoder",
    "word2vec",
    "write_glove_text",
    "write_word2vec_binary",
    "write_word2vec_text",
]
