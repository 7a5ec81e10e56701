r"""Sharded lookups equal the one-device lookup, in values, gradients and row-sparse steps.

For tables ``W_t`` laid out over a mesh (row-wise mod/div with either route, column-wise,
table-wise) and bags split over every device:

* values: ``sharded_bag_lookup(layout, shard_tables(W), bags)[t] = bag_lookup(W_t, bags[t])``
  for ``sum``, ``mean``, ``sqrtn`` and with ``max_norm`` (row- and table-wise);
* gradients: ``from_storage(∂L/∂S) = ∂L/∂W`` for ``L = Σ_t <G_t, pooled_t>``, with the padding
  of the stored arrays getting a zero gradient;
* row-sparse step: ``from_storage(apply_row_sparse(rule, S, row_sparse_grads(G)))`` equals the
  dense optax step ``W + opt.update(∂L/∂W)`` (Adagrad, where sparse = dense);
* capacity: with ``route="all_to_all"`` and a small capacity, a bag is either exact or NaN —
  never silently short of a row.

All on 8 virtual CPU devices (a 1-D mesh of 8 and a 2 × 4 data × model mesh). JAX fixes its
device count when its backend starts, and the suite's process runs on one device, so pytest
there collects only :func:`test_proofs_on_8_virtual_cpu_devices`: it runs this file again in
a fresh interpreter with 8 devices and ``-o python_functions=proof_*``, which collects the
``proof_*`` functions below (and not the launcher).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxembed as je
from jaxembed import sharding as sh
from jaxembed.optim.sparse import sparse_adagrad
from jaxembed.partition import shard_of
from jaxembed.sharding import rowsparse
from jaxembed.sharding.launch import run_pytest
from proofs.strategies import bag_lists

# --- fixed shape buckets (one compile per layout) and strategies ------------------------------
BATCH, WIDTH = 16, 4
SHAPES = {"a": (37, 5), "b": (11, 3)}  # V not a multiple of 8, K not a multiple of 8
PACKED_SHAPES = {"a": (13, 4), "b": (7, 2), "c": (9, 3)}
VARIANTS = [  # (kind, strategy, route)
    ("row", "mod", "all_gather"), ("row", "div", "all_gather"),
    ("row", "mod", "all_to_all"), ("row", "div", "all_to_all"),
    ("column", "mod", "all_gather"), ("table", "mod", "all_gather"),
]
COMBINERS = ("sum", "mean", "sqrtn")
FEW = settings(max_examples=max(6, settings.default.max_examples // 3))


def _values(rng: np.random.Generator, shape: tuple[int, ...], exact: bool) -> np.ndarray:
    if exact:  # integers / 4: sums are exact in float32
        return (rng.integers(-16, 17, size=shape) / 4.0).astype(np.float32)
    return rng.normal(0.0, 2.0, size=shape).astype(np.float32)


@st.composite
def sharded_cases(draw, shapes=SHAPES):
    """Tables of the fixed ``shapes``, a batch of ``BATCH`` bags of width ``WIDTH`` per table
    (duplicates, empty bags, padding; weights or none), and a cotangent per table."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    exact = draw(st.booleans())
    tables = {n: _values(rng, shape, exact) for n, shape in shapes.items()}
    bags = {}
    for name, (v, _) in shapes.items():
        lists, weights = draw(bag_lists(v, batch=st.just(BATCH), max_len=WIDTH))
        if weights is None:  # unweighted: all ones (one pytree structure, one compile)
            weights = [[1.0] * len(bag) for bag in lists]
        bags[name] = je.Bags.from_lists(lists, weights, width=WIDTH)
    cot = {n: _values(rng, (BATCH, k), exact) for n, (_, k) in shapes.items()}
    return tables, bags, cot


def _mesh(shape: tuple[int, ...], names: tuple[str, ...]) -> jax.sharding.Mesh:
    assert jax.device_count() >= 8, "run through test_proofs_on_8_virtual_cpu_devices"
    devices = np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape)
    return jax.sharding.Mesh(devices, names)


_COMPILED: dict = {}


