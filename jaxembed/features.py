"""The encoding layer of the search CTR model: a search log's raw fields to model inputs.

One :class:`SearchFeaturizer` is fitted on a training log (counts, vocabularies, statistics
moments) and then turns any log of the same columns into :class:`Features`: one
:class:`~jaxembed.Bags` per behaviour domain, the standardized statistics and the wide part's
bag of hashed ids and id crosses. Per domain, as the production system did:

* ``item``: **attach encoding** along item → shop → category (a cold item takes its shop's
  code, a cold shop its category's), then a **random k-hot code** of that attach code;
* ``shop``: attach encoding shop → category, then a random k-hot code;
* ``category``, ``brand``: hash buckets of the raw id (small id spaces);
* ``query``: **word segmentation** to a vocabulary with OOV buckets, one bag of tokens;
* ``user``: a random k-hot code of the user id;
* ``wide``: hashed ids of user, item, shop, brand, category, query head word and the crosses
  user×item, user×shop, user×category, head×item, head×category and query category ×
  item category (:data:`WIDE_CROSSES`);
* ``stats`` (:data:`STAT_FEATURES`, standardized with the fit log's moments): logit of the
  historical item CTR, log impressions, log price, log position, shop rating, the price
  relative to the item's category, whether the item is in the **query's category** (each head
  word's category is the one most items shown for it in the fit log belong to), the user's
  **category preference** and ``log(1 + n_u)``. The preference is ``⟨a_u, e_c⟩`` of a
  rank-``k`` log-bilinear model of the user's query categories, ``P(c | u) =
  softmax_c(b_c + ⟨a_u, e_c⟩)``, fitted to the page-view counts ``n_uc`` by penalized maximum
  likelihood (:class:`IntentModel`); a row of the fit log gets the user vector re-fitted
  without its own page view (leave-one-out). No label enters a feature.

``item_encoding="hash"`` swaps the attach + random code of ``item`` for one plain hash bucket
per item (``hash_buckets`` rows), used wherever the item appears (its table and the wide
part's item crosses): the baseline attach encoding is measured against on the cold-item slice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from jaxembed.bags import Bags
from jaxembed.data.search_log import STAT_NAMES, SearchLog
from jaxembed.encoding import (
    AttachEncoder,
    RandomCode,
    SegmentEncoder,
    cross_bags,
    hash_bucket,
    hash_strings,
)

DOMAINS = ("item", "shop", "category", "brand", "query", "user")
WIDE_CROSSES = (("user",), ("item",), ("shop",), ("brand",), ("category",), ("head",),
                ("user", "item"), ("user", "shop"), ("user", "category"), ("head", "item"),
                ("head", "category"), ("query_category", "category"))
"""The wide part's hashed ids and crosses (``item`` is the item's attach code in the attach
encoding, its raw id in the hash encoding)."""
STAT_FEATURES = ("item_ctr_logit", "item_log_impressions", "log_price", "log_position",
                 "shop_rating", "price_in_category", "query_category_match",
                 "user_category_preference", "user_log_searches")
"""The columns of :attr:`Features.stats`, in order (see the module docstring)."""

_UNKNOWN = -1  # the query category of a head word the fit log never showed
_CTR_CLIP = 1e-4


@dataclass(frozen=True)
class Features:
    """Model inputs for ``n`` impressions (one row each) and their labels."""

    domains: dict[str, Bags]
    stats: np.ndarray  # float32[n, S]
    wide: Bags
    labels: np.ndarray  # float32[n]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, start: int, stop: int) -> dict:
        """Rows ``[start, stop)`` as the model's batch dict (numpy; widths kept)."""
        out = {name: _slice(bags, start, stop) for name, bags in self.domains.items()}
        out["stats"] = self.stats[start:stop]
        out["wide"] = _slice(self.wide, start, stop)
        return out


def _slice(bags: Bags, start: int, stop: int) -> Bags:
    weights = None if bags.weights is None else bags.weights[start:stop]
    return Bags.tree_unflatten(None, (bags.ids[start:stop], weights))


