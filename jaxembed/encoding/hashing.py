r"""Stable hashing: ints and strings to 64-bit codes, hash buckets and hashed crosses.

Everything here is numpy, vectorized, and the same on every run and every machine (Python's
``hash()`` is salted per process and is never used).

**Integers.** ``mix64`` is the splitmix64 finalizer (Stafford's "Mix13"):

.. math::

    z \leftarrow (z \oplus (z \gg 30)) \cdot C_1,\quad
    z \leftarrow (z \oplus (z \gg 27)) \cdot C_2,\quad
    z \leftarrow z \oplus (z \gg 31) \pmod{2^{64}}

with :math:`C_1 = \mathtt{0xBF58476D1CE4E5B9}`, :math:`C_2 = \mathtt{0x94D049BB133111EB}`.
Each step is invertible (an xor-shift and a multiplication by an odd number), so ``mix64`` is a
bijection of the 64-bit words. A seeded int hash is

.. math::

    h_s(x) = \mathrm{mix64}((x \oplus K_s) + \gamma), \qquad
    K_s = \mathrm{mix64}(s + \gamma),\ \gamma = \mathtt{0x9E3779B97F4A7C15}

(:math:`K_s` is the first output of splitmix64 seeded with :math:`s`). For a fixed seed
:math:`h_s` is a bijection, so two distinct 64-bit ids never share a 64-bit hash: every
collision of :func:`hash_bucket` comes from the reduction :math:`h \bmod M` alone.

**Strings** are hashed through their UTF-8 bytes with 64-bit FNV-1a
(:math:`h \leftarrow (h \oplus b) \cdot p`, :math:`p = \mathtt{0x100000001B3}`) from the
seeded basis :math:`\mathtt{0xCBF29CE484222325} \oplus K_s`, then finalized with ``mix64``.
The finalizer matters: in plain FNV-1a the low :math:`r` bits of the hash depend only on the
low :math:`r` bits of every byte (multiplication carries only upwards), so ``fnv % 2**r``
would be a poor bucket. The byte loop is vectorized across strings: round :math:`j` folds
byte :math:`j` of every string at least :math:`j + 1` bytes long into its state, so a batch
costs one numpy pass per byte position; the few longest strings finish in plain Python.
(Hashing each distinct string once was measured slower: the dictionary that finds them costs
more than the vectorized hash of a short token.)

**Buckets and the birthday bound.** With an ideal hash, :math:`n` distinct keys in
:math:`M` buckets give

.. math::

    \mathbb{E}[\text{colliding pairs}] = \binom{n}{2}\frac{1}{M}, \qquad
    \mathbb{E}[\text{occupied buckets}] = M\left(1 - (1 - 1/M)^n\right),

(:func:`expected_colliding_pairs`, :func:`expected_occupied_buckets`); the tests measure
both for ints, strings and crosses against these.

**Crosses** combine columns :math:`c_1, \dots, c_m` (ids or strings) of one record into one
id: :math:`g_0 = K_s`, :math:`g_i = \mathrm{mix64}((g_{i-1} + \gamma) \oplus h_s(c_i))`,
id :math:`= g_m \bmod M`. Order matters (``user × item`` is not ``item × user``).

References:
    Weinberger, Dasgupta, Langford, Smola, Attenberg. "Feature hashing for large scale
    multitask learning." ICML 2009.
    Steele, Lea, Flood. "Fast splittable pseudorandom number generators." OOPSLA 2014.
    Fowler, Noll, Vo. "FNV hash." IETF draft-eastlake-fnv.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxembed.bags import Bags

GAMMA = 0x9E3779B97F4A7C15
"""The splitmix64 increment (the 64-bit golden ratio)."""
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1
# Strings still unfinished once fewer than this many remain are finished byte by byte in
# Python (one numpy round per byte costs microseconds, a Python byte step ~0.1 µs).
_PYTHON_TAIL = 8


# --- 64-bit mixing ---------------------------------------------------------------------------
def mix64(x: Any) -> np.ndarray:
    """The splitmix64 finalizer, elementwise on ``uint64`` (a bijection of 64-bit words)."""
    z = np.array(x, dtype=np.uint64, copy=True, ndmin=1)
    shape = np.shape(x)
    z ^= z >> np.uint64(30)
    z *= _C1
    z ^= z >> np.uint64(27)
    z *= _C2
    z ^= z >> np.uint64(31)
    return z.reshape(shape)


def seed_key(seed: int) -> np.uint64:
    """``K_s = mix64(s + γ)``: the first splitmix64 output for ``seed`` (an int in [0, 2**64))."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed <= _MASK:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return mix64(np.uint64((seed + GAMMA) & _MASK))[()]