def _value_and_grads(layout, route, max_norm=None, combiners=COMBINERS):
    """One jit per layout: per combiner the pooled values, the tables' gradients
    (``from_storage`` of the storage gradient) and the largest storage-gradient entry on
    padding (rows or columns no id reaches)."""
    key = (layout, route, max_norm, combiners)
    if key not in _COMPILED:
        def run(stored, bags, cot):
            out = {}
            for combiner in combiners:
                def loss(s, combiner=combiner):
                    pooled = sh.sharded_bag_lookup(layout, s, bags, combiner=combiner,
                                                   route=route, max_norm=max_norm)
                    return sum(jnp.vdot(pooled[n], cot[n]) for n in pooled), pooled
                (_, pooled), grads = jax.value_and_grad(loss, has_aux=True)(stored)
                logical = layout.from_storage(grads)
                rebuilt = layout.to_storage(logical)
                on_padding = jnp.max(jnp.stack(
                    [jnp.max(jnp.abs(grads[k] - rebuilt[k])) for k in grads]))
                out[combiner] = (pooled, logical, on_padding)
            return out
        _COMPILED[key] = jax.jit(run)
    return _COMPILED[key]


def _one_device(tables, bags, cot, combiner, max_norm=None):
    def loss(ts):
        pooled = {n: je.bag_lookup(ts[n], bags[n], combiner=combiner, max_norm=max_norm)
                  for n in ts}
        return sum(jnp.vdot(pooled[n], cot[n]) for n in pooled), pooled
    (_, pooled), grads = jax.value_and_grad(loss, has_aux=True)(tables)
    return pooled, grads


_one_device_jit = jax.jit(_one_device, static_argnames=("combiner", "max_norm"))


def _assert_matches(layout, got, tables, bags, cot, max_norm=None):
    for combiner, (pooled, logical, on_padding) in got.items():
        want, want_grads = _one_device_jit(tables, bags, cot, combiner=combiner,
                                           max_norm=max_norm)
        for name in layout.names:
            np.testing.assert_allclose(pooled[name], want[name], rtol=2e-5, atol=2e-5,
                                       err_msg=f"{combiner} values of {name}")
            np.testing.assert_allclose(logical[name], want_grads[name], rtol=2e-5, atol=2e-5,
                                       err_msg=f"{combiner} gradient of {name}")
        assert float(on_padding) == 0.0, f"{combiner}: padding got gradient {on_padding}"


# --- proofs ----------------------------------------------------------------------------------
@FEW
@given(case=sharded_cases())
def proof_lookup_equals_bag_lookup(case):
    """pooled_t = bag_lookup(W_t, bags_t) and from_storage(∂L/∂S) = ∂L/∂W, every layout,
    route and combiner, on a 1-D mesh of 8 devices."""
    tables, bags, cot = case
    for kind, strategy, route in VARIANTS:
        layout = sh.plan(SHAPES, _mesh((8,), ("x",)), kind, strategy=strategy)
        stored = sh.shard_tables(tables, layout)
        got = _value_and_grads(layout, route)(stored, bags, cot)
        _assert_matches(layout, got, tables, bags, cot)


@FEW
@given(case=sharded_cases(PACKED_SHAPES))
def proof_data_by_model_mesh(case):
    """The same on a 4 (data) × 2 (model) mesh: tables split over 'model' and replicated over
    'data' (their gradient summed over the replicas), the batch over all 8 devices; the
    table-wise plan packs 3 tables on 2 devices (one device holds two)."""
    tables, bags, cot = case
    for kind in sh.KINDS:
        layout = sh.plan(PACKED_SHAPES, _mesh((4, 2), ("data", "model")), kind, axis="model")
        stored = sh.shard_tables(tables, layout)
        got = _value_and_grads(layout, "all_gather", combiners=("mean",))(stored, bags, cot)
        _assert_matches(layout, got, tables, bags, cot)


@FEW
@given(case=sharded_cases())
def proof_max_norm(case):
    """With max_norm each row is clipped to norm <= 1 before pooling, on the device that
    holds it: pooled = bag_lookup(W, bags, max_norm=1) (values and gradients), row-wise
    (both routes) and table-wise."""
    tables, bags, cot = case
    for kind, strategy, route in (VARIANTS[2], VARIANTS[1], VARIANTS[5]):
        layout = sh.plan(SHAPES, _mesh((8,), ("x",)), kind, strategy=strategy)
        stored = sh.shard_tables(tables, layout)
        got = _value_and_grads(layout, route, max_norm=1.0, combiners=("sum",))(
            stored, bags, cot)
        _assert_matches(layout, got, tables, bags, cot, max_norm=1.0)


def _dense_step(opt, tables, bags, cot, combiner):
    _, grads = _one_device(tables, bags, cot, combiner)
    return {n: tables[n] + opt.update(grads[n], opt.init(tables[n]), tables[n])[0]
            for n in tables}


