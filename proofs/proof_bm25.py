r"""Okapi BM25 as one sparse product, and the hybrid score, against their per-term formulas.

1. For a collection :math:`D` of texts and queries :math:`Q`,

   .. math::

       C\,W^\top = \Big[\sum_t c_q(t)\,\mathrm{idf}(t)\,
       \frac{f(t,d)(k_1+1)}{f(t,d) + k_1(1 - b + b|d|/\overline{|d|})}\Big]_{q, d},
       \qquad \mathrm{idf}(t) = \ln\Big(1 + \frac{N - n_t + 0.5}{n_t + 0.5}\Big):

   :class:`jaxembed.text.bm25.BM25` (the fast form) equals :func:`bm25_literal` (the sum
   written out term by term with dictionaries) for texts over a small vocabulary (so terms
   repeat within and across texts), query terms the collection lacks, empty texts, repeated
   query terms, and any :math:`k_1 \ge 0`, :math:`b \in [0, 1]`, with and without stop
   words (removed before counting; the literal splits on spaces itself).
2. The hybrid score :math:`z(s_D) + w\,z(s_L)` with
   :math:`z(s)_{qj} = (s_{qj} - \mu_q)/\sigma_q` (population :math:`\sigma`; a constant row
   gives 0) — :func:`jaxembed.text.hybrid.hybrid_scores` equals
   :func:`~jaxembed.text.hybrid.hybrid_literal` (plain Python, row by row), and the ranking it
   gives is unchanged when either score is scaled by :math:`a > 0` and shifted per query.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.text.bm25 import BM25, bm25_literal
from jaxembed.text.hybrid import hybrid_literal, hybrid_scores

WORDS = ("cat", "dog", "sat", "on", "the", "mat", "ran", "far", "x1", "zz")
TEXTS = st.lists(st.sampled_from(WORDS), min_size=0, max_size=9).map(" ".join)


@given(documents=st.lists(TEXTS, min_size=1, max_size=6),
       queries=st.lists(TEXTS, min_size=1, max_size=4),
       k1=st.sampled_from([0.0, 0.5, 1.2, 2.0]), b=st.sampled_from([0.0, 0.3, 0.75, 1.0]),
       stop=st.booleans())
def test_bm25_sparse_product_equals_the_per_term_formula(documents, queries, k1, b, stop):
    stop_words = frozenset({"the", "on"}) if stop else None
    fast = BM25(documents, k1=k1, b=b, stop_words=stop_words).scores(queries)

    def words(texts):
        return [[t for t in text.split() if not stop or t not in stop_words] for text in texts]

    literal = bm25_literal(words(queries), words(documents), k1=k1, b=b)
    assert fast.shape == (len(queries), len(documents))
    np.testing.assert_allclose(fast, literal, rtol=1e-12, atol=1e-12)


def test_bm25_known_value():
    """One value by hand: q = "cat", D = ["cat cat dog", "dog"], k1 = 1.2, b = 0.75:
    idf = ln(1 + 1.5/1.5) = ln 2, |d| = 3, avgdl = 2, f = 2."""
    expected = np.log(2.0) * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / 2))
    np.testing.assert_allclose(BM25(["cat cat dog", "dog"]).scores(["cat"]),
                               [[expected, 0.0]], rtol=1e-12)


ROWS = st.integers(1, 3)
COLS = st.integers(1, 6)
FLOATS = st.floats(-5, 5, allow_nan=False, width=32)


@given(data=st.data(), rows=ROWS, cols=COLS, weight=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
       constant=st.booleans())
def test_hybrid_equals_its_literal_and_ignores_scale(data, rows, cols, weight, constant):
    matrix = st.lists(st.lists(FLOATS, min_size=cols, max_size=cols), min_size=rows,
                      max_size=rows)
    dense = np.array(data.draw(matrix), np.float64)
    lexical = np.array(data.draw(matrix), np.float64)
    if constant:  # a query no candidate matches lexically: sigma = 0
        lexical[0] = 3.0
    fast = hybrid_scores(dense, lexical, weight)
    np.testing.assert_allclose(fast, hybrid_literal(dense.tolist(), lexical.tolist(), weight),
                               rtol=1e-9, atol=1e-9)
    shifts = np.arange(rows, dtype=np.float64)[:, None]
    moved = hybrid_scores(4.0 * dense - shifts, 0.25 * lexical + 7 * shifts, weight)
    np.testing.assert_allclose(moved, fast, rtol=1e-7, atol=1e-7)
