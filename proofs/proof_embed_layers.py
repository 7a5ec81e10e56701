r"""The layers compute the embedding equation: values, gradients, dropout, regularizers.

1. ``Embed``: :math:`\mathrm{out}_n = e_{i_n} W` — the layer equals the literal
   ``dense_lookup(one_hot(ids, V), W)`` (with ``max_norm``: the literal product with the
   clipped table :math:`\mathrm{clip}_c(W)`, since clipping acts row by row), for both lookup
   styles; and :math:`\partial L/\partial W` from ``nnx.grad`` over the layer's parameter equals
   ``jax.grad`` of the literal form.
2. ``EmbedBag`` (the sparse inner product layer): :math:`\mathrm{out}_b = c_b\, x_b W` — equals
   ``dense_lookup(multi_hot(bags, V) · c, W)`` with :math:`c_b = 1,\ 1/\sum_l w_{bl},\
   1/\sqrt{\sum_l w_{bl}^2}` for ``sum``/``mean``/``sqrtn`` (0 when the denominator is 0), and
   :math:`\max_{j \in b} W_j` over the ids present in the bag for ``max``; values and table
   gradients, with duplicates, weights (zero and negative), empty bags and padding.
3. Embedding dropout: (a) in a forward pass every occurrence of the same id gets the same
   decision, :math:`\mathrm{out}_n = s_{i_n} W_{i_n}` with :math:`s_j \in \{0, 1/(1-p)\}`,
   for both draws; (b) the expectation is exact: summing over all :math:`2^V` masks with
   their probabilities, :math:`\sum_m P(m)\, \mathrm{drop}(W[\mathrm{ids}], m[\mathrm{ids}])
   = W[\mathrm{ids}]`.
4. ``l2_rows``: :math:`\lambda \sum_j [j \in \mathrm{batch}]\, \lVert W_j \rVert^2`
   (``unique=False``: :math:`\lambda \sum_j n_j \lVert W_j \rVert^2` with :math:`n_j` the count
   of id :math:`j`), and its gradient :math:`2 \lambda [j \in \mathrm{batch}]\, W_j`, against the
   literal presence/count vector from ``multi_hot``.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.nn import Embed, EmbedBag, l2_rows
from jaxembed.nn.dropout import drop_rows
from jaxembed.nn.regularize import L2Rows
from proofs import strategies as S

# (V, K, B, L) buckets: K = 1, many duplicates (V = 5 < B·L), wide bags with padding and a
# vocabulary with untouched rows. Every comparison runs inside one `jit` per bucket (compiling
# dominates a proof's cost); V = 1 and the other edge sizes are the core proofs' business.
BAG_SHAPES = ((5, 1, 8, 4), (16, 8, 3, 8))
ID_SHAPES = ((5, 1, (3, 4)), (16, 8, (2, 2, 3)))
RATES = (0.1, 0.5, 0.9)
MAX_NORMS = (None, 1.0)


ANY_WEIGHTING = st.booleans()


@st.composite
def table_and_bags(draw, weighted=ANY_WEIGHTING):
    """``(W, bags)`` from a shape bucket: duplicates, empty bags, padding, weights."""
    v, k, b, width = draw(st.sampled_from(BAG_SHAPES))
    table = draw(S.tables(vocab=st.just(v), features=st.just(k)))
    lists, weights = draw(S.bag_lists(v, batch=st.just(b), max_len=width, weighted=weighted))
    return table, je.Bags.from_lists(lists, weights, width=width)


@st.composite
def table_and_ids(draw):
    """``(W, ids)``: ids in ``[-1, V)`` (padding included) of a bucketed shape."""
    v, k, shape = draw(st.sampled_from(ID_SHAPES))
    table = draw(S.tables(vocab=st.just(v), features=st.just(k)))
    return table, draw(S.id_arrays(v, shape=shape))


def untie(table: np.ndarray, seed: int) -> np.ndarray:
    """Add a continuous jitter so no two entries of a column tie (for ``max`` gradients)."""
    jitter = np.random.default_rng(seed).uniform(-1e-2, 1e-2, table.shape)
    return (table + jitter).astype(np.float32)


def cotangent(shape: tuple[int, ...], seed: int) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def layer_and_grad(layer: nnx.Module, inputs, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``layer(inputs)`` and ``∂ <layer(inputs), g> / ∂ W`` by ``nnx.grad`` over its Param."""
    grads = nnx.grad(lambda m: jnp.sum(m(inputs) * g))(layer)
    return layer(inputs), grads["embedding"][...]


