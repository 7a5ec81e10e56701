"""jaxembed.sharding: planning, storage maps, bad input, checkpoints, dense data parallelism.

Host-side tests (``test_*``) run in the suite's process. The ``check_*`` functions need 8
devices: :func:`test_checks_on_8_virtual_cpu_devices` runs them in a fresh interpreter with
8 virtual CPU devices (``-o python_functions=check_*``), then restores the checkpoint that
the child saved on 8 devices onto this process's single device.
"""

from __future__ import annotations

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.sharding import AbstractMesh, Mesh

import jaxembed as je
from jaxembed import sharding as sh
from jaxembed.optim.sparse import sparse_adam
from jaxembed.partition import split_table
from jaxembed.sharding import rowsparse
from jaxembed.sharding.checkpoint import read_layout, restore_sharded, save_sharded
from jaxembed.sharding.launch import run_pytest, virtual_cpu_env

SHAPES = {"a": (37, 5), "b": (11, 3)}
CKPT_ENV = "JAXEMBED_TEST_CHECKPOINT"


def _tables(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}


def _bags(batch: int = 16, seed: int = 1) -> dict[str, je.Bags]:
    rng = np.random.default_rng(seed)
    return {n: je.Bags(rng.integers(-1, v, size=(batch, 4)).astype(np.int32),
                       rng.uniform(0.5, 2.0, size=(batch, 4)).astype(np.float32))
            for n, (v, _) in SHAPES.items()}


# --- host-side: planning and storage maps -----------------------------------------------------
def test_plan_rejects_bad_input():
    mesh = AbstractMesh((8,), ("x",))
    with pytest.raises(ValueError, match="kind must be one of"):
        sh.plan(SHAPES, mesh, "diagonal")
    with pytest.raises(ValueError, match="axis 'model' is not an axis"):
        sh.plan(SHAPES, mesh, axis="model")
    with pytest.raises(ValueError, match="strategy must be 'mod' or 'div', got 'hash'"):
        sh.plan(SHAPES, mesh, strategy="hash")
    with pytest.raises(ValueError, match=r"table 'a': shape must be .* got \(0, 4\)"):
        sh.plan({"a": (0, 4)}, mesh)
    with pytest.raises(ValueError, match="at least one table"):
        sh.plan({}, mesh)
    with pytest.raises(TypeError, match=r"must be a jax\.sharding\.Mesh, got list"):
        sh.plan(SHAPES, [0, 1])


def test_greedy_placement_is_deterministic_and_largest_first():
    sizes = {"a": 10, "b": 9, "c": 5, "d": 4, "e": 3, "f": 1}
    # a->0 (10), b->1 (9), c->1 (14), d->0 (14), e->0 tie goes low (17), f->1 (15)
    assert sh.greedy_placement(sizes, 2) == {"a": 0, "b": 1, "c": 1, "d": 0, "e": 0, "f": 1}
    assert sh.greedy_placement({"x": 3}, 4) == {"x": 0}
    with pytest.raises(ValueError, match="num_devices must be >= 1, got 0"):
        sh.greedy_placement(sizes, 0)


@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=7), devices=st.integers(1, 3))
def test_greedy_placement_within_graham_bound(sizes, devices):
    """max load <= (4/3 - 1/(3m)) · optimum (Graham's bound for largest-first)."""
    named = {f"t{i}": s for i, s in enumerate(sizes)}
    placement = sh.greedy_placement(named, devices)
    load = np.bincount(list(placement.values()), weights=sizes, minlength=devices)
    best = min(
        np.bincount(assign, weights=sizes, minlength=devices).max()
        for assign in itertools.product(range(devices), repeat=len(sizes))
    )
    assert load.max() <= (4 / 3 - 1 / (3 * devices)) * best + 1e-9


@given(kind=st.sampled_from(sh.KINDS), strategy=st.sampled_from(["mod", "div"]),
       shards=st.sampled_from([1, 3, 8]), seed=st.integers(0, 2**16))
