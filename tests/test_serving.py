"""Serving: an exported run scores raw records as the in-process model does, without the
training code; bad folders and bad records give errors that name the problem."""

import functools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.data.criteo_like import criteo_like
from jaxembed.data.readers import DataError, record_batches
from jaxembed.data.schema import Schema
from jaxembed.serving import ServingError
from jaxembed.serving.folder import FUNCTION, MANIFEST, VOCABULARIES
from jaxembed.serving.served import padded_size
from jaxembed.train import runs, scoring

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCHEMA = Schema.from_dict({
    "label": {"column": "label"},
    "feature": [
        {"name": "I1", "kind": "dense", "transform": "log1p"},
        {"name": "I2", "kind": "dense", "transform": "none", "missing": "zero"},
        {"name": "C1", "kind": "categorical", "min_count": 3, "oov_buckets": 2},
        {"name": "C2", "kind": "categorical", "min_count": 3},
        {"name": "C3", "kind": "categorical", "min_count": 3, "missing": "empty"},
        {"name": "C4", "kind": "hashed", "buckets": 64},
        {"name": "tags", "kind": "multi", "min_count": 3, "max_len": 3, "combiner": "mean"},
    ],
    "cross": [{"fields": ["C1", "tags"], "buckets": 97}],
    "options": {"group": "C5", "dim": 8},
})


def log(n, seed):
    """A Criteo-format log with a multi-valued column; a different seed draws new values
    (most rare ones unseen in training, so they go to the OOV buckets)."""
    table, _ = criteo_like(n, seed=seed)
    tags = [None if a is None else f"{a}|{b or ''}|{c or ''}|{a}"
            for a, b, c in zip(table["C6"].to_pylist(), table["C7"].to_pylist(),
                               table["C8"].to_pylist(), strict=True)]
    return table.append_column("tags", pa.array(tags, pa.string()))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    train = log(1500, seed=0)
    out = {}
    for model, hyper in (("wide_deep", {"hidden": (16,)}), ("lr", {})):
        folder = tmp_path_factory.mktemp(model)
        run = runs.fit(SCHEMA, train, model=model, out=folder / "run", epochs=1,
                       batch_size=128, **hyper)
        served = je.serving.export(run, folder / "served", platforms=("cpu",))
        out[model] = run, served
    return out


@pytest.fixture(scope="module")
def fresh():
    return log(300, seed=1)


