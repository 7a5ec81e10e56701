"""The own-data path: schema -> reader -> vocabularies -> encoder -> loader -> fit/evaluate/
predict, with its literal twins (vocabulary lookup, crosses, multi-valued padding) and its bad
input."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxembed import Bags
from jaxembed.data.criteo_like import criteo_like
from jaxembed.data.encode import Encoder
from jaxembed.data.loader import EpochSource, Store, epoch_iterator, write_store
from jaxembed.data.readers import DataError, check_source, record_batches
from jaxembed.data.schema import Schema, SchemaError, criteo_schema
from jaxembed.data.vocabularies import FieldVocab, Vocabularies
from jaxembed.encoding.hashing import GAMMA, mix64, seed_key
from jaxembed.encoding.vocab import Vocabulary
from jaxembed.nn.fields import LinearTable
from jaxembed.train import runs, scoring
from jaxembed.train.field_trainer import FitConfig, auto_batch_size, scoring_batch, table_rule

ISSUE_SCHEMA = """
[label]
column = "clicked"
[[feature]]
name = "user"
kind = "categorical"
dim = 16
[[feature]]
name = "item"
kind = "categorical"
dim = 8
[[feature]]
name = "tags"
kind = "multi"
separator = "|"
max_len = 8
combiner = "mean"
dim = 8
[[feature]]
name = "recent_items"
kind = "multi"
separator = "|"
share = "item"
dim = 8
[[feature]]
name = "price"
kind = "dense"
transform = "log1p"
[[feature]]
name = "zip"
kind = "hashed"
buckets = 1000
dim = 8
[[cross]]
fields = ["user", "tags"]
buckets = 100000
[options]
group = "user"
time = "ts"
"""


def _log(n: int = 400, seed: int = 0) -> pa.Table:
    """A small log in the issue schema's columns; clicks depend on user, item and tags."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 30, n)
    item = rng.integers(0, 50, n)
    tags = ["|".join(f"t{t}" for t in rng.integers(0, 12, rng.integers(0, 5))) for _ in range(n)]
    recent = ["|".join(f"i{t}" for t in rng.integers(0, 50, rng.integers(1, 4)))
              for _ in range(n)]
    price = rng.lognormal(3.0, 1.0, n)
    logit = (user % 3 - 1.0) + (item % 5 - 2.0) * 0.5 + np.array([t.count("t1") for t in tags])
    clicked = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pa.table({
        "clicked": clicked, "user": [f"u{u}" for u in user], "item": [f"i{i}" for i in item],
        "tags": pa.array([t or None for t in tags], pa.string()),
        "recent_items": recent, "price": price, "zip": [f"{z:05d}" for z in
                                                          rng.integers(0, 500, n)],
        "ts": np.arange(n, dtype=np.float64)})


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.from_dict(__import__("tomllib").loads(ISSUE_SCHEMA))


# --- schema ------------------------------------------------------------------------------------
def test_schema_round_trip(schema: Schema, tmp_path) -> None:
    path = tmp_path / "s.toml"
    schema.to_toml(path)
    assert Schema.from_toml(path) == schema
    assert schema.field("recent_items").table == "item"
    assert schema.field("tags").combiner == "mean" and schema.field("user").combiner == "sum"


@pytest.mark.parametrize("change, message", [
    ('kind = "categorical"\ndim = 16', None),
    ('kind = "categorica"', "kind must be one of"),
    ('kind = "categorical"\nbogus = 1', "unknown key 'bogus'"),
    ('kind = "multi"\nshare = "nobody"', "share = 'nobody' names no field"),
    ('kind = "hashed"', "needs 'buckets'"),
    ('kind = "categorical"\ndim = 0', "dim must be an integer >= 1"),
])
def test_schema_errors_name_the_field(change: str, message: str | None) -> None:
    text = f'[label]\ncolumn = "y"\n[[feature]]\nname = "a"\n{change}\n'
    raw = __import__("tomllib").loads(text)
    if message is None:
        Schema.from_dict(raw)
        return
    with pytest.raises(SchemaError, match=message) as info:
        Schema.from_dict(raw)
    assert "'a'" in str(info.value) or "a" in str(info.value)


