"""The CSV fast path: dictionary-encoded categorical columns, the spool that parses a CSV
once, and fit through them give exactly what the string columns and a second parse gave."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

from jaxembed.data.criteo_like import criteo_like, write_criteo_tsv
from jaxembed.data.encode import Encoder
from jaxembed.data.readers import DataError, record_batches
from jaxembed.data.schema import Schema, criteo_schema
from jaxembed.data.spool import Spool
from jaxembed.data.vocabularies import Vocabularies
from jaxembed.train import runs

TRICKY = ('y,a,b,n\n1,x,"NA",1.5\n0,,null,\n1,"",é,2\n0,NaN,x,-1\n1,"NA",x,3\n0,x,"a,b",\n'
          '1,#N/A,€,4\n')


def _schema(**a_options) -> Schema:
    return Schema.from_dict({"label": {"column": "y"}, "feature": [
        {"name": "a", "kind": "categorical", **a_options},
        {"name": "b", "kind": "categorical", "min_count": 1, "oov_buckets": 3},
        {"name": "n", "kind": "dense", "transform": "log1p"}]})


def _criteo(tmp_path, rows: int = 3000) -> str:
    path = str(tmp_path / "train.txt")
    write_criteo_tsv(criteo_like(rows, 3, scale=0.02)[0], path)
    return path


def _encoded(batches, encoder: Encoder) -> dict[str, np.ndarray]:
    chunks = [encoder.encode(b) for b in batches]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def test_dictionary_columns_hold_the_string_columns_values(tmp_path) -> None:
    """Null cells ("", NA, quoted or not), quotes and non-ASCII text read the same either way,
    in the same batches; only the categorical columns are dictionary-encoded."""
    path = tmp_path / "tricky.csv"
    path.write_text(TRICKY, encoding="utf-8")
    schema = _schema()
    plain = list(record_batches(str(path), schema))
    coded = list(record_batches(str(path), schema, dictionary=True))
    assert [b.num_rows for b in coded] == [b.num_rows for b in plain]
    for p, c in zip(plain, coded, strict=True):
        assert c.schema.field("a").type == pa.dictionary(pa.int32(), pa.string())
        assert c.schema.field("y").type == pa.float64()
        assert c.column("a").dictionary_decode().equals(p.column("a"))
        assert c.column("n").equals(p.column("n"))
    assert plain[0].column("a").null_count == 5  # "", NA (quoted or not), NaN, #N/A
    table = pa.table({"y": [1.0, 0.0], "a": ["x", None], "b": ["u", "v"], "n": [1.0, None]})
    (batch,) = record_batches(table, schema, dictionary=True)
    assert batch.column("a").dictionary_decode().to_pylist() == ["x", None]


@pytest.mark.parametrize("options", [{"missing": "category", "min_count": 1},
                                     {"missing": "empty", "min_count": 2, "oov_buckets": 2},
                                     {"min_count": 1, "oov_buckets": 0},
                                     {"missing": "error"}])
def test_vocabularies_and_ids_equal_the_string_path(tmp_path, options) -> None:
    path = tmp_path / "tricky.csv"
    path.write_text(TRICKY, encoding="utf-8")
    schema = _schema(**options)
    plain = Vocabularies.build(record_batches(str(path), schema), schema, seed=3)
    coded = Vocabularies.build(record_batches(str(path), schema, dictionary=True), schema,
                               seed=3)
    assert coded.tables == plain.tables and coded.dense == plain.dense
    encoder = Encoder(schema, plain, seed=3)
    if options.get("missing") == "error":
        for dictionary in (False, True):
            with pytest.raises(DataError, match="field 'a': row 2 of column 'a' is missing"):
                _encoded(record_batches(str(path), schema, dictionary=dictionary), encoder)
        return
    reference = _encoded(record_batches(str(path), schema), encoder)
    got = _encoded(record_batches(str(path), schema, dictionary=True), encoder)
    for key in reference:
        np.testing.assert_array_equal(got[key], reference[key], err_msg=key)
    unseen = tmp_path / "unseen.csv"
    unseen.write_text("y,a,b,n\n1,x,u,1\n0,zzz,u,2\n", encoding="utf-8")
    if options.get("oov_buckets") == 0:
        for dictionary in (False, True):
            with pytest.raises(DataError, match="value 'zzz' is not in the vocabulary"):
                _encoded(record_batches(str(unseen), schema, dictionary=dictionary), encoder)


def test_criteo_spool_equals_two_parses(tmp_path) -> None:
    """Vocabularies and encoded chunks of a Criteo TSV: the spool's batches (parsed once,
    read back) give what two parses of string columns gave."""
    path = _criteo(tmp_path)
    schema = criteo_schema(min_count=2)
    plain = Vocabularies.build(record_batches(path, schema), schema, seed=1)
    reference = _encoded(record_batches(path, schema), Encoder(schema, plain, seed=1))
    with Spool(path, schema, tmp_path / "cache") as source:
        coded = Vocabularies.build(source.batches(), schema, seed=1)
        assert os.path.isfile(source.path)
        got = _encoded(source.batches(), Encoder(schema, coded, seed=1))
    assert not os.path.exists(source.path)
    assert coded.tables == plain.tables and coded.dense == plain.dense
    assert coded.rows == plain.rows and coded.positives == plain.positives
    for key in reference:
        np.testing.assert_array_equal(got[key], reference[key], err_msg=key)


def test_spool_parses_once_and_keeps_no_partial_file(tmp_path) -> None:
    path = _criteo(tmp_path, 500)
    schema = criteo_schema()
    source = Spool(path, schema, tmp_path / "cache")
    stream = source.batches()
    next(stream)
    stream.close()  # a pass that stops early leaves no spool: the next one parses again
    assert os.listdir(tmp_path / "cache") == []
    first = list(source.batches())
    with open(path, "w") as handle:  # later passes read the spool, not the text
        handle.write("garbage\n")
    again = list(source.batches())
    assert [b.equals(a) for a, b in zip(first, again, strict=True)] == [True] * len(first)
    source.close()
    with pytest.raises(DataError, match="line 1: 1 fields"):
        list(Spool(path, schema, tmp_path / "other").batches())
    assert not os.listdir(tmp_path / "other")
    table = pa.table({"y": [1.0], "a": ["x"], "b": ["u"], "n": [1.0]})
    spool = Spool(table, _schema(), tmp_path / "none")
    assert next(iter(spool.batches())).num_rows == 1 and not os.path.exists(tmp_path / "none")


def test_fit_on_a_csv_equals_fit_on_its_table(tmp_path) -> None:
    """fit reads a CSV through the spool: the vocabularies and stores equal those of the same
    log given as a table, and no spool is left in the run."""
    path = _criteo(tmp_path, 2000)
    schema = criteo_schema(min_count=2)
    table = record_batches(path, schema)
    table = pa.Table.from_batches(list(table))
    options = {"model": "lr", "epochs": 1, "batch_size": 256, "progress": False}
    runs.fit(schema, path, out=tmp_path / "csv", **options)
    runs.fit(schema, table, out=tmp_path / "table", **options)
    for name in ("vocabularies.json",):
        assert (json.loads((tmp_path / "csv" / name).read_text())
                == json.loads((tmp_path / "table" / name).read_text()))
    for store in ("train", "valid"):
        names = sorted(os.listdir(tmp_path / "csv" / "cache" / store))
        assert names == sorted(os.listdir(tmp_path / "table" / "cache" / store))
        for name in names:
            if name.endswith(".npz"):
                a = np.load(tmp_path / "csv" / "cache" / store / name)
                b = np.load(tmp_path / "table" / "cache" / store / name)
                for key in a:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")
    assert sorted(os.listdir(tmp_path / "csv" / "cache")) == ["train", "valid"]
