r"""The derived statistics of a search log: what the seed computed from history, as columns.

The search CTR model's statistics tower reads numbers that are not in the raw log but are
derived from it. :class:`SearchStatistics` is fitted on a training log (counts, the users'
category intent model, price moments) and then gives any log of the same world its derived
columns (:meth:`SearchStatistics.columns`), which the search log's schema
(:mod:`jaxembed.data.search_schema`) reads like any user's dense and categorical columns:

* ``head`` — the query's head word (its last token) and ``query_category`` — the category most
  items shown for that head word belong to in the fit log (null when the fit log never showed
  the word); both feed the wide part's crosses;
* :data:`STAT_FEATURES`, before standardization (the schema's ``dense`` fields standardize
  them with the training rows' moments): logit of the historical item CTR, log impressions,
  log price, log position, shop rating, the price relative to the item's category, whether the
  item is in the **query's category**, the user's **category preference** and ``log(1 + n_u)``.
  The preference is ``⟨a_u, e_c⟩`` of a rank-``k`` log-bilinear model of the user's query
  categories, ``P(c | u) = softmax_c(b_c + ⟨a_u, e_c⟩)``, fitted to the page-view counts
  ``n_uc`` by penalized maximum likelihood (:class:`IntentModel`); a row of the fit log gets
  the user vector re-fitted without its own page view (leave-one-out).

No label enters a derived column.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from jaxembed.data.search_log import STAT_NAMES, SearchLog
from jaxembed.encoding import hash_strings

STAT_FEATURES = ("item_ctr_logit", "item_log_impressions", "log_price", "log_position",
                 "shop_rating", "price_in_category", "query_category_match",
                 "user_category_preference", "user_log_searches")
"""The derived numeric columns, in order (see the module docstring)."""

_UNKNOWN = -1  # the query category of a head word the fit log never showed
_CTR_CLIP = 1e-4


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


@dataclass(frozen=True)
class SearchStatistics:
    """What a training log says about the world: fit with :meth:`fit`, then
    :meth:`columns` derives a log's columns (see the module docstring)."""

    query_category: KeyTable  # head word -> category id
    search_counts: np.ndarray  # float64[users, categories]: page views per query category
    intent: IntentModel  # the low-rank model of the users' query categories
    fit_pages: KeyTable  # page view of the fit log -> its user (for leave-one-out)
    price_mean: KeyTable  # category -> mean log price of its items
    price_std: KeyTable  # category -> deviation of the log price of its items
    price_moments: tuple[float, float]  # the same over all items
    match_rate: float  # share of the fit rows whose item is in the query's category

    @classmethod
    def fit(cls, log: SearchLog, *, profile_rank: int = 8, profile_l2: float = 1.0
            ) -> SearchStatistics:
        """Fit on a training log; ``profile_rank`` and ``profile_l2`` are the rank ``k`` and
        penalty ``λ`` of the users' category intent model (:class:`IntentModel`)."""
        if isinstance(profile_rank, bool) or not isinstance(profile_rank, int) or profile_rank < 1:
            raise ValueError(f"profile_rank must be an int >= 1, got {profile_rank!r}")
        if isinstance(profile_l2, bool) or not (isinstance(profile_l2, int | float)
                                                and profile_l2 > 0):
            raise ValueError(f"profile_l2 must be a number > 0, got {profile_l2!r}")
        heads = _keys(head_words(log))
        query_category = _fit_query_category(heads, log.category_id)
        qcat = query_category.get(heads, _UNKNOWN).astype(np.int64)
        pages, first = np.unique(log.pageview_id, return_index=True)
        known = first[qcat[first] != _UNKNOWN]  # first row of each page with a query category
        counts = np.zeros((log.num_users, log.num_categories))
        np.add.at(counts, (log.user_id[known], qcat[known]), 1.0)
        known_rows = qcat != _UNKNOWN
        price_mean, price_std, price_moments = _price_moments(log)
        return cls(
            query_category=query_category,
            search_counts=counts,
            intent=IntentModel.fit(counts, profile_rank, float(profile_l2)),
            fit_pages=KeyTable(pages, log.user_id[first].astype(np.float64)),
            price_mean=price_mean,
            price_std=price_std,
            price_moments=price_moments,
            match_rate=float(np.mean(qcat[known_rows] == log.category_id[known_rows]))
            if known_rows.any() else 0.0,
        )

    def columns(self, log: SearchLog) -> dict[str, np.ndarray]:
        """``head`` (str), ``query_category`` (int64, -1 where unknown) and the
        :data:`STAT_FEATURES` (float64, unstandardized) of every row of ``log``."""
        heads = head_words(log)
        qcat = self.query_category.get(_keys(heads), _UNKNOWN).astype(np.int64)
        column = {name: log.stats[:, i].astype(np.float64) for i, name in enumerate(STAT_NAMES)}
        ctr = np.clip(column["item_ctr_hist"], _CTR_CLIP, 1.0 - _CTR_CLIP)
        log_price = np.log(np.maximum(column["price"], 1e-6))
        category = log.category_id.astype(np.int64)
        mu, sigma = self.price_moments
        in_category = ((log_price - self.price_mean.get(category, mu))
                       / self.price_std.get(category, sigma))
        match = np.where(qcat == _UNKNOWN, self.match_rate, (qcat == category).astype(float))
        preference, searches = self._preference(log, qcat)
        stats = (np.log(ctr / (1.0 - ctr)), column["item_log_impressions"], log_price,
                 np.log(np.maximum(column["position"], 1.0)), column["shop_rating"],
                 in_category, match, preference, np.log1p(searches))
        return {"head": heads, "query_category": qcat,
                **dict(zip(STAT_FEATURES, stats, strict=True))}

    def _preference(self, log: SearchLog, qcat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(⟨a_u, e_c⟩, n_u)`` of every row, leave-one-out on the fit log's page views."""
        category = log.category_id.astype(np.int64)
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
        return preference, counts.sum(axis=1)[where]


def head_words(log: SearchLog) -> np.ndarray:
    """Each query's head word (its last token), as ``object`` strings."""
    return np.array([q.rsplit(" ", 1)[-1] for q in log.query], dtype=object)


def _keys(words: np.ndarray) -> np.ndarray:
    """A stable non-negative ``int64`` key per word (for :class:`KeyTable`)."""
    return hash_strings(words).astype(np.int64) & np.int64(2**62 - 1)


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