def test_schema_file_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Schema.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[label\n")
    with pytest.raises(SchemaError, match="not valid TOML"):
        Schema.from_toml(bad)
    cross = tmp_path / "cross.toml"
    cross.write_text('[label]\ncolumn="y"\n[[feature]]\nname="a"\nkind="categorical"\n'
                     '[[cross]]\nfields=["a","b"]\n')
    with pytest.raises(SchemaError, match="no field 'b'"):
        Schema.from_toml(cross)


# --- readers: every source gives the same encoded rows -----------------------------------------
def test_sources_agree(schema: Schema, tmp_path) -> None:
    table = _log(300)
    csv_path, parquet_path = str(tmp_path / "log.csv"), str(tmp_path / "log.parquet")
    import pyarrow.csv as pa_csv

    pa_csv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path, row_group_size=100)
    vocab = Vocabularies.build(record_batches(table, schema), schema)
    encoder = Encoder(schema, vocab)

    def encoded(source):
        chunks = [encoder.encode(b) for b in record_batches(source, schema, batch_rows=128)]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    reference = encoded(table)
    for source in (csv_path, parquet_path, table.to_pandas(),
                   __import__("polars").from_arrow(table)):
        got = encoded(source)
        assert got.keys() == reference.keys()
        for key in reference:
            np.testing.assert_allclose(got[key], reference[key], rtol=1e-6, err_msg=key)


def test_parquet_reader_decodes_one_row_group_ahead_at_most(tmp_path) -> None:
    """A slow consumer of a Parquet file holds about one row group in Arrow memory, not the
    whole file (a ``pyarrow.dataset`` scan decodes every row group ahead; issue 12)."""
    groups, rows = 16, 16_384
    rng = np.random.default_rng(0)
    columns = {f"c{i}": pa.array(np.char.add("v", rng.integers(0, 10**9, groups * rows)
                                             .astype(str))) for i in range(4)}
    table = pa.table({"y": rng.integers(0, 2, groups * rows), **columns})
    path = str(tmp_path / "log.parquet")
    pq.write_table(table, path, row_group_size=rows)
    schema = Schema.from_dict({"label": {"column": "y"}, "feature": [
        {"name": name, "kind": "categorical"} for name in columns]})
    base = pa.total_allocated_bytes()
    batches = record_batches(path, schema, batch_rows=rows)
    first = next(batches)
    import time

    time.sleep(0.5)  # time for any reading ahead to happen
    held = pa.total_allocated_bytes() - base
    # one row group's reading state and batch take about 5 batches' bytes; the whole file
    # decoded ahead would be over 16
    assert held < groups // 2 * first.nbytes, (held, first.nbytes)
    assert sum(b.num_rows for b in batches) + first.num_rows == groups * rows