def literal_and_grad(literal, table, g) -> tuple[jax.Array, jax.Array]:
    return literal(table), jax.grad(lambda w: jnp.sum(literal(w) * g))(table)


def literal_combined(table, bags: je.Bags, combiner: str, max_norm):
    """``c_b · x_b @ W`` (or the max over present rows), written with the literal pieces."""
    v = table.shape[0]
    w = je.clip_rows(table, max_norm) if max_norm is not None else table
    if combiner == "max":
        present = je.multi_hot(je.Bags(bags.ids), v) > 0
        rows = jnp.where(present[:, :, None], w[None, :, :], -jnp.inf)
        return jnp.where(present.any(axis=1)[:, None], rows.max(axis=1), 0.0)
    x = je.multi_hot(bags, v)
    slots = bags.slot_weights()
    if combiner == "mean":
        denom = slots.sum(axis=1)
    elif combiner == "sqrtn":
        denom = jnp.sqrt((slots * slots).sum(axis=1))
    else:
        denom = jnp.ones(x.shape[0])
    scale = jnp.where(denom == 0, 0.0, 1.0 / jnp.where(denom == 0, 1.0, denom))
    return je.dense_lookup(x * scale[:, None], w)


def assert_close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    tol = 1e-5 * (1.0 + np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=tol, err_msg=what)


# --- 1. Embed == one_hot(ids) @ W -------------------------------------------------------------
@jax.jit
def embed_cases(table, ids, g):
    """For each (max_norm, lookup_style): (layer, literal) values and table gradients."""
    out = {}
    for max_norm, style in itertools.product(MAX_NORMS, ("gather", "one_hot")):
        layer, _ = Embed.from_pretrained(table, freeze=False, max_norm=max_norm, lookup_style=style)

        def literal(w, max_norm=max_norm):
            w = je.clip_rows(w, max_norm) if max_norm is not None else w
            return je.dense_lookup(je.one_hot(ids, w.shape[0]), w)

        out[f"max_norm={max_norm} {style}"] = (
            layer_and_grad(layer, ids, g),
            literal_and_grad(literal, table, g),
        )
    return out


@given(table_and_ids(), st.integers(0, 2**31 - 1))
def test_embed_equals_one_hot_product(case, seed):
    table, ids = case
    g = cotangent((*ids.shape, table.shape[1]), seed)
    for config, ((out, grad), (lit, lit_grad)) in embed_cases(table, ids, g).items():
        assert_close(out, lit, f"Embed values {config}")
        assert_close(grad, lit_grad, f"Embed table gradient {config}")


# --- 2. EmbedBag == multi_hot(bags) @ W (with the combiner's normalization) -------------------
@functools.partial(jax.jit, static_argnames="combiners")
def bag_cases(table, bags, g, combiners):
    """For each (combiner, max_norm): (layer, literal) values and table gradients."""
    out = {}
    for combiner, max_norm in itertools.product(combiners, MAX_NORMS):
        layer, _ = EmbedBag.from_pretrained(
            table, freeze=False, combiner=combiner, max_norm=max_norm
        )
        literal = functools.partial(
            literal_combined, bags=bags, combiner=combiner, max_norm=max_norm
        )
        out[f"{combiner} max_norm={max_norm}"] = (
            layer_and_grad(layer, bags, g),
            literal_and_grad(literal, table, g),
        )
    return out


@given(table_and_bags(), st.integers(0, 2**31 - 1))
def test_embedbag_equals_multi_hot_product(case, seed):
    """Every combiner (``max`` on unweighted bags, as it takes no weights)."""
    table, bags = case
    # `max` passes its gradient to the row holding the maximum; a tie between distinct ids
    # would split it differently from the literal form, so break ties with a tiny jitter.
    table = untie(table, seed)
    g = cotangent((bags.batch_size, table.shape[1]), seed)
    combiners = ("sum", "mean", "sqrtn") + (("max",) if bags.weights is None else ())
    for config, ((out, grad), (lit, lit_grad)) in bag_cases(table, bags, g, combiners).items():
        assert_close(out, lit, f"EmbedBag values {config}")
        assert_close(grad, lit_grad, f"EmbedBag table gradient {config}")


