r"""AutoInt's multi-head self-attention is its per-head, per-field loop.

For field embeddings :math:`e_1, \dots, e_N` and head :math:`h`,

.. math::

    \alpha^{h}_{m,k} = \frac{\exp \langle W^h_Q e_m, W^h_K e_k \rangle}
                            {\sum_{k'} \exp \langle W^h_Q e_m, W^h_K e_{k'} \rangle},
    \qquad
    \tilde e^h_m = \sum_k \alpha^h_{m,k}\, W^h_V e_k ,

and the interacting layer's output is :math:`\mathrm{ReLU}([\tilde e^1_m, \dots,
\tilde e^H_m] + W_{\mathrm{res}} e_m)`. The batched ``einsum`` form
(:class:`~jaxembed.models.autoint.InteractingLayer`) equals a numpy loop over examples, heads
and fields, with and without the residual; its gradients, through the written-out backward
pass of :func:`~jaxembed.models.autoint.attend`, are autodiff's of the textbook
``softmax(q kᵀ) v``; and AutoInt's input :math:`E` is the fields'
pooled embeddings followed by :math:`u_j \cdot \mathrm{dense}_j`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxembed.bags import Bags
from jaxembed.models.autoint import AutoInt, InteractingLayer, attend
from jaxembed.models.inputs import FieldSpec, ModelInputs, TableSpec
from jaxembed.nn.fields import module_rows
from proofs.strategies import ANY_BATCH


def literal_layer(e: np.ndarray, wq, wk, wv, wres, residual: bool) -> np.ndarray:
    n_b, n, _ = e.shape
    heads, att = wq.shape[1], wq.shape[2]
    out = np.zeros((n_b, n, heads * att))
    for b in range(n_b):
        for h in range(heads):
            for m in range(n):
                q = e[b, m] @ wq[:, h]
                scores = np.array([q @ (e[b, k] @ wk[:, h]) for k in range(n)])
                alpha = np.exp(scores - scores.max())
                alpha /= alpha.sum()
                out[b, m, h * att:(h + 1) * att] = sum(
                    alpha[k] * (e[b, k] @ wv[:, h]) for k in range(n))
    if residual:
        out = out + e @ wres
    return np.maximum(out, 0.0)


@settings(max_examples=10)
@given(ANY_BATCH, st.sampled_from([1, 3, 5]), st.sampled_from([2, 4]), st.sampled_from([1, 2]),
       st.sampled_from([1, 3]), st.booleans(), st.integers(0, 2**31))
def test_attention_is_the_per_head_per_field_loop(batch, fields, dim, heads, att, residual,
                                                   seed):
    rng = np.random.default_rng(seed)
    layer = InteractingLayer(dim, heads, att, rngs=nnx.Rngs(0), residual=residual)
    p = {}
    for name in ("query", "key", "value", "res"):
        var = getattr(layer, name)
        var.value = jnp.asarray(rng.normal(size=var.value.shape), jnp.float32)
        p[name] = np.asarray(var.value, np.float64)
    e = rng.normal(size=(batch, fields, dim))
    fast = layer(jnp.asarray(e, jnp.float32))
    expected = literal_layer(e, p["query"], p["key"], p["value"], p["res"], residual)
    np.testing.assert_allclose(fast, expected, rtol=1e-4, atol=1e-4)


def test_numeric_features_are_fields_scaled_by_their_value():
    inputs = ModelInputs((TableSpec("a", 6, 3),), (FieldSpec("x", "a"),
                                                   FieldSpec("y", "a", "mean", True, 2)),
                         num_dense=2)
    model = AutoInt(inputs, rngs=nnx.Rngs(0), layers=1, dense_interactions=True)
    dense = np.array([[1.5, -2.0], [0.0, 3.0]], np.float32)
    batch = {"x": Bags([[1], [4]]), "y": Bags([[2, 3], [-1, -1]]), "dense": dense}
    e = model.embeddings(module_rows(model, batch), batch)
    table, u = np.asarray(model.fields.embedding["a"][...]), np.asarray(model.dense_fields.u[...])
    np.testing.assert_allclose(e[:, 0], table[[1, 4]], rtol=1e-6)
    np.testing.assert_allclose(e[0, 1], (table[2] + table[3]) / 2, rtol=1e-6)
    np.testing.assert_allclose(e[1, 1], 0.0)
    np.testing.assert_allclose(e[:, 2:], dense[:, :, None] * u[None], rtol=1e-6)


def test_numeric_features_out_of_the_attention_are_first_order():
    """With ``dense_interactions=False`` (the default) :math:`E` holds the fields alone and
    the numeric features add :math:`\\langle w, \\mathrm{dense} \\rangle` to the logit."""
    inputs = ModelInputs((TableSpec("a", 6, 3),), (FieldSpec("x", "a"),
                                                   FieldSpec("y", "a", "mean", True, 2)),
                         num_dense=2)
    model = AutoInt(inputs, rngs=nnx.Rngs(0), layers=1, hidden=())
    model.dense_weights.value = jnp.asarray([0.5, -1.0])
    dense = np.array([[1.5, -2.0], [0.0, 3.0]], np.float32)
    batch = {"x": Bags([[1], [4]]), "y": Bags([[2, 3], [-1, -1]]), "dense": dense}
    rows = module_rows(model, batch)
    e = model.embeddings(rows, batch)
    assert e.shape == (2, 2, 3) and model.dense_fields is None
    attended = model.out(model.interacting[0](e).reshape(2, -1))[:, 0]
    np.testing.assert_allclose(model.head(rows, batch), attended + dense @ [0.5, -1.0],
                               rtol=1e-5, atol=1e-6)


def softmax_attention(q, k, v):
    """The textbook form: ``softmax(q kᵀ) v`` per group, differentiated by autodiff."""
    return jnp.einsum("gmn,gnk->gmk", jax.nn.softmax(jnp.einsum("gmk,gnk->gmn", q, k), axis=-1),
                      v)


@settings(max_examples=10)
@given(st.integers(1, 4), st.sampled_from([1, 2, 5]), st.sampled_from([1, 3]),
       st.floats(0.1, 4.0), st.integers(0, 2**31))
def test_attend_values_and_gradients_are_softmax_attention(groups, fields, att, scale, seed):
    rng = np.random.default_rng(seed)
    q, k, v, cotangent = (jnp.asarray(scale * rng.normal(size=(groups, fields, att)),
                                      jnp.float32) for _ in range(4))
    fast, fast_pullback = jax.vjp(attend, q, k, v)
    slow, slow_pullback = jax.vjp(softmax_attention, q, k, v)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)
    for got, want in zip(fast_pullback(cotangent), slow_pullback(cotangent), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * (1 + scale ** 3))


def test_interacting_layer_gradients_are_the_textbook_layers():
    rng = np.random.default_rng(3)
    layer = InteractingLayer(4, 2, 3, rngs=nnx.Rngs(0))
    e = jnp.asarray(rng.normal(size=(5, 6, 4)), jnp.float32)

    def textbook(e, query, key, value, res):
        q, k, v = (jnp.einsum("bnd,dhk->bnhk", e, w) for w in (query, key, value))
        alpha = jax.nn.softmax(jnp.einsum("bmhk,bnhk->bhmn", q, k), axis=-1)
        out = jnp.einsum("bhmn,bnhk->bmhk", alpha, v).reshape(5, 6, -1)
        return jnp.sum(jnp.sin(jax.nn.relu(out + e @ res)))

    graphdef, state = nnx.split(layer)
    names = ("query", "key", "value", "res")
    d_e, d_state = jax.grad(lambda e, st: jnp.sum(jnp.sin(nnx.merge(graphdef, st)(e))),
                            argnums=(0, 1))(e, state)
    want = jax.grad(textbook, argnums=range(5))(e, *(state[n][...] for n in names))
    np.testing.assert_allclose(d_e, want[0], rtol=1e-4, atol=1e-5)
    for name, b in zip(names, want[1:], strict=True):
        np.testing.assert_allclose(d_state[name][...], b, rtol=1e-4, atol=1e-5)