def test_reader_errors_name_file_line_and_value(schema: Schema, tmp_path) -> None:
    good = "clicked,user,item,tags,recent_items,price,zip,ts\n1,u1,i1,t1,i2,3.5,00001,1\n"
    cases = {
        "missing.csv": (good.replace("zip", "zap"), "no column 'zip'"),
        "short.csv": (good + "0,u2,i2\n", "line 3: 3 fields"),
        "text.csv": (good + "0,u2,i2,t1,i3,cheap,00002,2\n", "line 3, column 'price': value "
                                                             "'cheap' is not a number"),
        "label.csv": (good + "2,u2,i2,t1,i3,1.0,00002,2\n", "row 2 has label 2"),
        "empty.csv": ("", "is empty"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises((DataError, FileNotFoundError), match=message):
            list(Vocabularies.build(record_batches(str(path), schema), schema).tables)
    with pytest.raises(DataError, match="no column 'zip'"):
        check_source(str(tmp_path / "missing.csv"), schema)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(DataError, match="binary"):
        check_source(str(binary), schema)


PIECES_SCHEMA = {"label": {"column": "y"}, "feature": [
    {"name": "a", "kind": "categorical"}, {"name": "x", "kind": "dense", "buckets": 4}]}


def _pieces_log(tmp_path, *, header: bool = True, newline: str = "\n", final: bool = True,
                suffix: str = "", bad: str | None = None) -> tuple[str, Schema]:
    """A CSV of 400 rows (about 9 KiB): empty cells, a quoted delimiter, non-ASCII text, a
    column the schema does not read; ``bad`` replaces line 350."""
    raw = dict(PIECES_SCHEMA)
    if not header:
        raw["options"] = {"header": False, "names": ["y", "a", "note", "x"]}
    lines = ["y,a,note,x"] if header else []
    for i in range(400):
        a = ["", f"u{i % 37}", '"q,uoted"', "\u00fcn\u00ef"][i % 7 % 4]
        x = "" if i % 11 == 0 else f"{np.sin(i) * 100:.6f}"
        lines.append(f"{i % 2},{a},n{i},{x}")
    if bad is not None:
        lines[349] = bad
    text = (newline.join(lines) + (newline if final else "")).encode()
    path = tmp_path / f"log.csv{suffix}"
    opener = {"": open, ".gz": __import__("gzip").open, ".bz2": __import__("bz2").open}[suffix]
    with opener(path, "wb") as handle:
        handle.write(text)
    return str(path), Schema.from_dict(raw)


def _decoded(batches) -> pa.Table:
    """The batches as one table, dictionary columns as their strings."""
    table = pa.Table.from_batches(list(batches)).combine_chunks()
    return pa.table({name: column.cast(column.type.value_type)
                     if pa.types.is_dictionary(column.type) else column
                     for name, column in zip(table.column_names, table.columns, strict=True)})


@pytest.mark.parametrize("header, newline, final, suffix", [
    (True, "\n", True, ""), (False, "\n", True, ""), (True, "\r\n", True, ""),
    (False, "\r\n", False, ""), (True, "\n", False, ""), (False, "\n", False, ""),
    (True, "\r\n", False, ".gz"), (False, "\n", True, ".bz2")])
def test_csv_read_in_pieces_equals_one_piece(tmp_path, monkeypatch, header, newline, final,
                                             suffix) -> None:
    """A CSV parsed in pieces of 1 KiB (about 9 pieces) gives the rows of a one-piece read
    and the batches of pyarrow's streaming reader with 1 KiB blocks (the earlier reader)."""
    import pyarrow.csv as pa_csv

    from jaxembed.data import readers

    path, schema = _pieces_log(tmp_path, header=header, newline=newline, final=final,
                               suffix=suffix)
    whole = _decoded(record_batches(path, schema, dictionary=True))
    assert whole.num_rows == 400 and whole.column("a").null_count > 0
    assert whole.column("a").to_pylist()[:4] == [None, "u1", "q,uoted", "\u00fcn\u00ef"]
    monkeypatch.setattr(readers, "BLOCK_BYTES", 1024)
    batches = list(record_batches(path, schema, dictionary=True))
    assert len(batches) >= 8
    assert _decoded(batches).equals(whole)
    plan = readers.ColumnPlan.of(schema, dictionary=True)
    streaming = pa_csv.open_csv(
        path, read_options=pa_csv.ReadOptions(
            block_size=1024, column_names=None if header else ["y", "a", "note", "x"]),
        convert_options=pa_csv.ConvertOptions(
            column_types=plan.fixed, include_columns=list(plan.types),
            strings_can_be_null=True, quoted_strings_can_be_null=True))
    expected = [b for b in streaming if b.num_rows]
    assert [b.num_rows for b in batches] == [b.num_rows for b in expected]
    for got, want in zip(batches, expected, strict=True):
        assert _decoded([got]).equals(_decoded([want]))
    built = Vocabularies.build(batches, schema, seed=1)
    again = Vocabularies.build(expected, schema, seed=1)
    assert built.tables == again.tables and built.dense == again.dense
    threads = __import__("threading").active_count()
    stopped = record_batches(path, schema)
    next(stopped)
    stopped.close()  # a consumer that stops early leaves no helper thread behind
    assert __import__("threading").active_count() == threads


@pytest.mark.parametrize("header", [True, False])
def test_csv_error_in_a_later_piece_names_its_line(tmp_path, monkeypatch, header) -> None:
    from jaxembed.data import readers

    monkeypatch.setattr(readers, "BLOCK_BYTES", 1024)
    for bad, message in (("0,u2,n2", "line 350: 3 fields"),
                         ("0,u2,n2,cheap", "line 350, column 'x': value 'cheap' is not")):
        path, schema = _pieces_log(tmp_path, header=header, bad=bad)
        with pytest.raises(DataError, match=message):
            list(record_batches(path, schema, dictionary=True))


def test_csv_line_end_split_between_pieces(tmp_path, monkeypatch) -> None:
    """A ``\\r\\n`` whose ``\\r`` is the last byte of a 1 KiB read: the piece ends after the
    ``\\r`` (as the streaming reader's block does) and the next starts with an empty line."""
    from jaxembed.data import readers

    rows = [f"{i % 2},u{i % 5},n{i:04d}{'p' * 5 if i == 0 else ''},{i % 10}.5\r\n"
            for i in range(200)]
    text = "y,a,note,x\r\n" + "".join(rows)
    assert text[1023:1025] == "\r\n"
    path = tmp_path / "log.csv"
    path.write_bytes(text.encode())
    schema = Schema.from_dict(PIECES_SCHEMA)
    whole = _decoded(record_batches(str(path), schema))
    monkeypatch.setattr(readers, "BLOCK_BYTES", 1024)
    pieces = list(readers._pieces(str(path), 1024))
    assert pieces[0].endswith(b"\r") and pieces[1].startswith(b"\n1,u3,n0063,")
    batches = list(record_batches(str(path), schema))
    assert [b.num_rows for b in batches[:2]] == [63, 64]
    assert _decoded(batches).equals(whole) and whole.num_rows == 200
    assert whole.column("x").to_pylist()[60:64] == [0.5, 1.5, 2.5, 3.5]


@pytest.mark.parametrize("text, suffix, message", [
    ("y,a,note,x\n", "", "has no rows"), ("y,a,note,x", "", "has no rows"),
    ("y,a,note,x\r\n", ".gz", "has no rows"), ("", ".gz", "has no column 'y'")])
def test_csv_with_only_a_header_has_no_rows(tmp_path, text, suffix, message) -> None:
    path = tmp_path / f"log.csv{suffix}"
    opener = {"": open, ".gz": __import__("gzip").open}[suffix]
    with opener(path, "wb") as handle:
        handle.write(text.encode())
    with pytest.raises(DataError, match=message):
        list(record_batches(str(path), Schema.from_dict(PIECES_SCHEMA)))


def test_label_threshold(tmp_path) -> None:
    raw = __import__("tomllib").loads(
        '[label]\ncolumn="rating"\nthreshold=4\n[[feature]]\nname="u"\nkind="categorical"\n')
    graded = Schema.from_dict(raw)
    table = pa.table({"rating": [1.0, 4.0, 5.0, 3.5], "u": ["a", "b", "a", "c"]})
    vocab = Vocabularies.build(record_batches(table, graded), graded)
    assert vocab.positives == 2
    np.testing.assert_array_equal(Encoder(graded, vocab).encode(
        next(record_batches(table, graded)))["label"], [0, 1, 1, 0])


# --- vocabularies: the Arrow lookup equals the literal Vocabulary --------------------------------
@settings(max_examples=30, deadline=None)
@given(tokens=st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=3), min_size=1,
                       max_size=40),
       queries=st.lists(st.text(alphabet="abcxyzq", min_size=1, max_size=3), max_size=40),
       min_count=st.integers(1, 3), buckets=st.integers(1, 5), seed=st.integers(0, 9))