def test_storage_maps_invert_and_follow_tensorflow(kind, strategy, shards, seed):
    tables = {n: np.random.default_rng(seed).normal(size=s).astype(np.float32)
              for n, s in SHAPES.items()}
    layout = sh.plan(SHAPES, AbstractMesh((shards,), ("x",)), kind, strategy=strategy)
    stored = layout.to_storage(tables)
    assert {k: v.shape for k, v in stored.items()} == layout.storage_shapes()
    back = layout.from_storage(stored)
    for name in SHAPES:
        np.testing.assert_array_equal(back[name], tables[name])
    if kind == "row":
        for name, table in tables.items():
            for p, shard in enumerate(split_table(table, shards, strategy)):
                np.testing.assert_array_equal(stored[name][p, : shard.shape[0]], shard)
                assert not np.any(stored[name][p, shard.shape[0]:])  # zero padding rows
    if kind == "table":
        for name, (device, _, offset) in layout.table_slots().items():
            v, k = SHAPES[name]
            np.testing.assert_array_equal(stored[sh.PACKED][device, offset:offset + v, :k],
                                          tables[name])


def test_communication_bytes_by_hand():
    mesh = AbstractMesh((8,), ("x",))
    row = sh.plan({"a": (1000, 16)}, mesh, "row")
    # b = 64/8 = 8 bags per device, L = 4, K = 16, P = 8: per device 7·8·(4·8 + 16·4) bytes
    assert sh.communication_bytes(row, 64, 4) == {"forward": 8 * 7 * 8 * (32 + 64),
                                                  "backward": 8 * 7 * 8 * 64}
    a2a = sh.communication_bytes(row, 64, 4, route="all_to_all", capacity=5)
    assert a2a == {"forward": 8 * 7 * (5 * 12 + 8 * 64), "backward": 8 * 7 * 8 * 64}
    col = sh.plan({"a": (1000, 16)}, mesh, "column")  # K' = 2
    assert sh.communication_bytes(col, 64, 4)["forward"] == 8 * 7 * 8 * (32 + 2 * 4)
    two_d = sh.plan({"a": (1000, 16)}, AbstractMesh((2, 4), ("data", "model")), "row",
                    axis="model")
    volume = sh.communication_bytes(two_d, 64, 4)  # P = 4, b = 8, replicas D = 2
    assert volume["forward"] == 8 * 3 * 8 * (32 + 64)
    assert volume["replica_allreduce"] == 8 * 2 * 1 * (250 * 16 * 4) // 2


def test_virtual_cpu_env_replaces_the_device_count():
    env = virtual_cpu_env(4, {"XLA_FLAGS": "--xla_foo=1 --xla_force_host_platform_device_count=2"})
    assert env["XLA_FLAGS"] == "--xla_foo=1 --xla_force_host_platform_device_count=4"
    assert env["JAX_PLATFORMS"] == "cpu"
    with pytest.raises(ValueError, match="num_devices must be >= 1, got 0"):
        virtual_cpu_env(0)


def test_one_device_mesh_and_input_errors():
    mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
    layout = sh.plan(SHAPES, mesh, "row")
    tables, bags = _tables(), _bags()
    stored = sh.shard_tables(tables, layout)
    pooled = sh.sharded_bag_lookup(layout, stored, bags, combiner="sqrtn")
    for name in SHAPES:
        np.testing.assert_allclose(pooled[name], je.bag_lookup(tables[name], bags[name],
                                                               combiner="sqrtn"), rtol=1e-6)
    bad = dict(bags, a=je.Bags(np.array([[3, 37]] * 16, np.int32)))
    with pytest.raises(IndexError, match=r"table 'a': ids: id 37 at position \(0, 1\)"):
        sh.sharded_bag_lookup(layout, stored, bad)
    with pytest.raises(ValueError, match=r"combiner in .* got 'max'"):
        sh.sharded_bag_lookup(layout, stored, bags, combiner="max")
    with pytest.raises(ValueError, match=r"bags has tables \['a'\]"):
        sh.sharded_bag_lookup(layout, stored, {"a": bags["a"]})
    with pytest.raises(ValueError, match="route must be one of"):
        sh.sharded_bag_lookup(layout, stored, bags, route="broadcast")
    with pytest.raises(ValueError, match="capacity applies only"):
        sh.sharded_bag_lookup(layout, stored, bags, capacity=4)
    with pytest.raises(ValueError, match="capacity must be a positive integer, got 0"):
        sh.sharded_bag_lookup(layout, stored, bags, route="all_to_all", capacity=0)
    with pytest.raises(ValueError, match=r"stored array 'a' has shape \(1, 36, 5\)"):
        sh.sharded_bag_lookup(layout, dict(stored, a=jnp.zeros((1, 36, 5))), bags)
    with pytest.raises(ValueError, match=r"table 'b' has shape \(11, 4\)"):
        sh.shard_tables(dict(tables, b=np.zeros((11, 4), np.float32)), layout)
    column = sh.plan(SHAPES, mesh, "column")
    with pytest.raises(ValueError, match="max_norm needs each row's whole norm"):
        sh.sharded_bag_lookup(column, sh.shard_tables(tables, column), bags, max_norm=1.0)


