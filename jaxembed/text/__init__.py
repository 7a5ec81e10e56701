"""Text embeddings: word-vector file formats (word2vec text/binary, GloVe text)."""

from jaxembed.text.vectors_io import (
    read_glove_text,
    read_word2vec_binary,
    read_word2vec_text,
    write_glove_text,
    write_word2vec_binary,
    write_word2vec_text,
)

__all__ = [
    "read_glove_text",
    "read_word2vec_binary",
    "read_word2vec_text",
    "write_glove_text",
    "write_word2vec_binary",
    "write_word2vec_text",
]
