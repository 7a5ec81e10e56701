"""``jaxembed bench retrieval``: ranking quality on unseen documents, then top-k speed.

**Quality** (:func:`run_quality`). The general encoder (:meth:`Retriever.pretrained`, built
and cached on first use) never trained on a held-out 5 % of the modules of its corpus (the
standard library's and the installed packages' docstrings, the reference topics: whole
modules, chosen by a stable hash of their names). Their (statement, next sentence) pairs with
neither sentence in the training text are the test: ``pairs`` of them drawn with a seed, each
statement ranks all distinct next sentences, and recall@1, recall@10 and MRR are reported for
the dense encoder, Okapi BM25, scikit-learn's TF-IDF and the hybrid, all in the same run
(:func:`jaxembed.text.retrieval.evaluate_rankings`), with the hybrid's and dense's recall@10
as a ratio to the best lexical baseline.

**Speed** (:func:`run_speed`): times :func:`jaxembed.text.retrieval_index.top_k` — the
chunked ``lax.scan`` exact top-k, and its ``approx_max_k`` variant — for a batch of queries
over ``N`` random ``D``-dimensional float32 candidates on the current JAX backend, next to the
plain numpy peer measured in the same run: ``Q @ V.T`` then ``argpartition`` and a sort of the
``k`` survivors per row (host CPU, whatever BLAS numpy has). Prints seconds per batch, queries
per second and the ``jaxembed / numpy`` time ratio (below 1: jaxembed is faster), plus how
many of numpy's ids each path found (exact should find all).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxembed.bench.timing import machine, time_call
from jaxembed.text.retrieval import evaluate_rankings
from jaxembed.text.retrieval_index import pad_to_chunks, top_k
from jaxembed.text.retriever import GeneralConfig, Retriever


def _numpy_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vectors.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _found(ids: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b)
                          for a, b in zip(ids.tolist(), reference.tolist(), strict=True)]))


def run_quality(pairs: int = 1000, seed: int = 0, cache_dir: str | None = None,
                config: GeneralConfig | None = None) -> dict[str, Any]:
    """Print recall@1/@10 and MRR of every ranking on held-out documents; return them."""
    retriever = Retriever.pretrained(cache_dir, config=config, progress=True)
    held = Retriever.held_out_pairs(cache_dir, config)
    if len(held) > pairs:
        order = np.sort(np.random.default_rng(seed).choice(len(held), pairs, replace=False))
        held = [held[i] for i in order]
    result = evaluate_rankings(retriever, [x for x, _ in held], [y for _, y in held], (1, 10))
    print(f"machine: {machine()}")
    print(f"held-out next-sentence retrieval: {result['queries']} queries, "
          f"{result['candidates']} candidates (whole modules the encoder never trained on); "
          f"hybrid weight w = {retriever.weight}")
    print(f"\n{'ranking':<10}{'R@1':>8}{'R@10':>8}{'MRR':>8}{'R@10 / best lexical':>22}")
    lexical = max(result["bm25"]["recall@10"], result["tfidf"]["recall@10"])
    for name in ("dense", "bm25", "tfidf", "hybrid"):
        m = result[name]
        print(f"{name:<10}{m['recall@1']:>8.3f}{m['recall@10']:>8.3f}{m['mrr']:>8.3f}"
              f"{m['recall@10'] / lexical:>22.3f}")
    return result


def run(num_vectors: int = 1_000_000, dim: int = 256, batch: int = 256, k: int = 10,
        chunk_size: int | None = None, repeats: int = 5, seed: int = 0, pairs: int = 1000,
        quality: bool = True, speed: bool = True) -> dict[str, Any]:
    """``jaxembed bench retrieval``: :func:`run_quality`, then :func:`run_speed`."""
    out: dict[str, Any] = {}
    if quality:
        out["quality"] = run_quality(pairs=pairs, seed=seed)
    if speed:
        print()
        out["speed"] = run_speed(num_vectors, dim, batch, k, chunk_size, repeats, seed)
    return out


def run_speed(num_vectors: int = 1_000_000, dim: int = 256, batch: int = 256, k: int = 10,
              chunk_size: int | None = None, repeats: int = 5,
              seed: int = 0) -> dict[str, float]:
    """Print the top-k speed benchmark for the current backend; return seconds per batch."""
    backend = jax.default_backend()
    if chunk_size is None:
        chunk_size = 32768 if backend == "cpu" else 262144
    chunk_size = min(chunk_size, num_vectors)
    print(f"machine: {machine()}")
    print(f"shape: N={num_vectors} candidates, D={dim}, B={batch} queries, k={k}, "
          f"chunk C={chunk_size} (float32), mean of {repeats} back-to-back calls")

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((num_vectors, dim), dtype=np.float32)
    queries = rng.standard_normal((batch, dim), dtype=np.float32)
    chunks = pad_to_chunks(jnp.asarray(vectors), chunk_size)
    q = jnp.asarray(queries)
    jax.block_until_ready(chunks)

    reference = _numpy_top_k(queries, vectors, k)
    numpy_s = time_call(lambda: _numpy_top_k(queries, vectors, k), repeats=repeats, warmup=1)
    rows = [("numpy matmul + argpartition", numpy_s, 1.0)]
    for label, approx in (("jaxembed top_k exact", False), ("jaxembed top_k approx_max_k", True)):
        _, ids = top_k(q, chunks, k, num_valid=num_vectors, approx=approx)
        found = _found(np.asarray(ids), reference)
        seconds = time_call(lambda a=approx: top_k(q, chunks, k, num_valid=num_vectors,
                                                  approx=a), repeats=repeats)
        rows.append((label, seconds, found))

    print(f"\n{'method':<30}{'ms/batch':>10}{'queries/s':>12}{'vs numpy':>10}{'found':>8}")
    for label, seconds, found in rows:
        print(f"{label:<30}{seconds * 1e3:>10.1f}{batch / seconds:>12.0f}"
              f"{seconds / numpy_s:>10.3g}{found:>8.3f}")
    print("(vs numpy: time ratio, below 1 = faster; found: share of numpy's top-k ids "
          "returned)")
    return {label: seconds for label, seconds, _ in rows}