def _check_buckets(num_buckets: int, what: str = "num_buckets") -> int:
    if isinstance(num_buckets, bool) or not isinstance(num_buckets, int | np.integer):
        raise TypeError(f"{what} must be an integer, got {num_buckets!r}")
    if not 1 <= int(num_buckets) <= np.iinfo(np.int64).max:
        raise ValueError(f"{what} must be in [1, 2**63), got {num_buckets}")
    return int(num_buckets)


# --- ints ------------------------------------------------------------------------------------
def _as_uint64(values: Any, what: str) -> np.ndarray:
    """Integer values as their two's-complement 64-bit words (``-1`` -> ``2**64 - 1``)."""
    arr = np.asarray(values)
    if arr.size == 0 and arr.dtype == np.float64:  # np.asarray([]) is float64
        arr = arr.astype(np.int64)
    if not hasattr(values, "dtype") and arr.dtype.kind in "fO":
        items = np.asarray(values, dtype=object).ravel()
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise ValueError(
                f"{what}: python ints from {min(items)} to {max(items)} fit neither int64 nor "
                "uint64; pass a numpy array of one integer dtype"
            )
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} must have an integer dtype, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return arr.astype(np.uint64)
    return arr.astype(np.int64).view(np.uint64)


def hash_ints(values: Any, seed: int = 0) -> np.ndarray:
    """``h_s(x) = mix64((x ⊕ K_s) + γ)`` for every integer ``x`` (any shape, any int dtype).

    Values are taken modulo ``2**64`` (so ``int64(-1)`` and ``uint64(2**64 - 1)`` agree).
    For a fixed seed this is a bijection of 64-bit words: distinct ids, distinct hashes.
    """
    x = _as_uint64(values, "hash_ints values")
    z = np.atleast_1d(x ^ seed_key(seed))  # arrays wrap silently; numpy scalars would warn
    z += np.uint64(GAMMA)
    return mix64(z).reshape(x.shape)


# --- strings ---------------------------------------------------------------------------------
def _string_items(strings: Any, what: str) -> tuple[list[Any], tuple[int, ...]]:
    """A flat python list of the items and the shape to give the result."""
    if isinstance(strings, str | bytes):
        kind = type(strings).__name__
        raise TypeError(f"{what} must be a sequence of strings, got a single {kind}")
    if isinstance(strings, np.ndarray):
        if strings.dtype.kind not in "USO":
            raise TypeError(f"{what} must hold str or bytes, got dtype {strings.dtype}")
        return strings.ravel().tolist(), strings.shape
    items = list(strings)
    return items, (len(items),)


def utf8(items: list[Any], what: str) -> list[bytes]:
    """The UTF-8 bytes of each item (``str`` is encoded, ``bytes`` kept); a TypeError or
    ValueError names the first item that is neither, or cannot be encoded."""
    try:
        return list(map(str.encode, items))
    except (TypeError, UnicodeEncodeError):
        pass
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            try:
                out.append(item.encode())
            except UnicodeEncodeError as err:
                raise ValueError(
                    f"{what}: item {i} {item!r} is not encodable as UTF-8 ({err})"
                ) from err
        elif isinstance(item, bytes | bytearray):
            out.append(bytes(item))
        else:
            raise TypeError(
                f"{what}: item {i} is {item!r} of type {type(item).__name__}, not str or bytes"
            )
    return out