def test_field_vocab_equals_vocabulary(tokens, queries, min_count, buckets, seed) -> None:
    """id(t) = index(t) in the vocabulary, V + h_s(t) mod B otherwise: FieldVocab.ids (Arrow,
    whole column) equals Vocabulary.lookup (the literal per-key rule)."""
    from collections import Counter

    counts = Counter(tokens)
    fast = FieldVocab.from_counts(counts, min_count=min_count, oov_buckets=buckets, seed=seed)
    literal = Vocabulary.from_counts(counts, min_count=min_count, num_oov_buckets=buckets,
                                     seed=seed)
    assert fast.tokens == list(literal.tokens)
    if queries:
        np.testing.assert_array_equal(fast.ids(pa.array(queries), "test"),
                                      literal.lookup_strings(queries))


def test_vocabularies_file_round_trip(schema: Schema, tmp_path) -> None:
    vocab = Vocabularies.build(record_batches(_log(200), schema), schema)
    vocab.save(tmp_path / "v.json")
    again = Vocabularies.load(tmp_path / "v.json")
    assert again.tables["item"].tokens == vocab.tables["item"].tokens
    assert again.dense == vocab.dense and again.rows == 200
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        Vocabularies.load(tmp_path / "bad.json")


# --- the encoder: multi-valued padding, sharing, crosses (literal twins) -------------------------
def test_encoder_matches_literal_forms(schema: Schema) -> None:
    table = _log(120, seed=3)
    vocab = Vocabularies.build(record_batches(table, schema), schema)
    encoder = Encoder(schema, vocab)
    chunk = encoder.encode(next(record_batches(table, schema)))
    tags = table["tags"].to_pylist()
    item_vocab = vocab.tables["item"]
    # multi: the first max_len values' ids, padded with -1 (missing -> the "" category)
    expected = [[vocab.tables["tags"].ids(pa.array([v]), "t")[0]
                 for v in (t.split("|") if t else [""])][:8] for t in tags]
    assert Bags(chunk["ids/tags"]).to_lists()[0] == expected
    # share: recent_items indexes the item table with the item vocabulary
    recent = [[item_vocab.ids(pa.array([v]), "t")[0] for v in r.split("|")]
              for r in table["recent_items"].to_pylist()]
    assert Bags(chunk["ids/recent_items"]).to_lists()[0] == recent
    # cross: one id per (user, tag) pair of each row, the literal hash chain
    offset = 0
    seed = encoder.seed + int(__import__("jaxembed.data.encode", fromlist=["_salt"])
                              ._salt("user×tags"))
    for row in range(len(table)):
        literal = []
        for tag in chunk["ids/tags"][row]:
            if tag < 0:
                continue
            g = np.array([seed_key(seed)], np.uint64)
            for value in (chunk["ids/user"][row, 0], tag):
                h = mix64(np.array([value], np.int64).astype(np.uint64))
                g = mix64((g + np.uint64(GAMMA)) ^ h)
            g = g[0]
            literal.append(offset + int(g % np.uint64(100_000)))
        got = [int(x) for x in chunk["wide"][row] if x >= 0]
        assert sorted(got) == sorted(literal)
    assert encoder.inputs.table("item").rows == item_vocab.size
    assert encoder.inputs.histories("item") == ("recent_items",)


