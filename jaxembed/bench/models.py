"""``jaxembed bench models``: every zoo model against DeepCTR-Torch's, on generated logs.

Each data set is one generated log whose click probability is known (so the Bayes AUC is
printed too), cut into train / valid / test (``0.8 / 0.1 / 0.1``): ``criteo``, a
Criteo-format log (:func:`jaxembed.data.criteo_like.criteo_like`); ``search``, the built-in
search log; ``history``, a log with a behaviour history whose click probability rises with the
history items in the candidate's latent category (:func:`jaxembed.data.history_log.
history_log`), where ``din`` runs. For each model:

* **jaxembed**: ``runs.fit(schema, train, valid=valid, model=NAME)`` at its defaults
  (:class:`~jaxembed.train.field_trainer.FitConfig` and the model's own, under the schema's
  ``[model]`` table where the data set's schema has one: ``search`` and ``history`` measured
  fit options on their validation rows), early stopping on
  the validation AUC with ``patience``, the best epoch kept; then ``scoring.evaluate`` on test.
* **DeepCTR-Torch** (when ``deepctr_torch`` is installed): its model of the same name fed the
  *same encoded features* — the ids the fitted run's vocabularies give (``SparseFeat`` per
  field, vocabulary size = our table's rows) and the same transformed, standardized dense
  columns (``DenseFeat``) — at its documented defaults: ``compile("adam")`` (Adam, lr
  1e-3), batch 256, its own embedding init (``init_std=1e-4``) and L2 regularization, its own
  ``fit`` epoch loop; between epochs we score the same validation rows and stop with the
  same ``patience`` and epoch cap, keeping the best epoch's weights. The same embedding
  width (the schema's ``dim``) on both sides.

Peers: ``lr`` = ``WDL`` with no deep part (its linear model alone), ``fm`` = ``DeepFM`` with
no deep part (linear + FM), ``deepfm`` = ``DeepFM``, ``dcnv2`` = ``DCN(cross_parameterization=
"matrix")`` (DCN-M, i.e. DCN-V2), ``xdeepfm`` = ``xDeepFM``, ``autoint`` = ``AutoInt``,
``wide_deep`` = ``WDL``, ``din`` = ``DIN`` (the schema's target field as a ``SparseFeat``, its
history as the ``VarLenSparseFeat`` ``hist_<target>`` sharing the target's embedding through
``embedding_name`` and with a ``length_name`` column, ``history_feature_list=[target]``).
A table that a multi-valued field uses (a history and the target that shares it) gets its ids
shifted by one on the peer's side, row 0 being DeepCTR's padding. ``din`` needs a
behaviour-history field, which the ``criteo`` and ``search`` data do not have: there it is
listed as not applicable.

**Speed** is whole training steps (forward, loss, backward, optimizer update) on batches
already in memory, timed over ``steps`` steps after ``warmup`` steps, both in this process:
jaxembed's ``FieldTrainer.step`` (one jitted call, row-sparse table updates) and DeepCTR-Torch's
step exactly as its ``fit`` loop does it (``model(x)``, summed binary cross-entropy, its
regularization loss, ``backward``, ``optim.step``). Each side at its own default batch size,
and the ratio of examples/s; a second ratio at DeepCTR's batch size (256) on both sides.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
import time
from typing import Any

import jax
import numpy as np
import pyarrow as pa

from jaxembed.bench.timing import machine
from jaxembed.data.criteo_like import criteo_like
from jaxembed.data.history_log import history_log, history_schema
from jaxembed.data.loader import EpochSource, Store
from jaxembed.data.readers import record_batches
from jaxembed.data.schema import criteo_schema
from jaxembed.train import runs, scoring
from jaxembed.train.evaluate import report
from jaxembed.train.field_trainer import FieldTrainer, FitConfig

MODELS = ("lr", "fm", "deepfm", "dcnv2", "xdeepfm", "autoint", "din", "wide_deep")
PEER_BATCH = 256
PEERS = ("lr", "fm", "deepfm", "dcnv2", "xdeepfm", "autoint", "din", "wide_deep")
"""The models with a DeepCTR-Torch twin."""


# --- data ----------------------------------------------------------------------------------
def split_log(rows: int, seed: int) -> tuple[pa.Table, pa.Table, pa.Table, np.ndarray]:
    """``(train, valid, test, p_test)``: one generated log cut 0.8 / 0.1 / 0.1 by row."""
    table, p = criteo_like(rows, seed)
    a, b = int(rows * 0.8), int(rows * 0.9)
    return table.slice(0, a), table.slice(a, b - a), table.slice(b), p[b:]


def split_history_log(rows: int, seed: int
                      ) -> tuple[pa.Table, pa.Table, pa.Table, np.ndarray]:
    """``(train, valid, test, p_test)``: one generated log with a behaviour history
    (:func:`~jaxembed.data.history_log.history_log`) cut 0.8 / 0.1 / 0.1 by row."""
    table, p = history_log(rows, seed)
    a, b = int(rows * 0.8), int(rows * 0.9)
    return table.slice(0, a), table.slice(a, b - a), table.slice(b), p[b:]


def encoded(run: runs.Run, data: Any) -> dict[str, np.ndarray]:
    """Every row of ``data`` encoded by ``run``'s encoder (the arrays fit trained on)."""
    parts = [run.encoder.encode(batch) for batch in record_batches(data, run.schema)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def store_arrays(store: Store) -> dict[str, np.ndarray]:
    parts = list(store.chunks())
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --- DeepCTR-Torch -------------------------------------------------------------------------
def _shifted(run: runs.Run) -> set[str]:
    """The tables a multi-valued field uses: DeepCTR's ``VarLenSparseFeat`` pads with id 0,
    so their ids (the sharing single-valued fields' too) are shifted by one on its side."""
    return {f.table for f in run.encoder.embedded if f.multi}


def _peer_names(run: runs.Run) -> dict[str, str]:
    """Our field name -> the peer's: a history of a target ``t`` is DeepCTR's ``hist_t``
    (its DIN finds the history of ``t`` by that name); every other field keeps its name."""
    inputs, out = run.encoder.inputs, {f.name: f.name for f in run.encoder.embedded}
    for f in run.encoder.embedded:
        if not f.multi:
            for history in inputs.histories(f.name):
                out[history] = f"hist_{f.name}"
    return out


def _peer_inputs(run: runs.Run, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """DeepCTR's inputs: a single-valued field's ids; a multi-valued field's padded ids and
    its length (``<name>_length``, the real ids come first); ids of a table in
    :func:`_shifted` plus one (DeepCTR pads with 0, we pad with -1)."""
    out, shifted, names = {}, _shifted(run), _peer_names(run)
    for f in run.encoder.embedded:
        ids = arrays[f"ids/{f.name}"].astype(np.int64)
        ids = np.where(ids >= 0, ids + 1, 0) if f.table in shifted else ids
        if f.multi:
            out[names[f.name]] = ids
            out[f"{names[f.name]}_length"] = (ids > 0).sum(axis=1)
        else:
            out[f.name] = ids[:, 0]
    for j, f in enumerate(run.encoder.dense_fields):
        out[f.name] = arrays["dense"][:, j].astype(np.float32)
    return out


def peer_model(name: str, run: runs.Run, torch_seed: int = 1024) -> Any:
    """DeepCTR-Torch's model for ``name`` at its defaults, on the run's encoded fields."""
    if name not in PEERS:
        raise ValueError(f"no DeepCTR-Torch peer for {name!r}; peers: {', '.join(PEERS)}")
    from deepctr_torch import models as dm
    from deepctr_torch.inputs import DenseFeat, SparseFeat, VarLenSparseFeat

    encoder, shifted, names = run.encoder, _shifted(run), _peer_names(run)
    sparse = []
    for f in encoder.embedded:
        feature = SparseFeat(names[f.name], encoder.rows(f) + (f.table in shifted),
                             embedding_dim=f.dim, embedding_name=f.table)
        history = names[f.name] != f.name  # DIN's attention masks by its length column
        sparse.append(VarLenSparseFeat(feature, maxlen=encoder.width(f),
                                       combiner=_peer_combiner(f.combiner),
                                       length_name=f"{names[f.name]}_length" if history
                                       else None)
                      if f.multi else feature)
    dense = [DenseFeat(f.name, 1) for f in encoder.dense_fields]
    columns = sparse + dense
    if name == "din":
        model = dm.DIN(columns, [_peer_target(run)], seed=torch_seed)
    elif name == "lr":
        model = dm.WDL(columns, [], seed=torch_seed)
    elif name == "fm":
        model = dm.DeepFM(columns, columns, dnn_hidden_units=(), seed=torch_seed)
    elif name == "deepfm":
        model = dm.DeepFM(columns, columns, seed=torch_seed)
    elif name == "dcnv2":
        model = dm.DCN(columns, columns, cross_parameterization="matrix", seed=torch_seed)
    elif name == "xdeepfm":
        model = dm.xDeepFM(columns, columns, seed=torch_seed)
    elif name == "autoint":
        model = dm.AutoInt(columns, columns, seed=torch_seed)
    else:
        model = dm.WDL(columns, columns, seed=torch_seed)
    model.compile("adam", "binary_crossentropy")
    return model


def _peer_target(run: runs.Run) -> str:
    """The din run's target field. DeepCTR's DIN masks its attention with one length
    column (the first ``length_name``), so the schema must have exactly one history."""
    target = run.model().target
    histories = [ours for ours, theirs in _peer_names(run).items() if ours != theirs]
    if len(histories) != 1 or histories != list(run.encoder.inputs.histories(target)):
        raise ValueError(f"DeepCTR-Torch's DIN takes one history; din's target {target!r} "
                         f"has {list(run.encoder.inputs.histories(target))} and the schema's "
                         f"histories are {histories}")
    return target


def _peer_combiner(combiner: str) -> str:
    if combiner not in ("sum", "mean"):
        raise ValueError(f"DeepCTR-Torch pools a multi-valued field by sum, mean or max; "
                         f"combiner {combiner!r} has no peer")
    return combiner


def _peer_x(model: Any, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [inputs[name] for name in model.feature_index]


def peer_predict(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(model.predict(_peer_x(model, inputs), 4096), np.float64).reshape(-1)


def peer_fit(model: Any, train: dict, y: np.ndarray, valid: dict, y_valid: np.ndarray,
             config: FitConfig) -> tuple[list[dict], float]:
    """DeepCTR-Torch's own ``fit``, one epoch per call, early stopping on validation AUC with
    ``config.patience`` and ``config.epochs`` (as jaxembed's fit); the best epoch's weights
    are restored. Returns the per-epoch history and the training seconds."""
    import copy

    history, best, best_state, stale, seconds = [], -np.inf, None, 0, 0.0
    for epoch in range(config.epochs):
        tick = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            model.fit(_peer_x(model, train), y.astype(np.float32), batch_size=PEER_BATCH,
                      epochs=1, verbose=0)
        seconds += time.perf_counter() - tick
        p = peer_predict(model, valid)
        figures = report(y_valid, p, np.zeros(y_valid.size, np.int64))
        history.append({"epoch": epoch + 1, **figures})
        if figures["auc"] > best:
            best, stale, best_state = figures["auc"], 0, copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if config.patience and stale >= config.patience:
                break
    model.load_state_dict(best_state)
    return history, seconds


def peer_step_rate(model: Any, inputs: dict, y: np.ndarray, batch: int, steps: int,
                   warmup: int) -> float:
    """Examples/s of DeepCTR-Torch's training step (as in its ``fit``) after warm-up."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.concatenate([
        np.asarray(inputs[n], np.float32).reshape(len(y), -1) for n in model.feature_index],
        axis=1))
    labels = torch.from_numpy(y.astype(np.float32))
    n = x.shape[0] // batch
    model.train()

    def step(i: int) -> None:
        lo = (i % n) * batch
        xb, yb = x[lo:lo + batch], labels[lo:lo + batch]
        pred = model(xb).squeeze(-1)
        model.optim.zero_grad()
        loss = F.binary_cross_entropy(pred, yb, reduction="sum")
        total = loss + model.get_regularization_loss() + model.aux_loss
        total.backward()
        model.optim.step()

    for i in range(warmup):
        step(i)
    tick = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    return steps * batch / (time.perf_counter() - tick)


# --- jaxembed ------------------------------------------------------------------------------
def step_rate(trainer: FieldTrainer, store: Store, batch: int, steps: int, warmup: int,
              seed: int) -> float:
    """Examples/s of ``trainer.step`` on batches already in memory, after warm-up."""
    source = EpochSource(store, batch_size=batch, seed=seed, epoch=99, window=4)
    batches = [source[i % len(source)] for i in range(min(len(source), warmup + steps))]
    for i in range(warmup):
        trainer.step(batches[i % len(batches)])
    jax.block_until_ready(trainer.tables)
    tick = time.perf_counter()
    for i in range(steps):
        trainer.step(batches[(warmup + i) % len(batches)])
    jax.block_until_ready(trainer.tables)
    return steps * batch / (time.perf_counter() - tick)


def _trainer_at(run: runs.Run, batch: int) -> FieldTrainer:
    config = dataclasses.replace(run.config, batch_size=batch)
    return runs._trainer(run.schema, run.vocabularies, run.model_name, run.hyper, config)


def _import_peer() -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import deepctr_torch  # noqa: F401
    except ImportError:
        return False
    return True


def split_search_log(rows: int, seed: int) -> tuple[pa.Table, pa.Table, pa.Table, np.ndarray]:
    """``(train, valid, test, p_test)``: the built-in search log (``jaxembed train``'s world,
    period 0) cut 0.8 / 0.1 / 0.1 by page view in time order, with its derived statistics
    fitted on the training rows."""
    from jaxembed import data
    from jaxembed.data.search_schema import search_table
    from jaxembed.data.search_stats import SearchStatistics
    from jaxembed.train.job import world

    log = data.search_log(rows, seed=seed, config=world())
    cuts = [int(np.searchsorted(log.pageview_id, log.pageview_id[int(rows * share)]))
            for share in (0.8, 0.9)]
    parts = np.split(np.arange(rows), cuts)
    take = [log.take(part) for part in parts]
    statistics = SearchStatistics.fit(take[0])
    train, valid, test = (search_table(part, statistics) for part in take)
    return train, valid, test, take[2].true_prob


DATASETS = ("criteo", "search", "history")
"""``criteo``: generated Criteo-format data (:func:`split_log`); ``search``: the built-in
search log through its schema (:func:`split_search_log`), where ``search_ctr`` runs too;
``history``: a generated log with a behaviour history (:func:`split_history_log`), where
``din`` runs. ``data="both"`` runs ``criteo`` and ``search``; ``data="all"`` (the default,
what ``jaxembed bench models`` runs) all three."""
GROUPS = {"both": ("criteo", "search"), "all": DATASETS}


def run(rows: int = 50_000, seed: int = 0, models: str | None = None, data: str = "all",
        epochs: int | None = None, steps: int = 30, warmup: int = 5, peer: bool = True,
        torch_threads: int = 1, out: str | None = None, **options: Any) -> dict:
    """Print one table per data set (test AUC, log loss, examples/s of both sides and their
    ratio); return the figures (``data="both"`` or ``"all"``: keyed by data set; see
    :data:`DATASETS`). ``rows``: each generated
    log (0.8 train); ``models``: comma-separated names (default: every model the data set
    has); ``epochs``: the epoch cap of both sides (default: FitConfig's, or the schema's);
    ``torch_threads``: PyTorch's intra-op threads (1 by default: on a shared 2-core machine
    its 2 spinning threads run 10-15x slower than one); ``options``: extra ``runs.fit``
    options for jaxembed (e.g. ``batch_size=2048``)."""
    names = GROUPS.get(data, (data,))
    for name in names:
        if name not in DATASETS:
            raise ValueError(f"data must be one of {', '.join(DATASETS)}, 'both' or 'all', "
                             f"got {data!r}")
    results = {name: _run_on(name, rows, seed, models, epochs, steps, warmup, peer,
                             torch_threads, out, options) for name in names}
    return results if data in GROUPS else results[data]


def _run_on(data: str, rows: int, seed: int, models: str | None, epochs: int | None,
            steps: int, warmup: int, peer: bool, torch_threads: int, out: str | None,
            options: dict[str, Any]) -> dict:
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    use_peer = peer and _import_peer()
    if use_peer:
        import torch

        torch.set_num_threads(torch_threads)
        print(f"peer: deepctr-torch {__import__('deepctr_torch').__version__}, torch "
              f"{torch.__version__} ({torch.get_num_threads()} threads)")
    else:
        print("peer: deepctr_torch not installed (pip install 'jaxembed[bench]'); jaxembed only")
    options = dict(options)
    if data == "search":
        from jaxembed.data.search_schema import LABEL, search_schema

        train, valid, test, p_test = split_search_log(rows, seed)
        schema, label, source = search_schema(), LABEL, f"search_log({rows:,}, seed={seed})"
        names = models or ",".join(("search_ctr", *MODELS))
    elif data == "history":
        train, valid, test, p_test = split_history_log(rows, seed)
        schema, label, source = history_schema(), "label", f"history_log({rows:,}, seed={seed})"
        names = models or ",".join(MODELS)
    else:
        train, valid, test, p_test = split_log(rows, seed)
        schema, label, source = criteo_schema(), "label", f"criteo_like({rows:,}, seed={seed})"
        names = models or ",".join(MODELS)
    bayes = report(np.asarray(test.column(label)), p_test, np.zeros(len(p_test), np.int64))
    print(f"data: {source} -> train {train.num_rows:,}, valid {valid.num_rows:,}, test "
          f"{test.num_rows:,}; Bayes test AUC {bayes['auc']:.4f}, log loss "
          f"{bayes['logloss']:.4f}")
    if epochs is not None:
        options["epochs"] = epochs
    results: dict[str, Any] = {"data": data, "bayes": bayes, "rows": rows, "models": {}}
    work = out or tempfile.mkdtemp(prefix="jaxembed-bench-models-")
    header = (f"{'model':10} {'AUC':>7} {'peer AUC':>8} {'ΔAUC':>7} {'logloss':>8} "
              f"{'peer LL':>8} {'ex/s':>9} {'peer ex/s':>9} {'ratio':>6} {'ratio@256':>9} "
              f"{'epochs':>7}")
    rows_out = []
    print(header)
    for name in [m.strip() for m in names.split(",") if m.strip()]:
        if name == "din" and data != "history":
            print(f"{'din':10} n/a: the {data} data has no behaviour-history field")
            results["models"]["din"] = None
            continue
        tick = time.perf_counter()
        fitted = runs.fit(schema, train, valid=valid, model=name,
                          out=os.path.join(work, data, name), **options)
        fit_s = time.perf_counter() - tick
        ours = scoring.evaluate(fitted, test)
        train_store = Store.open(os.path.join(fitted.path, "cache", "train"))
        rate = step_rate(fitted.trainer, train_store, fitted.config.batch_size, steps, warmup,
                         seed)
        rate256 = step_rate(_trainer_at(fitted, PEER_BATCH), train_store, PEER_BATCH, steps,
                            warmup, seed) if use_peer and name in PEERS else None
        entry = {"auc": ours["auc"], "logloss": ours["logloss"], "examples_per_s": rate,
                 "examples_per_s_256": rate256, "epochs": len(fitted.history),
                 "best_epoch": int(np.argmax([h["auc"] for h in fitted.history])) + 1,
                 "fit_s": fit_s}
        if use_peer and name in PEERS:
            try:
                entry["peer"] = _peer_entry(name, fitted, train_store, test, steps, warmup)
            except RuntimeError as err:  # DeepCTR-Torch 0.3.0 cannot build some models here
                entry["peer_error"] = str(err).strip().splitlines()[0][:160]
        results["models"][name] = entry
        rows_out.append((name, entry))
        print(_line(name, entry), flush=True)
    return results


def _peer_entry(name: str, fitted: runs.Run, train_store: Store, test: pa.Table, steps: int,
                warmup: int) -> dict:
    """DeepCTR-Torch's model ``name`` fitted on the run's encoded rows: its test AUC and log
    loss, step examples/s, epochs and fit seconds."""
    train_arrays = store_arrays(train_store)
    valid_arrays = store_arrays(Store.open(os.path.join(fitted.path, "cache", "valid")))
    test_arrays = encoded(fitted, test)
    model = peer_model(name, fitted)
    tick = time.perf_counter()
    history, _ = peer_fit(model, _peer_inputs(fitted, train_arrays), train_arrays["label"],
                          _peer_inputs(fitted, valid_arrays), valid_arrays["label"],
                          fitted.config)
    peer_s = time.perf_counter() - tick
    theirs = report(test_arrays["label"], peer_predict(model, _peer_inputs(
        fitted, test_arrays)), np.zeros(test.num_rows, np.int64))
    peer_rate = peer_step_rate(model, _peer_inputs(fitted, train_arrays),
                               train_arrays["label"], PEER_BATCH, steps, warmup)
    return {"auc": theirs["auc"], "logloss": theirs["logloss"], "examples_per_s": peer_rate,
            "epochs": len(history),
            "best_epoch": int(np.argmax([h["auc"] for h in history])) + 1, "fit_s": peer_s}


def _line(name: str, e: dict) -> str:
    p = e.get("peer")
    if p is None:
        failed = f"  (DeepCTR-Torch failed: {e['peer_error']})" if "peer_error" in e else ""
        return (f"{name:10} {e['auc']:7.4f} {'-':>8} {'-':>7} {e['logloss']:8.4f} {'-':>8} "
                f"{e['examples_per_s']:9,.0f} {'-':>9} {'-':>6} {'-':>9} {e['epochs']:>7}"
                f"{failed}")
    return (f"{name:10} {e['auc']:7.4f} {p['auc']:8.4f} {e['auc'] - p['auc']:+7.4f} "
            f"{e['logloss']:8.4f} {p['logloss']:8.4f} {e['examples_per_s']:9,.0f} "
            f"{p['examples_per_s']:9,.0f} {e['examples_per_s'] / p['examples_per_s']:6.1f} "
            f"{e['examples_per_s_256'] / p['examples_per_s']:9.1f} "
            f"{e['epochs']:>3}/{p['epochs']:<3}")


def markdown(results: dict) -> str:
    """The results as a markdown table (for docs/benchmarks.md)."""
    lines = ["| model | AUC | DeepCTR AUC | ΔAUC | log loss | DeepCTR log loss | examples/s | "
             "DeepCTR examples/s | ratio | ratio at batch 256 | epochs (ours/theirs) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in results["models"].items():
        if e is None:
            lines.append(f"| {name} | n/a (no history field in these data) |"
                         + " |" * 9)
            continue
        p = e.get("peer") or {}
        if not p:
            peer = (f"fails: {e['peer_error'].replace('|', '/')}" if "peer_error" in e
                    else "-")
            lines.append(f"| {name} | {e['auc']:.4f} | {peer} | - | {e['logloss']:.4f} | - | "
                         f"{e['examples_per_s']:,.0f} | - | - | - | {e['epochs']} |")
            continue
        lines.append(
            f"| {name} | {e['auc']:.4f} | {p['auc']:.4f} | {e['auc'] - p['auc']:+.4f} | "
            f"{e['logloss']:.4f} | {p['logloss']:.4f} | {e['examples_per_s']:,.0f} | "
            f"{p['examples_per_s']:,.0f} | {e['examples_per_s'] / p['examples_per_s']:.1f} | "
            f"{e['examples_per_s_256'] / p['examples_per_s']:.1f} | "
            f"{e['epochs']}/{p['epochs']} |")
    return "\n".join(lines)
