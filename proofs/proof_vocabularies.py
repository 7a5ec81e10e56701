r"""Counting and looking up in Arrow equal their literal twins.

* **Counts.** A :class:`~jaxembed.data.vocabularies.Tally` fed string and
  dictionary-encoded columns (``x_i = d_{k_i}``, counted as
  :math:`\mathrm{count}(d_j) = \#\{i : k_i = j\}`) and summed by ``group_by`` in pieces, then
  :meth:`FieldVocab.from_tally` (sorted in Arrow by count descending, then by the UTF-8 bytes
  of the value), gives the vocabulary that :meth:`FieldVocab.from_counts` gives of a Python
  ``Counter`` of the decoded values (nulls dropped, or counted as the missing value), for every
  ``min_count`` and ``max_size``: the same tokens in the same order with the same counts.
  Values mix ASCII and non-ASCII text, so byte order meets code-point order.
* **Ids.** :meth:`FieldVocab.dictionary_ids` of a dictionary array, which looks up each
  dictionary entry once, ``id(x_i) = id(d_{k_i})``, equals :meth:`FieldVocab.ids` of the
  decoded column (filled with the missing value when one is given), for 0, 1 and several OOV
  buckets, dictionaries with unused and repeated entries and null rows; with no OOV bucket
  both raise the same error, naming the first row's out-of-vocabulary value (not the first
  such dictionary entry, and not an unused one).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.data.readers import DataError
from jaxembed.data.vocabularies import FieldVocab, Tally

TEXT = st.text(alphabet=st.sampled_from(list("ab0Zé€ \U0001f600")), max_size=3)
VALUES = st.lists(st.none() | TEXT, max_size=30)


@st.composite
def dictionary_arrays(draw, values: list[str | None]) -> pa.DictionaryArray:
    """``values`` as a dictionary array whose dictionary may hold unused and repeated
    entries, in a drawn order."""
    distinct = sorted({v for v in values if v is not None})
    extra = draw(st.lists(TEXT, max_size=3))
    entries = draw(st.permutations(distinct + extra))
    if entries and draw(st.booleans()):
        entries = [*entries, entries[0]]  # a repeated entry: rows may point at either copy
    keys = []
    for v in values:
        where = [j for j, e in enumerate(entries) if e == v]
        keys.append(None if v is None else draw(st.sampled_from(where)))
    return pa.DictionaryArray.from_arrays(pa.array(keys, pa.int32()),
                                          pa.array(entries, pa.string()))


@given(st.lists(VALUES, min_size=1, max_size=5), st.data(), st.sampled_from([None, ""]),
       st.integers(1, 4), st.none() | st.integers(0, 6), st.integers(1, 40))
def test_tally_equals_counter(pieces, data, missing, min_count, max_size, merge_at):
    tally = Tally(merge_at=merge_at)
    counter: Counter = Counter()
    for values in pieces:
        column = (data.draw(dictionary_arrays(values)) if data.draw(st.booleans())
                  else pa.array(values, pa.string()))
        tally.add(column, missing)
        counter.update(v if v is not None else missing for v in values
                       if v is not None or missing is not None)
    fast = FieldVocab.from_tally(tally, min_count=min_count, max_size=max_size)
    literal = FieldVocab.from_counts(counter, min_count=min_count, max_size=max_size)
    assert (fast.tokens, fast.counts) == (literal.tokens, literal.counts)
    assert all(type(c) is int for c in fast.counts)


def test_a_repeated_dictionary_entry_is_one_value():
    """One piece whose dictionary holds "a" twice, both copies used: one token, count 2."""
    tally = Tally()
    tally.add(pa.DictionaryArray.from_arrays(pa.array([0, 2, 1], pa.int32()),
                                             pa.array(["a", "b", "a"])))
    vocab = FieldVocab.from_tally(tally)
    assert (vocab.tokens, vocab.counts) == (["a", "b"], [2, 1])


@given(st.lists(TEXT, max_size=8, unique=True), VALUES, st.data(), st.integers(0, 3),
       st.sampled_from([None, ""]), st.integers(0, 2**32))
def test_dictionary_ids_equal_ids_of_decoded(tokens, values, data, buckets, null_value, seed):
    vocab = FieldVocab(tokens, [1] * len(tokens), buckets, seed)
    column = data.draw(dictionary_arrays(values))
    decoded = column.dictionary_decode()
    if null_value is not None:
        decoded = decoded.fill_null(null_value)
    try:
        literal = vocab.ids(decoded, "field 'f'")
    except DataError as err:
        with pytest.raises(DataError) as raised:
            vocab.dictionary_ids(column, "field 'f'", null_value)
        assert str(raised.value) == str(err)
        return
    fast = vocab.dictionary_ids(column, "field 'f'", null_value)
    assert fast.dtype == np.int64
    np.testing.assert_array_equal(fast, literal)


@pytest.mark.parametrize("entries, keys, named", [
    (["c", "b", "z"], [None, 1, 0], "b"),  # the first row's value, not the dictionary's first
    (["z", "a", "c"], [1, 2, 1], "c"),  # an unused OOV entry ("z") is no error
    (["a", "z"], [0, None, 0], None),  # only in-vocabulary rows: no error
])
def test_no_bucket_error_names_the_first_row(entries, keys, named):
    vocab = FieldVocab(["a"], [1], oov_buckets=0)
    column = pa.DictionaryArray.from_arrays(pa.array(keys, pa.int32()), pa.array(entries))
    if named is None:
        np.testing.assert_array_equal(vocab.dictionary_ids(column, "f"),
                                      vocab.ids(column.dictionary_decode(), "f"))
        return
    for lookup in (lambda: vocab.ids(column.dictionary_decode(), "f"),
                   lambda: vocab.dictionary_ids(column, "f")):
        with pytest.raises(DataError, match=f"value '{named}' is not in the vocabulary"):
            lookup()
