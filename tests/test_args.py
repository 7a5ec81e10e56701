"""The option validators of jaxembed.commands._args: each accepts the edge of its range,
refuses the value just outside it, and names the bad value."""

from __future__ import annotations

import argparse
import os
import re

import pytest

from jaxembed.commands import _args

ACCEPT = [
    (_args.positive_int, "1", 1), (_args.positive_int, " 7 ", 7), (_args.nonneg_int, "0", 0),
    (_args.int_at_least(2, 4), "4", 4), (_args.positive_float, "1e-9", 1e-9),
    (_args.nonneg_float, "0", 0.0), (_args.unit_interval, "0", 0.0),
    (_args.unit_interval, "1", 1.0), (_args.probability, "1", 1.0),
    (_args.float_in(0, 1, high_open=True), "0", 0.0), (_args.mesh_shape, "8", "8"),
    (_args.mesh_shape, "2X4", "2x4"), (_args.nonempty_text, " a ", " a "),
]
REFUSE = [
    (_args.positive_int, "0"), (_args.positive_int, "-1"), (_args.positive_int, "1.5"),
    (_args.positive_int, ""), (_args.nonneg_int, "-1"), (_args.int_at_least(2, 4), "5"),
    (_args.int_at_least(2, 4), "1"), (_args.positive_float, "0"),
    (_args.positive_float, "inf"), (_args.positive_float, "nan"),
    (_args.nonneg_float, "-0.1"), (_args.unit_interval, "1.01"), (_args.probability, "0"),
    (_args.float_in(0, 1, high_open=True), "1"), (_args.mesh_shape, "0"),
    (_args.mesh_shape, "2x4x2"), (_args.mesh_shape, "x4"), (_args.mesh_shape, "eight"),
    (_args.nonempty_text, ""), (_args.nonempty_text, " \t"),
]


@pytest.mark.parametrize(("check", "text", "value"), ACCEPT)
def test_accepts_the_edge_of_the_range(check, text, value):
    assert check(text) == value


@pytest.mark.parametrize(("check", "text"), REFUSE)
def test_refuses_and_names_the_value(check, text):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(f"got {text!r}")):
        check(text)


def test_paths(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("caf\u00e9\n", encoding="utf-8")
    assert _args.existing_file(str(good)) == str(good)
    assert _args.text_file(str(good)) == str(good)
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "nul").write_bytes(b"ab\0cd")
    (tmp_path / "latin").write_bytes(b"caf\xe9")
    for check, name, message in [
        (_args.existing_file, "missing", "no such file"),
        (_args.existing_file, "empty", "is empty"),
        (_args.existing_file, ".", "is a folder"),
        (_args.text_file, "nul", "NUL byte at offset 2"),
        (_args.text_file, "latin", "byte 0xe9 at offset 3"),
        (_args.existing_dir, "missing", "no such folder"),
        (_args.existing_dir, "good.txt", "is a file"),
        (_args.output_dir, "good.txt", "is a file"),
        (_args.output_file, ".", "is a folder"),
        (_args.output_file, "good.txt/x", "is a file, so"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            check(os.path.join(tmp_path, name))
    assert _args.output_dir(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert _args.output_file(str(tmp_path / "new" / "v.txt")) == str(tmp_path / "new" / "v.txt")


def test_a_multibyte_character_cut_by_the_sniff_window_is_still_utf8(tmp_path):
    path = tmp_path / "long.txt"
    path.write_bytes(b"a" * (_args.SNIFF_BYTES - 1) + "\u00e9".encode())  # é straddles the end
    assert _args.text_file(str(path)) == str(path)


def test_plain_strips_rest_markup():
    assert _args.plain("see :func:`~jaxembed.text.word2vec` and ``--dim``::") == (
        "see word2vec and '--dim':")


def test_given_records_the_options_spelled_out():
    parser = _args.Parser(prog="x")
    parser.add_argument("--dim", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    assert _args.given(parser.parse_args(["--dim=4"])) == {"dim"}
    with pytest.raises(_args.UsageError, match="unrecognized arguments: --di"):
        parser.parse_args(["--di", "4"])  # no abbreviations
