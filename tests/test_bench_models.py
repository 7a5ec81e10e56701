"""`jaxembed bench models` and `bench encoding-csv` run end to end at a tiny size (no peer
needed: the DeepCTR-Torch side is skipped when it is not installed or not asked for)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxembed.bench import encoding_csv, models
from jaxembed.data.loader import Store
from jaxembed.train.runs import Run


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


def test_a_peer_that_cannot_run_is_reported_and_the_bench_goes_on(tmp_path, monkeypatch):
    """DeepCTR-Torch 0.3.0's xDeepFM and AutoInt raise on a log with a behaviour history: the
    row says so and the other models still run (stand-in peer modules: no torch in CI)."""
    import types

    fake = types.SimpleNamespace(__version__="stand-in", set_num_threads=lambda n: None,
                                 get_num_threads=lambda: 1)
    monkeypatch.setitem(__import__("sys").modules, "torch", fake)
    monkeypatch.setitem(__import__("sys").modules, "deepctr_torch", fake)
    monkeypatch.setattr(models, "_import_peer", lambda: True)

    def cannot_run(name, *args):
        raise RuntimeError(f"Given groups=1, expected input to have 16 channels ({name})\nmore")

    monkeypatch.setattr(models, "_peer_entry", cannot_run)
    results = models.run(rows=3000, models="xdeepfm,lr", data="criteo", epochs=1, steps=2,
                         warmup=1, out=str(tmp_path))
    for name in ("xdeepfm", "lr"):
        entry = results["models"][name]
        assert "peer" not in entry and 0.5 < entry["auc"] <= 1.0
        assert entry["peer_error"] == f"Given groups=1, expected input to have 16 channels ({name})"
    assert "DeepCTR-Torch failed: Given groups=1" in models._line("lr", results["models"]["lr"])
    assert "| xdeepfm | " in models.markdown(results) and "fails: Given groups=1" in \
        models.markdown(results)


def test_models_bench_runs_search_ctr_on_the_search_log(tmp_path):
    results = models.run(rows=6000, models="search_ctr", data="search", epochs=1, steps=2,
                         warmup=1, peer=False, out=str(tmp_path))
    assert set(results["models"]) == {"search_ctr"}
    assert 0.5 < results["models"]["search_ctr"]["auc"] <= results["bayes"]["auc"] + 0.05


@pytest.fixture(scope="module")
def history_bench(tmp_path_factory):
    """``din`` on the generated log with a behaviour history, no peer."""
    out = tmp_path_factory.mktemp("history")
    results = models.run(rows=2000, models="din", data="history", epochs=1, steps=2,
                         warmup=1, peer=False, out=str(out))
    return results, out


def test_split_history_log_cuts_one_log_in_three():
    train, valid, test, p = models.split_history_log(1000, seed=3)
    assert (train.num_rows, valid.num_rows, test.num_rows) == (800, 100, 100)
    assert "history" in train.column_names and p.shape == (100,)


def test_models_bench_runs_din_on_the_history_log(history_bench):
    results, _ = history_bench
    assert results["data"] == "history" and set(results["models"]) == {"din"}
    din = results["models"]["din"]
    assert din is not None and 0.0 <= din["auc"] <= 1.0 and din["examples_per_s"] > 0
    assert "| din | " in models.markdown(results) and "n/a" not in models.markdown(results)


def test_din_peer_shares_the_item_table_and_masks_by_length(history_bench):
    pytest.importorskip("deepctr_torch")

    _, out = history_bench
    fitted = Run.load(out / "history" / "din")
    arrays = models.store_arrays(Store.open(str(out / "history" / "din" / "cache" / "valid")))
    inputs = models._peer_inputs(fitted, arrays)
    model = models.peer_model("din", fitted)
    assert model.history_feature_list == ["item"]
    assert list(model.feature_index) == ["user", "item", "hist_item", "hist_item_length",
                                         "device", "slot", "price"]
    # one table for the target and its history, with row 0 for DeepCTR's padding
    assert set(model.embedding_dict) == {"user", "item", "device", "slot"}
    items = fitted.encoder.inputs.table("item").rows
    assert model.embedding_dict["item"].num_embeddings == items + 1
    ours = arrays["ids/history"]
    assert np.array_equal(inputs["hist_item"], np.where(ours >= 0, ours + 1, 0))
    assert np.array_equal(inputs["item"], arrays["ids/item"][:, 0] + 1)
    assert np.array_equal(inputs["hist_item_length"], (ours >= 0).sum(axis=1))
    assert np.array_equal(inputs["user"], arrays["ids/user"][:, 0])  # unshared: as ours
    p = models.peer_predict(model, inputs)
    assert p.shape == (arrays["label"].size,) and np.all((p > 0) & (p < 1))
    assert models.peer_step_rate(model, inputs, arrays["label"], 64, 1, 1) > 0
    with pytest.raises(ValueError, match="no DeepCTR-Torch peer for 'nope'"):
        models.peer_model("nope", fitted)


def test_encode_rates_counts_every_row():
    figures = encoding_csv.encode_rates(2000, seed=1, repeats=1)
    assert figures["rows"] == 2000
    assert figures["rows_per_s"] > 0 and figures["pandas_rows_per_s"] > 0
