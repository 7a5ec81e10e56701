"""The training loop: bit-exact resume (also after a crash mid-save) and the online phase."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxembed import data
from jaxembed.features import SearchFeaturizer
from jaxembed.models import SearchCTR
from jaxembed.optim.partition import param_path
from jaxembed.train import checkpoint, offline, online

WORLD = data.SearchLogConfig(num_users=300, num_items=800, num_shops=80, num_categories=12,
                             num_brands=40, history_impressions=20_000)


@pytest.fixture(scope="module")
def encoded():
    train = data.search_log(6_000, seed=0, config=WORLD)
    featurizer = SearchFeaturizer.fit(train, code_buckets=512, hash_buckets=256,
                                      wide_size=4096)
    return featurizer, featurizer.transform(train)


def new_model(featurizer):
    return SearchCTR(featurizer.sizes, featurizer.num_stats, featurizer.wide_size,
                     rngs=nnx.Rngs(0))


def params_of(trainer):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(trainer.model()))]


CONFIG = offline.OfflineConfig(epochs=2, batch_size=256)


def test_resume_after_crash_mid_save_is_bit_exact(encoded, tmp_path, monkeypatch):
    featurizer, train = encoded
    full, full_history = offline.fit(new_model(featurizer), train, CONFIG,
                                     checkpoint_dir=str(tmp_path / "full"))
    crash_dir = tmp_path / "crash"
    real_save = checkpoint.save

    def crashing_save(directory, step, tree):
        if step == 1:  # the second epoch's save dies half way: an uncommitted folder remains
            partial = os.path.join(directory, "1.orbax-checkpoint-tmp-1700000000")
            os.makedirs(os.path.join(partial, "default"))
            with open(os.path.join(partial, "default", "half_written"), "wb") as handle:
                handle.write(b"\0" * 100)
            raise RuntimeError("simulated crash during checkpoint save")
        real_save(directory, step, tree)

    monkeypatch.setattr(checkpoint, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        offline.fit(new_model(featurizer), train, CONFIG, checkpoint_dir=str(crash_dir))
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert checkpoint.latest_step(crash_dir) == 0  # the half-written epoch is not taken
    resumed, history = offline.fit(new_model(featurizer), train, CONFIG,
                                   checkpoint_dir=str(crash_dir), resume=True)
    assert [h["loss"] for h in history] == [h["loss"] for h in full_history]
    for a, b in zip(params_of(full), params_of(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_without_checkpoint_dir_is_refused(encoded):
    featurizer, train = encoded
    with pytest.raises(ValueError, match="checkpoint_dir"):
        offline.fit(new_model(featurizer), train, CONFIG, resume=True)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    checkpoint.save(tmp_path, 0, {"x": np.zeros(3)})
    with pytest.raises(ValueError, match="does not match"):
        checkpoint.restore_latest(tmp_path, {"x": np.zeros(4), "y": np.zeros(2)})


def test_offline_step_updates_tables_row_sparsely(encoded):
    featurizer, train = encoded
    trainer = offline.OfflineTrainer(new_model(featurizer), offline.OfflineConfig())
    before = [np.asarray(t) for t in trainer.tables]
    batch = train.batch(0, 64)
    trainer.step(batch, train.labels[:64])
    for path, old, new in zip(trainer.table_paths, before, trainer.tables, strict=True):
        entry = batch[offline.batch_entry(path)]
        touched = np.unique(np.asarray(entry.ids)[np.asarray(entry.mask)])
        changed = np.flatnonzero(np.any(np.asarray(new) != old, axis=1))
        assert set(changed) <= set(touched), f"{path}: an untouched row moved"
        assert changed.size > 0


def test_online_phase_freezes_tables_and_joins_every_impression(encoded):
    featurizer, _ = encoded
    trainer, _ = offline.fit(new_model(featurizer), encoded[1],
                             offline.OfflineConfig(epochs=1, batch_size=256))
    model = trainer.model()
    stream = data.search_log(3_000, seed=5, period=1, config=WORLD)
    before = {param_path(p): np.asarray(v) for p, v in
              jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]}
    learner = online.OnlineLearner(model, online.OnlineConfig(batch_size=100),
                                   ftrl_state=trainer.table_state("wide"))
    result = online.run(learner, stream, featurizer.transform(stream))
    after = {param_path(p): np.asarray(v) for p, v in
             jax.tree_util.tree_flatten_with_path(nnx.state(learner.model(), nnx.Param))[0]}
    for path, value in before.items():
        if path.endswith("embed/embedding"):
            np.testing.assert_array_equal(after[path], value)  # frozen: bit-identical
    assert np.any(after["wide/kernel"] != before["wide/kernel"])  # FTRL moved the wide part
    assert np.any(after["prediction/layers/0/kernel"] != before["prediction/layers/0/kernel"])
    stats = result["stats"]
    assert stats.emitted_examples == len(stream)  # every impression once
    assert result["examples"] + result["left_over"] == len(stream)


def test_online_ftrl_continues_the_offline_wide_weights(encoded):
    """With the offline FTRL slots, a zero-gradient online step leaves the wide kernel where the
    offline fit put it (a fresh FTRL state would pull it to its own z/n solution)."""
    featurizer, train = encoded
    trainer, _ = offline.fit(new_model(featurizer), train,
                             offline.OfflineConfig(epochs=1, batch_size=256))
    model = trainer.model()
    learner = online.OnlineLearner(model, online.OnlineConfig(sgd_learning_rate=1e-12),
                                   ftrl_state=trainer.table_state("wide"))
    wide = np.asarray(nnx.state(model, nnx.Param)["wide"]["kernel"][...])
    batch = train.batch(0, 32)
    empty_wide = jax.tree.map(lambda a: a, batch)
    empty_wide["wide"] = type(batch["wide"]).tree_unflatten(
        None, (np.full_like(np.asarray(batch["wide"].ids), -1), None))
    learner.step(empty_wide, train.labels[:32])
    after = np.asarray(nnx.state(learner.model(), nnx.Param)["wide"]["kernel"][...])
    np.testing.assert_allclose(after, wide, rtol=1e-6, atol=1e-7)


def test_online_negative_downsampling_keeps_every_positive(encoded):
    featurizer, train = encoded
    trainer, _ = offline.fit(new_model(featurizer), train,
                             offline.OfflineConfig(epochs=1, batch_size=256))
    stream = data.search_log(3_000, seed=6, period=1, config=WORLD)
    config = online.OnlineConfig(batch_size=50, negative_rate=0.25)
    learner = online.OnlineLearner(trainer.model(), config, ftrl_state=trainer.table_state("wide"))
    result = online.run(learner, stream, featurizer.transform(stream))
    kept = result["examples"] + result["left_over"]
    positives = int(stream.label.sum())
    negatives = len(stream) - positives
    assert positives <= kept < positives + 0.4 * negatives  # ~25% of negatives (binomial)
    assert kept > positives + 0.1 * negatives


def test_checkpoint_keeps_empty_leaves(tmp_path):
    """orbax refuses zero-size arrays: an empty leaf (a model with no dense features has a
    [0] weight vector) is left out on save and comes back from the template."""
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "empty": jnp.zeros((0,)), "n": np.int64(4)}
    checkpoint.save(tmp_path / "c", 3, tree)
    step, back = checkpoint.restore_latest(tmp_path / "c", jax.tree.map(jnp.zeros_like, tree))
    assert step == 3 and back["empty"].shape == (0,) and int(back["n"]) == 4
    np.testing.assert_array_equal(back["w"], tree["w"])
