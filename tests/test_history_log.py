"""The generated log with a behaviour history: its probabilities, its history ids, its schema
(vocabularies and encoder read it, and din finds ``item`` as its target with ``history``)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxembed.data.encode import Encoder
from jaxembed.data.history_log import COLUMNS, history_log, history_schema
from jaxembed.data.readers import record_batches
from jaxembed.data.schema import Schema
from jaxembed.data.vocabularies import Vocabularies
from jaxembed.models.din import default_target


def test_rows_probabilities_and_history_ids():
    table, p = history_log(4000, seed=1, items=300, categories=12, max_len=6)
    assert table.column_names == list(COLUMNS) and table.num_rows == 4000
    assert p.shape == (4000,) and np.all((p > 0) & (p < 1))
    label = np.asarray(table.column("label"))
    assert set(np.unique(label)) <= {0, 1}
    assert abs(label.mean() - p.mean()) < 0.03
    histories = [[int(v) for v in h.split("|")] for h in table.column("history").to_pylist()]
    assert all(1 <= len(h) <= 6 and all(0 <= v < 300 for v in h) for h in histories)
    items = [int(v) for v in table.column("item").to_pylist()]
    assert all(0 <= v < 300 for v in items)
    # the target's own category in the history raises p: a repeat has k >= 1
    repeat = np.array([t in h for t, h in zip(items, histories, strict=True)])
    assert 0.02 < repeat.mean() < 0.5
    assert p[repeat].mean() > p[~repeat].mean() + 0.05


def test_same_seed_same_log_and_bad_sizes_named():
    a, pa_ = history_log(500, seed=2)
    b, pb = history_log(500, seed=2)
    assert a.equals(b) and np.array_equal(pa_, pb)
    assert not history_log(500, seed=3)[0].equals(a)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        history_log(0)
    with pytest.raises(ValueError, match=r"categories \(50\) must not exceed items \(20\)"):
        history_log(10, items=20, categories=50)


def test_schema_fits_the_log(tmp_path):
    schema = history_schema(dim=8, max_len=6)
    schema.to_toml(tmp_path / "schema.toml")
    assert Schema.from_toml(tmp_path / "schema.toml") == schema
    table, _ = history_log(2000, seed=0, items=200, categories=10, max_len=6)
    vocab = Vocabularies.build(record_batches(table, schema), schema)
    encoder = Encoder(schema, vocab)
    chunk = encoder.encode(next(iter(record_batches(table, schema))))
    rows = encoder.inputs.table("item").rows
    history = chunk["ids/history"]
    assert history.shape[1] == 8  # max_len 6 rounded up to a power of two
    assert np.all(history[:, 0] >= 0) and np.all(history < rows)
    # the real ids come first, then -1 padding
    assert np.all(np.diff((history >= 0).astype(int), axis=1) <= 0)
    assert encoder.inputs.histories("item") == ("history",)
    assert default_target(encoder.inputs) == "item"