# --- on 8 devices (run in a child interpreter) ------------------------------------------------
def _mesh8() -> Mesh:
    assert jax.device_count() >= 8, "run through test_checks_on_8_virtual_cpu_devices"
    return Mesh(np.array(jax.devices()[:8]), ("x",))


def check_batch_must_split_over_the_mesh():
    layout = sh.plan(SHAPES, _mesh8(), "row")
    stored = sh.shard_tables(_tables(), layout)
    with pytest.raises(ValueError, match="batch size 12 must be a multiple of the mesh's 8"):
        sh.sharded_bag_lookup(layout, stored, _bags(batch=12))


def check_out_of_range_ids_under_jit_are_nan():
    layout = sh.plan(SHAPES, _mesh8(), "row", strategy="div")
    tables, bags = _tables(), _bags()
    ids = np.array(bags["a"].ids).copy()
    ids[5, 2] = 99
    bags["a"] = je.Bags.tree_unflatten(None, (jnp.asarray(ids), bags["a"].weights))
    stored = sh.shard_tables(tables, layout)
    for route in sh.ROUTES:
        fn = jax.jit(lambda s, b, route=route: sh.sharded_bag_lookup(layout, s, b, route=route))
        got = np.asarray(fn(stored, bags)["a"])
        assert np.all(np.isnan(got[5])) and not np.any(np.isnan(np.delete(got, 5, axis=0)))
        grad = jax.jit(jax.grad(lambda s, b, route=route: jnp.nansum(sh.sharded_bag_lookup(
            layout, s, b, route=route)["a"])))(stored, bags)
        assert np.all(np.isfinite(grad["a"]))


def check_dense_layers_data_parallel_train_step():
    """Embedding (row-wise over 8 devices) -> dense layer (weights replicated, batch split):
    loss and gradients for both equal the one-device model."""
    mesh = _mesh8()
    layout = sh.plan(SHAPES, mesh, "row")
    tables, bags = _tables(), _bags()
    rng = np.random.default_rng(2)
    dense = {"w": rng.normal(size=(8, 1)).astype(np.float32), "c": np.float32(0.5)}
    labels = rng.integers(0, 2, size=16).astype(np.float32)

    def head(pooled, params, y):
        x = jnp.concatenate([pooled["a"], pooled["b"]], axis=1)
        logits = (x @ params["w"])[:, 0] + params["c"]
        return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits)

    def sharded_loss(stored, params, bags, y):
        return head(sh.sharded_bag_lookup(layout, stored, bags), params, y)

    def one_device_loss(tables, params, bags, y):
        return head({n: je.bag_lookup(tables[n], bags[n]) for n in tables}, params, y)

    step = jax.jit(jax.value_and_grad(sharded_loss, argnums=(0, 1)))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    y = jax.device_put(labels, layout.batch_sharding())
    loss, (g_stored, g_dense) = step(sh.shard_tables(tables, layout),
                                     jax.device_put(dense, replicated), bags, y)
    want, (g_tables, g_dense_want) = jax.jit(jax.value_and_grad(one_device_loss, argnums=(0, 1)))(
        tables, dense, bags, labels)
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    for name, g in layout.from_storage(g_stored).items():
        np.testing.assert_allclose(g, g_tables[name], rtol=1e-4, atol=1e-6)
    for name in dense:
        np.testing.assert_allclose(g_dense[name], g_dense_want[name], rtol=1e-4, atol=1e-6)
    assert g_dense["w"].sharding.is_fully_replicated


def check_explicit_mesh_axes():
    mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,))
    layout = sh.plan(SHAPES, mesh, "table")
    tables, bags = _tables(), _bags()
    with jax.set_mesh(mesh):
        stored = sh.shard_tables(tables, layout)
        grads = jax.jit(jax.grad(lambda s: sh.sharded_bag_lookup(layout, s, bags)["b"].sum()))(
            stored)
        pooled = jax.jit(lambda s: sh.sharded_bag_lookup(layout, s, bags))(stored)
    np.testing.assert_allclose(pooled["b"], je.bag_lookup(tables["b"], bags["b"]), rtol=1e-5)
    want = jax.grad(lambda t: je.bag_lookup(t, bags["b"]).sum())(tables["b"])
    np.testing.assert_allclose(layout.from_storage(grads)["b"], want, rtol=1e-5, atol=1e-6)


