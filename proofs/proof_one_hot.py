r"""One-hot row selection: :math:`e_i(V)\,W = W_{i,:}` and :math:`e_{-1} W = 0`.

The literal product ``dense_lookup(one_hot(ids, V), W)`` is proven equal to the gather
``lookup(W, ids)`` and to a numpy indexing reference, for vocabulary sizes, feature sizes and
id batch shapes from the buckets below, with ``-1`` padding; the ``one_hot`` and ``auto``
lookup styles are proven equal to ``gather``.

In float32 the equality is exact: each output entry has one non-zero term
(:math:`1 \cdot W_{ik}`), and adding exact zeros does not round. In bfloat16 and float16 the
same argument holds; the bound we state and check is half an ulp of the table dtype,
:math:`|\Delta| \le 2^{-p} |W_{ik}|` with :math:`p = 8` (bfloat16) or :math:`11` (float16).

**Compiled entry points.** Compiling dominates the cost of a proof, so the proofs call the
functions under proof through the ``jax.jit`` wrappers defined here (one compile per shape
bucket and static argument, shared by every proof module that imports them);
``proofs/proof_transforms.py`` proves ``jit(f) == f``, which carries every proof over to the
eager calls.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxembed as je
from proofs import strategies as S

# --- compiled entry points (shared by the proof modules) ---------------------------------------
one_hot = jax.jit(je.one_hot, static_argnames=("num_embeddings", "dtype"))
multi_hot = jax.jit(je.multi_hot, static_argnames=("num_embeddings", "dtype"))
dense_lookup = jax.jit(je.dense_lookup)
lookup = jax.jit(je.lookup, static_argnames=("max_norm", "lookup_style"))
bag_lookup = jax.jit(je.bag_lookup, static_argnames=("combiner", "max_norm"))
safe_bag_lookup = jax.jit(
    je.safe_bag_lookup, static_argnames=("combiner", "default_id", "max_norm")
)

# --- shape buckets --------------------------------------------------------------------------
# The `ci` profile draws from three buckets (each compiles once per run) that between them
# cover V = 1 (every id equal), K = 1, 1-, 2- and 3-D id batches and a vocabulary larger than
# the batch; the `thorough` profile draws every combination of the sizes in
# proofs/strategies.py.
THOROUGH = settings.default.max_examples > 100
ID_BATCH_SHAPES = ((1,), (5,), (3, 4), (2, 2, 3))
CI_ID_SHAPES = ((1, 3, (5,)), (5, 1, (3, 4)), (33, 8, (2, 2, 3)))
ID_SHAPES = (
    tuple(itertools.product(S.VOCAB_SIZES, S.FEATURE_SIZES, ID_BATCH_SHAPES))
    if THOROUGH
    else CI_ID_SHAPES
)

# Half an ulp, relative, of each low-precision dtype: 2^-(significand bits).
HALF_ULP = {jnp.dtype(jnp.bfloat16): 2.0**-8, jnp.dtype(jnp.float16): 2.0**-11}


@st.composite
def table_and_ids(draw, dtype=np.float32, shapes=ID_SHAPES):
    """A ``[V, K]`` table and a batch of ids (with ``-1`` padding) over its rows."""
    v, k, shape = draw(st.sampled_from(shapes))
    table = draw(S.tables(vocab=st.just(v), features=st.just(k), dtype=dtype))
    return table, draw(S.id_arrays(v, shape=shape))


def reference_rows(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``W[i]`` for each id by plain numpy indexing, a zero row for ``-1`` (float64)."""
    out = np.zeros((*ids.shape, table.shape[1]), dtype=np.float64)
    for pos in np.ndindex(*ids.shape):
        if ids[pos] >= 0:
            out[pos] = table[ids[pos]].astype(np.float64)
    return out


@given(table_and_ids())
def test_one_hot_product_is_gather(data):
    """``dense_lookup(one_hot(ids, V), W) == lookup(W, ids) == W[ids]`` exactly (float32),
    and ``one_hot(-1) @ W == 0``."""
    table, ids = data
    v = table.shape[0]
    hot = np.asarray(one_hot(ids, v))
    assert hot.shape == (*ids.shape, v)
    expected_hot = (ids[..., None] == np.arange(v)).astype(np.float32)
    np.testing.assert_array_equal(hot, expected_hot)
    literal = np.asarray(dense_lookup(hot, table))
    gathered = np.asarray(lookup(table, ids))
    expected = reference_rows(table, ids)
    assert literal.shape == gathered.shape == expected.shape
    np.testing.assert_array_equal(literal, expected)
    np.testing.assert_array_equal(gathered, expected)
    assert not np.any(gathered[ids == -1])


@given(table_and_ids(), st.sampled_from(["one_hot", "auto"]))
def test_lookup_styles_agree(data, style):
    """``lookup(W, ids, lookup_style=s) == lookup(W, ids, lookup_style='gather')`` exactly,
    for ``s`` in ``one_hot``, ``auto``."""
    table, ids = data
    np.testing.assert_array_equal(
        np.asarray(lookup(table, ids, lookup_style=style)),
        np.asarray(lookup(table, ids, lookup_style="gather")),
    )


@given(st.sampled_from([jnp.bfloat16, jnp.float16]), st.data())
def test_low_precision_one_hot(dtype, data):
    """bfloat16 / float16: ``|one_hot(ids) @ W - W[ids]| <= 2^-p |W[ids]|`` for the literal
    product, the gather and the ``one_hot`` lookup style, each keeping the table's dtype."""
    table, ids = data.draw(table_and_ids(dtype=dtype, shapes=ID_SHAPES[:2]))
    expected = reference_rows(table, ids)
    bound = HALF_ULP[jnp.dtype(dtype)] * np.abs(expected)
    hot = one_hot(ids, table.shape[0], dtype=dtype)
    for got in (
        dense_lookup(hot, table),
        lookup(table, ids),
        lookup(table, ids, lookup_style="one_hot"),
    ):
        assert got.dtype == jnp.dtype(dtype)
        err = np.abs(np.asarray(got, dtype=np.float64) - expected)
        assert np.all(err <= bound), float(np.max(err - bound))
