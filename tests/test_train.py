"""``jaxembed train`` on the one data path: bit-exact resume after a crash mid-save, the stream
replay of the online phase, and the whole job on a small world."""

import json
import os

import numpy as np
import pytest

from jaxembed import data
from jaxembed.data.search_schema import search_schema, search_table
from jaxembed.data.search_stats import SearchStatistics
from jaxembed.stream.replay import StreamConfig, replay
from jaxembed.train import checkpoint, job, runs

WORLD = data.SearchLogConfig(num_users=300, num_items=800, num_shops=80, num_categories=12,
                             num_brands=40, history_impressions=20_000)


@pytest.fixture(scope="module")
def tables():
    log = data.search_log(8_000, seed=0, config=WORLD)
    statistics = SearchStatistics.fit(log)
    table = search_table(log, statistics)
    return log, table.slice(0, 6_000), table.slice(6_000)


def _params(run):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(run.trainer.params())]


def test_resume_after_crash_mid_save_is_bit_exact(tables, tmp_path, monkeypatch):
    _, train, valid = tables
    # the crash and the resume do not depend on the model: a small one on the search schema
    # (search_ctr itself runs end to end in the job test below)
    options = {"model": "wide_deep", "epochs": 2, "patience": 0, "batch_size": 256}
    full = runs.fit(search_schema(), train, valid=valid, out=tmp_path / "full", **options)
    real_save = checkpoint.save

    def crashing_save(directory, step, tree):
        if str(directory).endswith("checkpoints") and step == 20_000_000:
            # the second epoch's save dies half way: an uncommitted folder remains
            partial = os.path.join(directory, f"{step}.orbax-checkpoint-tmp-1700000000")
            os.makedirs(os.path.join(partial, "default"))
            with open(os.path.join(partial, "default", "half_written"), "wb") as handle:
                handle.write(b"\0" * 100)
            raise RuntimeError("simulated crash during checkpoint save")
        real_save(directory, step, tree)

    monkeypatch.setattr(checkpoint, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        runs.fit(search_schema(), train, valid=valid, out=tmp_path / "crash", **options)
    monkeypatch.setattr(checkpoint, "save", real_save)
    # the half-written epoch is not taken
    assert checkpoint.latest_step(tmp_path / "crash" / "checkpoints") == 10_000_000
    resumed = runs.fit(search_schema(), train, valid=valid, out=tmp_path / "crash",
                       resume=True, **options)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for a, b in zip(_params(full), _params(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    checkpoint.save(tmp_path, 0, {"x": np.zeros(3)})
    with pytest.raises(ValueError, match="does not match"):
        checkpoint.restore_latest(tmp_path, {"x": np.zeros(4), "y": np.zeros(2)})


def test_checkpoint_keeps_empty_leaves(tmp_path):
    """orbax refuses zero-size arrays: an empty leaf (a model with no dense features has a
    [0] weight vector) is left out on save and comes back from the template."""
    import jax
    import jax.numpy as jnp

    tree = {"w": jnp.arange(6.0).reshape(2, 3), "empty": jnp.zeros((0,)), "n": np.int64(4)}
    checkpoint.save(tmp_path / "c", 3, tree)
    step, back = checkpoint.restore_latest(tmp_path / "c", jax.tree.map(jnp.zeros_like, tree))
    assert step == 3 and back["empty"].shape == (0,) and int(back["n"]) == 4
    np.testing.assert_array_equal(back["w"], tree["w"])


def test_checkpoint_restores_onto_an_abstract_template(tmp_path):
    """A template of ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape``: nothing initialised
    only to be overwritten) restores the same values as a concrete one, empty leaves and
    numpy scalars included."""
    import jax
    import jax.numpy as jnp

    tree = {"w": jnp.arange(6.0).reshape(2, 3), "empty": jnp.zeros((0, 2)),
            "i": jnp.arange(4, dtype=jnp.int32)}
    checkpoint.save(tmp_path / "c", 1, tree)
    _, concrete = checkpoint.restore_latest(tmp_path / "c", jax.tree.map(jnp.zeros_like, tree))
    _, abstract = checkpoint.restore_latest(tmp_path / "c", jax.eval_shape(lambda: tree))
    for key in tree:
        assert isinstance(abstract[key], jax.Array) and abstract[key].dtype == tree[key].dtype
        assert abstract[key].shape == tree[key].shape
        np.testing.assert_array_equal(abstract[key], concrete[key])


def test_the_replay_emits_every_impression_once_and_keeps_every_positive(tables):
    log = tables[0]
    rows, labels, stats = replay(log)
    assert sorted(rows.tolist()) == list(range(len(log)))
    assert stats.emitted_examples == len(log) and stats.duplicate_views == 0
    # a joined positive is a logged click; clicks after their page view left are late
    assert np.all(log.label[rows][labels == 1] == 1)
    assert stats.positives + stats.late_clicks == int(log.label.sum())
    rows, labels, _ = replay(log, StreamConfig(seed=3))  # the seed draws the arrival delays
    kept, kept_labels, _ = replay(log, StreamConfig(negative_rate=0.25, seed=3))
    assert int(kept_labels.sum()) == int(labels.sum())  # every positive kept
    assert 0.15 < (kept_labels == 0).sum() / (labels == 0).sum() < 0.35
    position = np.empty(len(log), np.int64)
    position[rows] = np.arange(rows.size)
    assert np.all(np.diff(position[kept]) > 0)  # the kept examples in their arrival order


def test_the_job_runs_end_to_end_through_fit_and_update(tmp_path):
    config = job.JobConfig(train_size=8_000, eval_size=3_000, online_size=4_000, epochs=1,
                           out_dir=str(tmp_path / "job"))
    figures = job.run(config)
    assert 0.6 < figures["offline"]["auc"] <= figures["bayes_auc_period0"]
    assert np.isfinite(figures["online_after"]["auc"])
    assert figures["joiner"]["emitted_examples"] == 4_000
    lineage = json.loads((tmp_path / "job" / "online" / "lineage.json").read_text())
    assert lineage["parent"] == str(tmp_path / "job" / "offline")
    assert lineage["rows"] == 4_000
    assert (tmp_path / "job" / "training_curves.png").stat().st_size > 0
