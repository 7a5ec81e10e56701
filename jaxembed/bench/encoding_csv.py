"""``jaxembed bench encoding-csv``: the data path's host side, measured in one run.

1. **Encoding rows/s of a Criteo-format file.** A generated log
   (:func:`jaxembed.data.criteo_like.criteo_like`) is written as a Criteo TSV (no header, tab
   separated, empty cells missing). jaxembed makes two passes over it, as :func:`jaxembed.fit`
   does: the vocabulary pass (the batches of a :class:`~jaxembed.data.spool.Spool`, i.e.
   :func:`~jaxembed.data.readers.record_batches` with the categorical columns
   dictionary-encoded by the parser, into :meth:`Vocabularies.build
   <jaxembed.data.vocabularies.Vocabularies.build>`) and the encoding pass (the same batches
   read back from the spool into :meth:`Encoder.encode
   <jaxembed.data.encode.Encoder.encode>`: vocabulary ids of ``C1..C26``, log1p-standardized
   ``I1..I13``); the text is parsed in the first pass only, the spool written and read back
   is counted. ``parse_twice=True`` measures the earlier path instead: both passes parse
   the text (string columns). The peer, in the same process: ``pandas.read_csv`` of the same file (C
   engine, the same column names, missing cells NaN) then ``pandas.factorize`` of every
   categorical column (ids in order of first appearance: a vocabulary and the ids in one
   call, with no count threshold and no dense transform). The ratio is jaxembed's rows/s over
   pandas'; jaxembed's two passes are both counted.
2. **Peak memory of a streaming fit.** A child process fits ``lr`` for one epoch on a Parquet
   file of ``multiple`` times the loader's buffer (``window`` chunks of 65,536 rows), and
   another on a file of one buffer; each reports its own peak RSS (``VmHWM`` of
   ``/proc/self/status``, reset at ``exec``: ``ru_maxrss`` of a child can report the peak of
   the parent it was forked from, which grows with the file the parent just wrote). The fit
   streams — vocabularies in one pass, the encoded store written chunk by chunk, ``window``
   chunks in memory while training — so the peak should stay flat as the file grows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from jaxembed.bench.timing import machine
from jaxembed.data.criteo_like import criteo_like, write_criteo_tsv
from jaxembed.data.loader import CHUNK_ROWS

_CHILD = r"""
import json, resource, sys, tempfile
from jaxembed.data.schema import criteo_schema
from jaxembed.train import runs
path, window = sys.argv[1], int(sys.argv[2])
run = runs.fit(criteo_schema(), path, model="lr", epochs=1, window=window,
               out=tempfile.mkdtemp(prefix="jaxembed-rss-"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # this process's own high-water mark: ru_maxrss can carry the parent's from the fork
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
    pass
print(json.dumps({"peak_rss_mb": peak, "train_rows": run.vocabularies.rows}))
"""


def encode_rates(rows: int, seed: int, repeats: int = 2, parse_twice: bool = False) -> dict:
    """Rows/s of jaxembed's vocabulary + encoding passes and of pandas ``read_csv`` +
    ``factorize`` over one Criteo TSV of ``rows`` rows (best of ``repeats`` each, the two
    measured in turn)."""
    import pandas as pd

    from jaxembed.data.encode import Encoder
    from jaxembed.data.readers import record_batches
    from jaxembed.data.schema import CRITEO_COLUMNS, criteo_schema
    from jaxembed.data.spool import Spool
    from jaxembed.data.vocabularies import Vocabularies

    folder = tempfile.mkdtemp(prefix="jaxembed-bench-csv-")
    path = os.path.join(folder, "train.txt")
    write_criteo_tsv(criteo_like(rows, seed)[0], path)
    schema = criteo_schema()
    categorical = [c for c in CRITEO_COLUMNS if c.startswith("C")]

    def ours() -> tuple[float, float]:
        tick = time.perf_counter()
        with Spool(path, schema, folder) as source:
            first = record_batches(path, schema) if parse_twice else source.batches()
            vocabularies = Vocabularies.build(first, schema, seed=seed)
            middle = time.perf_counter()
            encoder = Encoder(schema, vocabularies, seed=seed)
            n = 0
            for batch in record_batches(path, schema) if parse_twice else source.batches():
                n += encoder.encode(batch)["label"].size
        assert n == rows
        return middle - tick, time.perf_counter() - middle

    def theirs() -> float:
        tick = time.perf_counter()
        frame = pd.read_csv(path, sep="\t", header=None, names=list(CRITEO_COLUMNS))
        codes = [pd.factorize(frame[c])[0] for c in categorical]
        assert len(codes[0]) == rows
        return time.perf_counter() - tick

    timed = [(ours(), theirs()) for _ in range(repeats)]
    vocab_s, encode_s = min((t[0] for t in timed), key=sum)
    pandas_s = min(t[1] for t in timed)
    return {"rows": rows, "file_mb": os.path.getsize(path) / 2**20,
            "vocab_s": vocab_s, "encode_s": encode_s,
            "rows_per_s": rows / (vocab_s + encode_s), "encode_rows_per_s": rows / encode_s,
            "pandas_rows_per_s": rows / pandas_s, "pandas_s": pandas_s}


def write_parquet(path: str, rows: int, seed: int, piece: int = CHUNK_ROWS) -> None:
    """A generated Criteo-format log of ``rows`` rows written piece by piece, its
    cardinalities scaled down (``scale=0.05``) so that every vocabulary is complete within
    the first buffer: the model is the same size for a short and a long file, and what the
    peak RSS measures is the reading and loading."""
    import pyarrow.parquet as pq

    writer = None
    done = 0
    try:
        while done < rows:
            n = min(piece, rows - done)
            table = criteo_like(n, seed + done, scale=0.05)[0]
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            done += n
    finally:
        if writer is not None:
            writer.close()


def fit_peak_rss(rows: int, seed: int, window: int) -> dict:
    """Peak RSS (MiB) of a child process that fits ``lr`` for one epoch on a Parquet file of
    ``rows`` generated rows."""
    folder = tempfile.mkdtemp(prefix="jaxembed-bench-rss-")
    path = os.path.join(folder, "log.parquet")
    write_parquet(path, rows, seed)
    tick = time.perf_counter()
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", _CHILD, path, str(window)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the fit child failed:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures.update(rows=rows, file_mb=os.path.getsize(path) / 2**20,
                   wall_s=time.perf_counter() - tick)
    return figures


def run(rows: int = 200_000, seed: int = 0, window: int = 1, multiple: int = 10,
        rss: bool = True) -> dict:
    """Print both measurements; return the figures. ``rows``: the CSV's rows; ``window``:
    the loader's chunks in memory (the buffer is ``window * 65,536`` rows); ``multiple``: the
    big Parquet file's size in buffers."""
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    enc = encode_rates(rows, seed)
    print(f"Criteo TSV, {rows:,} rows ({enc['file_mb']:.1f} MiB):")
    print(f"  jaxembed vocabularies + encode: {enc['rows_per_s']:,.0f} rows/s "
          f"(vocabulary pass {enc['vocab_s']:.2f} s, encoding pass {enc['encode_s']:.2f} s; "
          f"encoding pass alone {enc['encode_rows_per_s']:,.0f} rows/s)")
    print(f"  pandas read_csv + factorize:    {enc['pandas_rows_per_s']:,.0f} rows/s "
          f"({enc['pandas_s']:.2f} s)")
    print(f"  ratio (jaxembed rows/s / pandas rows/s): "
          f"{enc['rows_per_s'] / enc['pandas_rows_per_s']:.2f}")
    out = {"encoding": enc}
    if rss:
        buffer = window * CHUNK_ROWS
        small = fit_peak_rss(buffer, seed, window)
        big = fit_peak_rss(multiple * buffer, seed, window)
        print(f"streaming fit (lr, 1 epoch, window={window}: buffer {buffer:,} rows), peak RSS:")
        for label, f in (("1x buffer", small), (f"{multiple}x buffer", big)):
            print(f"  {label:>12}: {f['rows']:>9,} rows, Parquet {f['file_mb']:6.1f} MiB -> "
                  f"peak RSS {f['peak_rss_mb']:,.0f} MiB ({f['wall_s']:.0f} s)")
        print(f"  growth: {big['peak_rss_mb'] - small['peak_rss_mb']:+,.0f} MiB for "
              f"{multiple}x the rows")
        out["rss"] = {"small": small, "big": big}
    return out

