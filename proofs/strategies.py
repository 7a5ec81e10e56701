"""hypothesis strategies shared by every proof: tables, ids and Bags.

Shapes come from small fixed buckets so that ``jit`` (and JAX's per-shape op cache) compiles
once per bucket rather than once per example. Bags are drawn with duplicates, padding, empty
bags and (optionally) weights, including zero and negative weights.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import jaxembed as je

VOCAB_SIZES = (1, 2, 5, 16, 33)
FEATURE_SIZES = (1, 3, 8)
BATCH_SIZES = (1, 3, 8)
WIDTHS = (1, 2, 4, 8)  # the power-of-two buckets Bags.from_lists produces


ANY_VOCAB = st.sampled_from(VOCAB_SIZES)
ANY_FEATURES = st.sampled_from(FEATURE_SIZES)
ANY_BATCH = st.sampled_from(BATCH_SIZES)
WEIGHTED = st.booleans()


@st.composite
def tables(draw, vocab=ANY_VOCAB, features=ANY_FEATURES, dtype=np.float32, scale: float = 4.0):
    """A ``[V, K]`` table of finite values (integers/4 half the time, so sums are exact)."""
    v, k = draw(vocab), draw(features)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        values = rng.integers(-16, 17, size=(v, k)) / 4.0
    else:
        values = rng.normal(0.0, scale, size=(v, k))
    return values.astype(dtype)


@st.composite
def id_arrays(draw, num_embeddings: int, shape=None, padding: bool = True):
    """Ids in ``[0, V)`` (and ``-1`` padding when ``padding``) of a bucketed shape."""
    if shape is None:
        shape = draw(st.sampled_from([(1,), (5,), (3, 4), (2, 2, 3)]))
    low = -1 if padding else 0
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return rng.integers(low, num_embeddings, size=shape).astype(np.int32)


@st.composite
def bag_lists(draw, num_embeddings: int, batch=ANY_BATCH, max_len: int = 8, weighted=WEIGHTED,
              positive_weights: bool = False):
    """``(lists, weights_or_None)``: python bags with duplicates and empty bags."""
    b = draw(batch)
    lists = []
    for _ in range(b):
        n = draw(st.integers(0, max_len))
        pool = draw(st.integers(1, num_embeddings))  # small pools force duplicates
        lists.append([draw(st.integers(0, pool - 1)) for _ in range(n)])
    if not draw(weighted):
        return lists, None
    lowest = 0.125 if positive_weights else -2.0
    weight = st.sampled_from([lowest, 0.5, 1.0, 2.0, 3.0])
    weights = [[draw(weight) for _ in bag] for bag in lists]
    if not positive_weights and any(weights) and draw(st.booleans()):
        # sometimes a zero weight, to reach the div_no_nan branches
        for bag in weights:
            if bag:
                bag[0] = 0.0
                break
    return lists, weights


@st.composite
def bags(draw, num_embeddings: int, **kwargs):
    """A :class:`jaxembed.Bags` (bucketed width) from :func:`bag_lists`."""
    lists, weights = draw(bag_lists(num_embeddings, **kwargs))
    width = draw(st.sampled_from([w for w in WIDTHS if w >= max(map(len, lists), default=0)]
                                 or [je.bucket_width(max(map(len, lists)))]))
    return je.Bags.from_lists(lists, weights, width=width)


@st.composite
def table_and_bags(draw, **bag_kwargs):
    """A table and a batch of bags over its rows."""
    table = draw(tables())
    return table, draw(bags(table.shape[0], **bag_kwargs))


FIELD_VOCABS = (2, 5, 16)
COMBINER_NAMES = ("sum", "mean", "sqrtn")


@st.composite
def field_batches(draw, dim: int = 3, max_fields: int = 3, num_dense=(0, 2), scale: float = 1.0):
    """``(inputs, batch, values)`` for a model of the zoo: a ``ModelInputs`` of 1-2 tables of
    width ``dim`` and 1-``max_fields`` fields (single- and multi-valued, shared tables, every
    combiner, weights), its batch (``"dense"`` included, no ``"wide"``) and ``values[table]``
    the tables' numbers ``f32[rows, dim]``. Multi-valued bags have duplicates, padding and
    empty bags; a single-valued field may be missing (padding)."""
    from jaxembed.models.inputs import FieldSpec, ModelInputs, TableSpec

    b = draw(ANY_BATCH)
    specs = tuple(TableSpec(f"t{i}", draw(st.sampled_from(FIELD_VOCABS)), dim)
                  for i in range(draw(st.integers(1, 2))))
    fields, batch = [], {}
    for i in range(draw(st.integers(1, max_fields))):
        table = draw(st.sampled_from(specs))
        multi = draw(st.booleans())
        combiner = draw(st.sampled_from(COMBINER_NAMES))
        if multi:
            lists, weights = draw(bag_lists(table.rows, batch=st.just(b), max_len=4))
            width = draw(st.sampled_from([w for w in WIDTHS
                                          if w >= max(map(len, lists), default=0)]))
        else:
            lists = [[draw(st.integers(0, table.rows - 1))] if draw(st.integers(0, 5)) else []
                     for _ in range(b)]
            weights = ([[draw(st.sampled_from([0.5, 1.0, 2.0, -1.0])) for _ in bag]
                        for bag in lists] if draw(WEIGHTED) else None)
            width = 1
        name = f"f{i}"
        fields.append(FieldSpec(name, table.name, combiner, multi, width))
        batch[name] = je.Bags.from_lists(lists, weights, width=width)
    d = draw(st.sampled_from(num_dense))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    batch["dense"] = rng.normal(size=(b, d)).astype(np.float32)
    inputs = ModelInputs(specs, tuple(fields), num_dense=d)
    values = {t.name: draw(tables(vocab=st.just(t.rows), features=st.just(dim), scale=scale))
              for t in specs}
    return inputs, batch, values
