r"""A Pallas (Triton) GPU kernel for the weighted gather-sum of a batch of bags.

Computes the same equation as the plain-JAX path in :mod:`jaxembed.lookup`,

.. math:: \mathrm{out}_b = \sum_l w_{bl}\, W_{i_{bl}, :},

with a grid of ``B / bags_per_program`` programs. Each program loads its bags' ids and weights,
gathers their rows straight from the table in HBM (one coalesced row read per slot, skipped
when the slot's weight is 0 — padding costs no bandwidth), and accumulates in float32 in
registers; the ``[B, L, K]`` block of rows never exists in memory. It is opt-in
(``JAXEMBED_PALLAS=1``): measured on an H200 it did not yet beat XLA's own gather-sum
(``docs/benchmarks.md``), so the default path stays plain JAX.

The plain-JAX path stays the reference and the fallback (CPU, TPU, shapes Triton cannot tile):
``proofs/proof_pallas_pool.py`` checks the kernel against it in interpret mode on any machine,
and ``jaxembed bench lookup`` on a GPU checks and times both.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu
from jaxtyping import Array, Float, Int

# Opt in with JAXEMBED_PALLAS=1. Off by default: on an H200 the kernel measured 1.83-1.89 TB/s
# against 1.99 TB/s for XLA's gather-sum (docs/benchmarks.md), so XLA stays the default path.
ENABLED = os.environ.get("JAXEMBED_PALLAS", "0") == "1"


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def supports(table_shape: tuple[int, ...], table_dtype, width: int) -> bool:
    """Whether the kernel can tile this problem: Triton tiles need power-of-two sizes, so
    the feature size must be a power of two (bag widths are padded to one here)."""
    features = table_shape[1]
    return (
        features >= 16
        and features == _next_pow2(features)
        and features * _next_pow2(max(width, 1)) <= 64 * 1024
        and jnp.dtype(table_dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16),
                                        jnp.dtype(jnp.float16))
    )


def _pool_kernel(ids_ref, weights_ref, table_ref, out_ref, *, feature_block, eviction_policy):
    ids = ids_ref[...]  # [bags, L]
    weights = weights_ref[...]  # [bags, L] float32, 0 on padding
    cols = pl.program_id(1) * feature_block + jnp.arange(feature_block)
    rows = plgpu.load(
        table_ref.at[ids[:, :, None], cols[None, None, :]],
        mask=(weights != 0)[:, :, None],
        other=0.0,
        eviction_policy=eviction_policy,
    )  # [bags, L, feature_block]
    pooled = jnp.sum(rows.astype(jnp.float32) * weights[:, :, None], axis=1)
    out_ref[...] = pooled.astype(out_ref.dtype)


def pooled_sum(
    table: Float[Array, "V K"],
    ids: Int[Array, "B L"],
    weights: Float[Array, "B L"],
    *,
    bags_per_program: int = 1,
    feature_block: int | None = None,
    num_warps: int = 4,
    eviction_policy: str | None = None,
    interpret: bool = False,
) -> Float[Array, "B K"]:
    """``out[b] = Σ_l weights[b, l] · table[ids[b, l]]`` by the Pallas kernel.

    ``ids`` must already be in ``[0, V)`` (the caller maps padding to 0 with weight 0).
    The grid has ``B / bags_per_program × K / feature_block`` programs (``feature_block``
    defaults to ``K``). ``interpret=True`` runs the kernel through Pallas' interpreter on any
    backend.
    """
    num_bags, width = ids.shape
    features = table.shape[1]
    feature_block = features if feature_block is None else feature_block
    if features % feature_block:
        raise ValueError(f"feature_block {feature_block} must divide the features {features}")
    padded_width = _next_pow2(max(width, 1))
    padded_bags = -(-num_bags // bags_per_program) * bags_per_program
    pad = ((0, padded_bags - num_bags), (0, padded_width - width))
    ids = jnp.pad(ids.astype(jnp.int32), pad)
    weights = jnp.pad(weights.astype(jnp.float32), pad)
    block = pl.BlockSpec((bags_per_program, padded_width), lambda b, f: (b, 0))
    kwargs = {}
    if not interpret:
        kwargs["compiler_params"] = plgpu.CompilerParams(num_warps=num_warps, num_stages=1)
    kernel = functools.partial(
        _pool_kernel,
        feature_block=feature_block,
        eviction_policy=None if interpret else eviction_policy,
    )
    out = pl.pallas_call(
        kernel,
        grid=(padded_bags // bags_per_program, features // feature_block),
        in_specs=[block, block, pl.BlockSpec(table.shape, lambda b, f: (0, 0))],
        out_specs=pl.BlockSpec((bags_per_program, feature_block), lambda b, f: (b, f)),
        out_shape=jax.ShapeDtypeStruct((padded_bags, features), table.dtype),
        interpret=interpret,
        **kwargs,
    )(ids, weights, table)
    return out[:num_bags]