@dataclass(frozen=True)
class KeyTable:
    """Sorted distinct ``int64`` keys and their ``float64`` values; a missing key reads a
    default."""

    keys: np.ndarray
    values: np.ndarray

    @classmethod
    def counts(cls, keys: np.ndarray) -> KeyTable:
        """How often each distinct key occurs in ``keys``."""
        distinct, counts = np.unique(np.asarray(keys, dtype=np.int64), return_counts=True)
        return cls(distinct, counts.astype(np.float64))

    def get(self, keys: np.ndarray, default: float | np.ndarray = 0.0) -> np.ndarray:
        """The value of each key (``default`` where the key is absent)."""
        keys = np.asarray(keys, dtype=np.int64)
        if self.keys.size == 0:
            return np.broadcast_to(np.asarray(default, np.float64), keys.shape).copy()
        pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        return np.where(self.keys[pos] == keys, self.values[pos], default)


def _pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One ``int64`` key per pair of non-negative ``int32`` ids."""
    return (np.asarray(a, np.int64) << np.int64(32)) | np.asarray(b, np.int64)


@dataclass
class SearchFeaturizer:
    """Fitted encoders of each domain; see the module docstring.

    Build with :meth:`fit`; ``sizes`` gives the table rows per domain for
    :class:`jaxembed.models.SearchCTR`, ``wide_size`` and ``num_stats`` its other sizes.
    """

    item_attach: AttachEncoder | None  # None: the hash encoding
    shop_attach: AttachEncoder
    item_code: RandomCode | None
    shop_code: RandomCode
    user_code: RandomCode
    query: SegmentEncoder
    query_category: KeyTable  # head-word hash -> category id
    search_counts: np.ndarray  # float64[users, categories]: page views per query category
    intent: IntentModel  # the low-rank model of the users' query categories
    fit_pages: KeyTable  # page view of the fit log -> its user (for leave-one-out)
    price_mean: KeyTable  # category -> mean log price of its items
    price_std: KeyTable  # category -> deviation of the log price of its items
    price_moments: tuple[float, float]  # the same over all items
    match_rate: float  # share of the fit rows whose item is in the query's category
    stats_mean: np.ndarray
    stats_std: np.ndarray
    hash_buckets: int
    wide_size: int
    query_width: int

    @classmethod
    def fit(
        cls,
        log: SearchLog,
        *,
        item_encoding: Literal["attach", "hash"] = "attach",
        min_count: int = 5,
        code_buckets: int = 4096,
        code_k: int = 4,
        hash_buckets: int = 4096,
        wide_size: int = 2**18,
        query_width: int = 8,
        profile_rank: int = 8,
        profile_l2: float = 1.0,
        seed: int = 0,
    ) -> SearchFeaturizer:
        """Fit on a training log: warm ids have at least ``min_count`` impressions; codes are
        ``code_k``-hot over ``code_buckets`` positions; small ids hash to ``hash_buckets``;
        ``profile_rank`` and ``profile_l2`` are the rank ``k`` and penalty ``λ`` of the
        users' category intent model (:class:`IntentModel`)."""
        if item_encoding not in ("attach", "hash"):
            raise ValueError(f"item_encoding must be 'attach' or 'hash', got {item_encoding!r}")
        if isinstance(profile_rank, bool) or not isinstance(profile_rank, int) or profile_rank < 1:
            raise ValueError(f"profile_rank must be an int >= 1, got {profile_rank!r}")
        if not (isinstance(profile_l2, int | float) and profile_l2 > 0):
            raise ValueError(f"profile_l2 must be a number > 0, got {profile_l2!r}")
        records = _records(log)
        shop_attach = AttachEncoder.fit(records, ("shop", "category"), min_count,
                                        num_oov_buckets=16, seed=seed)
        item_attach = item_code = None
        if item_encoding == "attach":
            item_attach = AttachEncoder.fit(records, ("item", "shop", "category"), min_count,
                                            num_oov_buckets=16, seed=seed)
            item_code = RandomCode(code_buckets, code_k, seed=seed + 1)
        query = SegmentEncoder.fit(list(log.query), min_count=2, num_oov_buckets=64, seed=seed,
                                   max_tokens=query_width)
        query_category = _fit_query_category(records["head"], log.category_id)
        qcat = query_category.get(records["head"], _UNKNOWN).astype(np.int64)
        pages, first = np.unique(log.pageview_id, return_index=True)
        known = first[qcat[first] != _UNKNOWN]  # first row of each page with a query category
        counts = np.zeros((log.num_users, log.num_categories))
        np.add.at(counts, (log.user_id[known], qcat[known]), 1.0)
        known_rows = qcat != _UNKNOWN
        price_mean, price_std, price_moments = _price_moments(log)
        featurizer = cls(
            item_attach=item_attach,
            shop_attach=shop_attach,
            item_code=item_code,
            shop_code=RandomCode(code_buckets, code_k, seed=seed + 2),
            user_code=RandomCode(code_buckets, code_k, seed=seed + 3),
            query=query,
            query_category=query_category,
            search_counts=counts,
            intent=IntentModel.fit(counts, profile_rank, float(profile_l2)),
            fit_pages=KeyTable(pages, log.user_id[first].astype(np.float64)),
            price_mean=price_mean,
            price_std=price_std,
            price_moments=price_moments,
            match_rate=float(np.mean(qcat[known_rows] == log.category_id[known_rows]))
            if known_rows.any() else 0.0,
            stats_mean=np.zeros(len(STAT_FEATURES)),
            stats_std=np.ones(len(STAT_FEATURES)),
            hash_buckets=hash_buckets,
            wide_size=wide_size,
            query_width=query_width,
        )
        raw = featurizer._raw_stats(log, records)
        featurizer.stats_mean = raw.mean(axis=0)
        featurizer.stats_std = raw.std(axis=0) + 1e-6
        return featurizer

    @property
    def sizes(self) -> dict[str, int]:
        """Table rows of each behaviour domain."""
        item = self.hash_buckets if self.item_code is None else self.item_code.num_buckets
        return {"item": item, "shop": self.shop_code.num_buckets,
                "category": self.hash_buckets, "brand": self.hash_buckets,
                "query": self.query.size, "user": self.user_code.num_buckets}

    @property
    def num_stats(self) -> int:
        return int(self.stats_mean.shape[0])

    def transform(self, log: SearchLog) -> Features:
        """Encode every impression of ``log``."""
        records = _records(log)
        records["query_category"] = self.query_category.get(records["head"], _UNKNOWN
                                                            ).astype(np.int64)
        if self.item_attach is None or self.item_code is None:
            item_ids = hash_bucket(log.item_id, self.hash_buckets, seed=11)
            item = Bags(item_ids[:, None])
        else:
            item_ids = self.item_attach.ids(records)
            item = self.item_code.bags(item_ids)
        domains = {
            "item": item,
            "shop": self.shop_code.bags(self.shop_attach.ids(records)),
            "category": Bags(hash_bucket(log.category_id, self.hash_buckets, seed=12)[:, None]),
            "brand": Bags(hash_bucket(log.brand_id, self.hash_buckets, seed=13)[:, None]),
            "query": self.query.bags(list(log.query), min_width=self.query_width),
            "user": self.user_code.bags(log.user_id),
        }
        stats = (self._raw_stats(log, records) - self.stats_mean) / self.stats_std
        wide = cross_bags({**records, "item": item_ids}, WIDE_CROSSES, self.wide_size, seed=17)
        return Features(domains, stats.astype(np.float32), wide, log.label.astype(np.float32))

    def _raw_stats(self, log: SearchLog, records: dict[str, np.ndarray]) -> np.ndarray:
        """The :data:`STAT_FEATURES` of every row, before standardization."""
        column = {name: log.stats[:, i].astype(np.float64) for i, name in enumerate(STAT_NAMES)}
        ctr = np.clip(column["item_ctr_hist"], _CTR_CLIP, 1.0 - _CTR_CLIP)
        log_price = np.log(np.maximum(column["price"], 1e-6))
        category = log.category_id.astype(np.int64)
        mu, sigma = self.price_moments
        in_category = ((log_price - self.price_mean.get(category, mu))
                       / self.price_std.get(category, sigma))
        qcat = self.query_category.get(records["head"], _UNKNOWN).astype(np.int64)
        match = np.where(qcat == _UNKNOWN, self.match_rate, (qcat == category).astype(float))
        # leave-one-out: a page view the counts were fitted on does not count for its own rows
        own = (self.fit_pages.get(log.pageview_id, -1) == log.user_id) & (qcat != _UNKNOWN)
        # one preference row per distinct (user, left-out query category or none)
        keys, where = np.unique(_pair(log.user_id, np.where(own, qcat, -1) + 1),
                                return_inverse=True)
        key_user, key_out = keys >> np.int64(32), (keys & np.int64(2**32 - 1)) - 1
        counts = np.zeros((keys.size, self.search_counts.shape[1]))
        fitted = key_user < self.search_counts.shape[0]  # a user unseen at fit: no searches
        counts[fitted] = self.search_counts[key_user[fitted]]
        counts[key_out >= 0, key_out[key_out >= 0]] -= 1.0
        start = np.zeros((keys.size, self.intent.rank))
        start[fitted] = self.intent.users[key_user[fitted]]
        vectors = self.intent.user_vectors(counts, start)
        categories = np.clip(category, 0, self.intent.categories.shape[0] - 1)
        preference = np.where(category < self.intent.categories.shape[0], np.einsum(
            "nk,nk->n", vectors[where], self.intent.categories[categories]), 0.0)
        searches = counts.sum(axis=1)[where]
        return np.stack([
            np.log(ctr / (1.0 - ctr)),
            column["item_log_impressions"],
            log_price,
            np.log(np.maximum(column["position"], 1.0)),
            column["shop_rating"],
            in_category,
            match,
            preference,
            np.log1p(searches),
        ], axis=1)


