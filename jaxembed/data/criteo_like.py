r"""Generated Criteo-format click logs with a known click probability.

``criteo_like(n, seed)`` draws a log with the Criteo columns (``label``, integer features
``I1..I13``, categorical features ``C1..C26`` as 8-digit hex strings, empty cells missing)
whose click probability is

.. math::

    p = \sigma\Big(b + \sum_{f} a_f[c_f] + \sum_{(f, g) \in P} \langle u_f[c_f],
        u_g[c_g] \rangle + \sum_j \beta_j \log(1 + I_j)\Big)

with Zipf-distributed categorical values (cardinalities from tens to tens of thousands, as
in the real data), per-value effects ``a_f`` (the ``r``-th most frequent value's drawn with
deviation ``0.5 / sqrt(1 + r/100)``: rare values carry little signal each), rank-4
interactions ``u`` between a few field pairs ``P`` (what factorization machines and their
successors model), and log-count effects of the integer features; a missing cell (10% of
the integers, 5% of the categories) carries no effect, so ``p`` depends only on what the log
shows. The same
``world_seed`` gives the same effects, so a train and a test log drawn with different
``seed`` come from one world. The AUC of the returned probabilities is the best AUC any
model can reach on the sample (the Bayes-optimal AUC).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jaxembed.data.schema import CRITEO_COLUMNS

CARDINALITIES = (1000, 500, 30_000, 20_000, 300, 25, 10_000, 600, 4, 40_000, 5000, 30_000,
                 3000, 27, 10_000, 30_000, 10, 4000, 2000, 4, 30_000, 15, 16, 20_000, 100, 20_000)
"""Distinct values of ``C1..C26`` (shaped after the real data's, scaled down)."""
PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (1, 9), (3, 12), (13, 15), (0, 20))
"""The field pairs whose values interact."""
MISSING_RATE = 0.1


def criteo_like(n: int, seed: int = 0, *, world_seed: int = 0, scale: float = 1.0
                ) -> tuple[pa.Table, np.ndarray]:
    """``(table, p)``: ``n`` rows in Criteo's columns and each row's click probability;
    ``scale`` multiplies the cardinalities (at least 2 values per field)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    cardinalities = tuple(max(2, round(c * scale)) for c in CARDINALITIES)
    world = np.random.default_rng([world_seed, 7])
    rng = np.random.default_rng([seed, world_seed, 11])
    # the r-th most frequent value's effects shrink as 1/sqrt(1 + r/100): the tail carries
    # little signal each, as in real logs, so a model fitted on a sample can approach Bayes
    shrink = [1.0 / np.sqrt(1.0 + np.arange(c) / 100.0) for c in cardinalities]
    effects = [world.normal(0.0, 0.5, c) * s for c, s in zip(cardinalities, shrink, strict=True)]
    latent = [world.normal(0.0, 0.5, (c, 4)) * s[:, None]
              for c, s in zip(cardinalities, shrink, strict=True)]
    beta = world.normal(0.0, 0.25, 13)
    # distinct 32-bit codes per field: an odd multiplier is a bijection modulo 2**32
    codes = [(np.arange(c, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(f * 40503))
             % np.uint64(2**32) for f, c in enumerate(cardinalities)]
    center = np.log1p(np.floor(world.lognormal(1.0, 1.5, 100_000))).mean()
    # what is missing in the log carries no effect, so p depends on what the log shows only
    hidden_int = rng.random((n, 13)) < MISSING_RATE
    hidden_cat = rng.random((n, 26)) < MISSING_RATE / 2
    logit = np.full(n, -1.6)
    values = []
    for f, c in enumerate(cardinalities):
        v = np.minimum(rng.zipf(1.3, n) - 1, c - 1)  # value v is the v-th most frequent
        values.append(v)
        logit += np.where(hidden_cat[:, f], 0.0, effects[f][v])
    for f, g in PAIRS:
        shown = ~(hidden_cat[:, f] | hidden_cat[:, g])
        logit += shown * np.einsum("nk,nk->n", latent[f][values[f]], latent[g][values[g]])
    integers = np.floor(rng.lognormal(1.0, 1.5, (n, 13))).astype(np.int64)
    logit += np.where(hidden_int, 0.0, np.log1p(integers) - center) @ beta
    p = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < p).astype(np.int64)
    columns: dict[str, pa.Array] = {"label": pa.array(label)}
    for j in range(13):
        columns[f"I{j + 1}"] = pa.array(integers[:, j], mask=hidden_int[:, j])
    for f in range(26):
        text = np.array([f"{int(code):08x}" for code in codes[f]], dtype=object)
        columns[f"C{f + 1}"] = pa.array(text[values[f]], pa.string(), mask=hidden_cat[:, f])
    return pa.table({name: columns[name] for name in CRITEO_COLUMNS}), p


def write_criteo_tsv(table: pa.Table, path: str) -> None:
    """Write ``table`` as a Criteo file: tab-separated, no header, empty cells missing."""
    import pyarrow.csv as pa_csv

    from jaxembed._atomic import atomic_path

    with atomic_path(path) as tmp:
        pa_csv.write_csv(table, tmp, write_options=pa_csv.WriteOptions(
            include_header=False, delimiter="\t", quoting_style="none"))


def write_sample(folder: str, train_rows: int = 200_000, test_rows: int = 50_000,
                 seed: int = 0) -> dict[str, str]:
    """Write a generated Criteo-format ``train.tsv`` and ``test.tsv`` (one world, two draws)
    and the preset's ``schema.toml`` into ``folder``; returns their paths."""
    import os

    from jaxembed.data.schema import criteo_schema

    os.makedirs(folder, exist_ok=True)
    paths = {name: os.path.join(folder, name) for name in ("train.tsv", "test.tsv",
                                                          "schema.toml")}
    write_criteo_tsv(criteo_like(train_rows, seed)[0], paths["train.tsv"])
    write_criteo_tsv(criteo_like(test_rows, seed + 1)[0], paths["test.tsv"])
    criteo_schema().to_toml(paths["schema.toml"])
    return paths


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m jaxembed.data.criteo_like FOLDER")
    for path in write_sample(sys.argv[1]).values():
        print(f"wrote {path}")