# --- 3. embedding dropout -------------------------------------------------------------------
@jax.jit
def dropout_cases(table, ids, seed):
    """The layer's training-mode output for each rate and draw, and its eval-mode output."""
    out = {}
    for rate, draw in itertools.product(RATES, ("hash", "table")):
        layer, _ = Embed.from_pretrained(
            table,
            freeze=False,
            dropout=rate,
            dropout_draw=draw,
            rngs=nnx.Rngs(dropout=jax.random.key(seed)),
        )
        out[f"{rate} {draw}"] = layer(ids)
    layer.eval()
    out["eval"] = layer(ids)
    return out


@given(st.sampled_from([(2, (8,)), (16, (4, 8))]), st.integers(0, 2**31 - 1))
def test_dropout_drops_every_occurrence_of_an_id_together(shape, seed):
    v, ids_shape = shape
    rng = np.random.default_rng(seed)
    table = (1.0 + rng.uniform(0.0, 1.0, (v, 3))).astype(np.float32)  # no zero entries
    ids = rng.integers(0, v, ids_shape).astype(np.int32)  # v small: many duplicates
    results = dropout_cases(table, ids, seed)
    np.testing.assert_array_equal(np.asarray(results.pop("eval")), table[ids])
    flat = ids.reshape(-1)
    for config, out in results.items():
        rate = float(config.split()[0])
        scale = np.asarray(out) / table[ids]  # one factor per looked-up row
        np.testing.assert_allclose(scale, scale[..., :1].repeat(3, axis=-1), rtol=1e-6)
        s = scale[..., 0].reshape(-1)
        kept = np.isclose(s, 1.0 / (1.0 - rate), rtol=1e-6)
        assert np.all(kept | (s == 0.0)), f"{config}: factors other than 0 and 1/(1-p): {s}"
        for j in np.unique(flat):
            decisions = kept[flat == j]
            assert decisions.all() or not decisions.any(), f"{config}: id {j} mixed decisions"


@jax.jit
def dropout_expectation(rows, ids, masks, rate):
    """``Σ_m P(m) drop_rows(rows, m[ids], p)`` over the rows of ``masks`` (all of {0,1}^V)."""
    probs = jnp.prod(jnp.where(masks, 1.0 - rate, rate), axis=1)
    keep = masks[:, jnp.clip(ids, 0, masks.shape[1] - 1)]
    dropped = jax.vmap(lambda k: drop_rows(rows, k, rate))(keep)
    return jnp.tensordot(probs, dropped, axes=1)


@given(st.sampled_from([2, 5]), st.sampled_from(RATES), st.integers(0, 2**31 - 1))
def test_dropout_expectation_is_the_undropped_lookup(v, rate, seed):
    """E over all 2^V masks, weighted by their probabilities, of the dropped rows."""
    rng = np.random.default_rng(seed)
    table = rng.normal(0.0, 4.0, (v, 3)).astype(np.float32)
    ids = rng.integers(-1, v, (4, 3)).astype(np.int32)
    rows = je.lookup(table, ids)
    masks = np.array(list(itertools.product((False, True), repeat=v)))
    assert_close(dropout_expectation(rows, ids, masks, rate), rows, "E[dropout(W[ids])]")


# --- 4. l2_rows -----------------------------------------------------------------------------
@jax.jit
def l2_cases(table, bags, weight):
    """For unique in (True, False): (l2_rows, literal) values and gradients."""
    v = table.shape[0]
    per_id = jnp.sum(je.multi_hot(je.Bags(bags.ids), v), axis=0)  # occurrences of each id
    out = {}
    for unique in (True, False):
        n = (per_id > 0).astype(jnp.float32) if unique else per_id

        def literal(w, n=n):
            return weight * jnp.sum(n * jnp.sum(w * w, axis=1))

        reg = L2Rows(weight, unique)
        out[f"unique={unique}"] = (
            (reg(table, bags), jax.grad(reg)(table, bags)),
            literal_and_grad(literal, table, 1.0),
            2.0 * weight * n[:, None] * table,
        )
    return out


@given(table_and_bags(weighted=st.just(False)), st.sampled_from([0.0, 0.01, 3.0]))
def test_l2_rows_equals_penalty_of_present_rows(case, weight):
    """(``l2_rows`` reads only the ids, so unweighted bags cover it.)"""
    table, bags = case
    assert l2_rows(weight) == L2Rows(weight, True)
    for config, ((value, grad), (lit, lit_grad), closed_form) in l2_cases(
        table, bags, weight
    ).items():
        assert_close(value, lit, f"l2_rows value ({config})")
        assert_close(grad, lit_grad, f"l2_rows gradient ({config})")
        assert_close(grad, closed_form, f"2λ n_j W_j ({config})")