_dense_step_jit = jax.jit(_dense_step, static_argnums=(0, 4))
_RULES = {"adagrad": (sparse_adagrad(0.5), optax.adagrad(0.5))}


def _sparse_step(layout, rule_name):
    key = ("sparse", layout, rule_name)
    if key not in _COMPILED:
        rule = _RULES[rule_name][0]

        def step(stored, bags, cot):
            grads = rowsparse.row_sparse_grads(layout, bags, cot, combiner="mean")
            states = rowsparse.init_row_sparse(rule, layout, stored)
            new = rowsparse.apply_row_sparse(rule, layout, stored, states, grads)[0]
            return layout.from_storage(new)
        _COMPILED[key] = jax.jit(step)
    return _COMPILED[key]


SPARSE_LAYOUTS = [((8,), "row"), ((8,), "column"), ((4, 2), "row"), ((4, 2), "column"),
                  ((4, 2), "table")]


@FEW
@given(case=sharded_cases(PACKED_SHAPES))
def proof_row_sparse_step_equals_dense_step(case):
    """Each device updates only its rows, with its local ids: from_storage(S') = W +
    opt.update(∂L/∂W) for dense optax Adagrad on one device (mean combiner), every layout, on
    8 devices and on the 4 × 2 mesh (replicas compute the same update; two tables share a
    device table-wise)."""
    tables, bags, cot = case
    want = _dense_step_jit(_RULES["adagrad"][1], tables, bags, cot, "mean")
    for shape, kind in SPARSE_LAYOUTS:
        names = ("x",) if len(shape) == 1 else ("data", "model")
        layout = sh.plan(PACKED_SHAPES, _mesh(shape, names), kind, axis=names[-1])
        stored = sh.shard_tables(tables, layout)
        new = _sparse_step(layout, "adagrad")(stored, bags, cot)
        for name in PACKED_SHAPES:
            np.testing.assert_allclose(new[name], want[name], rtol=2e-5, atol=2e-6,
                                       err_msg=f"{shape} {kind} {name}")


def _kept_slots(layout, ids: np.ndarray, capacity: int) -> np.ndarray:
    """Literal routing: per device, the first ``capacity`` slots (in row-major order) bound for
    each owner are sent; returns bool[B] — every slot of the bag was sent."""
    v = layout.shape("a")[0]
    p = layout.num_shards
    per_device = ids.reshape(layout.mesh.size, -1, ids.shape[1])
    ok = []
    for local in per_device:
        seen = [0] * p
        for bag in local:
            complete = True
            for i in bag:
                if i < 0:
                    continue
                owner = int(shard_of(np.array(i), v, p, layout.strategy)[0])
                seen[owner] += 1
                complete &= seen[owner] <= capacity
            ok.append(complete)
    return np.array(ok)


@FEW
@given(case=sharded_cases({"a": SHAPES["a"]}), capacity=st.sampled_from([1, 2]))
def proof_capacity_overflow_is_loud(case, capacity):
    """all_to_all with capacity C: a bag all of whose slots fit is exact, a bag with a slot
    past the capacity is NaN; required_capacity is the smallest C that fits everything."""
    tables, bags, _ = case
    layout = sh.plan({"a": SHAPES["a"]}, _mesh((8,), ("x",)), "row")
    stored = sh.shard_tables(tables, layout)
    fn = _COMPILED.setdefault(("capacity", capacity), jax.jit(
        lambda s, b: sh.sharded_bag_lookup(layout, s, b, combiner="sum", route="all_to_all",
                                           capacity=capacity)["a"]))
    got = np.asarray(fn(stored, bags))
    want = np.asarray(_one_device_jit(tables, bags, {"a": jnp.zeros((BATCH, 5))},
                                      combiner="sum")[0]["a"])
    ids = np.asarray(bags["a"].ids)
    kept = _kept_slots(layout, ids, capacity)
    np.testing.assert_allclose(got[kept], want[kept], rtol=2e-5, atol=2e-5)
    assert np.all(np.isnan(got[~kept]))
    need = sh.required_capacity(layout, "a", ids)
    assert np.all(_kept_slots(layout, ids, need))
    assert need == 0 or not np.all(_kept_slots(layout, ids, need - 1))


# --- launcher (collected in the suite's one-device process) ----------------------------------
def test_proofs_on_8_virtual_cpu_devices():
    """Runs the proof_* functions of this file in a fresh interpreter with 8 CPU devices."""
    run_pytest(__file__, "proof_", 8, expect_passed=5)