@dataclass(frozen=True)
class IntentModel:
    r"""A rank-``k`` log-bilinear model of which category a user searches in.

    With ``n_uc`` the user's page views whose query is in category ``c``,
    ``P(c | u) = softmax_c(b_c + ⟨a_u, e_c⟩)``; the user vectors ``a_u``, category vectors
    ``e_c`` and offsets ``b_c`` maximize the penalized log-likelihood

    .. math::

        \mathcal{L} = \sum_{u,c} n_{uc} \log P(c \mid u)
                      - \tfrac{\lambda}{2} (\lVert A \rVert^2 + \lVert E \rVert^2),

    fitted by full-batch Adam from the SVD of the smoothed log-ratios (deterministic). A user's
    preference for category ``c`` is ``⟨a_u, e_c⟩``: how much more the user searches in ``c``
    than the population does. Given ``E`` and ``b``, one user's vector is a concave ``k``-
    dimensional problem, solved by damped Newton (:meth:`user_vectors`); that is how a row of
    the fit log gets its **leave-one-out** vector (its own page view removed from ``n_u``),
    so train rows see out-of-sample values, as later rows do.

    References:
        Collins, M., Dasgupta, S., Schapire, R. E. (2001). A Generalization of Principal
        Component Analysis to the Exponential Family. NIPS.
    """

    users: np.ndarray  # float64[users, k]
    categories: np.ndarray  # float64[categories, k]
    offsets: np.ndarray  # float64[categories]
    l2: float

    @property
    def rank(self) -> int:
        return int(self.categories.shape[1])

    @classmethod
    def fit(cls, counts: np.ndarray, rank: int, l2: float, steps: int = 400,
            learning_rate: float = 0.05) -> IntentModel:
        """Fit ``(A, E, b)`` to the count matrix ``n[users, categories]``."""
        total = counts.sum(axis=1, keepdims=True)
        share = np.maximum(counts.sum(axis=0), 1.0) / max(counts.sum(), 1.0)
        ratio = np.log((counts + 20.0 * share) / (total + 20.0)) - np.log(share)
        u, s, vt = np.linalg.svd(ratio - ratio.mean(axis=0), full_matrices=False)
        k = min(rank, s.size)
        root = np.zeros(rank)
        root[:k] = np.sqrt(s[:k])
        users = np.zeros((counts.shape[0], rank))
        users[:, :k] = u[:, :k]
        categories = np.zeros((counts.shape[1], rank))
        categories[:, :k] = vt[:k].T
        params = [users * root, categories * root, np.log(share)]
        moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
        for t in range(1, steps + 1):  # Adam (b1 = 0.9, b2 = 0.999) on -L
            a, e, b = params
            residual = counts - total * _softmax(b + a @ e.T)  # ∂L/∂logits
            grads = (l2 * a - residual @ e, l2 * e - residual.T @ a, -residual.sum(axis=0))
            for i, g in enumerate(grads):
                m, v = moments[i]
                m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                moments[i] = (m, v)
                params[i] = params[i] - learning_rate * (m / (1 - 0.9**t)) / (
                    np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        model = cls(params[0], params[1], params[2], l2)
        return dataclasses.replace(model, users=model.user_vectors(counts, params[0]))

    def log_likelihood(self, counts: np.ndarray, users: np.ndarray) -> np.ndarray:
        """The penalized log-likelihood of each row of ``counts`` at its user vector."""
        logits = self.offsets + users @ self.categories.T
        return ((counts * logits).sum(axis=1) - counts.sum(axis=1) * _logsumexp(logits)
                - 0.5 * self.l2 * (users * users).sum(axis=1))

    def user_vectors(self, counts: np.ndarray, start: np.ndarray, steps: int = 20
                     ) -> np.ndarray:
        """The best user vector for each row of ``counts`` with ``E`` and ``b`` held: Newton
        steps from ``start``, each halved until the row's likelihood does not drop."""
        e, k, vectors = self.categories, self.rank, start.copy()
        outer = (e[:, :, None] * e[:, None, :]).reshape(e.shape[0], k * k)  # e_c e_cᵀ
        total = counts.sum(axis=1, keepdims=True)
        value = self.log_likelihood(counts, vectors)
        for _ in range(steps):
            p = _softmax(self.offsets + vectors @ e.T)
            grad = (counts - total * p) @ e - self.l2 * vectors
            mean = p @ e
            hessian = (total[:, :, None] * ((p @ outer).reshape(-1, k, k)
                                            - mean[:, :, None] * mean[:, None, :])
                       + self.l2 * np.eye(k))
            step = np.linalg.solve(hessian, grad[:, :, None])[:, :, 0]
            size = np.ones((counts.shape[0], 1))
            new = self.log_likelihood(counts, vectors + step)
            worse = np.flatnonzero(new < value)
            for _ in range(30):  # halve the steps that lower their row's likelihood
                if worse.size == 0:
                    break
                size[worse] *= 0.5
                new[worse] = self.log_likelihood(counts[worse],
                                                 vectors[worse] + size[worse] * step[worse])
                worse = worse[new[worse] < value[worse]]
            size[worse] = 0.0
            vectors = vectors + size * step
            value = np.where(size[:, 0] > 0, new, value)
            if np.abs(size * step).max(initial=0.0) < 1e-6:
                break
        return vectors


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1)
    return top + np.log(np.exp(x - top[:, None]).sum(axis=1))


