"""``jaxembed bench lookup``: gather-sum and gather against the literal product and PyTorch.

Measures, on the current JAX backend, forward and forward+backward (gradient w.r.t. the whole
table, as an optax step needs it) of :func:`jaxembed.bag_lookup` and :func:`jaxembed.lookup`,
next to ``torch.nn.EmbeddingBag`` / ``torch.nn.functional.embedding`` on the same device when
torch is installed, and prints ``jaxembed / peer`` time ratios (below 1: jaxembed is faster).
The literal ``multi_hot(bags) @ W`` is timed at a vocabulary small enough for its ``(B, V)``
matrix, beside the gather-sum at that size; the same sweep is the measurement behind
``lookup_style="auto"``. On a GPU it also reports effective bandwidth (bytes of rows read per
second) of the Pallas kernel and of the plain-XLA path.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxembed as je
from jaxembed.bench.timing import machine, ratio, time_call
from jaxembed.kernels import pallas_pool
from jaxembed.lookup import _slot_loop_row_sum

# (bags per program, feature block, warps, eviction policy) of the Pallas kernel, tried on GPUs.
KERNEL_VARIANTS = [
    (1, None, 4, None),
    (1, None, 2, None),
    (1, None, 2, "evict_first"),
    (2, None, 2, None),
    (1, 64, 2, None),
    (1, 32, 1, None),
    (4, 64, 4, None),
    (8, 32, 4, "evict_first"),
]
CPU_SHAPE = {"vocab": 2**20, "features": 64, "batch": 4096, "width": 20}
GPU_SHAPE = {"vocab": 2**22, "features": 128, "batch": 65536, "width": 20}


def _torch(device: str) -> Any:
    try:
        import torch
    except ImportError:
        return None
    if device == "cuda" and not torch.cuda.is_available():
        return None
    return torch


def _torch_times(torch, table_np, ids_np, device, repeats):
    """(EmbeddingBag sum fwd, fwd+bwd dense, fwd+bwd sparse, embedding fwd, fwd+bwd)."""
    if device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    ids = torch.from_numpy(ids_np.astype(np.int64)).to(device)
    flat = ids.reshape(-1)

    def timed(fn):
        return time_call(fn, repeats=repeats, sync=sync)

    out = []
    for sparse in (False, True):
        bag = torch.nn.EmbeddingBag.from_pretrained(
            torch.from_numpy(table_np), freeze=False, mode="sum", sparse=sparse
        ).to(device)
        if not sparse:
            with torch.no_grad():
                out.append(timed(lambda bag=bag: bag(ids)))

        def step(bag=bag):
            bag.weight.grad = None
            bag(ids).sum().backward()

        out.append(timed(step))
    weight = torch.from_numpy(table_np).to(device).requires_grad_(True)
    with torch.no_grad():
        out.append(timed(lambda: torch.nn.functional.embedding(flat, weight)))

    def embed_step():
        weight.grad = None
        torch.nn.functional.embedding(flat, weight).sum().backward()

    out.append(timed(embed_step))
    return out


def _crossover(repeats: int) -> list[tuple[int, float, float]]:
    """(V, one_hot seconds, gather seconds) for 4096 ids, K=64: the ``auto`` evidence."""
    rows = []
    key = jax.random.key(1)
    for vocab in (16, 64, 256, 1024, 4096):
        table = jax.random.normal(key, (vocab, 64))
        ids = jax.random.randint(key, (4096,), 0, vocab)
        fns = [
            jax.jit(lambda t, i, s=style: je.lookup(t, i, lookup_style=s))
            for style in ("one_hot", "gather")
        ]
        hot, gather = (
            time_call(lambda f=f, t=table, i=ids: f(t, i), repeats=repeats) for f in fns
        )
        rows.append((vocab, hot, gather))
    return rows


def run(
    vocab: int | None = None,
    features: int | None = None,
    batch: int | None = None,
    width: int | None = None,
    repeats: int = 10,
) -> dict[str, float]:
    """Print the lookup benchmark for the current backend; return the measured seconds."""
    backend = jax.default_backend()
    device = "cuda" if backend == "gpu" else "cpu"
    shape = dict(GPU_SHAPE if device == "cuda" else CPU_SHAPE)
    for name, value in (("vocab", vocab), ("features", features), ("batch", batch),
                        ("width", width)):
        if value is not None:
            shape[name] = value
    v, k, b, l = shape["vocab"], shape["features"], shape["batch"], shape["width"]
    print(f"machine: {machine()}")
    print(f"shape: V={v} K={k} B={b} L={l} (float32), mean of {repeats} back-to-back calls")

    rng = np.random.default_rng(0)
    table_np = rng.standard_normal((v, k), dtype=np.float32)
    ids_np = rng.integers(0, v, (b, l)).astype(np.int32)
    table = jnp.asarray(table_np)
    bags = je.Bags(ids_np)
    ids = bags.ids

    bag_fwd = jax.jit(lambda t, bg: je.bag_lookup(t, bg, combiner="sum"))
    bag_grad = jax.jit(jax.grad(lambda t, bg: je.bag_lookup(t, bg, combiner="sum").sum()))
    one_fwd = jax.jit(lambda t, i: je.lookup(t, i.reshape(-1)))
    one_grad = jax.jit(jax.grad(lambda t, i: je.lookup(t, i.reshape(-1)).sum()))
    ours = {
        "bag_lookup fwd": time_call(lambda: bag_fwd(table, bags), repeats=repeats),
        "bag_lookup fwd+bwd": time_call(lambda: bag_grad(table, bags), repeats=repeats),
        "lookup fwd": time_call(lambda: one_fwd(table, ids), repeats=repeats),
        "lookup fwd+bwd": time_call(lambda: one_grad(table, ids), repeats=repeats),
    }
    torch = _torch(device)
    peers: dict[str, float | None] = dict.fromkeys(ours)
    sparse_peer = None
    if torch is not None:
        bag_f, bag_fb, sparse_peer, emb_f, emb_fb = _torch_times(
            torch, table_np, ids_np, device, repeats
        )
        peers = {"bag_lookup fwd": bag_f, "bag_lookup fwd+bwd": bag_fb,
                 "lookup fwd": emb_f, "lookup fwd+bwd": emb_fb}
    peer_name = "torch EmbeddingBag(sum) / F.embedding" if torch else "torch not installed"
    print(f"\n{'operation':<22}{'jaxembed ms':>13}{'peer ms':>10}{'ratio':>8}   peer: {peer_name}")
    for name, seconds in ours.items():
        peer = peers[name]
        peer_ms = "-" if peer is None else f"{peer * 1e3:.2f}"
        print(f"{name:<22}{seconds * 1e3:>13.2f}{peer_ms:>10}{ratio(seconds, peer):>8}")
    if sparse_peer is not None:
        print(f"(torch EmbeddingBag sparse=True fwd+bwd, a row-sparse gradient: "
              f"{sparse_peer * 1e3:.2f} ms; jaxembed's row-sparse path is jaxembed.optim.sparse)")

    row_bytes = b * l * k * 4
    bandwidth = row_bytes / ours["bag_lookup fwd"] / 1e12
    print(f"\nbag_lookup fwd effective bandwidth: {bandwidth:.3f} TB/s (bytes of rows read / time)")
    if device == "cuda":
        _gpu_paths(table, bags, row_bytes, repeats)

    small_v = 2**14 if device == "cpu" else 2**16
    small_table = jnp.asarray(table_np[:small_v])
    small_bags = je.Bags(ids_np % small_v)
    literal = jax.jit(lambda t, bg: je.dense_lookup(je.multi_hot(bg, t.shape[0]), t))
    lit = time_call(lambda: literal(small_table, small_bags), repeats=repeats)
    fast = time_call(lambda: bag_fwd(small_table, small_bags), repeats=repeats)
    print(f"\nliteral multi_hot @ W at V={small_v}: {lit * 1e3:.2f} ms; gather-sum "
          f"{fast * 1e3:.2f} ms; gather-sum / literal = {fast / lit:.3f}")

    print("\nlookup_style crossover (4096 ids, K=64): V, one_hot ms, gather ms")
    for vv, hot, gather in _crossover(repeats):
        print(f"  {vv:>6} {hot * 1e3:>9.3f} {gather * 1e3:>9.3f}")
    return ours


def _gpu_paths(table, bags, row_bytes, repeats):
    ids = bags.ids
    weights = jnp.ones(ids.shape, jnp.float32)
    xla = jax.jit(_slot_loop_row_sum)
    reference = xla(table, ids, weights)
    xla_s = time_call(lambda: xla(table, ids, weights), repeats=repeats)
    print(f"plain XLA gather-sum: {xla_s * 1e3:.3f} ms = {row_bytes / xla_s / 1e12:.3f} TB/s")
    for per_program, block, warps, evict in KERNEL_VARIANTS:
        kernel = jax.jit(lambda t, i, w, p=per_program, f=block, n=warps, e=evict:
                         pallas_pool.pooled_sum(t, i, w, bags_per_program=p, feature_block=f,
                                                num_warps=n, eviction_policy=e))
        label = f"pallas bags/program={per_program} feature_block={block} warps={warps} {evict}"
        try:
            err = float(jnp.max(jnp.abs(kernel(table, ids, weights) - reference)))
            secs = time_call(lambda k=kernel: k(table, ids, weights), repeats=repeats)
        except Exception as exc:  # report, keep measuring the other variants
            print(f"{label}: failed: {exc!r}"[:300])
            continue
        print(f"{label}: {secs * 1e3:.3f} ms = {row_bytes / secs / 1e12:.3f} TB/s "
              f"(max |diff| vs XLA {err:.2e})")