def test_dense_transform_and_missing() -> None:
    raw = __import__("tomllib").loads(
        '[label]\ncolumn="y"\n[[feature]]\nname="x"\nkind="dense"\n'
        '[[feature]]\nname="b"\nkind="dense"\nbuckets=4\ncolumn="x"\n')
    s = Schema.from_dict(raw)
    x = [1.0, 2.0, 3.0, 4.0, None, 6.0, 7.0, 8.0]
    table = pa.table({"y": [0, 1] * 4, "x": pa.array(x, pa.float64())})
    vocab = Vocabularies.build(record_batches(table, s), s)
    chunk = Encoder(s, vocab).encode(next(record_batches(table, s)))
    present = np.array([v for v in x if v is not None])
    np.testing.assert_allclose(chunk["dense"][[0, 1, 2, 3, 5, 6, 7], 0],
                               (present - present.mean()) / present.std(), rtol=1e-5)
    assert chunk["dense"][4, 0] == 0.0  # missing = the training mean
    assert chunk["ids/b"][4, 0] == len(vocab.dense["b"].boundaries) + 1  # the missing bucket
    assert list(chunk["ids/b"][[0, 7], 0]) == [0, len(vocab.dense["b"].boundaries)]


# --- loader: Grain position, shuffling, processes ------------------------------------------------
@pytest.fixture(scope="module")
def criteo_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("criteo")
    table, _ = criteo_like(3000, 0)
    s = criteo_schema()
    vocab = Vocabularies.build(record_batches(table, s), s)
    return write_store(record_batches(table, s), Encoder(s, vocab), folder / "store",
                       chunk_rows=500)


def test_epoch_covers_every_row_once(criteo_store: Store) -> None:
    source = EpochSource(criteo_store, batch_size=128, seed=3, epoch=1, window=2)
    labels = np.concatenate([source[i]["label"][source[i]["mask"] > 0]
                             for i in range(len(source))])
    dense = np.concatenate([source[i]["dense"][source[i]["mask"] > 0]
                            for i in range(len(source))])
    everything = np.concatenate([c["dense"] for c in criteo_store.chunks()])
    assert labels.size == criteo_store.num_rows
    np.testing.assert_array_equal(np.sort(dense, axis=0), np.sort(everything, axis=0))
    other = EpochSource(criteo_store, batch_size=128, seed=3, epoch=2, window=2)
    assert not np.array_equal(source[0]["dense"], other[0]["dense"])


def test_two_processes_read_disjoint_halves(criteo_store: Store) -> None:
    halves = [EpochSource(criteo_store, batch_size=100, seed=0, epoch=0, process=p,
                          processes=2) for p in (0, 1)]
    rows = [np.concatenate([h[i]["dense"][h[i]["mask"] > 0] for i in range(len(h))])
            for h in halves]
    assert abs(rows[0].shape[0] - rows[1].shape[0]) <= 500
    assert rows[0].shape[0] + rows[1].shape[0] == criteo_store.num_rows
    keys = [{r.tobytes() for r in part} for part in rows]
    assert not keys[0] & keys[1]


def test_grain_state_resumes_at_the_same_batch(criteo_store: Store) -> None:
    options = {"batch_size": 64, "seed": 1, "epoch": 0, "window": 2}
    iterator = epoch_iterator(criteo_store, **options)
    for _ in range(7):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator)["dense"] for _ in range(3)]
    resumed = epoch_iterator(criteo_store, state=json.loads(json.dumps(state)), **options)
    for want in expected:
        np.testing.assert_array_equal(next(resumed)["dense"], want)


