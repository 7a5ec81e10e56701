"""``je.update``: the online phase on a fitted run (jaxembed/train/update.py).

Small generated logs (an item with its shop as attach parent, a shop, a number, one cross);
the parents are fitted once per module. Checked: a learning rate of 0 changes nothing; the
linear tables' FTRL continues exactly (fit on A + update on B = one FTRL pass over A then B);
the run keeps the optimizer state of its best epoch; the parent run stays byte for byte; an
interrupted update leaves nothing; a retyped or missing column is refused by name; --grow
keeps the old rows and slots and starts new ids from their parent's row; the lineage.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import numpy as np
import pandas as pd
import pytest

import jaxembed as je
from jaxembed.data.loader import Store, epoch_iterator, sequential_batches, write_store
from jaxembed.data.readers import DataError, record_batches
from jaxembed.data.schema import Schema
from jaxembed.models import registry
from jaxembed.train import checkpoint, runs
from jaxembed.train.field_trainer import FieldTrainer
from jaxembed.train.update import online_config, update

SCHEMA = {
    "label": {"column": "y"},
    "feature": [
        {"name": "item", "kind": "attach", "parents": ["shop"], "dim": 4, "min_count": 2},
        {"name": "shop", "kind": "categorical", "dim": 4, "oov_buckets": 2},
        {"name": "x", "kind": "dense"},
    ],
    "cross": [{"fields": ["item", "shop"], "buckets": 32}],
}
BATCH = 64


def frame(n: int, seed: int, items: int = 60, first: int = 0) -> pd.DataFrame:
    """Items ``first .. first + items - 1``, five per shop, clicks from item and number."""
    rng = np.random.default_rng(seed)
    item = first + rng.integers(0, items, n)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(np.sin(item) + 0.5 * x)))).astype(int)
    return pd.DataFrame({"y": y, "item": item.astype(str), "shop": (item // 5).astype(str),
                         "x": x})


def tree_digest(folder) -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.from_dict(SCHEMA)


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory, schema):
    out = tmp_path_factory.mktemp("deep") / "run"
    return runs.fit(schema, frame(1200, 0), valid=frame(300, 1), model="wide_deep",
                    out=out, epochs=1, batch_size=BATCH, hidden=[4])


@pytest.fixture(scope="module")
def lr_run(tmp_path_factory, schema):
    out = tmp_path_factory.mktemp("lr") / "run"
    return runs.fit(schema, frame(1200, 0), valid=frame(300, 1), model="lr", out=out,
                    epochs=1, batch_size=BATCH)


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_a_learning_rate_of_zero_changes_nothing(deep_run, tmp_path):
    new_log = frame(400, 5, first=10)
    new = update(deep_run, new_log, out=tmp_path / "zero", learning_rate=0,
                 linear_learning_rate=0)
    for a, b in zip(_leaves(deep_run.trainer.params()), _leaves(new.trainer.params()),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(je.predict(deep_run, new_log), je.predict(new, new_log))
    # and the default rates do move the model (the check above can fail)
    moved = update(deep_run, new_log, out=tmp_path / "moved")
    assert not np.array_equal(je.predict(deep_run, new_log), je.predict(moved, new_log))


def _continuous_pass(run: runs.Run, new_log: pd.DataFrame, tmp_path) -> FieldTrainer:
    """One trainer, never saved: the fit's epoch on A, then the update's pass over B."""
    fit_trainer = FieldTrainer(registry.build("lr", run.encoder.inputs, seed=0), run.config)
    store = Store.open(os.path.join(run.path, "cache", "train"))
    for batch in epoch_iterator(store, batch_size=BATCH, seed=0, epoch=0,
                                window=run.config.window):
        fit_trainer.step(batch)
    online = FieldTrainer(registry.build("lr", run.encoder.inputs, seed=0),
                          online_config(run.config, {}))
    online.tables, online.table_states = fit_trainer.tables, fit_trainer.table_states
    online.rest = fit_trainer.rest
    b_store = write_store(record_batches(new_log, run.schema), run.encoder, tmp_path / "b")
    for batch in sequential_batches(b_store, BATCH):
        online.step(batch)
    return online


def test_restored_ftrl_state_continues_as_one_uninterrupted_pass(lr_run, tmp_path):
    new_log = frame(500, 6)
    reference = _continuous_pass(lr_run, new_log, tmp_path)
    updated = update(lr_run, new_log, out=tmp_path / "updated")
    template = runs.optimizer_state(updated.trainer)
    _, saved = checkpoint.restore_latest(os.path.join(updated.path, "optimizer"), template)
    assert any(key.startswith("linear:") for key in reference.layout.keys)
    for i, key in enumerate(reference.layout.keys):
        np.testing.assert_allclose(np.asarray(updated.trainer.tables[i]),
                                   np.asarray(reference.tables[i]), rtol=1e-6, atol=1e-7,
                                   err_msg=key)
        for a, b in zip(_leaves(saved["table_states"][i]), _leaves(reference.table_states[i]),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=key)
    # an update that restarted FTRL from fresh slots would not match
    os.rename(os.path.join(lr_run.path, "optimizer"), tmp_path / "aside")
    try:
        fresh = update(lr_run, new_log, out=tmp_path / "fresh")
    finally:
        os.rename(tmp_path / "aside", os.path.join(lr_run.path, "optimizer"))
    assert json.loads((tmp_path / "fresh" / "lineage.json").read_text())[
        "optimizer_state"].startswith("fresh")
    assert not all(np.allclose(np.asarray(a), np.asarray(b)) for a, b in
                   zip(fresh.trainer.tables, reference.tables, strict=True))


def test_the_run_keeps_the_optimizer_state_of_its_best_epoch(schema, tmp_path, monkeypatch):
    aucs = iter([0.9, 0.5])  # epoch 1 is the best, epoch 2 is worse

    def scripted(trainer, store, batch_size):
        return {"auc": next(aucs), "logloss": 0.5}

    monkeypatch.setattr(runs, "evaluate_store", scripted)
    run = runs.fit(schema, frame(600, 0), valid=frame(100, 1), model="lr",
                   out=tmp_path / "run", epochs=2, patience=5, batch_size=BATCH)
    monkeypatch.undo()
    reference = FieldTrainer(registry.build("lr", run.encoder.inputs, seed=0), run.config)
    store = Store.open(os.path.join(run.path, "cache", "train"))
    for batch in epoch_iterator(store, batch_size=BATCH, seed=0, epoch=0,
                                window=run.config.window):
        reference.step(batch)
    _, saved = checkpoint.restore_latest(tmp_path / "run" / "optimizer",
                                         runs.optimizer_state(reference))
    for a, b in zip(_leaves(saved), _leaves(runs.optimizer_state(reference)), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(run.trainer.tables), _leaves(reference.tables), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_parent_stays_intact_and_an_interrupted_update_leaves_nothing(
        deep_run, tmp_path, monkeypatch):
    before = tree_digest(deep_run.path)
    calls = []

    def failing_step(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return original(self, batch)

    original = FieldTrainer.step
    monkeypatch.setattr(FieldTrainer, "step", failing_step)
    with pytest.raises(RuntimeError, match="power cut"):
        update(deep_run, frame(400, 7), out=tmp_path / "half")
    assert len(calls) == 3
    assert os.listdir(tmp_path) == []  # no run, no temporary folder left beside it
    monkeypatch.undo()
    update(deep_run, frame(400, 7), out=tmp_path / "whole", eval=frame(200, 8), grow=True)
    assert tree_digest(deep_run.path) == before


def test_a_schema_mismatch_stops_before_any_update_naming_the_column(deep_run, tmp_path):
    missing = frame(200, 9).drop(columns=["x"])
    with pytest.raises(DataError, match="'x'"):
        update(deep_run, missing, out=tmp_path / "a")
    retyped = frame(200, 9).astype({"item": float})
    with pytest.raises(DataError, match=r"column 'item' is double.*string"):
        update(deep_run, retyped, out=tmp_path / "b")
    text = frame(200, 9)
    text["x"] = ["high" if i == 7 else str(v) for i, v in enumerate(text["x"])]
    text.to_csv(tmp_path.parent / "retyped.csv", index=False)  # a CSV carries no types
    with pytest.raises(DataError, match="line 9, column 'x': value 'high' is not a number"):
        update(deep_run, tmp_path.parent / "retyped.csv", out=tmp_path / "d")
    with pytest.raises(ValueError, match="unknown update option 'hiden'"):
        update(deep_run, frame(200, 9), out=tmp_path / "c", hiden=[3])
    with pytest.raises(ValueError, match="cannot change 'linear_initial_accumulator'"):
        update(deep_run, frame(200, 9), out=tmp_path / "c", linear_initial_accumulator=0.5)
    with pytest.raises(ValueError, match="would overwrite the parent run"):
        update(deep_run, frame(200, 9), out=deep_run.path)
    assert os.listdir(tmp_path) == []


def test_grow_keeps_old_rows_and_slots_and_starts_new_ids_from_their_parent(deep_run, tmp_path):
    # items 60..69 are new (shop 12 and 13 are new too), items 50..59 of shops 10, 11 known
    new_log = frame(600, 10, items=20, first=50)
    frozen = update(deep_run, new_log, out=tmp_path / "grown", grow=True, learning_rate=0,
                    linear_learning_rate=0, embedding_learning_rate=0)
    lineage = json.loads((tmp_path / "grown" / "lineage.json").read_text())
    assert lineage["grown"]["rows"] == {"item": 10, "shop": 2}
    vocab = frozen.vocabularies
    old_items = deep_run.vocabularies.levels["item"][0].tokens
    assert vocab.levels["item"][0].tokens[:len(old_items)] == old_items
    assert sorted(vocab.levels["item"][0].tokens[len(old_items):]) == [str(i) for i in
                                                                      range(60, 70)]
    # each new row starts as the row its id used before: its shop's, or an OOV bucket's
    batch = next(record_batches(new_log, deep_run.schema))
    before = deep_run.encoder.encode(batch)["ids/item"][:, 0]
    after = frozen.encoder.encode(batch)["ids/item"][:, 0]
    keys = deep_run.trainer.layout.keys
    at = len(old_items)
    for i, key in enumerate(keys):
        old, new = np.asarray(deep_run.trainer.tables[i]), np.asarray(frozen.trainer.tables[i])
        if key in ("embedding:item", "linear:item"):
            assert new.shape[0] == old.shape[0] + 10
            np.testing.assert_array_equal(new[:at], old[:at])
            np.testing.assert_array_equal(new[at + 10:], old[at:])
            grown = (after >= at) & (after < at + 10)
            assert grown.sum() > 0 and (before[grown] < at).sum() == 0
            np.testing.assert_array_equal(new[after[grown]], old[before[grown]])
    # trained: old embedding rows and slots stay, grown rows learn
    trained = update(deep_run, new_log, out=tmp_path / "trained", grow=True)
    template = runs.optimizer_state(trained.trainer)
    _, saved = checkpoint.restore_latest(tmp_path / "trained" / "optimizer", template)
    _, parent_state = checkpoint.restore_latest(os.path.join(deep_run.path, "optimizer"),
                                                runs.optimizer_state(deep_run.trainer))
    i = keys.index("embedding:item")
    old, new = np.asarray(deep_run.trainer.tables[i]), np.asarray(trained.trainer.tables[i])
    np.testing.assert_array_equal(new[:at], old[:at])
    np.testing.assert_array_equal(new[at + 10:], old[at:])
    assert not np.array_equal(new[at:at + 10], np.asarray(frozen.trainer.tables[i])[at:at + 10])
    for a, b in zip(_leaves(parent_state["table_states"][i]), _leaves(saved["table_states"][i]),
                    strict=True):
        if a.ndim == 2:
            np.testing.assert_array_equal(b[:at], a[:at])
            np.testing.assert_array_equal(b[at + 10:], a[at:])
    assert json.loads((tmp_path / "trained" / "vocabularies.json").read_text())[
        "levels"]["item"][0]["tokens"][at:] == vocab.levels["item"][0].tokens[at:]


def test_the_lineage_records_parent_data_rows_and_metrics(deep_run, tmp_path):
    path = tmp_path / "day2.parquet"
    frame(300, 11).to_parquet(path)
    update(deep_run, str(path), out=tmp_path / "r2", eval=frame(200, 12))
    lineage = json.loads((tmp_path / "r2" / "lineage.json").read_text())
    assert lineage["parent"] == os.path.abspath(deep_run.path)
    assert lineage["data"]["path"] == str(path) and lineage["rows"] == 300
    assert lineage["steps"] == -(-300 // BATCH)
    assert lineage["optimizer_state"] == "continued"
    assert lineage["options"]["freeze_embeddings"] is True
    assert lineage["options"]["dense_optimizer"] == "sgd"
    for when in ("before", "after"):
        assert set(lineage["eval"][when]) >= {"auc", "logloss", "calibration", "rows"}
    # an update of the update keeps the chain
    update(tmp_path / "r2", frame(200, 13), out=tmp_path / "r3")
    chain = json.loads((tmp_path / "r3" / "lineage.json").read_text())
    assert chain["parent_lineage"]["parent"] == os.path.abspath(deep_run.path)


def test_the_command_line_updates_and_refuses_a_bad_log_in_one_line(deep_run, tmp_path,
                                                                    capsys):
    from jaxembed.cli import main

    good, bad = tmp_path / "day2.csv", tmp_path / "bad.csv"
    frame(300, 14).to_csv(good, index=False)
    frame(300, 14).drop(columns=["shop"]).to_csv(bad, index=False)
    out = tmp_path / "run2"
    status = main(["update", "--run", deep_run.path, "--data", str(bad), "--out", str(out)])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and line.startswith("jaxembed update:") and "'shop'" in line
    assert not out.exists()
    status = main(["update", "--run", deep_run.path, "--data", str(good), "--out", str(out),
                   "--eval", str(good), "--grow", "--accumulate", "2", "--quiet"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.splitlines()[0].split() == ["parent", "updated"]
    assert f"wrote the run to {out}" in captured.err
    config = json.loads((out / "model.json").read_text())["config"]
    assert config["accumulate"] == 2 and config["freeze_embeddings"] is True
    status = main(["update", "--run", deep_run.path, "--data", str(good), "--out", str(out)])
    assert status == 2 and "is not empty" in capsys.readouterr().err


def test_accumulate_k_is_one_step_on_k_mini_batches(deep_run, tmp_path):
    # k batches of B accumulated (optax.MultiSteps on the dense layers, sparse_accumulated on
    # the FTRL tables and the grown embedding rows) = one step on a batch of k·B rows
    new_log = frame(4 * BATCH, 15, items=20, first=50)
    rates = {"learning_rate": 0.05}
    accumulated = update(deep_run, new_log, out=tmp_path / "k2", accumulate=2, grow=True,
                         **rates)
    big = update(deep_run, new_log, out=tmp_path / "big", batch_size=2 * BATCH, grow=True,
                 **rates)
    single = update(deep_run, new_log, out=tmp_path / "k1", grow=True, **rates)
    for a, b in zip(_leaves(accumulated.trainer.params()), _leaves(big.trainer.params()),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(_leaves(single.trainer.params()),
                                                     _leaves(big.trainer.params()),
                                                     strict=True))
    # the accumulating run updates again (its optimizer state restores into a k = 1 rule)
    again = update(tmp_path / "k2", new_log, out=tmp_path / "again")
    assert json.loads((tmp_path / "again" / "lineage.json").read_text())[
        "optimizer_state"] == "continued"
    assert again.config.accumulate == 1