def _fnv1a_bytes(data: list[bytes], basis: int) -> np.ndarray:
    """64-bit FNV-1a of each byte string from ``basis``, vectorized across strings."""
    n = len(data)
    h = np.full(n, basis, dtype=np.uint64)
    if n == 0:
        return h
    lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
    buf = np.frombuffer(b"".join(data), dtype=np.uint8)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    order = np.argsort(-lengths, kind="stable")  # longest first: the live ones are a prefix
    sorted_len = lengths[order]
    state = h[order]
    cursor = starts[order]
    prime = np.uint64(FNV_PRIME)
    longest = int(sorted_len[0])
    live = np.searchsorted(-sorted_len, -np.arange(longest), side="left")  # len > j
    j = 0
    while j < longest and live[j] > _PYTHON_TAIL:
        c = int(live[j])
        state[:c] ^= buf[cursor[:c]]
        state[:c] *= prime
        cursor[:c] += 1
        j += 1
    for r in range(int(live[j]) if j < longest else 0):  # the few longest: plain Python
        value = int(state[r])
        for byte in buf[int(cursor[r]) : int(starts[order[r]] + sorted_len[r])].tobytes():
            value = ((value ^ byte) * FNV_PRIME) & _MASK
        state[r] = value
    h[order] = state
    return h


def fnv1a64(strings: Any) -> np.ndarray:
    """Plain 64-bit FNV-1a of each string's UTF-8 bytes (or of each ``bytes``), unseeded and
    unfinalized: the published function (``fnv1a64(["a"]) == 0xAF63DC4C8601EC8C``)."""
    items, shape = _string_items(strings, "fnv1a64 strings")
    return _fnv1a_bytes(utf8(items, "fnv1a64 strings"), FNV_OFFSET).reshape(shape)


def hash_strings(strings: Any, seed: int = 0) -> np.ndarray:
    """``mix64(FNV-1a(utf8(s)) from basis FNV_OFFSET ⊕ K_s)`` for every string (or bytes).

    ``strings`` is a sequence or a numpy array (``U``, ``S`` or ``object`` dtype); the result
    has its shape. A ``str`` and its UTF-8 ``bytes`` hash alike.
    """
    items, shape = _string_items(strings, "hash_strings strings")
    basis = FNV_OFFSET ^ int(seed_key(seed))
    return mix64(_fnv1a_bytes(utf8(items, "hash_strings strings"), basis)).reshape(shape)