# --- fit / evaluate / predict -------------------------------------------------------------------
def _params(run: runs.Run) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(run.trainer.params())]


def test_fit_evaluate_predict(schema: Schema, tmp_path) -> None:
    train, test = _log(3000, 1), _log(800, 2)
    run = runs.fit(schema, train, model="wide_deep", out=tmp_path / "run", epochs=2,
                   batch_size=128, hidden=[16])
    summary = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert summary["examples_per_s"] > 0 and summary["wall_s"] > 0
    assert [e["epoch"] for e in summary["epochs"]] == list(range(1, len(run.history) + 1))
    figures = scoring.evaluate(tmp_path / "run", test)
    assert figures["rows"] == 800 and figures["auc"] > 0.7
    probs = scoring.predict(tmp_path / "run", test.drop_columns(["clicked"]))
    loaded = runs.Run.load(tmp_path / "run")
    assert all(np.array_equal(a, b) for a, b in zip(_params(run), _params(loaded), strict=True))
    _, scored, _ = scoring.labelled_scores(loaded, test)
    np.testing.assert_allclose(probs, scored, rtol=1e-6)
    # values never seen in training go to the OOV buckets
    unseen = test.set_column(1, "user", pa.array([f"new{i}" for i in range(800)]))
    assert np.isfinite(scoring.predict(loaded, unseen)).all()
    written = scoring.predict_to(loaded, test, tmp_path / "scores.parquet")
    assert written == 800
    np.testing.assert_allclose(pq.read_table(tmp_path / "scores.parquet")["score"], probs)
    with pytest.raises(ValueError, match="already holds a fitted run"):
        runs.fit(schema, train, model="lr", out=tmp_path / "run")


def test_a_loaded_run_is_built_abstractly_and_still_trains(schema: Schema, tmp_path) -> None:
    """``Run.load`` builds the model without running its initializers (every parameter is
    restored); its optimizer states, never stored in ``params/``, are made on the first step
    and equal a concrete trainer's: one step of both gives the same parameters."""
    from jaxembed.data.loader import sequential_batches
    from jaxembed.models import registry
    from jaxembed.train.field_trainer import FieldTrainer, is_abstract

    runs.fit(schema, _log(600, 1), model="wide_deep", out=tmp_path / "run", epochs=1,
             batch_size=128, hidden=[8])
    loaded = runs.Run.load(tmp_path / "run")
    assert is_abstract(loaded.trainer.table_states) and not is_abstract(loaded.trainer.tables)
    concrete = FieldTrainer(registry.build("wide_deep", loaded.encoder.inputs, hidden=[8]),
                            loaded.config)
    concrete.set_params(jax.tree.map(np.array, loaded.trainer.params()))
    store = write_store(record_batches(_log(256, 2), schema), loaded.encoder, tmp_path / "s")
    batch = next(sequential_batches(store, 128))
    loaded.trainer.step(batch)
    concrete.step(batch)
    assert not is_abstract(loaded.trainer.table_states)
    for a, b in zip(jax.tree.leaves(loaded.trainer.params()),
                    jax.tree.leaves(concrete.params()), strict=True):
        np.testing.assert_array_equal(a, b)
    abstract = FieldTrainer(registry.build("wide_deep", loaded.encoder.inputs, hidden=[8],
                                           abstract=True), loaded.config)
    with pytest.raises(ValueError, match="built abstractly"):
        abstract.step(batch)
    # host (numpy) parameters, as an update's copies of its parent's: the step is one
    # program, not one for the first call's uncommitted inputs and another for the rest
    import dataclasses

    host = FieldTrainer(registry.build("wide_deep", loaded.encoder.inputs, hidden=[8]),
                        dataclasses.replace(loaded.config, seed=12345))
    host.set_params(jax.tree.map(np.array, loaded.trainer.params()))
    for _ in range(3):
        host.step(batch)
    assert host._step._cache_size() == 1