def check_row_sparse_grads_and_lazy_adam():
    """Sharded row-sparse gradients scatter to autodiff's storage gradient; a sharded lazy
    Adam step (replicated step count) equals the one-device lazy Adam step."""
    layout = sh.plan(SHAPES, _mesh8(), "table")
    tables, bags = _tables(), _bags()
    cot = {n: np.random.default_rng(3).normal(size=(16, k)).astype(np.float32)
           for n, (_, k) in SHAPES.items()}
    stored = sh.shard_tables(tables, layout)
    rule = sparse_adam(0.1)

    @jax.jit
    def step(stored):
        grads = rowsparse.row_sparse_grads(layout, bags, cot)
        states = rowsparse.init_row_sparse(rule, layout, stored)
        new, states = rowsparse.apply_row_sparse(rule, layout, stored, states, grads)
        new, states = rowsparse.apply_row_sparse(rule, layout, new, states, grads)
        return rowsparse.dense_from_sparse(layout, grads), layout.from_storage(new), states

    dense, new, states = step(stored)
    auto = jax.jit(jax.grad(lambda s, b: sum(jnp.vdot(o, cot[n]) for n, o in
                            sh.sharded_bag_lookup(layout, s, b).items())))(stored, bags)
    np.testing.assert_allclose(dense[sh.PACKED], auto[sh.PACKED], rtol=1e-5, atol=1e-6)
    assert int(states[sh.PACKED].count) == 2
    for name, table in tables.items():
        ids = np.asarray(bags[name].ids)
        w = np.where(ids >= 0, np.asarray(bags[name].weights), 0.0)
        w = w / w.sum(axis=1, keepdims=True)
        rows = (w[..., None] * cot[name][:, None, :]).reshape(-1, table.shape[1])
        update = jax.jit(rule.update)
        t, s = update(jnp.asarray(table), rule.init(table), ids.reshape(-1), rows)
        t, _ = update(t, s, ids.reshape(-1), rows)
        np.testing.assert_allclose(new[name], t, rtol=1e-5, atol=1e-6)


def check_checkpoint_restores_on_fewer_devices(tmp_path):
    mesh = _mesh8()
    tables = _tables(seed=7)
    layout = sh.plan(SHAPES, mesh, "row")
    path = os.environ.get(CKPT_ENV) or str(tmp_path / "ckpt")
    save_sharded(path, layout, sh.shard_tables(tables, layout))
    assert sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(path)]  # no temp dir
    assert read_layout(path)["num_shards"] == 8
    with pytest.raises(FileExistsError, match="already exists"):
        save_sharded(path, layout, sh.shard_tables(tables, layout))
    for devices, kind in ((4, "row"), (4, "column"), (3, "table"), (1, "row")):
        target = sh.plan(SHAPES, Mesh(np.array(jax.devices()[:devices]), ("x",)), kind,
                         strategy="div")
        stored = restore_sharded(path, target)
        assert stored[target.names[0] if kind != "table" else sh.PACKED].sharding.mesh.size \
            == devices
        for name, table in target.from_storage(stored).items():
            np.testing.assert_array_equal(table, tables[name])
    wrong = sh.plan({"a": (37, 5)}, mesh, "row")
    with pytest.raises(ValueError, match="holds tables"):
        restore_sharded(path, wrong)


# --- launcher ---------------------------------------------------------------------------------
def test_checks_on_8_virtual_cpu_devices(tmp_path):
    """Runs the check_* functions above on 8 virtual CPU devices, then restores the 8-device
    checkpoint the child wrote onto this process's single device."""
    path = str(tmp_path / "saved" / "ckpt")
    os.makedirs(os.path.dirname(path))
    run_pytest(__file__, "check_", 8, expect_passed=6, env={CKPT_ENV: path})
    layout = sh.plan(SHAPES, Mesh(np.array(jax.devices()[:1]), ("x",)), "table")
    restored = layout.from_storage(restore_sharded(path, layout))
    for name, table in _tables(seed=7).items():
        np.testing.assert_array_equal(restored[name], table)