def hash_values(values: Any, seed: int = 0) -> np.ndarray:
    """:func:`hash_ints` for integer values, :func:`hash_strings` for ``str``/``bytes``."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "USO":
            return hash_strings(values, seed)
        return hash_ints(values, seed)
    if isinstance(values, str | bytes):
        raise TypeError(f"values must be a sequence, got a single {type(values).__name__}")
    if hasattr(values, "dtype"):  # a jax array
        return hash_ints(np.asarray(values), seed)
    items = list(values)
    if items and isinstance(items[0], str | bytes):
        return hash_strings(items, seed)
    return hash_ints(items, seed)


# --- buckets and crosses ---------------------------------------------------------------------
def hash_bucket(values: Any, num_buckets: int, seed: int = 0) -> np.ndarray:
    """The hashing trick: ``h_s(v) mod M`` for each id or string, as ``int64`` in ``[0, M)``."""
    m = _check_buckets(num_buckets)
    return (hash_values(values, seed) % np.uint64(m)).astype(np.int64)


def hash_cross(columns: Sequence[Any], num_buckets: int, seed: int = 0) -> np.ndarray:
    """One hashed id in ``[0, M)`` per row for the cross of ``columns`` (e.g. user × item).

    ``g_0 = K_s``, ``g_i = mix64((g_{i-1} + γ) ⊕ h_s(c_i))``, id ``= g_m mod M``. Columns are
    id or string arrays of one length; the order of the columns matters.
    """
    m = _check_buckets(num_buckets)
    if isinstance(columns, np.ndarray) or len(columns) == 0:
        raise ValueError("hash_cross needs a non-empty sequence of columns")
    hashed = [hash_values(col, seed).ravel() for col in columns]
    n = hashed[0].shape[0]
    for i, h in enumerate(hashed):
        if h.shape[0] != n:
            raise ValueError(f"hash_cross column {i} has {h.shape[0]} rows, column 0 has {n}")
    g = np.full(n, seed_key(seed), dtype=np.uint64)
    for h in hashed:
        g += np.uint64(GAMMA)
        g = mix64(g ^ h)
    return (g % np.uint64(m)).astype(np.int64)


def cross_bags(
    records: Mapping[str, Any],
    crosses: Sequence[Sequence[str]],
    num_buckets: int,
    seed: int = 0,
) -> Bags:
    """The wide input: one bag per record holding one hashed id per cross.

    ``crosses`` names the columns of each cross, e.g. ``[("user", "item"), ("user", "shop")]``.
    Each cross is salted by its names (seed ``hash_strings(["user×item"], seed)``), so two
    crosses whose values coincide do not land on the same id systematically. The result is
    ``Bags`` of shape ``[B, len(crosses)]`` over ``num_buckets`` rows.
    """
    if not crosses:
        raise ValueError("cross_bags needs at least one cross")
    ids = []
    for names in crosses:
        if isinstance(names, str) or not names:
            raise ValueError(f"each cross is a non-empty sequence of column names, got {names!r}")
        missing = [name for name in names if name not in records]
        if missing:
            raise KeyError(f"cross {tuple(names)}: no column {missing[0]!r} in records")
        salt = int(hash_strings(["×".join(names)], seed)[0])
        ids.append(hash_cross([records[name] for name in names], num_buckets, salt))
    return Bags(np.stack(ids, axis=1))


# --- batches of values -> Bags ---------------------------------------------------------------
def bags_from_values(
    ids: Any, offsets: Any = None, weights: Any = None, *, min_width: int = 1
) -> Bags:
    """Codes of a batch of records as :class:`~jaxembed.Bags`.

    Without ``offsets``: ``ids[B]`` is one id per record (bags of width 1) and ``ids[B, k]``
    one bag of ``k`` ids per record. With ``offsets`` (``torch.nn.EmbeddingBag`` style, one
    start per record): ``ids`` holds the flat values of all records and record ``b`` is
    ``ids[offsets[b]:offsets[b+1]]``; the width is the power-of-two bucket of the longest.
    ``weights`` has the shape of ``ids``.
    """
    ids = np.asarray(ids)
    if offsets is not None:
        return Bags.from_offsets(ids.ravel(), offsets,
                                 None if weights is None else np.ravel(weights),
                                 min_width=min_width)
    if ids.ndim == 1:
        return Bags(ids[:, None], None if weights is None else np.asarray(weights)[:, None])
    if ids.ndim == 2:
        return Bags(ids, weights)
    raise ValueError(f"ids must be [B] or [B, k] without offsets, got shape {ids.shape}")


def expected_colliding_pairs(n: int, num_buckets: int) -> float:
    """``C(n, 2) / M``: expected pairs of ``n`` distinct keys sharing a bucket (ideal hash)."""
    return n * (n - 1) / 2.0 / num_buckets


def expected_occupied_buckets(n: int, num_buckets: int) -> float:
    """``M (1 - (1 - 1/M)^n)``: expected number of distinct buckets hit by ``n`` keys."""
    return num_buckets * -np.expm1(n * np.log1p(-1.0 / num_buckets))
