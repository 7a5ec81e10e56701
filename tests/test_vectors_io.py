"""Word-vector files: round trips, the formats as other tools write them, and malformed files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from jaxembed.text import (
    read_glove_text,
    read_word2vec_binary,
    read_word2vec_text,
    write_glove_text,
    write_word2vec_binary,
    write_word2vec_text,
)

KEYS = ["the", "ünïcode", "北京", "a.b-c", "</s>"]
VECTORS = np.array(
    [[0.1, -2.5, 3e-30], [1e30, 0.0, -0.0], [1 / 3, 2 / 3, 1.0], [-1.0, 7.0, 0.5], [9, 8, 7]],
    np.float32,
)
READERS = {
    "word2vec_text": (write_word2vec_text, read_word2vec_text),
    "word2vec_binary": (write_word2vec_binary, read_word2vec_binary),
    "glove_text": (write_glove_text, read_glove_text),
}


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_round_trip_is_bit_exact(tmp_path, fmt):
    write, read = READERS[fmt]
    path = tmp_path / "vectors"
    write(path, KEYS, VECTORS)
    keys, vectors = read(path)
    assert keys == KEYS
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors.view(np.uint32), VECTORS.view(np.uint32))
    assert [p.name for p in tmp_path.iterdir()] == ["vectors"]  # no temporary file left


def test_word2vec_text_as_the_c_tool_writes_it(tmp_path):
    """Trailing spaces before the newline and a final newline are normal."""
    path = tmp_path / "v.txt"
    path.write_text("2 3\nfoo 1 2 3 \nbar -1 0.5 1e-3 \n", encoding="utf-8")
    keys, vectors = read_word2vec_text(path)
    assert keys == ["foo", "bar"]
    np.testing.assert_array_equal(vectors, np.array([[1, 2, 3], [-1, 0.5, 1e-3]], np.float32))


def test_word2vec_binary_with_and_without_record_newlines(tmp_path):
    """The C tool ends each record with a newline; gensim does not. Both read the same."""
    rows = np.array([[1.0, 2.0], [3.0, -4.0]], np.float32)
    for sep in (b"\n", b""):
        records = zip([b"x", b"yz"], rows, strict=True)
        body = b"".join(w + b" " + r.astype("<f4").tobytes() + sep for w, r in records)
        path = tmp_path / "v.bin"
        path.write_bytes(b"2 2\n" + body)
        keys, vectors = read_word2vec_binary(path)
        assert keys == ["x", "yz"]
        np.testing.assert_array_equal(vectors, rows)


def test_binary_vector_bytes_may_hold_space_and_newline(tmp_path):
    """A float whose bytes include 0x20 or 0x0A must not be taken for a separator."""
    value = struct.unpack("<f", b"\x20\x0a\x20\x0a")[0]
    rows = np.array([[value, value]], np.float32)
    write_word2vec_binary(tmp_path / "v.bin", ["w"], rows)
    _, vectors = read_word2vec_binary(tmp_path / "v.bin")
    np.testing.assert_array_equal(vectors, rows)


def test_empty_vocabulary_round_trips(tmp_path):
    write_word2vec_text(tmp_path / "v.txt", [], np.zeros((0, 4), np.float32))
    keys, vectors = read_word2vec_text(tmp_path / "v.txt")
    assert keys == [] and vectors.shape == (0, 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("3\nfoo 1 2 3\n", "line 1"),
        ("x 3\nfoo 1 2 3\n", "integers"),
        ("2 3\nfoo 1 2 3\n", "header says 2 vectors but the file has 1"),
        ("1 3\nfoo 1 2 3\nbar 4 5 6\n", "line 3: header says 1 vectors"),
        ("2 3\nfoo 1 2 3\nbar 4 5\n", "line 3: word 'bar' has 2 values, expected 3"),
        ("2 3\nfoo 1 2 3\nbar 4 5 6 7\n", "line 3: word 'bar' has 4 values"),
        ("2 3\nfoo 1 2 3\nbar 4 five 6\n", "line 3: word 'bar': value 'five' is not a number"),
        ("2 3\nfoo 1 nan 3\nbar 4 5 6\n", "line 2: word 'foo': value 'nan' is not finite"),
        ("2 3\nfoo 1 2 3\n\nbar 4 5 6\n", "line 3"),
        ("2 3\nfoo 1 2 3\nfoo 4 5 6\n", "'foo' appears twice (line 0 and line 1)"),
    ],
)
def test_malformed_word2vec_text_names_the_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_word2vec_text(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("foo 1 2\nbar 3\n", "line 2: word 'bar' has 1 values, expected 2"),
        ("foo 1 2\nbar 3 x\n", "line 2: word 'bar': value 'x' is not a number"),
        ("foo\n", "line 1: word 'foo' has no values"),
    ],
)
def test_malformed_glove_names_the_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_glove_text(path)


def _binary(records: list[tuple[bytes, bytes]], header: bytes = b"2 2\n") -> bytes:
    return header + b"".join(w + b" " + data + b"\n" for w, data in records)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"2 two\n", "integers"),
        (_binary([(b"a", b"\0" * 8)])[:-1], "header says 2 vectors|record 1"),
        (_binary([(b"a", b"\0" * 8), (b"b", b"\0" * 5)]), r"record 1 \('b'\): vector has 6 of 8"),
        (_binary([(b"a", b"\0" * 8), (b"b", b"\0" * 8), (b"c", b"\0" * 8)]), "bytes follow"),
        (_binary([(b"a", b"\0" * 8)]) + b"b", "record 1: file ends inside the word"),
        (_binary([(b"a", b"\0" * 8), (b"a", b"\0" * 8)]), "appears twice"),
        (_binary([(b"a", b"\0" * 8), (b"b", struct.pack("<2f", 1.0, np.inf))]), "record 1"),
    ],
)
def test_malformed_word2vec_binary_names_the_record(tmp_path, content, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_word2vec_binary(path)


@pytest.mark.parametrize(
    ("keys", "vectors", "error"),
    [
        (["a", "b"], np.zeros((3, 2)), ValueError),
        (["a b"], np.zeros((1, 2)), ValueError),
        ([""], np.zeros((1, 2)), ValueError),
        (["a", "a"], np.zeros((2, 2)), ValueError),
        (["a"], np.array([[np.nan, 1.0]]), ValueError),
        (["a"], np.zeros(2), ValueError),
        (["a"], np.zeros((1, 2), np.int32), TypeError),
        ([3], np.zeros((1, 2)), TypeError),
    ],
)
def test_writers_refuse_what_the_format_cannot_hold(tmp_path, keys, vectors, error):
    path = tmp_path / "v.txt"
    path.write_text("old", encoding="utf-8")
    for write in (write_word2vec_text, write_word2vec_binary, write_glove_text):
        with pytest.raises(error):
            write(path, keys, vectors)
    assert path.read_text(encoding="utf-8") == "old"  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["v.txt"]


def test_gensim_reads_ours_and_we_read_gensims(tmp_path):
    gensim = pytest.importorskip("gensim")
    kv_cls = gensim.models.KeyedVectors
    for binary in (False, True):
        write = write_word2vec_binary if binary else write_word2vec_text
        read = read_word2vec_binary if binary else read_word2vec_text
        ours = tmp_path / f"ours.{binary}"
        write(ours, KEYS, VECTORS)
        kv = kv_cls.load_word2vec_format(str(ours), binary=binary)
        assert list(kv.index_to_key) == KEYS
        np.testing.assert_array_equal(kv.vectors, VECTORS)
        theirs = tmp_path / f"theirs.{binary}"
        kv.save_word2vec_format(str(theirs), binary=binary)
        keys, vectors = read(theirs)
        assert keys == KEYS
        np.testing.assert_allclose(vectors, VECTORS, rtol=1e-6)
