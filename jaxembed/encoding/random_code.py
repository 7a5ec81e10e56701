r"""Random (k-hot hashed) encoding: a huge id space squeezed into a small table.

Each id :math:`x` of a space of size :math:`N` (billions, or unbounded strings) gets a code:
a set of :math:`k` **distinct** positions in :math:`\{0, \dots, M-1\}`, :math:`M \ll N`. The
embedding of :math:`x` is the multi-hot product :math:`c(x) W = \sum_{j \in c(x)} W_j`, i.e.
:func:`jaxembed.bag_lookup` on the Bags this module returns, so a table of :math:`M` rows
stands for :math:`N` ids (a production search-ranking system reported about 20x compression
with this encoding at no loss in quality). Unlike the one-hot hashing trick, two ids that
share one position still differ in the others.

**How the k positions are drawn (and why they are distinct).** The positions of :math:`x`
are the first :math:`k` *distinct* values of the splitmix64 stream seeded by the id's hash,
reduced mod :math:`M`:

.. math::

    u_t = \mathrm{mix64}(h_s(x) + t\gamma) \bmod M, \quad t = 1, 2, \dots;\qquad
    c(x) = \text{the first } k \text{ distinct } u_t,

a value that repeats an earlier position is skipped (deterministic re-hashing on collision).
With an ideal hash each :math:`u_t` is uniform, and skipping repeats is sampling without
replacement, so :math:`c(x)` is a **uniform random k-subset** of the :math:`M` positions. For
two distinct ids (independent codes) the number of shared positions is hypergeometric:

.. math::

    \mathbb{E}[|c(x) \cap c(y)|] = \frac{k^2}{M}, \qquad
    \operatorname{Var} = \frac{k^2}{M}\Bigl(1-\frac{k}{M}\Bigr)\frac{M-k}{M-1}, \qquad
    P(c(x) = c(y)) = \binom{M}{k}^{-1}.

(Drawing position :math:`j` from its own range of :math:`M/k` slots would also give distinct
positions with the same mean overlap, but :math:`P(c(x) = c(y)) = (k/M)^k`, worse by
:math:`k^k / k! \approx e^k`; hence the rejection scheme.) A batch draws round :math:`j`
for all ids at once and re-draws only the rows whose candidate repeats; the expected number
of extra draws per id is :math:`\sum_{j<k} j/(M-j) \approx k^2/(2M)`.

References:
    Serrà, Karatzoglou. "Getting deep recommenders fit: Bloom embeddings for sparse binary
    input/output networks." RecSys 2017.
    Bloom. "Space/time trade-offs in hash coding with allowable errors." CACM 1970.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxembed.bags import Bags
from jaxembed.encoding.hashing import GAMMA, _check_buckets, bags_from_values, hash_values, mix64


def random_code(values: Any, num_buckets: int, k: int, seed: int = 0) -> np.ndarray:
    """The k-hot code of each id or string: ``int64[..., k]`` of distinct positions in ``[0, M)``.

    ``values`` is an integer array or a sequence of strings (see
    :func:`~jaxembed.encoding.hashing.hash_values`); position ``j`` of the result is the
    ``j``-th distinct value of the id's splitmix64 stream mod ``num_buckets``.
    """
    m = _check_buckets(num_buckets)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= m:
        raise ValueError(f"k must be an integer in [1, num_buckets={m}], got {k!r}")
    base = np.asarray(hash_values(values, seed))
    shape = base.shape
    base = base.ravel()
    n = base.shape[0]
    codes = np.empty((n, int(k)), dtype=np.int64)
    step = np.zeros(n, dtype=np.uint64)  # how many stream values each row has drawn
    gamma, m64 = np.uint64(GAMMA), np.uint64(m)
    for j in range(int(k)):
        rows = np.arange(n)
        while rows.size:
            step[rows] += np.uint64(1)
            candidate = (mix64(base[rows] + step[rows] * gamma) % m64).astype(np.int64)
            codes[rows, j] = candidate
            repeat = np.any(codes[rows, :j] == candidate[:, None], axis=1)
            rows = rows[repeat]
    return codes.reshape((*shape, int(k)))


class RandomCode:
    """k-hot random encoding of an id space into ``num_buckets`` rows.

    Args:
        num_buckets: ``M``, the rows of the embedding table the codes index.
        k: positions per id (``1 <= k <= M``; ``k = 1`` is the plain hashing trick).
        seed: selects the hash family; same seed, same codes, on every machine.

    ``codes(values)`` gives ``int64[..., k]``; ``bags(values)`` gives ``Bags`` ready for
    :func:`jaxembed.bag_lookup` (``combiner="sum"`` gives ``Σ_{j∈c(x)} W_j``).
    """

    def __init__(self, num_buckets: int, k: int, seed: int = 0) -> None:
        self.num_buckets = _check_buckets(num_buckets)
        random_code(np.zeros(0, dtype=np.int64), self.num_buckets, k, seed)  # validates k, seed
        self.k = int(k)
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"RandomCode(num_buckets={self.num_buckets}, k={self.k}, seed={self.seed})"

    def codes(self, values: Any) -> np.ndarray:
        """``int64[..., k]``: the distinct positions of each value."""
        return random_code(values, self.num_buckets, self.k, self.seed)

    def bags(
        self, values: Any, offsets: Any = None, weights: Any = None, *, min_width: int = 1
    ) -> Bags:
        """Bags of the codes.

        Without ``offsets`` each record holds one id: ``Bags`` of shape ``[B, k]``. With
        ``offsets`` record ``b`` holds ``values[offsets[b]:offsets[b+1]]`` and its bag is the
        union (with multiplicity) of their codes, ``k`` slots per value; a value's weight
        (``weights``, one per value) is given to each of its ``k`` slots.
        """
        codes = self.codes(values)
        if offsets is None:
            if codes.ndim != 2:
                raise ValueError(
                    f"values must be 1-D without offsets, got shape {codes.shape[:-1]}"
                )
            w = None if weights is None else np.repeat(np.asarray(weights)[:, None], self.k, 1)
            return bags_from_values(codes, None, w)
        if codes.ndim != 2:
            raise ValueError(f"values must be 1-D, got shape {codes.shape[:-1]}")
        offsets = np.asarray(offsets)
        w = None if weights is None else np.repeat(np.ravel(weights), self.k)
        if w is not None and w.shape[0] != codes.size:
            raise ValueError(f"weights has {np.size(weights)} entries, values has {codes.shape[0]}")
        return bags_from_values(codes.ravel(), offsets * self.k, w, min_width=min_width)

    def expected_shared(self) -> float:
        """``k² / M``: expected shared positions of two distinct ids."""
        return expected_shared_positions(self.k, self.num_buckets)

    def identical_probability(self) -> float:
        """``1 / C(M, k)``: probability that two distinct ids get the same code."""
        return identical_code_probability(self.k, self.num_buckets)


def expected_shared_positions(k: int, num_buckets: int) -> float:
    """``k² / M``: mean of the hypergeometric overlap of two uniform k-subsets of ``M``."""
    return k * k / num_buckets


def shared_positions_variance(k: int, num_buckets: int) -> float:
    """``(k²/M)(1 - k/M)(M - k)/(M - 1)``: its variance (0 when ``M = 1``)."""
    m = num_buckets
    if m == 1:
        return 0.0
    return k * k / m * (1 - k / m) * (m - k) / (m - 1)


def identical_code_probability(k: int, num_buckets: int) -> float:
    """``1 / C(M, k)``: probability that two uniform k-subsets of ``M`` are equal."""
    return 1.0 / math.comb(num_buckets, k)
