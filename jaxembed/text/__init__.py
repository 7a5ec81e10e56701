"""Text embeddings: word2vec and KeyedVectors, word-vector file formats (word2vec text/binary,
GloVe text)."""

from jaxembed.text.keyed_vectors import KeyedVectors
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
    "KeyedVectors",
    "build_vocab",
    "read_glove_text",
    "read_word2vec_binary",
    "read_word2vec_text",
    "word2vec",
    "write_glove_text",
    "write_word2vec_binary",
    "write_word2vec_text",
]