def test_resume_equals_uninterrupted_bit_for_bit(schema: Schema, tmp_path, monkeypatch) -> None:
    """A run cut in the middle of an epoch and resumed from its last checkpoint (loader
    position included) ends with the same parameters and metrics as an uninterrupted one."""
    path = str(tmp_path / "train.parquet")
    pq.write_table(_log(1200, 4), path)
    options = {"model": "lr", "batch_size": 128, "epochs": 2, "patience": 0}
    whole = runs.fit(schema, path, out=tmp_path / "whole", **options)
    steps = len(runs.iterator_source(
        runs.Store.open(tmp_path / "whole" / "cache" / "train"), whole.config, 0, 0, 1))
    real_step = runs.FieldTrainer.step
    calls = {"n": 0}

    def crashing(self, batch):
        calls["n"] += 1
        if calls["n"] == steps + 6:  # in epoch 2, after its checkpoint at step 4
            raise KeyboardInterrupt
        return real_step(self, batch)

    monkeypatch.setattr(runs.FieldTrainer, "step", crashing)
    with pytest.raises(KeyboardInterrupt):
        runs.fit(schema, path, out=tmp_path / "cut", checkpoint_every=4, **options)
    monkeypatch.setattr(runs.FieldTrainer, "step", real_step)
    resumed = runs.fit(schema, path, out=tmp_path / "cut", resume=True, **options)
    assert [h["auc"] for h in resumed.history] == [h["auc"] for h in whole.history]
    assert all(np.array_equal(a, b) for a, b in zip(_params(whole), _params(resumed),
                                                    strict=True))


def test_fit_bad_input(schema: Schema, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown model 'nope'; available: .*lr"):
        runs.fit(schema, _log(100), model="nope", out=tmp_path / "a")
    with pytest.raises(ValueError, match="unknown option 'depth'"):
        runs.fit(schema, _log(100), model="lr", out=tmp_path / "b", depth=3)
    with pytest.raises(DataError, match="no column 'zip'"):
        runs.fit(schema, _log(100).drop_columns(["zip"]), model="lr", out=tmp_path / "c")
    with pytest.raises(ValueError, match="nothing to resume"):
        runs.fit(schema, _log(100), model="lr", out=tmp_path / "d", resume=True)
    assert not os.path.exists(tmp_path / "d" / "model.json")



def test_auto_batch_size_follows_the_training_rows(schema: Schema, tmp_path) -> None:
    """``batch_size="auto"`` (the default): the largest power of two with at least 1,024
    steps an epoch, within [256, 1024]; fit stores the number it resolved."""
    assert FitConfig().batch_size == "auto"
    assert [auto_batch_size(n) for n in (1, 40_000, 524_287, 524_288, 1_048_575,
                                         1_048_576, 10**8)] == [256, 256, 256, 512, 512,
                                                                1024, 1024]
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1 or 'auto', "
                                         "got 'big'"):
        FitConfig(batch_size="big")
    with pytest.raises(ValueError, match="rows must be an integer >= 1, got 0"):
        auto_batch_size(0)
    run = runs.fit(schema, _log(600), model="lr", out=tmp_path / "run", epochs=1)
    assert run.config.batch_size == 256
    model = json.loads((tmp_path / "run" / "model.json").read_text())
    assert model["config"]["batch_size"] == 256
    assert runs.Run.load(tmp_path / "run").config.batch_size == 256
    with pytest.raises(DataError, match="make no batch of 256"):
        runs.fit(schema, _log(200), model="lr", out=tmp_path / "small", batch_size="auto")


def test_scoring_takes_whole_batches_up_to_1024_rows() -> None:
    """Validation, evaluate and predict score in calls of the largest multiple of the
    training batch up to 1024 rows (a multiple: it splits over a mesh as the batch does)."""
    assert [scoring_batch(b) for b in (1, 96, 256, 1000, 1024, 4096)] == [
        1024, 960, 1024, 1000, 1024, 4096]


