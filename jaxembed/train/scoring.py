"""Score a fitted run: ``je.predict``, ``je.evaluate`` and the streaming ``predict_to``.

Every path reads the data through the run's schema (:func:`jaxembed.data.readers.record_batches`),
encodes it with the run's vocabularies (values unseen in training go to their field's OOV
buckets), scores fixed-size batches (the last one padded, so ``jit`` compiles once), and
corrects the probabilities for the run's negative down-sampling (:func:`calibrated`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jaxembed import _atomic
from jaxembed.data.readers import DataError, record_batches
from jaxembed.train.evaluate import report
from jaxembed.train.field_trainer import scoring_batch
from jaxembed.train.runs import Run


def calibrated(run: Run, probs: np.ndarray) -> np.ndarray:
    """The run's probabilities corrected for its negative down-sampling:
    ``p / (p + (1 - p) / negative_rate)`` (unchanged when every negative was kept)."""
    rate = run.config.negative_rate
    if rate == 1.0:
        return probs
    from jaxembed.stream.calibration import calibrate

    return calibrate(np.asarray(probs, np.float64), rate)


def scored(run: Run, data: Any, labels: bool) -> Iterator[tuple[dict, np.ndarray]]:
    """``(encoded batch, calibrated probabilities)`` of ``data`` in row order, in batches of
    :func:`~jaxembed.train.field_trainer.scoring_batch` rows (the last one padded; its
    probabilities cut to its rows)."""
    encoder = run.encoder
    size = scoring_batch(run.config.batch_size)
    start = 0
    for batch in record_batches(data, run.schema, labels=labels):
        chunk = encoder.encode(batch, labels=labels, start=start)
        start += batch.num_rows
        n = batch.num_rows
        for lo in range(0, n, size):
            take = np.arange(lo, lo + size)
            take = np.where(take < n, take, lo)
            part = {k: v[take] for k, v in chunk.items()}
            yield part, calibrated(run, run.trainer.probabilities(part)[: min(size, n - lo)])


def predict(run: Run | str | os.PathLike, data: Any) -> np.ndarray:
    """Click probabilities ``float64[n]`` of every row of ``data`` (its label column, if
    any, is not needed). Values unseen in training go to their field's OOV buckets."""
    run = run if isinstance(run, Run) else Run.load(run)
    return np.concatenate([p for _, p in scored(run, data, labels=False)]).astype(np.float64)


def predict_to(run: Run | str | os.PathLike, data: Any, out: str | os.PathLike) -> int:
    """Stream the probabilities of ``data`` into a Parquet (or CSV) file ``out`` (one
    ``score`` column, in row order); returns the rows written."""
    run = run if isinstance(run, Run) else Run.load(run)
    out = os.fspath(out)
    rows = 0
    schema = pa.schema([("score", pa.float64())])
    with _atomic.atomic_path(out) as tmp:
        if out.lower().endswith(".csv"):
            import pyarrow.csv as pa_csv

            with pa_csv.CSVWriter(tmp, schema) as writer:
                for _, p in scored(run, data, labels=False):
                    writer.write_table(pa.table({"score": p.astype(np.float64)}))
                    rows += p.size
        else:
            with pq.ParquetWriter(tmp, schema) as writer:
                for _, p in scored(run, data, labels=False):
                    writer.write_table(pa.table({"score": p.astype(np.float64)}))
                    rows += p.size
    return rows


def labelled_scores(run: Run | str | os.PathLike, data: Any
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, probabilities, groups)`` of every row of labelled ``data``."""
    run = run if isinstance(run, Run) else Run.load(run)
    labels, probs, groups = [], [], []
    for chunk, p in scored(run, data, labels=True):
        n = p.size
        labels.append(chunk["label"][:n])
        groups.append(chunk["group"][:n])
        probs.append(p)
    if not labels:
        raise DataError("the evaluation data has no rows")
    return (np.concatenate(labels), np.concatenate(probs).astype(np.float64),
            np.concatenate(groups))


def metrics_of(labels: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """AUC, log loss, GAUC, calibration, NE, rows and positives of a scored sample."""
    figures = report(labels, probs, groups)
    figures["rows"] = int(labels.size)
    figures["positives"] = int(labels.sum())
    return figures


def evaluate(run: Run | str | os.PathLike, data: Any) -> dict[str, float]:
    """AUC, log loss, GAUC (by the schema's group column), calibration (Σp/Σy), normalized
    entropy and the number of rows of ``run`` on labelled ``data``."""
    return metrics_of(*labelled_scores(run, data))
