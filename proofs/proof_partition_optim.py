r"""A partitioned optimizer is the disjoint union of its parts.

For labels :math:`\ell(\text{path})` from :func:`jaxembed.optim.partition.label_by_path` and
transforms :math:`T_\ell`, one step of :func:`jaxembed.optim.partition.partitioned` is

.. math:: \theta^{(\ell)}_{t+1} = \theta^{(\ell)}_t + T_\ell\big(g^{(\ell)}_t;\ s^{(\ell)}_t,
          \theta^{(\ell)}_t\big) \quad\text{for each label } \ell,
          \qquad T_{\text{frozen}} \equiv 0,

i.e. each group moves exactly as a standalone optimizer fed the same gradients, and frozen
parameters never move. Proven on a Flax NNX wide-and-deep model (submodules ``wide``,
``embed``, ``mlp``) driven by ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` with FTRL on
``wide``, ``embed`` frozen and SGD on the rest: after every (eager) step of a hypothesis-drawn run,
``embed`` is bit-identical to its initial value, ``wide`` is bit-identical to a standalone
:func:`jaxembed.optim.ftrl` trajectory and ``mlp`` to a standalone ``optax.sgd`` one (both fed
the gradients the model saw; eager execution, so the same operations round the same way).
Gradients come from ``nnx.grad`` and are checked against ``jax.grad`` of the same loss
written on plain arrays.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.optim.ftrl import ftrl
from jaxembed.optim.partition import label_by_path, partitioned

VOCAB, DIM, WIDE, HIDDEN, BATCH, BAG = 11, 4, 6, 5, 8, 3
FTRL_KW = {"learning_rate": 0.2, "l1": 0.01, "l2": 0.05}
SGD_LR = 0.1
RULES = [("^wide/", "ftrl"), ("^embed/", "frozen")]


class WideDeep(nnx.Module):
    """logit = wide(x) + mlp(mean of embed(ids))."""

    def __init__(self, rngs: nnx.Rngs):
        self.wide = nnx.Linear(WIDE, 1, rngs=rngs)
        self.embed = nnx.Embed(VOCAB, DIM, rngs=rngs)
        self.mlp = nnx.Sequential(
            nnx.Linear(DIM, HIDDEN, rngs=rngs), nnx.relu, nnx.Linear(HIDDEN, 1, rngs=rngs)
        )

    def __call__(self, x, ids):
        return (self.wide(x) + self.mlp(self.embed(ids).mean(axis=1)))[:, 0]


def loss_fn(model, x, ids, y):
    return optax.sigmoid_binary_cross_entropy(model(x, ids), y).mean()


def plain_loss(params, x, ids, y):
    """The same loss on a plain dict of arrays, for jax.grad."""
    wide = x @ params["wide"]["kernel"] + params["wide"]["bias"]
    h = params["embed"]["embedding"][ids].mean(axis=1)
    layers = params["mlp"]["layers"]
    h = jax.nn.relu(h @ layers[0]["kernel"] + layers[0]["bias"])
    deep = h @ layers[2]["kernel"] + layers[2]["bias"]
    return optax.sigmoid_binary_cross_entropy((wide + deep)[:, 0], y).mean()


@st.composite
def batches(draw):
    """1..4 batches of (wide features, id bags with duplicates, labels)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = draw(st.integers(1, 4))
    return [
        (
            (rng.random((BATCH, WIDE)) < 0.5).astype(np.float32),
            rng.integers(0, draw(st.integers(1, VOCAB)), size=(BATCH, BAG)).astype(np.int32),
            (rng.random(BATCH) < 0.5).astype(np.float32),
        )
        for _ in range(steps)
    ]


def pure(state):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(state))


def bits(tree):
    return [np.asarray(leaf).view(np.uint32) for leaf in jax.tree.leaves(tree)]


def assert_bit_identical(a, b, what):
    for x, y in zip(bits(a), bits(b), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=what)


def test_labels_of_the_model():
    """The rules label every parameter as intended, on nnx.State and on its pure dict."""
    state = nnx.state(WideDeep(nnx.Rngs(0)), nnx.Param)
    for tree in (state, nnx.to_pure_dict(state)):
        labels = label_by_path(tree, RULES, default="sgd")
        if isinstance(labels, nnx.State):
            labels = nnx.to_pure_dict(labels)
        flat = {
            jax.tree_util.keystr(path): label
            for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]
        }
        assert {k for k, v in flat.items() if v == "ftrl"} == {
            "['wide']['bias']",
            "['wide']['kernel']",
        }
        assert {k for k, v in flat.items() if v == "frozen"} == {"['embed']['embedding']"}
        assert sum(v == "sgd" for v in flat.values()) == 4


@nnx.jit
def model_grads(model, x, ids, y):
    return nnx.grad(loss_fn)(model, x, ids, y)


plain_grads = jax.jit(jax.grad(plain_loss))


@given(seed=st.integers(0, 2**16), data=batches())
def test_partitioned_nnx_optimizer_is_union_of_standalone_optimizers(seed, data):
    """frozen bit-identical; wide == standalone FTRL; mlp == standalone SGD, every step."""
    model = WideDeep(nnx.Rngs(seed))
    tx = partitioned({"ftrl": ftrl(**FTRL_KW), "sgd": optax.sgd(SGD_LR)}, RULES, default="sgd")
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    start = pure(nnx.state(model, nnx.Param))
    wide, deep = start["wide"], start["mlp"]
    wide_tx, deep_tx = ftrl(**FTRL_KW), optax.sgd(SGD_LR)
    wide_state, deep_state = wide_tx.init(wide), deep_tx.init(deep)

    for t, (x, ids, y) in enumerate(data):
        grads = model_grads(model, x, ids, y)
        g = pure(grads)
        want = plain_grads(pure(nnx.state(model, nnx.Param)), x, ids, y)
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg="nnx.grad")

        optimizer.update(model, grads)
        updates, wide_state = wide_tx.update(g["wide"], wide_state, wide)
        wide = optax.apply_updates(wide, updates)
        updates, deep_state = deep_tx.update(g["mlp"], deep_state, deep)
        deep = optax.apply_updates(deep, updates)

        now = pure(nnx.state(model, nnx.Param))
        assert_bit_identical(now["embed"], start["embed"], f"step {t}: frozen embed moved")
        assert_bit_identical(now["wide"], wide, f"step {t}: wide != standalone FTRL")
        assert_bit_identical(now["mlp"], deep, f"step {t}: mlp != standalone SGD")
    moved = pure(nnx.state(model, nnx.Param))
    assert any(
        np.any(a != b)
        for a, b in zip(jax.tree.leaves(moved["mlp"]), jax.tree.leaves(start["mlp"]), strict=True)
    )
