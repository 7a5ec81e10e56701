"""`jaxembed bench models` and `bench encoding-csv` run end to end at a tiny size (no peer
needed: the DeepCTR-Torch side is skipped when it is not installed or not asked for)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxembed.bench import encoding_csv, models


def test_split_log_cuts_one_log_in_three():
    train, valid, test, p = models.split_log(1000, seed=3)
    assert (train.num_rows, valid.num_rows, test.num_rows) == (800, 100, 100)
    assert p.shape == (100,) and np.all((p > 0) & (p < 1))


def test_models_bench_runs_without_peer(tmp_path):
    results = models.run(rows=3000, models="lr,din", data="criteo", epochs=1, steps=2,
                         warmup=1, peer=False, out=str(tmp_path))
    lr = results["models"]["lr"]
    assert 0.5 < lr["auc"] <= 1.0 and lr["logloss"] > 0 and lr["examples_per_s"] > 0
    assert results["models"]["din"] is None
    table = models.markdown(results)
    assert "| lr |" in table and "n/a" in table


def test_models_bench_runs_search_ctr_on_the_search_log(tmp_path):
    results = models.run(rows=6000, models="search_ctr,fm", data="search", epochs=1, steps=2,
                         warmup=1, peer=False, out=str(tmp_path))
    assert set(results["models"]) == {"search_ctr", "fm"}
    assert 0.5 < results["models"]["search_ctr"]["auc"] <= results["bayes"]["auc"] + 0.05


def test_peer_mapping_covers_every_model_but_din():
    pytest.importorskip("deepctr_torch")
    with pytest.raises(ValueError, match="no DeepCTR-Torch peer"):
        models.peer_model("din", None)


def test_encode_rates_counts_every_row():
    figures = encoding_csv.encode_rates(2000, seed=1, repeats=1)
    assert figures["rows"] == 2000
    assert figures["rows_per_s"] > 0 and figures["pandas_rows_per_s"] > 0
