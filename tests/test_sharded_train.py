"""Training SearchCTR with sharded tables (``jaxembed.train.sharded``, ``jaxembed train --mesh``).

The ``check_*`` functions need 8 devices: :func:`test_on_8_virtual_cpu_devices` runs them in a
fresh interpreter with 8 virtual CPU devices. They check that

* every layout (row mod/div with both routes, column, table; 1-D and ``data × model``
  meshes) trains step for step like the single-device :class:`OfflineTrainer`: same loss at
  every step, same tables, optimizer slots and dense parameters after the last one;
* a run checkpointed on 8 devices resumes on 4 devices under another layout and then
  unsharded, and ends where an uninterrupted single-device run ends;
* ``jaxembed train --mesh 2x4`` runs the whole job.

The host-side tests (``test_*``) check the mesh parser and bad configurations.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from flax import nnx

import jaxembed as je
from jaxembed.features import Features
from jaxembed.models import SearchCTR
from jaxembed.sharding.launch import run_pytest
from jaxembed.train import offline
from jaxembed.train.sharded import MeshConfig, ShardedTrainer, make_mesh

DOMAINS = {"item": 97, "query": 40, "user": 33}
WIDE = 64
STATS = 3
BATCH = 32
STEPS = 4
TOL = dict(rtol=2e-5, atol=2e-6)


def _features(n: int = BATCH * STEPS, seed: int = 0) -> Features:
    """Random bags with duplicates, padding (-1), weights and empty bags; random labels."""
    rng = np.random.default_rng(seed)

    def bags(vocab: int, width: int) -> je.Bags:
        ids = rng.integers(-1, vocab, size=(n, width)).astype(np.int32)
        ids[rng.random(n) < 0.1] = -1  # some empty bags
        ids[:, 1] = np.where(rng.random(n) < 0.3, ids[:, 0], ids[:, 1])  # duplicates
        weights = rng.uniform(0.5, 2.0, size=(n, width)).astype(np.float32)
        return je.Bags(ids, weights)

    return Features(
        domains={name: bags(v, 4) for name, v in DOMAINS.items()},
        stats=rng.normal(size=(n, STATS)).astype(np.float32),
        wide=bags(WIDE, 6),
        labels=(rng.random(n) < 0.3).astype(np.float32),
    )


def _model(combiner: str = "sum") -> SearchCTR:
    return SearchCTR(DOMAINS, STATS, WIDE, rngs=nnx.Rngs(3), combiner=combiner)


def _config(**kw) -> offline.OfflineConfig:
    return offline.OfflineConfig(batch_size=BATCH, **kw)


def _assert_close(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


# --- host side ----------------------------------------------------------------------------------
def test_make_mesh_shapes_and_errors():
    mesh = make_mesh("1")
    assert mesh.axis_names == ("model",) and mesh.size == 1
    assert make_mesh("1x1").axis_names == ("data", "model")
    with pytest.raises(ValueError, match="must look like '8' or '2x4'"):
        make_mesh("two")
    with pytest.raises(ValueError, match="must look like"):
        make_mesh("0")
    with pytest.raises(ValueError, match=r"mesh 64 needs 64 devices, the cpu backend has 1"):
        make_mesh("64")


def test_mesh_config_rejects_bad_values():
    with pytest.raises(ValueError, match="kind must be one of"):
        MeshConfig(kind="diagonal")
    with pytest.raises(ValueError, match="strategy must be 'mod' or 'div'"):
        MeshConfig(strategy="hash")
    with pytest.raises(ValueError, match="route must be one of"):
        MeshConfig(route="broadcast")


def test_one_device_mesh_equals_offline_trainer():
    """The sharded trainer on a 1-device mesh is the unsharded trainer."""
    x = _features()
    ref = offline.OfflineTrainer(_model(), _config())
    sharded = ShardedTrainer(_model(), _config(), make_mesh("1"))
    for s in range(2):
        batch = x.batch(s * BATCH, (s + 1) * BATCH)
        labels = x.labels[s * BATCH:(s + 1) * BATCH]
        np.testing.assert_allclose(float(sharded.step(batch, labels)),
                                   float(ref.step(batch, labels)), **TOL)
    _assert_close(sharded.payload(), ref.payload())


# --- on 8 virtual devices (run by test_on_8_virtual_cpu_devices) --------------------------------
def _run_steps(trainer, x: Features) -> list[float]:
    losses = []
    for s in range(STEPS):
        rows = slice(s * BATCH, (s + 1) * BATCH)
        losses.append(float(trainer.step(x.batch(rows.start, rows.stop), x.labels[rows])))
    return losses


@pytest.mark.parametrize("shape, kind, strategy, route, combiner", [
    ("8", "row", "mod", "all_gather", "sum"),
    ("2x4", "row", "div", "all_to_all", "mean"),
    ("8", "column", "mod", "all_gather", "sqrtn"),
    ("2x4", "table", "mod", "all_gather", "sum"),
])
def check_step_for_step(shape, kind, strategy, route, combiner):
    assert jax.device_count() == 8
    x = _features()
    ref = offline.OfflineTrainer(_model(combiner), _config())
    sharded = ShardedTrainer(_model(combiner), _config(), make_mesh(shape), kind=kind,
                             strategy=strategy, route=route)
    block = next(iter(sharded.stored["behavior"].values()))
    assert len(block.sharding.device_set) == 8  # really spread over the mesh
    np.testing.assert_allclose(_run_steps(sharded, x), _run_steps(ref, x), **TOL)
    _assert_close(sharded.payload(), ref.payload())
    _assert_close(sharded.table_state("wide"), ref.table_state("wide"))


def check_checkpoint_resumes_on_other_device_counts(tmp_path):
    """8 devices row-wise → 4 devices table-wise → 1 device, one epoch each, equals three
    uninterrupted epochs on one device."""
    x = _features()
    ckpt = str(tmp_path / "ckpt")
    _, history = offline.fit(_model(), x, _config(epochs=1), checkpoint_dir=ckpt,
                             mesh=MeshConfig("8"))
    assert len(history) == 1
    four = MeshConfig("4", kind="table")
    offline.fit(_model(), x, _config(epochs=2), checkpoint_dir=ckpt, resume=True, mesh=four)
    trainer, history = offline.fit(_model(), x, _config(epochs=3), checkpoint_dir=ckpt,
                                   resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    reference, ref_history = offline.fit(_model(), x, _config(epochs=3))
    np.testing.assert_allclose([h["loss"] for h in history],
                               [h["loss"] for h in ref_history], **TOL)
    _assert_close(trainer.payload(), reference.payload())


def check_cli_train_with_mesh(tmp_path):
    from jaxembed.cli import main

    out = str(tmp_path / "run")
    assert main(["train", "--mesh", "2x4", "--train-size", "3000", "--eval-size", "1000",
                 "--online-size", "1000", "--epochs", "1", "--batch-size", "256",
                 "--out", out]) == 0
    assert os.path.exists(os.path.join(out, "training_curves.png"))


def test_on_8_virtual_cpu_devices():
    run_pytest(__file__, "check_", 8, expect_passed=6)
