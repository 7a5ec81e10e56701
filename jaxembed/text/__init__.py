"""Text embeddings: word2vec and KeyedVectors, Tweet2Vec, sentence retrieval (a general dual
encoder, Okapi BM25 and their hybrid), word-vector file formats (word2vec text/binary, GloVe
text), the built-in corpus."""

from jaxembed.text.bm25 import BM25, bm25_scores
from jaxembed.text.corpus import Corpus, builtin_corpus
from jaxembed.text.keyed_vectors import KeyedVectors
from jaxembed.text.retrieval import (
    DualEncoder,
    NgramHasher,
    RetrievalModel,
    SentenceIndex,
    evaluate_next_sentence,
    evaluate_rankings,
    next_sentence_experiment,
    top_k,
    train_dual_encoder,
)
from jaxembed.text.retriever import GeneralConfig, Retriever
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
    "BM25",
    "CharCodec",
    "Corpus",
    "DualEncoder",
    "GeneralConfig",
    "KeyedVectors",
    "NgramHasher",
    "RetrievalModel",
    "Retriever",
    "SentenceIndex",
    "Tweet2Vec",
    "bm25_scores",
    "build_vocab",
    "builtin_corpus",
    "char_conv",
    "char_conv_literal",
    "evaluate_next_sentence",
    "evaluate_rankings",
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
