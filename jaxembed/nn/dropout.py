r"""Embedding dropout: drop whole vocabulary rows, the same decision for every occurrence.

Gal & Ghahramani (2016) drop *words*, not coordinates: once per forward pass each row
:math:`j` of the table is kept with probability :math:`1-p` (:math:`m_j \sim
\mathrm{Bernoulli}(1-p)`, independent over rows) and the layer computes

.. math::

    \tilde W_j = \frac{m_j}{1 - p}\, W_j, \qquad \mathrm{out}_n = \tilde W_{i_n}.

Every occurrence of the same id :math:`i_n = i_{n'}` therefore gets the same decision, and
since :math:`\mathbb{E}[m_j / (1-p)] = 1` the expected output is the undropped lookup,
:math:`\mathbb{E}_m[\mathrm{out}_n] = W_{i_n}` (``proofs/proof_embed_layers.py`` proves both,
the expectation exactly, by summing over all :math:`2^V` masks of a small vocabulary).

Two ways to draw :math:`m`, identical in distribution:

* ``"table"`` — draw the ``[V]`` mask, then gather :math:`m_{i_n}`: the textbook form; costs
  ``O(V)`` random bits per pass;
* ``"hash"`` — draw each occurrence's decision from a hash of ``(key, id)``:
  :math:`m_{i_n} = \mathrm{Bernoulli}_{1-p}(\mathrm{fold\_in}(\mathrm{key}, i_n))`. Threefry
  ``fold_in`` is a keyed pseudo-random function, so equal ids get equal bits and distinct ids
  independent ones, without ever materializing ``[V]``; costs ``O(len(ids))``. The default,
  since embedding tables are usually far larger than a batch.

Padding ids (``-1``) look up a zero row, so their decision does not matter.

References:
    Gal, Y. & Ghahramani, Z. (2016). A Theoretically Grounded Application of Dropout in
    Recurrent Neural Networks. NeurIPS. (Section 4, "embedding dropout".)
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

DropoutDraw = Literal["hash", "table"]
DROPOUT_DRAWS: tuple[str, ...] = ("hash", "table")

__all__ = [
    "DROPOUT_DRAWS",
    "DropoutDraw",
    "check_rate",
    "drop_rows",
    "embedding_dropout",
    "keep_ids_hashed",
    "keep_rows",
]


def check_rate(rate: float) -> float:
    """``rate`` as a float in ``[0, 1)``, or ``ValueError`` naming it."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
    return rate


def keep_rows(key: jax.Array, num_embeddings: int, rate: float) -> jax.Array:
    """bool[V]: :math:`m_j`, true (keep) with probability ``1 - rate``, one draw per row."""
    return jax.random.bernoulli(key, 1.0 - rate, (num_embeddings,))


def keep_ids_hashed(key: jax.Array, ids: jax.Array, rate: float) -> jax.Array:
    """bool[ids.shape]: :math:`m_{i_n}` drawn from ``fold_in(key, i_n)``, so equal ids agree."""
    ids = jnp.asarray(ids)
    flat = ids.reshape(-1).astype(jnp.uint32)

    def decide(i: jax.Array) -> jax.Array:
        return jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - rate)

    return jax.vmap(decide)(flat).reshape(ids.shape)


def drop_rows(rows: jax.Array, keep: jax.Array, rate: float) -> jax.Array:
    """``rows[n] · keep[n] / (1 - rate)``: the looked-up rows ``[..., K]`` after dropout."""
    scale = jnp.asarray(1.0 / (1.0 - rate), rows.dtype)
    return jnp.where(keep[..., None], rows * scale, jnp.zeros((), rows.dtype))


def embedding_dropout(
    key: jax.Array,
    rows: jax.Array,
    ids: jax.Array,
    rate: float,
    num_embeddings: int,
    *,
    draw: DropoutDraw = "hash",
) -> jax.Array:
    """Embedding dropout of the rows ``rows = W[ids]`` (shape ``ids.shape + (K,)``).

    Draws :math:`m` with ``key`` (``draw="hash"`` or ``"table"``, see the module docstring)
    and returns :func:`drop_rows`. ``rate == 0`` returns ``rows`` unchanged.
    """
    rate = check_rate(rate)
    if rate == 0.0:
        return rows
    ids = jnp.asarray(ids)
    if draw == "table":
        mask = keep_rows(key, num_embeddings, rate)
        keep = jnp.take(mask, jnp.clip(ids, 0, num_embeddings - 1), axis=0)
    elif draw == "hash":
        keep = keep_ids_hashed(key, ids, rate)
    else:
        raise ValueError(f"dropout draw must be one of {DROPOUT_DRAWS}, got {draw!r}")
    return drop_rows(rows, keep, rate)
