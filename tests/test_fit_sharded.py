"""Sharded fits on the one data path (``je.fit(..., mesh=...)``, ``jaxembed fit --mesh``).

The ``check_*`` functions need 8 devices: :func:`test_on_8_virtual_cpu_devices` runs them in
one fresh interpreter with 8 virtual CPU devices. They check that

* every layout (row mod + all-gather on a 1-D mesh, row div + all-to-all on ``2x4``,
  column, table on ``2x4``) trains the ``FieldTrainer`` step step for step like one device:
  the same loss at every step, the same tables, optimizer slots and dense parameters after
  the last one (embedding tables of every field kind, shared tables, linear tables, the
  wide crosses);
* a run fitted on 8 devices resumes on 1 device and then on a ``2x4`` mesh table-wise, and
  ends where an uninterrupted one-device run ends; the sharded run's folder predicts and
  evaluates on one device;
* ``jaxembed fit --mesh 2x4 --shard-kind column`` runs the command.

The host-side tests (``test_*``) check the mesh parser, bad configurations, and that a
1-device mesh is the plain trainer.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pyarrow as pa
import pytest

from jaxembed.data.encode import Encoder
from jaxembed.data.loader import EpochSource, write_store
from jaxembed.data.readers import record_batches
from jaxembed.data.schema import Schema
from jaxembed.data.vocabularies import Vocabularies
from jaxembed.models import registry
from jaxembed.sharding.launch import run_pytest
from jaxembed.train import runs, scoring
from jaxembed.train.field_sharding import MeshSpec, ShardedFieldTrainer, make_mesh
from jaxembed.train.field_trainer import FieldTrainer, FitConfig

SCHEMA = """
[label]
column = "y"
[[feature]]
name = "user"
kind = "categorical"
dim = 8
[[feature]]
name = "item"
kind = "categorical"
dim = 8
[[feature]]
name = "recent"
kind = "multi"
separator = "|"
max_len = 3
share = "item"
dim = 8
[[feature]]
name = "zip"
kind = "hashed"
buckets = 37
dim = 4
[[feature]]
name = "price"
kind = "dense"
transform = "log1p"
[[cross]]
fields = ["user", "item"]
buckets = 61
"""
BATCH = 32
STEPS = 3
TOL = dict(rtol=2e-5, atol=2e-6)


def _schema() -> Schema:
    import tomllib

    return Schema.from_dict(tomllib.loads(SCHEMA))


def _log(n: int = 256, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 40, n)
    item = rng.integers(0, 60, n)
    recent = ["|".join(f"i{t}" for t in rng.integers(0, 60, rng.integers(0, 4)))
              for _ in range(n)]
    logit = (user % 3 - 1.0) + (item % 4 - 1.5) * 0.7
    return pa.table({"y": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
                     "user": [f"u{u}" for u in user], "item": [f"i{i}" for i in item],
                     "recent": recent, "zip": [f"z{z}" for z in rng.integers(0, 90, n)],
                     "price": rng.lognormal(2.0, 1.0, n)})


def _batches(tmp_path, steps: int = STEPS) -> tuple[Encoder, list[dict]]:
    schema = _schema()
    table = _log()
    vocab = Vocabularies.build(record_batches(table, schema), schema)
    encoder = Encoder(schema, vocab)
    store = write_store(record_batches(table, schema), encoder, tmp_path / "store")
    source = EpochSource(store, batch_size=BATCH, seed=0, epoch=0)
    return encoder, [source[i] for i in range(steps)]


def _trainer(encoder: Encoder, model: str = "wide_deep", mesh=None, **placement):
    config = FitConfig(batch_size=BATCH)
    hyper = {"hidden": [16]} if "hidden" in registry.hyperparameters(model) else {}
    built = registry.build(model, encoder.inputs, seed=0, **hyper)
    if mesh is None:
        return FieldTrainer(built, config)
    return ShardedFieldTrainer(built, config, mesh, **placement)


def _assert_close(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


def _follow(sharded, reference, batches) -> None:
    """Both trainers on the same batches: the same losses, then the same state."""
    for batch in batches:
        np.testing.assert_allclose(float(sharded.step(batch)), float(reference.step(batch)),
                                   **TOL)
    _assert_close(sharded.payload(), reference.payload())
    np.testing.assert_allclose(sharded.probabilities(batches[0]),
                               reference.probabilities(batches[0]), **TOL)


# --- host side ----------------------------------------------------------------------------------
def test_make_mesh_shapes_and_errors():
    assert make_mesh("1").axis_names == ("model",)
    assert make_mesh("1x1").axis_names == ("data", "model")
    with pytest.raises(ValueError, match="must look like '8' or '2x4'"):
        make_mesh("two")
    with pytest.raises(ValueError, match="must look like"):
        make_mesh("0")
    with pytest.raises(ValueError, match=r"mesh 64 needs 64 devices, the cpu backend has 1"):
        make_mesh("64")


def test_mesh_spec_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        MeshSpec(kind="diagonal")
    with pytest.raises(ValueError, match="strategy must be 'mod' or 'div'"):
        MeshSpec(strategy="hash")
    with pytest.raises(ValueError, match="route must be one of"):
        MeshSpec(route="broadcast")
    with pytest.raises(TypeError, match="mesh must be a shape"):
        MeshSpec.of(2.5)
    with pytest.raises(ValueError, match="needs 8 devices"):
        runs.fit(_schema(), _log(), model="lr", out=tmp_path / "r", mesh="8", batch_size=BATCH)


def test_one_device_mesh_equals_field_trainer(tmp_path):
    encoder, batches = _batches(tmp_path, 2)
    _follow(_trainer(encoder, "lr", mesh=make_mesh("1"), kind="table"), _trainer(encoder, "lr"),
            batches)


# --- on 8 virtual devices (run by test_on_8_virtual_cpu_devices) --------------------------------
@pytest.mark.parametrize("shape, kind, strategy, route, model", [
    ("8", "row", "mod", "all_gather", "wide_deep"),
    ("2x4", "row", "div", "all_to_all", "wide_deep"),
    ("8", "column", "mod", "all_gather", "wide_deep"),
    ("2x4", "table", "mod", "all_gather", "wide_deep"),
])
def check_step_for_step(tmp_path, shape, kind, strategy, route, model):
    assert jax.device_count() == 8
    encoder, batches = _batches(tmp_path)
    sharded = _trainer(encoder, model, make_mesh(shape), kind=kind, strategy=strategy,
                       route=route)
    for storage in sharded.tables:  # really spread over the mesh
        assert all(len(a.sharding.device_set) == 8 for a in storage.values())
    _follow(sharded, _trainer(encoder, model), batches)


def check_checkpoint_resumes_on_other_device_counts(tmp_path):
    """8 devices row-wise → 1 device → 2x4 table-wise, one epoch each, equals three
    uninterrupted epochs on one device; the sharded run scores on one device."""
    schema, data = _schema(), _log()
    options = dict(model="lr", valid=_log(64, 1), batch_size=BATCH, patience=0)
    out = tmp_path / "run"
    sharded = runs.fit(schema, data, out=out, epochs=1, mesh="8", **options)
    probs = scoring.predict(out, data)  # the folder, on one device
    assert probs.shape == (256,) and scoring.evaluate(out, data)["rows"] == 256
    np.testing.assert_allclose(scoring.predict(sharded, data), probs, **TOL)  # sharded scoring
    from jaxembed import serving

    serving.export(sharded, tmp_path / "served")  # the in-process sharded run exports
    np.testing.assert_allclose(serving.load(tmp_path / "served")(data), probs, **TOL)
    runs.fit(schema, data, out=out, epochs=2, resume=True, **options)
    resumed = runs.fit(schema, data, out=out, epochs=3, resume=True,
                       mesh=MeshSpec("2x4", kind="table"), **options)
    whole = runs.fit(schema, data, out=tmp_path / "whole", epochs=3, **options)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    np.testing.assert_allclose([h["loss"] for h in resumed.history],
                               [h["loss"] for h in whole.history], **TOL)
    _assert_close(resumed.trainer.params(), whole.trainer.params())
    _assert_close(runs.Run.load(out).trainer.params(), whole.trainer.params())


def check_cli_fit_with_mesh(tmp_path):
    from jaxembed.cli import main

    (tmp_path / "s.toml").write_text(SCHEMA)
    import pyarrow.parquet as pq

    pq.write_table(_log(), tmp_path / "t.parquet")
    out = tmp_path / "run"
    assert main(["fit", "--schema", str(tmp_path / "s.toml"), "--train",
                 str(tmp_path / "t.parquet"), "--model", "lr", "--out", str(out), "--epochs",
                 "1", "--batch-size", "32", "--mesh", "2x4", "--shard-kind", "column",
                 "--quiet"]) == 0
    summary = json.loads((out / "fit.json").read_text())
    assert summary["mesh"]["shape"] == "2x4" and summary["mesh"]["devices"] == 8


def check_update_of_a_sharded_run(tmp_path):
    """A run fitted on 8 devices updates on one (its logical tables and optimizer state)."""
    import jaxembed as je

    schema, data = _schema(), _log()
    fitted = runs.fit(schema, data, model="lr", valid=_log(64, 1), batch_size=BATCH,
                      epochs=1, out=tmp_path / "run", mesh="8")
    updated = je.update(fitted, _log(128, 2), out=tmp_path / "updated", batch_size=BATCH)
    lineage = json.loads((tmp_path / "updated" / "lineage.json").read_text())
    assert lineage["optimizer_state"] == "continued" and lineage["rows"] == 128
    assert np.all(np.isfinite(scoring.predict(updated, data)))


def test_on_8_virtual_cpu_devices():
    run_pytest(__file__, "check_", 8, expect_passed=7, timeout=400)



@pytest.mark.parametrize("extra, message", [
    (["--shard-kind", "table"], "--shard-kind only applies with --mesh"),
    (["--mesh", "8", "--coordinator", "127.0.0.1:1"], "needs --coordinator, --num-processes"),
    (["--mesh", "3", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "0"],
     "does not split over 2 processes"),
    (["--mesh", "64"], "--mesh 64 needs 64 devices"),
])
def test_cli_mesh_bad_input(tmp_path, capsys, extra, message):
    from jaxembed.cli import main

    (tmp_path / "s.toml").write_text(SCHEMA)
    (tmp_path / "t.csv").write_text("y,user,item,recent,zip,price\n1,a,b,c,d,1.0\n")
    code = main(["fit", "--schema", str(tmp_path / "s.toml"), "--train",
                 str(tmp_path / "t.csv"), "--out", str(tmp_path / "run"), *extra])
    assert code == 2 and message in capsys.readouterr().err
