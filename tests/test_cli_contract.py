"""The command-line contract (docs/cli.md), checked on every command with bad input.

Each case in CASES is ``(argv, expected)``: ``jaxembed argv`` must exit with status 2 before
any work (within TIME_LIMIT seconds), printing exactly one line on stderr that starts with
``jaxembed <command>:`` and contains ``expected``, and no traceback. To cover a new command,
append its cases (missing, empty, binary and malformed files; zero, negative and
out-of-range values; unknown options; options it cannot honour).

In argv, ``{name}`` is replaced by the path of a fixture file (see ``files``): ``missing``,
``empty``, ``binary``, ``latin1``, ``folder``, ``edges`` (a good edge list), ``bad_edges``,
``comments`` (comments only), ``labels``, ``corpus`` (a tiny corpus), ``blank`` (white space
only), ``bad_csv`` (a CSV with the wrong header), ``fake_parquet``, ``text`` (a good prose
file), ``old_run`` (a job folder whose offline run has checkpoints), ``out`` (a fresh
output path) and
``schema`` / ``train_csv`` (CTR inputs that do not exist), ``ctr_schema`` / ``ctr_train`` (a
small generated Criteo-format sample that does).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxembed.cli import build_parser, main

TIME_LIMIT = 15.0
"""Seconds a rejected command may take: only parsing and checks (2 loaded CPU cores)."""

CASES: list[tuple[list[str], str]] = [
    # -- no command, unknown command, unknown option
    ([], "arguments are required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "--nope"], "unrecognized arguments: --nope"),
    (["train", "--epoch", "2"], "unrecognized arguments: --epoch"),  # no abbreviations
    # -- prove
    (["prove", "-k", "nosuch"], "-k 'nosuch' matches no proof"),
    (["prove", "-k", "and ("], "is not a pytest -k expression"),
    (["prove", "--profile", "fast"], "invalid choice: 'fast'"),
    # -- train
    (["train", "--batch-size", "0"], "--batch-size: must be an integer >= 1, got '0'"),
    (["train", "--epochs", "-1"], "--epochs: must be an integer >= 1, got '-1'"),
    (["train", "--train-size", "many"], "--train-size: must be an integer >= 1, got 'many'"),
    (["train", "--negative-rate", "5"], "--negative-rate: must be a number in (0, 1], got '5'"),
    (["train", "--negative-rate", "0"], "--negative-rate: must be a number in (0, 1], got '0'"),
    (["train", "--negative-rate", "nan"], "got 'nan'"),
    (["train", "--mesh", "0"], "--mesh: must be a mesh shape like '8' or '2x4'"),
    (["train", "--mesh", "2x"], "got '2x'"),
    (["train", "--data"], "--data: expected at least one argument"),
    (["train", "--data", "{missing}"], "no such file"),
    (["train", "--data", "{empty}"], "is empty"),
    (["train", "--data", "{folder}"], "is a folder"),
    (["train", "--data", "{bad_csv}"], "the columns do not match the search log format"),
    (["train", "--data", "{fake_parquet}"], "is not a Parquet file"),
    (["train", "--data", "{edges}"], "expected a .csv or .parquet search log"),
    (["train", "--data", "{bad_csv}", "--train-size", "5"], "--train-size sizes the generated"),
    (["train", "--resume", "--out", "{folder}"], "--resume: no checkpoint in"),
    (["train", "--out", "{old_run}"], "holds the offline run of an earlier job (2 checkpoints)"),
    (["train", "--shard-kind", "column"], "--shard-kind only applies with --mesh"),
    (["train", "--out", "{edges}"], "--out: is a file, not a folder"),
    (["train", "--seed", "-3"], "--seed: must be an integer >= 0"),
    # -- node2vec
    (["node2vec", "{missing}"], "EDGES: no such file"),
    (["node2vec", "{empty}"], "EDGES: is empty"),
    (["node2vec", "{binary}"], "EDGES: is not a text file"),
    (["node2vec", "{latin1}"], "EDGES: is not UTF-8 text (byte 0xe9 at offset 3)"),
    (["node2vec", "{folder}"], "EDGES: is a folder"),
    (["node2vec", "{bad_edges}"], "line 2"),
    (["node2vec", "{comments}"], "has no edges"),
    (["node2vec", "{edges}", "--dim", "0"], "--dim: must be an integer >= 1, got '0'"),
    (["node2vec", "{edges}", "--p", "0"], "--p: must be a number > 0, got '0'"),
    (["node2vec", "{edges}", "--q", "-1"], "--q: must be a number > 0, got '-1'"),
    (["node2vec", "{edges}", "--walk-length", "1"], "--walk-length: must be an integer >= 2"),
    (["node2vec", "{edges}", "--epochs", "0"], "--epochs: must be an integer >= 1"),
    (["node2vec", "{edges}", "--labels", "{labels}"], "--labels only colours the --plot"),
    (["node2vec", "{edges}", "--labels", "{missing}", "--plot", "{out}"], "no such file"),
    (["node2vec", "{edges}", "--out", "{folder}"], "--out: is a folder"),
    (["node2vec", "{edges}", "--out", "{edges}"], "EDGES and --out are the same file"),
    (["node2vec", "{edges}", "--out", "{out}", "--plot", "{out}"], "--out and --plot are the"),
    (["node2vec", "{edges}", "--out", "{edges}/x.txt"], "is a file, so"),
    # -- word2vec
    (["word2vec", "{missing}"], "CORPUS: no such file"),
    (["word2vec", "{empty}"], "CORPUS: is empty"),
    (["word2vec", "{binary}"], "CORPUS: is not a text file"),
    (["word2vec", "{latin1}"], "CORPUS: is not UTF-8 text"),
    (["word2vec", "{corpus}"], "--min-count 5 drops every word"),
    (["word2vec", "{corpus}", "--out", "{corpus}"], "CORPUS and --out are the same file"),
    (["word2vec", "{blank}"], "has no words"),
    (["word2vec", "{corpus}", "--epochs", "0"], "--epochs: must be an integer >= 1, got '0'"),
    (["word2vec", "{corpus}", "--min-count", "0"], "--min-count: must be an integer >= 1"),
    (["word2vec", "{corpus}", "--sample", "-1"], "--sample: must be a number >= 0"),
    (["word2vec", "{corpus}", "--window", "x"], "--window: must be an integer >= 1, got 'x'"),
    # -- search and index
    (["search", ""], "QUERY: must not be empty"),
    (["search", "x", "-k", "0"], "-k: must be an integer >= 1, got '0'"),
    (["search", "x", "--index", "{missing}"], "--index: no such folder"),
    (["search", "x", "--index", "{edges}"], "--index: is a file, not a folder"),
    (["search", "x", "--index", "{folder}"], "is not a sentence index"),
    (["search", "x", "--index", "{folder}", "--dim", "8"], "--dim only applies to the built-in"),
    (["search", "x", "--dropout", "1"], "--dropout: must be a number in [0, 1)"),
    (["index", "--out", "{out}"], "the following arguments are required: FILES"),
    (["index", "{text}"], "the following arguments are required: --out"),
    (["index", "{missing}", "--out", "{out}"], "FILES: no such file"),
    (["index", "{binary}", "--out", "{out}"], "FILES: is not a text file"),
    (["index", "{text}", "--out", "{out}", "--dropout", "2"], "--dropout: must be a number"),
    (["index", "{text}", "--out", "{out}", "--epochs", "0"], "--epochs: must be an integer"),
    (["index", "{text}", "--out", "{out}", "--batch-size", "1"], "--batch-size: must be an "
                                                                 "integer >= 2"),
    (["index", "{text}", "--out", "{edges}"], "--out: is a file, not a folder"),
    # -- unknown options, command by command
    (["prove", "--nope"], "unrecognized arguments: --nope"),
    (["node2vec", "{edges}", "--nope", "1"], "unrecognized arguments: --nope 1"),
    (["word2vec", "{corpus}", "--size", "10"], "unrecognized arguments: --size 10"),
    (["search", "x", "--nope"], "unrecognized arguments: --nope"),
    (["index", "{text}", "--out", "{out}", "--nope"], "unrecognized arguments: --nope"),
    (["bench", "lookup", "--nope"], "unrecognized arguments: --nope"),
    # -- bench
    (["bench", "nosuch"], "invalid choice: 'nosuch'"),
    (["bench", "lookup", "--vocab", "0"], "--vocab: must be an integer >= 1, got '0'"),
    (["bench", "graph", "--vocab", "5"], "bench graph does not take --vocab"),
    (["bench", "word2vec", "--batch", "5"], "bench word2vec does not take --batch"),
    (["bench", "online", "--batch", "5"], "bench online does not take --batch"),
    (["bench", "train", "--repeats", "-2"], "--repeats: must be an integer >= 1"),
]
"""(argv, expected substring of the one line). Append cases for new commands here."""

CTR_CASES: list[tuple[list[str], str]] = [
    (["fit", "--schema", "{schema}", "--train", "{train_csv}", "--model", "wide_deep",
      "--out", "{out}"], "no such file"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{train_csv}", "--out", "{out}"],
     "does not exist"),
    (["fit", "--schema", "{empty}", "--train", "{ctr_train}", "--out", "{out}"], "is empty"),
    (["fit", "--schema", "{binary}", "--train", "{ctr_train}", "--out", "{out}"],
     "is not UTF-8 text"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--model", "nosuch"], "nosuch"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--epochs", "0"], "--epochs: must be an integer >= 1, got '0'"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--batch-size", "big"], "--batch-size: must be an integer >= 1 or 'auto', got 'big'"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--learning-rate", "-1"], "--learning-rate: must be a number > 0"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--set", "nonsense"], "--set: must look like KEY=VALUE"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--split", "sideways:2"], "sideways"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--valid", "{ctr_train}", "--split", "random:0.9"], "give --valid or --split, not both"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{bad_csv}", "--out", "{out}"], "bad.csv"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{edges}", "--out", "{out}"],
     "unknown format"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--resume"], "--resume: no run in"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{edges}"],
     "--out: is a file, not a folder"),
    (["evaluate", "--run", "{missing}", "--data", "{ctr_train}"], "--run: no such folder"),
    (["evaluate", "--run", "{folder}", "--data", "{ctr_train}"], "is not a fitted run"),
    (["evaluate", "--run", "{folder}"], "the following arguments are required: --data"),
    (["predict", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{out}"],
     "is not a fitted run"),
    (["predict", "--run", "{missing}", "--data", "{ctr_train}", "--out", "{out}.csv"],
     "--run: no such folder"),
    (["predict", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{folder}"],
     "--out: is a folder"),
    (["update", "--run", "{missing}", "--data", "{ctr_train}", "--out", "{out}"],
     "--run: no such folder"),
    (["update", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{out}"],
     "is not a fitted run"),
    (["update", "--run", "{folder}", "--data", "{ctr_train}"],
     "the following arguments are required: --out"),
    (["update", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{edges}"],
     "--out: is a file, not a folder"),
    (["update", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{out}",
      "--min-count", "3"], "--min-count only applies with --grow"),
    (["update", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{out}",
      "--accumulate", "0"], "--accumulate: must be an integer >= 1, got '0'"),
    (["update", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{out}",
      "--learning-rate", "-1"], "--learning-rate: must be a number >= 0"),
    (["update", "--run", "{folder}", "--data", "{ctr_train}", "--out", "{out}",
      "--set", "nonsense"], "--set: must look like KEY=VALUE"),
    (["export", "--run", "{missing}", "--out", "{out}"], "--run: no such folder"),
    (["export", "--run", "{folder}", "--out", "{out}"], "is not a fitted run"),
    (["export", "--run", "{folder}", "--out", "{edges}"], "--out: is a file, not a folder"),
    (["export", "--run", "{folder}", "--out", "{out}", "--platforms", "gpu9"],
     "unknown platform 'gpu9'"),
    (["fit", "--schema", "{ctr_schema}", "--train", "{ctr_train}", "--out", "{out}",
      "--negative-rate", "0"], "--negative-rate: must be a number in (0, 1], got '0'"),
]
"""fit, evaluate, predict, update and export (update's checks on a fitted run:
tests/test_update.py)."""

JOIN = ["join", "--impressions", "{imp}", "--clicks", "{clk}", "--key", "pageview_id",
        "--time", "ts"]
JOIN_CASES: list[tuple[list[str], str]] = [
    (["join", "--impressions", "{imp}", "--clicks", "{clk}", "--key", "pageview_id",
      "--window", "30m"], "the following arguments are required: --out"),
    ([*JOIN, "--window", "0m", "--out", "{out}.parquet"], "--window: must be a duration like "
                                                          "30m, 45s, 2h or 1d"),
    ([*JOIN, "--window", "soon", "--out", "{out}.parquet"], "got 'soon'"),
    ([*JOIN, "--window", "30m", "--out", "{out}.csv"], "expected a .parquet file name"),
    ([*JOIN, "--window", "30m", "--out", "{folder}"], "--out: is a folder"),
    ([*JOIN, "--window", "30m", "--out", "{imp}"], "--impressions and --out are the same file"),
    ([*JOIN, "--window", "30m", "--out", "{out}.parquet", "--downsample", "0"],
     "--downsample: must be a number in (0, 1], got '0'"),
    ([*JOIN, "--window", "30m", "--out", "{out}.parquet", "--downsample", "1.5"], "got '1.5'"),
    ([*JOIN, "--window", "30m", "--out", "{out}.parquet", "--seed", "-1"],
     "--seed: must be an integer >= 0"),
    ([*JOIN, "--window", "30m", "--out", "{out}.parquet", "--duplicates", "keep"],
     "invalid choice: 'keep'"),
    (["join", "--impressions", "{missing}", "--clicks", "{clk}", "--key", "pageview_id",
      "--window", "30m", "--out", "{out}.parquet"], "--impressions: no such file"),
    (["join", "--impressions", "{empty}", "--clicks", "{clk}", "--key", "pageview_id",
      "--window", "30m", "--out", "{out}.parquet"], "--impressions: is empty"),
    (["join", "--impressions", "{fake_parquet}", "--clicks", "{clk}", "--key", "pageview_id",
      "--window", "30m", "--out", "{out}.parquet"], "is not readable Parquet"),
    (["join", "--impressions", "{edges}", "--clicks", "{clk}", "--key", "pageview_id",
      "--window", "30m", "--out", "{out}.parquet"], "unknown format"),
    ([*JOIN[:-1], "when", "--window", "30m", "--out", "{out}.parquet"], "has no column 'when'"),
    (["join", "--impressions", "{imp}", "--clicks", "{bad_csv}", "--key", "pageview_id",
      "--time", "ts", "--window", "30m", "--out", "{out}.parquet"],
     "clicks '"),
    ([*JOIN, "--window", "30m", "--out", "{out}.parquet", "--label", "user"],
     "already has a column 'user'"),
    (["join", "--impressions", "{unsorted}", "--clicks", "{clk}", "--key", "pageview_id",
      "--time", "ts", "--window", "30m", "--out", "{out}.parquet"],
     "row 3: time 1.0 is earlier than the row before it (2.0)"),
    (["join", "--impressions", "{dup}", "--clicks", "{clk}", "--key", "pageview_id",
      "--time", "ts", "--window", "30m", "--out", "{out}.parquet"],
     "row 3: key pageview_id=1 repeats row 1"),
]
"""join: its options, and logs that are missing, malformed, unsorted or repeat a key."""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-input")
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, ids, times in (("imp", [1, 2, 3], [0.0, 1.0, 2.0]), ("clk", [2], [1.5]),
                             ("unsorted", [1, 2, 3], [0.0, 2.0, 1.0]),
                             ("dup", [1, 2, 1], [0.0, 1.0, 2.0])):
        pq.write_table(pa.table({"pageview_id": ids, "ts": times, "user": ["a"] * len(ids)}),
                       root / f"{name}.parquet")
    paths = {name: root / name for name in (
        "empty.txt", "binary.dat", "latin1.txt", "good.edges", "bad.edges", "comments.edges",
        "labels.txt", "corpus.txt", "bad.csv", "fake.parquet", "text.txt")}
    paths["empty.txt"].write_bytes(b"")
    paths["binary.dat"].write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    paths["latin1.txt"].write_bytes("caf\u00e9 1\n".encode("latin-1"))
    paths["good.edges"].write_text("a b\nb c\n")
    paths["bad.edges"].write_text("a b\nc\n")
    paths["comments.edges"].write_text("# nothing but a comment\n\n")
    paths["labels.txt"].write_text("a x\nb y\n")
    paths["corpus.txt"].write_text("the cat sat\nthe dog ran\n")
    (root / "blank.txt").write_text("   \n\t\n")
    paths["bad.csv"].write_text("a,b\n1,2\n")
    paths["fake.parquet"].write_text("not parquet at all\n")
    paths["text.txt"].write_text("One sentence here. Another one follows. And a third.\n")
    (root / "folder").mkdir()
    ctr = {}
    try:
        from jaxembed.data.criteo_like import write_sample

        ctr = write_sample(str(root / "criteo"), train_rows=200, test_rows=50)
    except ImportError:  # the own-data pipeline is not on this branch
        pass
    for step in ("10000000", "20000000"):
        (root / "old-run" / "offline" / "checkpoints" / step).mkdir(parents=True)
    (root / "old-run" / "offline" / "model.json").write_text("{}")
    return {
        "missing": str(root / "missing.txt"), "empty": str(paths["empty.txt"]),
        "binary": str(paths["binary.dat"]), "latin1": str(paths["latin1.txt"]),
        "folder": str(root / "folder"), "edges": str(paths["good.edges"]),
        "bad_edges": str(paths["bad.edges"]), "comments": str(paths["comments.edges"]),
        "labels": str(paths["labels.txt"]), "corpus": str(paths["corpus.txt"]),
        "blank": str(root / "blank.txt"), "old_run": str(root / "old-run"),
        "bad_csv": str(paths["bad.csv"]), "fake_parquet": str(paths["fake.parquet"]),
        "text": str(paths["text.txt"]), "out": str(root / "out" / "result"),
        "schema": "/nonexistent/schema.toml", "train_csv": "/nonexistent/train.csv",
        "ctr_schema": ctr.get("schema.toml", "/nonexistent/schema.toml"),
        "ctr_train": ctr.get("train.tsv", "/nonexistent/train.tsv"),
        **{name: str(root / f"{name}.parquet") for name in ("imp", "clk", "unsorted", "dup")},
    }


def _commands() -> set[str]:
    parser = build_parser()
    return {name for action in parser._actions if hasattr(action, "choices")
            and isinstance(action.choices, dict) for name in action.choices}


def _run(argv: list[str], files: dict[str, str], capsys, monkeypatch) -> tuple[int, str, float]:
    monkeypatch.delenv("JAXEMBED_DEBUG", raising=False)
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))  # restored afterwards
    argv = [word.format(**files) for word in argv]
    start = time.perf_counter()
    status = main(argv)
    seconds = time.perf_counter() - start
    return status, capsys.readouterr().err, seconds


def _assert_one_line(argv: list[str], status: int, err: str, seconds: float,
                     expected: str) -> None:
    lines = err.strip().splitlines()
    command = next((word for word in argv if word in _commands()), None)
    prefix = f"jaxembed {command}:" if command else "jaxembed:"
    assert status == 2, (argv, status, err)
    assert len(lines) == 1, (argv, err)
    assert "Traceback" not in err
    assert lines[0].startswith(prefix), (prefix, lines[0])
    assert expected in lines[0], (expected, lines[0])
    assert seconds < TIME_LIMIT, (argv, seconds)


@pytest.mark.parametrize(("argv", "expected"), CASES, ids=[" ".join(c[0]) or "-" for c in CASES])
def test_bad_input_is_one_line_and_status_2(argv, expected, files, capsys, monkeypatch):
    status, err, seconds = _run(argv, files, capsys, monkeypatch)
    _assert_one_line(argv, status, err, seconds, expected)


@pytest.mark.parametrize(("argv", "expected"), CTR_CASES, ids=[c[0][0] for c in CTR_CASES])
def test_ctr_commands_bad_input(argv, expected, files, capsys, monkeypatch):
    assert argv[0] in _commands(), f"jaxembed {argv[0]} is not registered"
    status, err, seconds = _run(argv, files, capsys, monkeypatch)
    _assert_one_line(argv, status, err, seconds, expected)


@pytest.mark.parametrize(("argv", "expected"), JOIN_CASES,
                         ids=[" ".join(c[0][-4:]) for c in JOIN_CASES])
def test_join_bad_input(argv, expected, files, capsys, monkeypatch):
    assert "join" in _commands(), "jaxembed join is not registered"
    status, err, seconds = _run(argv, files, capsys, monkeypatch)
    _assert_one_line(argv, status, err, seconds, expected)
    assert not os.path.exists(files["out"] + ".parquet")  # nothing written


def test_nothing_is_written_on_bad_input(files, capsys, monkeypatch, tmp_path):
    out = tmp_path / "vectors.txt"
    out.write_text("keep me\n")
    status, _, _ = _run(["node2vec", "{edges}", "--dim", "0", "--out", str(out)], files,
                        capsys, monkeypatch)
    assert status == 2 and out.read_text() == "keep me\n"


def test_debug_shows_the_traceback(files, capsys, monkeypatch):
    with pytest.raises(ValueError, match="line 2"):
        main(["node2vec", files["bad_edges"], "--debug"])
    monkeypatch.setenv("JAXEMBED_DEBUG", "1")
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        main(["train", "--epochs", "0"])


def test_a_failure_that_is_not_bad_input_is_one_line_and_status_1(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("disk on fire\nsecond line")

    import jaxembed.cli as cli

    monkeypatch.setattr(cli, "_bench", broken)
    monkeypatch.setattr(cli, "_check_bench", lambda args: None)
    assert main(["bench", "lookup"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jaxembed bench: failed: RuntimeError: disk on fire second line")
    assert "--debug" in line


def test_version_and_help_texts(capsys):
    from jaxembed import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxembed {__version__}"
    for command in sorted(_commands()):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "``" not in text and ":func:" not in text and ":class:" not in text, command
        assert re.search(r"^try: ", text, re.M), f"jaxembed {command} --help: no sample"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 3)", "(default: 1024)", "(default: jaxembed-run)",
                  "(default: 300000", "(default: 1.0)"):
        assert shown in train_help, shown


def test_every_option_shows_its_default():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(getattr(a, "choices", None), dict)]
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            text = sub.formatter_class(prog="x")._get_help_string(action)
            assert "default" in text.lower(), (name, action.dest)


def test_the_installed_entry_point_keeps_the_contract(files):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("JAXEMBED_DEBUG", None)
    run = subprocess.run([sys.executable, "-m", "jaxembed.cli", "node2vec", files["missing"]],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"jaxembed node2vec: argument EDGES: no such file: {files['missing']!r} "
        "(see 'jaxembed node2vec --help')"]


def test_outputs_follow_the_umask(tmp_path):
    from jaxembed._atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600


def test_a_command_that_reads_a_missing_file_in_its_handler_is_one_line(capsys, monkeypatch):
    # A command registered without validators (as a new command might be) still keeps the
    # contract: the FileNotFoundError of its handler becomes status 2 and one line.
    import jaxembed.cli as cli

    original = cli.build_parser

    def with_fake_fit():
        parser = original()
        (commands,) = [a for a in parser._actions if isinstance(getattr(a, "choices", None),
                                                                dict)]
        if "fit" not in commands.choices:
            fit = commands.add_parser("fit", help="a stand-in")
            for option in ("--schema", "--train", "--model", "--out"):
                fit.add_argument(option)
            fit.set_defaults(handler=lambda args: open(args.schema).read())
        return parser

    monkeypatch.setattr(cli, "build_parser", with_fake_fit)
    argv = ["fit", "--schema", "/nonexistent/schema.toml", "--train", "/nonexistent/train.csv",
            "--model", "wide_deep", "--out", "/tmp/x"]
    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jaxembed fit: ") and "/nonexistent/schema.toml" in line


def test_the_train_defaults_shown_are_the_job_defaults():
    from jaxembed.cli import JOB_DEFAULTS
    from jaxembed.train import job

    config = job.JobConfig()
    assert JOB_DEFAULTS == {"train_size": config.train_size, "eval_size": config.eval_size,
                            "online_size": config.online_size, "epochs": config.epochs,
                            "batch_size": config.batch_size}


def test_a_good_run_on_a_shipped_sample_says_what_it_wrote(tmp_path, capsys):
    from jaxembed.samples import sample_path

    out = tmp_path / "karate.txt"
    old = os.umask(0o022)
    try:
        status = main(["node2vec", sample_path("karate.edgelist"), "--dim", "8",
                       "--walk-length", "10", "--num-walks", "2", "--window", "3",
                       "--out", str(out)])
    finally:
        os.umask(old)
    assert status == 0
    assert f"wrote 34 node vectors of dim 8 (word2vec text format) to {out}" in (
        capsys.readouterr().err)
    assert out.stat().st_mode & 0o777 == 0o644


def test_the_command_line_keeps_compiled_programs_in_the_cache_folder(tmp_path):
    from jaxembed._cache import use_compilation_cache

    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert use_compilation_cache(env) == str(tmp_path / "jaxembed" / "xla")
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "jaxembed" / "xla")
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    mine = {"XDG_CACHE_HOME": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": "/elsewhere"}
    assert use_compilation_cache(mine) == "/elsewhere"  # the user's own setting wins
    off = {"XDG_CACHE_HOME": str(tmp_path), "JAXEMBED_COMPILATION_CACHE": "0"}
    assert use_compilation_cache(off) is None and "JAX_COMPILATION_CACHE_DIR" not in off
