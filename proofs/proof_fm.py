r"""The factorization machine's sum-square form is the double sum over pairs of features.

Over every (field, id) feature and numeric feature of a row, with :math:`x` the fields'
combiner-normalized multi-hots (a duplicated id adds up) followed by the numeric values and
:math:`v_i` the feature's table row (a numeric feature's :math:`u_j`):

.. math::

    \tfrac12 \Big( \big\lVert \textstyle\sum_i x_i v_i \big\rVert^2
                   - \textstyle\sum_i x_i^2 \lVert v_i \rVert^2 \Big)
    = \sum_{i<j} \langle v_i, v_j \rangle\, x_i x_j ,

and :math:`z = c + \sum_i w_i x_i + \text{that}`. With ``dense_interactions=False`` (the
default) the pairs run over the (field, id) features only, while :math:`\sum_i w_i x_i` keeps
the numeric features. The literal side builds :math:`x` over all
fields (numpy, its own combiner arithmetic) and loops over the pairs :math:`i < j`; the fast
side is :func:`jaxembed.models.fm.pairwise` on the gathered rows (and ``FM.head``). They agree
in values, and in gradients with respect to the tables and :math:`u` (the literal gradient
from the masked upper triangle of :math:`x x^\top \odot V V^\top`, the same double sum).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxembed.models.fm import FM, pairwise
from jaxembed.nn.fields import module_rows
from proofs.strategies import field_batches
from proofs.zoo import random_model


def normalized(bags, combiner: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, w̃)`` of a field's bags with the combiner's normalization, in numpy."""
    ids = np.asarray(bags.ids)
    w = np.where(ids >= 0, 1.0 if bags.weights is None else np.asarray(bags.weights,
                                                                         np.float64), 0.0)
    if combiner == "mean":
        norm = w.sum(1, keepdims=True)
    elif combiner == "sqrtn":
        norm = np.sqrt((w * w).sum(1, keepdims=True))
    else:
        norm = np.ones((len(w), 1))
    return ids, np.divide(w, norm, out=np.zeros_like(w), where=norm != 0)


def literal_features(inputs, batch) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """``x f64[B, N]``: each field's block (its table's rows), then the numeric values; and
    which table row each block column is (``(table, row)``, ``("dense", j)``)."""
    blocks, which = [], []
    for f in inputs.fields:
        ids, w = normalized(batch[f.name], f.combiner)
        rows = inputs.table(f.table).rows
        x = np.zeros((len(ids), rows))
        for b in range(len(ids)):
            for i, wt in zip(ids[b], w[b], strict=True):
                if i >= 0:
                    x[b, i] += wt  # a duplicated id adds up
        blocks.append(x)
        which += [(f.table, j) for j in range(rows)]
    dense = np.asarray(batch["dense"], np.float64)
    blocks.append(dense)
    which += [("dense", j) for j in range(dense.shape[1])]
    return np.concatenate(blocks, axis=1), which


def feature_vectors(values, u, which):
    """``V [N, K]``: the vector of every feature column."""
    return jnp.stack([u[j] if t == "dense" else values[t][j] for t, j in which])


def literal_pairs(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """:math:`\\sum_{i<j} \\langle v_i, v_j\\rangle x_i x_j` per row, by looping the pairs."""
    out = np.zeros(len(x))
    for b in range(len(x)):
        active = np.flatnonzero(x[b])
        for a, i in enumerate(active):
            for j in active[a + 1:]:
                out[b] += x[b, i] * x[b, j] * float(v[i] @ v[j])
    return out


def literal_pairs_jnp(x, v):
    """The same double sum as the masked upper triangle of ``x xᵀ ⊙ V Vᵀ`` (differentiable)."""
    n = x.shape[1]
    upper = jnp.triu(jnp.ones((n, n)), k=1)
    return jnp.einsum("bi,bj,ij,ik,jk->b", x, x, upper, v, v)


@settings(max_examples=10)  # each example compiles one jit of both forms and their gradients
@given(field_batches(), st.integers(0, 2**31), st.booleans())
def test_sum_square_is_the_double_sum_over_pairs(drawn, seed, dense_interactions):
    inputs, batch, values = drawn
    graphdef, state = random_model(FM, inputs, seed, tables=values,
                                   dense_interactions=dense_interactions)
    x, which = literal_features(inputs, batch)
    numeric = np.array([t == "dense" for t, _ in which])
    x_pairs = x if dense_interactions else np.where(numeric, 0.0, x)  # who takes part in pairs
    u = (state["dense_fields"]["u"][...] if dense_interactions
         else jnp.zeros((inputs.num_dense, inputs.tables[0].dim)))
    g = jnp.asarray(np.random.default_rng(seed).normal(size=len(x)), jnp.float32)

    def fast_pairs(state):
        m = nnx.merge(graphdef, state)
        return pairwise(m.fields, module_rows(m, batch), batch, m.dense_fields)

    @jax.jit
    def fast(state):
        d_state = jax.grad(lambda s: jnp.sum(g * fast_pairs(s)))(state)
        return fast_pairs(state), nnx.merge(graphdef, state)(batch), d_state

    pairs, logits, d_state = fast(state)
    embedding = state["fields"]["embedding"]
    tables = {t: embedding[t][...] for t in embedding}
    v = np.asarray(feature_vectors(tables, u, which), np.float64)
    expected = literal_pairs(x_pairs, v)
    scale = 1.0 + (np.abs(x) @ np.abs(v).sum(1)) ** 2
    tol = {"rtol": 1e-4, "atol": 1e-5 * scale.max()}
    np.testing.assert_allclose(pairs, expected, **tol)

    # the whole model: c + Σ_i w_i x_i (linear tables, numeric weights) + the pairs
    linear = state["fields"]["linear"]
    dense_w = state["fields"]["dense_linear"][...]
    w_first = np.array([float(dense_w[j]) if t == "dense" else float(linear[t][...][j, 0])
                        for t, j in which])
    first = float(state["fields"]["bias"][...]) + x @ w_first
    np.testing.assert_allclose(logits, first + expected, **tol)

    # gradients with respect to the tables and u, through the gather
    def literal_loss(tables, u):
        return jnp.sum(g * literal_pairs_jnp(jnp.asarray(x_pairs, jnp.float32),
                                             feature_vectors(tables, u, which)))

    d_tables, d_u = jax.jit(jax.grad(literal_loss, argnums=(0, 1)))(tables, u)
    for t in tables:
        np.testing.assert_allclose(d_state["fields"]["embedding"][t][...], d_tables[t], **tol)
    if dense_interactions:
        np.testing.assert_allclose(d_state["dense_fields"]["u"][...], d_u, **tol)
    else:
        assert "dense_fields" not in state  # no numeric vectors to learn