def test_seed_encodings_as_field_kinds() -> None:
    """attach (a cold id takes its first warm ancestor's id), random_code (k-hot) and segment
    (words through a vocabulary, at most max_len) on anyone's data."""
    raw = __import__("tomllib").loads(
        '[label]\ncolumn="y"\n[[feature]]\nname="item"\nkind="attach"\n'
        'parents=["shop","category"]\nmin_count=2\n'
        '[[feature]]\nname="user"\nkind="random_code"\nbuckets=64\nk=3\n'
        '[[feature]]\nname="query"\nkind="segment"\nmax_len=4\n')
    s = Schema.from_dict(raw)
    table = pa.table({"y": [0, 1, 0, 1, 1, 0], "item": ["a", "a", "b", "c", "d", "e"],
                      "shop": ["s1", "s1", "s1", "s2", "s2", "s3"],
                      "category": ["k", "k", "k", "k", "m", "m"],
                      "user": ["u1", "u2", "u1", "u3", "u1", "u2"],
                      "query": ["red shoes", "blue shoes for men and women", None, "red",
                                "shoes", "x"]})
    vocab = Vocabularies.build(record_batches(table, s), s)
    encoder = Encoder(s, vocab)
    chunk = encoder.encode(next(record_batches(table, s)))
    # warm: item a; shops s1, s2; categories k, m (offsets 0, 1, 3)
    assert chunk["ids/item"][:, 0].tolist() == [0, 0, 1, 2, 2, 4]
    assert encoder.inputs.table("item").rows == 6  # 5 warm codes + 1 OOV bucket
    codes = chunk["ids/user"]
    assert codes.shape == (6, 3) and len({tuple(r) for r in codes}) == 3
    assert all(len(set(r)) == 3 for r in codes.tolist())
    assert (codes[0] == codes[2]).all() and (codes[0] == codes[4]).all()
    query = Bags(chunk["ids/query"]).to_lists()[0]
    assert [len(q) for q in query] == [2, 4, 0, 1, 1, 1]
    assert query[0][1] == query[4][0]  # "shoes"


def test_format_1_runs_keep_their_numeric_interactions(tmp_path) -> None:
    """A run of format 1 (before fm and deepfm left the numeric features out of the pairwise
    sum by default; model.json keeps only the hyperparameters given) loads with them in, its
    parameters whole; an unknown format is named."""
    train, _ = criteo_like(600, 0, scale=0.003)
    run = runs.fit(criteo_schema(min_count=1), train, model="fm", out=tmp_path / "run",
                   epochs=1, batch_size=128, dense_interactions=True)
    path = tmp_path / "run" / "model.json"
    meta = json.loads(path.read_text())
    assert meta["format"] == runs.RUN_FORMAT == 3
    assert meta["hyper"] == {"dense_interactions": True}
    meta["format"], meta["hyper"] = 1, {}
    path.write_text(json.dumps(meta))
    loaded = runs.Run.load(tmp_path / "run")
    assert loaded.hyper == {"dense_interactions": True}
    assert all(np.array_equal(a, b) for a, b in zip(_params(run), _params(loaded), strict=True))
    meta["format"] = 4
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="has format 4, this jaxembed reads 1, 2, 3"):
        runs.Run.load(tmp_path / "run")


def test_format_2_runs_keep_their_ftrl_accumulator_start(tmp_path) -> None:
    """A run of format 2 (before ``linear_initial_accumulator``; its linear tables' FTRL
    started at 0.1) loads with 0.1, so ``jaxembed update`` grows and continues it with the
    rule it was fitted with; a format 3 run keeps what it stored."""
    train, _ = criteo_like(600, 0, scale=0.003)
    runs.fit(criteo_schema(min_count=1), train, model="lr", out=tmp_path / "run", epochs=1,
             batch_size=128, linear_initial_accumulator=0.02)
    path = tmp_path / "run" / "model.json"
    meta = json.loads(path.read_text())
    loaded = runs.Run.load(tmp_path / "run")
    assert loaded.config.linear_initial_accumulator == 0.02
    rule = table_rule(LinearTable, loaded.config)
    assert np.all(np.asarray(rule.init(np.zeros((3, 1), np.float32)).accumulators) == 0.02)
    del meta["config"]["linear_initial_accumulator"]
    meta["format"] = 2
    path.write_text(json.dumps(meta))
    assert runs.Run.load(tmp_path / "run").config.linear_initial_accumulator == 0.1
    with pytest.raises(ValueError, match="linear_initial_accumulator must be >= 0, got -1"):
        runs.fit(criteo_schema(min_count=1), train, model="lr", out=tmp_path / "bad",
                 linear_initial_accumulator=-1)


def test_fit_comes_within_002_of_bayes_on_generated_criteo(tmp_path) -> None:
    """On a generated Criteo-format log whose click probability p is known, a factorization
    machine fitted through the whole path reaches a test AUC within 0.02 of the Bayes-optimal
    AUC (the AUC of p itself on the test rows)."""
    from jaxembed.metrics import auc

    train, _ = criteo_like(80_000, 0, scale=0.003)
    test, p = criteo_like(20_000, 1, scale=0.003)
    bayes = auc(test["label"].to_numpy(), p)
    run = runs.fit(criteo_schema(min_count=1), train, model="fm", out=tmp_path / "run",
                   epochs=3)
    got = scoring.evaluate(run, test)["auc"]
    assert bayes - got < 0.02, (bayes, got)