@pytest.mark.parametrize("model", ["wide_deep", "lr"])
def test_served_scores_equal_predict_with_unseen_values(fitted, fresh, model):
    run, served = fitted[model]
    encoded = run.encoder.encode(next(record_batches(fresh, run.schema, labels=False)),
                                 labels=False)
    vocab = run.vocabularies.tables["C1"]
    assert (encoded["ids/C1"] >= len(vocab.tokens)).any(), "no OOV value in the test log"
    expected = scoring.predict(run, fresh)
    got = je.serving.load(served)(fresh)
    assert got.dtype == np.float64 and got.shape == (fresh.num_rows,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_every_record_form_scores_the_same(fitted, fresh, tmp_path):
    _, served = fitted["wide_deep"]
    model = je.serving.load(served)
    part = fresh.slice(0, 37)
    expected = model(part)
    records = part.to_pylist()
    np.testing.assert_array_equal(model(records), expected)
    np.testing.assert_array_equal(model(part.to_batches()[0]), expected)
    np.testing.assert_array_equal(model(part.to_pandas()), expected)
    import pyarrow.parquet as pq

    pq.write_table(part, tmp_path / "part.parquet")
    np.testing.assert_array_equal(model(str(tmp_path / "part.parquet")), expected)
    pl = pytest.importorskip("polars")
    np.testing.assert_array_equal(model(pl.from_arrow(part)), expected)


def test_records_need_only_feature_columns_and_integer_ids_read_as_text(fitted, fresh):
    run, served = fitted["lr"]
    model = je.serving.load(served)
    records = fresh.slice(0, 5).to_pylist()
    for r in records:
        for extra in ("label", "C5", "C9"):  # label and group are not needed for a score
            del r[extra]
    expected = model(records)
    np.testing.assert_allclose(expected, scoring.predict(run, fresh.slice(0, 5)), rtol=1e-5,
                               atol=1e-6)
    # an integer id in a categorical column is its decimal text, as in a file
    as_int = [dict(r, C4=123) for r in records]
    as_text = [dict(r, C4="123") for r in records]
    np.testing.assert_array_equal(model(as_int), model(as_text))


@given(start=st.integers(0, 60), rows=st.integers(0, 40), max_batch=st.sampled_from([1, 3, 16]),
       as_records=st.booleans())
def test_chunked_padded_scoring_equals_scoring_all_rows_at_once(fitted, fresh, start, rows,
                                                                max_batch, as_records):
    """score(rows[start:start+k]) in padded chunks of at most max_batch rows ==
    score(all rows)[start:start+k]: padding and chunking never change a row's score."""
    _, served = fitted["wide_deep"]
    full = served_model(served, 1024)(fresh.slice(0, 100))
    part = fresh.slice(start, rows)
    got = served_model(served, max_batch)(part.to_pylist() if as_records else part)
    assert got.shape == (rows,)
    np.testing.assert_allclose(got, full[start:start + rows], rtol=1e-6, atol=1e-7)


@functools.cache
def served_model(folder, max_batch):
    return je.serving.load(folder, max_batch=max_batch)


def test_padded_sizes_are_few_powers_of_two():
    assert [padded_size(n, 4096) for n in (1, 8, 9, 1000, 4096)] == [8, 8, 16, 1024, 4096]
    assert padded_size(1000, 1024) == 1024
    assert padded_size(30, 20) == 20


def test_the_function_has_a_symbolic_batch_and_params_are_plain_npy(fitted):
    _, served = fitted["wide_deep"]
    manifest = json.loads(open(os.path.join(served, MANIFEST)).read())
    exported = je.serving.load(served).exported
    dims = {str(a.shape[0]) for a in exported.in_avals if a.ndim == 2 and "b" in str(a.shape)}
    assert dims == {"b"}
    for entry in manifest["params"]:
        array = np.load(os.path.join(served, entry["file"]), allow_pickle=False)
        assert list(array.shape) == entry["shape"]


def test_loading_needs_no_training_code(fitted, fresh, tmp_path):
    _, served = fitted["wide_deep"]
    records = tmp_path / "records.parquet"
    import pyarrow.parquet as pq

    pq.write_table(fresh.slice(0, 20), records)
    script = textwrap.dedent(f"""
        import sys
        import flax.nnx as nnx
        def refuse(cls, *args, **kwargs):
            raise AssertionError(f"a flax module was built: {{cls}}")
        type(nnx.Module).__call__ = refuse
        import pyarrow.parquet as pq
        import jaxembed.serving as serving
        scores = serving.load({str(served)!r})(pq.read_table({str(records)!r}))
        assert scores.shape == (20,)
        # (flax and optax themselves are imported: flax.nnx imports optax, and the encoder's
        # import of jaxembed.models.inputs runs jaxembed/models/__init__.py)
        training = [m for m in sys.modules if m.startswith(("jaxembed.train", "orbax",
                    "grain", "jaxembed.models.registry", "jaxembed.models.wide_deep",
                    "jaxembed.models.lr", "jaxembed.serving.exporter", "jaxembed.nn.fields"))]
        assert not training, training
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


# --- bad input -------------------------------------------------------------------------------
def copy_of(served, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(served, target)
    return target


def test_another_format_version_is_refused(fitted, tmp_path):
    folder = copy_of(fitted["lr"][1], tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["format"] = 99
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ServingError, match="format 99"):
        je.serving.load(folder)


@pytest.mark.parametrize("name", [FUNCTION, VOCABULARIES, "params/0000.npy", MANIFEST])
def test_a_missing_file_is_named(fitted, tmp_path, name):
    folder = copy_of(fitted["lr"][1], tmp_path)
    os.unlink(folder / name)
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        je.serving.load(folder)


def test_no_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        je.serving.load(tmp_path / "nowhere")


def test_a_param_file_of_the_wrong_shape_is_named(fitted, tmp_path):
    folder = copy_of(fitted["lr"][1], tmp_path)
    np.save(folder / "params/0000.npy", np.zeros((3, 3), np.float32))
    with pytest.raises(ServingError, match=r"0000\.npy"):
        je.serving.load(folder)


def test_another_platform_is_named(fitted, tmp_path):
    folder = copy_of(fitted["lr"][1], tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["platforms"] = ["tpu"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ServingError, match="exported for tpu"):
        je.serving.load(folder)


def test_vocabularies_of_another_export_are_refused(fitted, tmp_path):
    folder = copy_of(fitted["lr"][1], tmp_path)
    vocab = json.loads((folder / VOCABULARIES).read_text())
    vocab["tables"]["C2"]["tokens"].pop()
    vocab["tables"]["C2"]["counts"].pop()
    (folder / VOCABULARIES).write_text(json.dumps(vocab))
    with pytest.raises(ServingError, match="table 'C2'"):
        je.serving.load(folder)


def test_missing_columns_are_named(fitted, fresh):
    model = je.serving.load(fitted["lr"][1])
    records = fresh.slice(0, 3).to_pylist()
    del records[2]["C3"]
    with pytest.raises(DataError, match="record 2 has no column 'C3'"):
        model(records)
    with pytest.raises(DataError, match="'tags'"):
        model(fresh.drop_columns(["tags"]))
    with pytest.raises(TypeError, match="list"):
        model(records[0])
    with pytest.raises(DataError, match="'I1'"):
        model([dict(records[0], I1="many")])


def test_export_replaces_only_a_served_folder_and_only_when_complete(fitted, tmp_path,
                                                                    monkeypatch):
    run, served = fitted["lr"]
    other = tmp_path / "not-served"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not-served"):
        je.serving.export(run, other, platforms=("cpu",))
    assert (other / "precious.txt").read_text() == "keep me"

    target = copy_of(served, tmp_path)
    before = sorted(os.listdir(target))
    import jaxembed.serving.exporter as exporter

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(exporter.np, "save", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        je.serving.export(run, target, platforms=("cpu",))
    monkeypatch.undo()
    assert sorted(os.listdir(target)) == before
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")], "temp folder left"
    je.serving.export(run, target, platforms=("cpu",))
    np.testing.assert_array_equal(je.serving.load(target)(log(5, 2)),
                                  je.serving.load(served)(log(5, 2)))


def test_export_rejects_an_unknown_platform(fitted, tmp_path):
    with pytest.raises(ValueError, match="'gpu'"):
        je.serving.export(fitted["lr"][0], tmp_path / "s", platforms=("gpu",))


def test_export_command(fitted, tmp_path, capsys):
    from jaxembed.cli import main

    run, _ = fitted["lr"]
    out = tmp_path / "served"
    assert main(["export", "--run", run.path, "--out", str(out), "--platforms", "cpu"]) == 0
    assert "exported" in capsys.readouterr().out
    np.testing.assert_allclose(je.serving.load(out)(log(4, 3)), scoring.predict(run, log(4, 3)),
                               rtol=1e-5, atol=1e-6)
    assert main(["export", "--run", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "none" in capsys.readouterr().err
    assert main(["export", "--run", run.path, "--out", str(out), "--platforms", "x"]) == 2
