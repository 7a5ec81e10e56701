r"""DIN's attention pool is the embedding equation with attention weights.

For a history bag (ids :math:`i_l`, slot weights :math:`w_l`, padding) and a target row
:math:`t`, DIN scores each position, :math:`a_l = w_l\, \mathrm{MLP}_a([h_l, t, h_l - t,
h_l \odot t])` (0 on padding, not softmax-normalized), and pools

.. math::

    \sum_l a_l h_l = \mathrm{multi\_hot}(\mathrm{ids}, a)\, W
                   = \texttt{bag\_lookup}(W, \mathrm{Bags}(\mathrm{ids}, a), \text{"sum"}),

in values and in gradients with respect to :math:`W` (the weights :math:`a` held fixed). The
scores equal the attention MLP applied to each position on its own (a per-position loop), and
``DIN.interest`` (the model's path, through the gathered rows) is that pool.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.models.din import DIN, attention_pool
from jaxembed.models.inputs import FieldSpec, ModelInputs, TableSpec
from jaxembed.nn.fields import gather, module_rows
from proofs.strategies import bags, tables
from proofs.zoo import random_model


@settings(max_examples=8)
@given(tables(vocab=st.sampled_from([5, 16]), features=st.sampled_from([3, 8]), scale=1.0),
       st.data(), st.integers(0, 2**31))
def test_attention_pool_is_the_weighted_multi_hot_product(table, data, seed):
    v, k = table.shape
    history = data.draw(bags(v, max_len=8))
    n = history.batch_size
    target = je.Bags(np.random.default_rng(seed).integers(0, v, (n, 1)))
    inputs = ModelInputs((TableSpec("item", v, k),),
                         (FieldSpec("item", "item"),
                          FieldSpec("recent", "item", multi=True, width=history.width)))
    graphdef, state = random_model(DIN, inputs, seed, tables={"item": table},
                                   att_hidden=(4,), hidden=(4,))
    model = nnx.merge(graphdef, state)
    batch = {"item": target, "recent": history, "dense": np.zeros((n, 0), np.float32)}
    rows = gather(table, history)
    t = jnp.asarray(table)[target.ids[:, 0]]
    a = model.attention(rows, t, history)

    mask = np.asarray(history.mask)
    assert np.all(np.asarray(a)[~mask] == 0)  # masked on padding
    slot_w = np.asarray(history.slot_weights())
    for b in range(n):  # each position scored on its own
        for l in np.flatnonzero(mask[b]):
            h = rows[b, l]
            score = model.attention.mlp(jnp.concatenate([h, t[b], h - t[b], h * t[b]])[None])
            np.testing.assert_allclose(a[b, l], slot_w[b, l] * score[0, 0], rtol=1e-4,
                                       atol=1e-5)

    weighted = je.Bags(history.ids, np.asarray(a))
    pooled = attention_pool(rows, a)
    literal = je.dense_lookup(je.multi_hot(weighted, v), table)
    np.testing.assert_allclose(pooled, literal, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pooled, je.bag_lookup(table, weighted, combiner="sum"),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.interest(module_rows(model, batch), batch, "recent", t),
                               pooled, rtol=1e-5, atol=1e-5)

    g = jnp.asarray(np.random.default_rng(seed + 1).normal(size=pooled.shape), jnp.float32)
    d_fast = jax.grad(lambda w: jnp.sum(g * attention_pool(gather(w, history), a)))(table)
    d_literal = jax.grad(lambda w: jnp.sum(
        g * je.dense_lookup(je.multi_hot(weighted, v), w)))(table)
    np.testing.assert_allclose(d_fast, d_literal, rtol=1e-4, atol=1e-4)


@settings(max_examples=8)
@given(tables(vocab=st.sampled_from([5, 16]), features=st.sampled_from([3, 8]), scale=1.0),
       st.data(), st.integers(0, 2**31), st.sampled_from([(), (4,), (5, 3)]))
def test_attention_scores_split_first_layer_equals_the_concatenation(table, data, seed,
                                                                     hidden):
    """The scores' fast form (the first layer's kernel split in blocks, the target's part once
    per row) equals the MLP on the literal ``[h, t, h - t, h * t]``, in values and in
    gradients with respect to the rows, the target and every attention parameter."""
    v, k = table.shape
    history = data.draw(bags(v, max_len=8))
    n = history.batch_size
    inputs = ModelInputs((TableSpec("item", v, k),),
                         (FieldSpec("item", "item"),
                          FieldSpec("recent", "item", multi=True, width=history.width)))
    graphdef, state = random_model(DIN, inputs, seed, tables={"item": table},
                                   att_hidden=hidden, hidden=(4,))
    unit = nnx.merge(graphdef, state).attention
    rows = gather(table, history)
    t = jnp.asarray(np.random.default_rng(seed).normal(size=(n, k)), jnp.float32)
    weights = history.slot_weights(jnp.float32)

    def literal(unit, rows, t):
        tt = jnp.broadcast_to(t[:, None], rows.shape)
        return unit.mlp(jnp.concatenate([rows, tt, rows - tt, rows * tt], -1))[..., 0] * weights

    np.testing.assert_allclose(unit(rows, t, history), literal(unit, rows, t), rtol=1e-4,
                               atol=1e-5)
    g = jnp.asarray(np.random.default_rng(seed + 1).normal(size=weights.shape), jnp.float32)
    fast_grads = nnx.grad(lambda u, r, x: jnp.sum(g * u(r, x, history)), argnums=(0, 1, 2))(
        unit, rows, t)
    literal_grads = nnx.grad(lambda u, r, x: jnp.sum(g * literal(u, r, x)), argnums=(0, 1, 2))(
        unit, rows, t)
    for fast, lit in zip(jax.tree.leaves(fast_grads), jax.tree.leaves(literal_grads),
                         strict=True):
        np.testing.assert_allclose(fast, lit, rtol=1e-4, atol=1e-4)