def _softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(x - _logsumexp(x)[:, None])


def _price_moments(log: SearchLog) -> tuple[KeyTable, KeyTable, tuple[float, float]]:
    """Mean and deviation of the log price over the distinct items of each category (not over
    impressions, which popular items dominate), and over all items; a category with fewer than
    two items takes the overall deviation."""
    item, first = np.unique(log.item_id, return_index=True)
    if item.size == 0:
        empty = KeyTable(np.zeros(0, np.int64), np.zeros(0))
        return empty, empty, (0.0, 1.0)
    price = np.log(np.maximum(log.stats[first, STAT_NAMES.index("price")], 1e-6))
    category = log.category_id[first].astype(np.int64)
    overall = (float(price.mean()), float(price.std()) + 1e-6)
    keys, where, size = np.unique(category, return_inverse=True, return_counts=True)
    mean = np.bincount(where, price) / size
    spread = np.sqrt(np.bincount(where, (price - mean[where]) ** 2) / size)
    spread = np.where(size < 2, overall[1], spread + 1e-6)
    return KeyTable(keys, mean), KeyTable(keys, spread), overall


def _fit_query_category(heads: np.ndarray, category: np.ndarray) -> KeyTable:
    """Each head word's category: the one most items shown for it belong to."""
    if heads.size == 0:
        return KeyTable(np.zeros(0, np.int64), np.zeros(0))
    pairs, counts = np.unique(np.stack([heads, category.astype(np.int64)], 1), axis=0,
                              return_counts=True)
    pairs = pairs[np.lexsort((-counts, pairs[:, 0]))]  # by head, most frequent category first
    first = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]
    return KeyTable(pairs[first, 0], pairs[first, 1].astype(np.float64))


def _records(log: SearchLog) -> dict[str, np.ndarray]:
    """The id columns the encoders read, plus the query's head word (its last token)."""
    heads = np.array([q.rsplit(" ", 1)[-1] for q in log.query], dtype=object)
    return {"user": log.user_id, "item": log.item_id, "shop": log.shop_id,
            "category": log.category_id, "brand": log.brand_id,
            "head": hash_strings(heads).astype(np.int64) & np.int64(2**62 - 1)}
