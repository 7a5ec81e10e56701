"""A generated e-commerce search log with a known click probability.

Each page view is one search: a user types a query, the engine shows ``page_size`` items, and
each impression is clicked with a ground-truth probability ``p = σ(η)``. The logit ``η`` is
built so that the raw ids, the item → shop/category/brand hierarchy, the query text and the
statistics features all matter (the equations are in ``docs/data.md`` and below)::

    η = b + α ⟨a_u, e_{c_i}⟩ + q_i + β_shop[s_i] + β_brand[r_i] + β_cat[c_i]
          + γ_head [h_query = h_i] + γ_mod |M_query ∩ M_i| − γ_off [c_i ≠ c_query]
          − γ_pos log(position) − γ_price z_i² + γ_rating tanh(2 (rating_{s_i} − 4.2))

with ``z_i = (log price_i − μ_{c_i}) / σ_price``. Item popularity is Zipf in a latent
popularity rank, so most items are cold; a cold item's effect is still partly known through
its shop, brand and category. ``b`` is solved once per (seed, config) so the mean click
probability of period 0 is ``config.base_ctr``.

Periods: ``period = k > 0`` is a later time window of the same world in which item quality
and latent popularity drift as a stationary AR(1) process,
``x⁽ᵏ⁾ = √(1 − d) x⁽ᵏ⁻¹⁾ + √d ξ⁽ᵏ⁾`` (``d = config.drift``), so new items become popular
(online-learning phase). Page views carry timestamps in ``[k T, (k + 1) T)`` seconds
(``T = config.period_seconds``) and clicks a click time, so a stream can be rebuilt.

Everything is a deterministic function of ``(n, seed, period, config)``, from numpy
generators seeded with ``[seed, stream, ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from jaxembed.metrics import auc

__all__ = ["COLUMN_DTYPES", "ID_FIELDS", "STAT_NAMES", "SearchLog", "SearchLogConfig", "bayes_auc",
           "column_problem", "search_log"]

STAT_NAMES = ("item_ctr_hist", "item_log_impressions", "price", "position", "shop_rating")
"""Columns of ``SearchLog.stats``: smoothed historical item CTR, ``log(1 + historical item
impressions)``, item price, 1-based position on the page, shop rating in [1, 5]."""

COLUMN_DTYPES = {"pageview_id": np.int64, "pv_time": np.float64, "click_time": np.float64,
                 "user_id": np.int32, "query": np.object_, "item_id": np.int32,
                 "shop_id": np.int32, "category_id": np.int32, "brand_id": np.int32,
                 "stats": np.float32, "label": np.int8, "true_prob": np.float64}
"""The columns of a :class:`SearchLog` and their dtypes (``query`` holds Python str)."""

ID_FIELDS = {"user_id": "num_users", "item_id": "num_items", "shop_id": "num_shops",
             "category_id": "num_categories", "brand_id": "num_brands"}
"""Id column → the cardinality that bounds it (ids are ``0 .. num - 1``)."""

_PILOT_IMPRESSIONS = 50_000
_PAGEVIEWS_PER_PERIOD = 10**9  # pageview_id = period * 10**9 + page index: unique over periods
_CTR_SMOOTHING = 50.0  # item_ctr_hist = (clicks + a·base_ctr) / (impressions + a)
_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class SearchLogConfig:
    """Sizes and effect scales of the generated world (defaults: a mid-size shop).

    Sizes: ``num_*`` cardinalities; ``rank`` of the user-category affinity; each category owns
    ``words_per_category`` head nouns and all share ``num_modifiers`` modifier words; pages show
    ``page_size`` items, a share ``in_category`` of them from the query's category.
    Popularity: items ``∝ rank^-zipf_exponent`` inside their category, users
    ``∝ rank^-user_zipf_exponent``; ``drift`` is the share of variance of item quality and
    latent popularity renewed per period; ``period_seconds`` is the length of a period.
    Effects are the ``α, σ, γ`` of the module equation; ``history_impressions`` sizes the
    synthetic history behind ``item_ctr_hist``.
    """

    num_users: int = 20_000
    num_items: int = 100_000
    num_shops: int = 5_000
    num_categories: int = 200
    num_brands: int = 2_000
    rank: int = 8
    words_per_category: int = 6
    num_modifiers: int = 400
    page_size: int = 10
    in_category: float = 0.8
    zipf_exponent: float = 1.0
    user_zipf_exponent: float = 0.8
    base_ctr: float = 0.08
    drift: float = 0.2
    period_seconds: float = 86_400.0
    history_impressions: int = 2_000_000
    affinity: float = 0.5
    intent: float = 1.0
    item_sigma: float = 0.5
    shop_sigma: float = 0.4
    brand_sigma: float = 0.3
    category_sigma: float = 0.3
    head_match: float = 0.6
    modifier_match: float = 0.3
    off_category: float = 0.8
    position_decay: float = 0.3
    price_sigma: float = 0.5
    price_penalty: float = 0.25
    rating_effect: float = 0.4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise TypeError(f"SearchLogConfig.{f.name} must be a number, got {value!r}")
            if f.type == "int" and not isinstance(value, int | np.integer):
                raise TypeError(f"SearchLogConfig.{f.name} must be an int, got {value!r}")
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"SearchLogConfig.{f.name} must be finite and >= 0, got {value!r}")
        for name in ("num_users", "num_categories", "rank", "words_per_category",
                     "num_modifiers", "page_size", "period_seconds", "price_sigma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SearchLogConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.num_items < max(self.num_categories, self.page_size):
            raise ValueError(
                f"SearchLogConfig.num_items={self.num_items} must be >= num_categories="
                f"{self.num_categories} and >= page_size={self.page_size}"
            )
        if self.num_brands < self.num_categories or self.num_shops < 1:
            raise ValueError(
                f"SearchLogConfig needs num_brands >= num_categories (every category has a "
                f"brand) and num_shops >= 1, got num_brands={self.num_brands}, "
                f"num_shops={self.num_shops}"
            )
        for name in ("in_category", "drift"):
            if getattr(self, name) > 1:
                raise ValueError(f"SearchLogConfig.{name} must be in [0, 1], got "
                                 f"{getattr(self, name)}")
        if not 0 < self.base_ctr < 1:
            raise ValueError(f"SearchLogConfig.base_ctr must be in (0, 1), got {self.base_ctr}")


@dataclass(frozen=True, eq=False)
class SearchLog:
    """One generated (or loaded) search log: ``n`` impressions as parallel numpy columns.

    Rows are in time order and grouped by page view. ``true_prob`` is the ground-truth click
    probability (never a model input); ``click_time`` is NaN where ``label`` is 0. The
    cardinalities bound the id columns (``0 <= user_id < num_users`` ...).
    """

    pageview_id: np.ndarray  # int64[n]
    pv_time: np.ndarray  # float64[n], seconds
    click_time: np.ndarray  # float64[n], NaN when not clicked
    user_id: np.ndarray  # int32[n]
    query: np.ndarray  # object[n] of str
    item_id: np.ndarray  # int32[n]
    shop_id: np.ndarray  # int32[n]
    category_id: np.ndarray  # int32[n]
    brand_id: np.ndarray  # int32[n]
    stats: np.ndarray  # float32[n, len(STAT_NAMES)]
    label: np.ndarray  # int8[n]
    true_prob: np.ndarray  # float64[n]
    num_users: int
    num_items: int
    num_shops: int
    num_categories: int
    num_brands: int

    def __post_init__(self) -> None:
        columns = {f.name: getattr(self, f.name) for f in fields(self)
                   if f.name in COLUMN_DTYPES}
        problem = column_problem(columns, self.cardinalities)
        if problem is not None:
            column, row, message = problem
            raise ValueError(f"SearchLog.{column}: {message}"
                             + ("" if row is None else f" at row {row}"))

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, rows: np.ndarray) -> SearchLog:
        """The log of the given rows (in their order), same cardinalities."""
        return SearchLog(**{f.name: (v[rows] if isinstance(v := getattr(self, f.name),
                                                            np.ndarray) else v)
                            for f in fields(self)})

    @property
    def item_impressions(self) -> np.ndarray:
        """int64[num_items]: impressions of each item in this log (0 for unseen items)."""
        return np.bincount(self.item_id, minlength=self.num_items)

    @property
    def cardinalities(self) -> dict[str, int]:
        """``{"num_users": ..., "num_items": ..., ...}``: the sizes of the id spaces."""
        return {size: getattr(self, size) for size in ID_FIELDS.values()}


def column_problem(columns: dict[str, np.ndarray], cardinalities: dict[str, int]
                   ) -> tuple[str, int | None, str] | None:
    """The first broken rule of the log format as ``(column, row or None, message)``.

    Rules: dtypes and shapes of :data:`COLUMN_DTYPES` (``stats`` is ``[n, len(STAT_NAMES)]``),
    ids in ``[0, cardinality)``, ``pageview_id >= 0``, labels in {0, 1}, ``true_prob`` in
    [0, 1], finite ``pv_time`` and ``stats``, ``query`` a str, and ``click_time`` NaN exactly
    where ``label`` is 0 and ``>= pv_time`` where it is 1.
    """
    n = len(columns["label"])
    for name, dtype in COLUMN_DTYPES.items():
        value = columns[name]
        want = (n, len(STAT_NAMES)) if name == "stats" else (n,)
        if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != want:
            got = (value.dtype, value.shape) if isinstance(value, np.ndarray) else type(value)
            return name, None, f"must be a numpy {np.dtype(dtype)} array of shape {want}, got {got}"

    def first(bad: np.ndarray) -> int | None:
        if bad.ndim == 2:
            bad = bad.any(axis=1)
        return int(np.argmax(bad)) if bad.any() else None

    label, pv, click = columns["label"], columns["pv_time"], columns["click_time"]
    rules = [(column, (columns[column] < 0) | (columns[column] >= cardinalities[size]),
              f"id outside [0, {size}={cardinalities[size]})")
             for column, size in ID_FIELDS.items()]
    rules += [
        ("pageview_id", columns["pageview_id"] < 0, "pageview_id is negative"),
        ("label", (label != 0) & (label != 1), "label is not 0 or 1"),
        ("true_prob", ~((columns["true_prob"] >= 0) & (columns["true_prob"] <= 1)),
         "true_prob is not a probability in [0, 1]"),
        ("pv_time", ~np.isfinite(pv), "pv_time is not finite"),
        ("stats", ~np.isfinite(columns["stats"]), "a statistic is not finite"),
        ("click_time", (label == 0) & ~np.isnan(click), "click_time is set but label is 0"),
        ("click_time", (label == 1) & ~(click >= pv), "label is 1 but click_time is missing, "
         "NaN or before pv_time"),
    ]
    for column, bad, message in rules:
        row = first(bad)
        if row is not None:
            return column, row, message
    if set(map(type, columns["query"])) - {str}:
        row = next(i for i, text in enumerate(columns["query"]) if type(text) is not str)
        return "query", row, f"query is {type(columns['query'][row]).__name__}, not str"
    return None


def bayes_auc(log: SearchLog) -> float:
    """AUC of the true probabilities against the drawn labels: the best AUC any model can
    expect on this sample (the Bayes-optimal ranking scores by ``p(x)``)."""
    return auc(log.label, log.true_prob)


# --------------------------------------------------------------------------- the world


def _zipf(size: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights ``(rank + 1)^-exponent`` over a random permutation of ``size`` entries."""
    return (rng.permutation(size) + 1.0) ** -exponent


class _GroupedSampler:
    """Draw members of given groups with probability ∝ weight inside the group.

    Members sorted by group carry keys ``g + F_g(member)`` (``F_g`` the within-group CDF);
    a draw for group ``g`` searches ``g + U`` among the keys, ``U ~ Uniform[0, 1)``.
    """

    def __init__(self, group_of: np.ndarray, weight: np.ndarray, num_groups: int):
        self.order = np.argsort(group_of, kind="stable")
        g = group_of[self.order]
        totals = np.bincount(group_of, weights=weight, minlength=num_groups)
        before = np.cumsum(totals) - totals
        cdf = (np.cumsum(weight[self.order]) - before[g]) / totals[g]
        self.end = np.cumsum(np.bincount(group_of, minlength=num_groups))
        cdf[self.end - 1] = 1.0
        self.keys = g + cdf

    def draw(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        found = np.searchsorted(self.keys, groups + rng.random(groups.shape), side="right")
        return self.order[np.minimum(found, self.end[groups] - 1)]


def _words(count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct pronounceable lowercase words of two or three syllables."""
    syllables = [o + v for o in _ONSETS for v in _VOWELS]
    s = len(syllables)
    codes = rng.choice(s**2 + s**3, size=count, replace=False)
    out = []
    for code in codes.tolist():
        parts, width = [], 2 if code < s**2 else 3
        code -= 0 if width == 2 else s**2
        for _ in range(width):
            code, k = divmod(code, s)
            parts.append(syllables[k])
        out.append("".join(parts))
    return np.array(out, dtype=object)


def _distinct_pair(first: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """A second modifier different from ``first`` (uniform over the other ``m - 1``)."""
    return (first + 1 + rng.integers(0, max(m - 1, 1), first.shape)) % m


@dataclass(frozen=True)
class _World:
    vocabulary: np.ndarray
    item_category: np.ndarray
    item_shop: np.ndarray
    item_brand: np.ndarray
    item_head: np.ndarray
    item_mods: np.ndarray
    item_zprice: np.ndarray
    item_price: np.ndarray
    shop_effect: np.ndarray
    brand_effect: np.ndarray
    category_effect: np.ndarray
    shop_rating: np.ndarray
    user_vec: np.ndarray
    category_vec: np.ndarray
    user_weight: np.ndarray
    head_weight: np.ndarray
    modifier_weight: np.ndarray


def _world(seed: int, c: SearchLogConfig) -> _World:
    rng = np.random.default_rng([seed, 0])
    n_cat, w = c.num_categories, c.words_per_category
    category_size = _zipf(n_cat, 0.5, rng)
    item_category = np.concatenate([np.arange(n_cat), rng.choice(
        n_cat, size=c.num_items - n_cat, p=category_size / category_size.sum())])
    rng.shuffle(item_category)
    brand_category = np.concatenate([np.arange(n_cat),
                                     rng.integers(0, n_cat, c.num_brands - n_cat)])
    brands = _GroupedSampler(brand_category, np.exp(rng.normal(size=c.num_brands)), n_cat)
    shop_size = np.exp(rng.normal(size=c.num_shops))
    item_shop = rng.choice(c.num_shops, size=c.num_items, p=shop_size / shop_size.sum())
    head_weight = (np.arange(w) + 1.0) ** -1.0
    modifier_weight = _zipf(c.num_modifiers, 1.0, rng)
    first_mod = rng.choice(c.num_modifiers, size=c.num_items, p=modifier_weight
                           / modifier_weight.sum())
    shop_z = rng.normal(size=c.num_shops)
    category_mu = rng.normal(3.5, 1.0, size=n_cat)
    zprice = rng.normal(size=c.num_items)
    scale = c.rank ** -0.25
    return _World(
        vocabulary=_words(n_cat * w + c.num_modifiers, rng),
        item_category=item_category.astype(np.int32),
        item_shop=item_shop.astype(np.int32),
        item_brand=brands.draw(item_category, rng).astype(np.int32),
        item_head=(item_category * w + rng.choice(w, size=c.num_items,
                                                  p=head_weight / head_weight.sum())
                   ).astype(np.int32),
        item_mods=np.stack([first_mod, _distinct_pair(first_mod, c.num_modifiers, rng)], 1),
        item_zprice=zprice,
        item_price=np.round(np.exp(category_mu[item_category] + c.price_sigma * zprice), 2),
        shop_effect=c.shop_sigma * shop_z,
        brand_effect=c.brand_sigma * rng.normal(size=c.num_brands),
        category_effect=c.category_sigma * rng.normal(size=n_cat),
        shop_rating=np.round(np.clip(4.2 + 0.4 * shop_z + 0.25 * rng.normal(size=c.num_shops),
                                     1.0, 5.0), 1),
        user_vec=scale * rng.normal(size=(c.num_users, c.rank)),
        category_vec=scale * rng.normal(size=(n_cat, c.rank)),
        user_weight=_zipf(c.num_users, c.user_zipf_exponent, rng),
        head_weight=head_weight,
        modifier_weight=modifier_weight,
    )


def _period_state(seed: int, period: int, world: _World, c: SearchLogConfig
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Item quality ``q`` and popularity ``π`` of ``period`` (AR(1) drift per period).

    ``π_i = (n_c / I) (r_i + 1)^-a / Σ_{j∈c} (r_j + 1)^-a``: a category's share of traffic is
    its share of the catalogue, and inside it items follow Zipf in ``r_i``, the rank of the
    item's latent popularity among its category's items.
    """
    rng = np.random.default_rng([seed, 1, 0])
    quality, latent = rng.normal(size=c.num_items), rng.normal(size=c.num_items)
    keep, fresh = np.sqrt(1.0 - c.drift), np.sqrt(c.drift)
    for k in range(1, period + 1):
        rng = np.random.default_rng([seed, 1, k])
        quality = keep * quality + fresh * rng.normal(size=c.num_items)
        latent = keep * latent + fresh * rng.normal(size=c.num_items)
    cat = world.item_category
    order = np.lexsort((-latent, cat))
    size = np.bincount(cat, minlength=c.num_categories)
    rank = np.empty(c.num_items)
    rank[order] = np.arange(c.num_items) - (np.cumsum(size) - size)[cat[order]]
    zipf = (rank + 1.0) ** -c.zipf_exponent
    popularity = size[cat] / c.num_items * zipf / np.bincount(cat, weights=zipf)[cat]
    return c.item_sigma * quality, popularity


# --------------------------------------------------------------------------- impressions


def _draw_pages(num_pages: int, world: _World, popularity: np.ndarray, c: SearchLogConfig,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Users, queries and ranked result pages (items ``[P, K]``, positions 1..K)."""
    k, n_cat = c.page_size, c.num_categories
    user_p = world.user_weight / world.user_weight.sum()
    users = rng.choice(c.num_users, size=num_pages, p=user_p)
    category_pop = np.bincount(world.item_category, weights=popularity, minlength=n_cat)
    intent = c.intent * (world.user_vec @ world.category_vec.T) + np.log(category_pop)
    intent = np.exp(intent - intent.max(axis=1, keepdims=True)).ravel()
    category = _GroupedSampler(np.repeat(np.arange(c.num_users), n_cat), intent, c.num_users
                               ).draw(users, rng) % n_cat
    head_p = world.head_weight / world.head_weight.sum()
    head = category * c.words_per_category + rng.choice(c.words_per_category, num_pages, p=head_p)
    mod_p = world.modifier_weight / world.modifier_weight.sum()
    first = rng.choice(c.num_modifiers, size=num_pages, p=mod_p)
    count = rng.choice(3, size=num_pages, p=[0.4, 0.4, 0.2])
    mods = np.stack([np.where(count >= 1, first, -1),
                     np.where(count == 2, _distinct_pair(first, c.num_modifiers, rng), -1)], 1)
    in_cat = _GroupedSampler(world.item_category, popularity, n_cat)
    anywhere = _GroupedSampler(np.zeros(c.num_items, dtype=np.int64), popularity, 1)
    items = np.empty((num_pages, k), dtype=np.int64)
    todo = np.ones((num_pages, k), dtype=bool)
    # Redraw items repeated on a page: from the query's category (rounds < 48), then by
    # popularity anywhere, then uniformly (rounds >= 56); a page still short after that (a
    # catalogue barely larger than a page) takes the lowest ids it lacks.
    for round_ in range(64):
        rows, _ = np.nonzero(todo)
        local = (rng.random(rows.size) < c.in_category) & (round_ < 48)
        drawn = anywhere.draw(np.zeros(rows.size, dtype=np.int64), rng)
        drawn[local] = in_cat.draw(category[rows[local]], rng)
        if round_ >= 56:
            drawn = rng.integers(0, c.num_items, rows.size)
        items[todo] = drawn
        order = np.argsort(items, axis=1, kind="stable")
        ranked = np.take_along_axis(items, order, 1)
        repeat = np.zeros_like(todo)
        repeat[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
        todo = np.zeros_like(todo)
        np.put_along_axis(todo, order, repeat, 1)
        if not todo.any():
            break
    for row, slot in zip(*np.nonzero(todo), strict=True):
        items[row, slot] = np.setdiff1d(np.arange(c.num_items), items[row])[0]
    relevance = (np.log(popularity[items]) + 2.0 * (world.item_category[items] == category[:, None])
                 + (world.item_head[items] == head[:, None]) + rng.gumbel(size=items.shape))
    items = np.take_along_axis(items, np.argsort(-relevance, axis=1, kind="stable"), 1)
    return {"user": users, "category": category, "head": head, "mods": mods, "items": items}


def _logit(pages: dict[str, np.ndarray], n: int, world: _World, quality: np.ndarray,
           c: SearchLogConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias-free logit ``η − b`` per impression, plus page index and position (first n)."""
    page = np.repeat(np.arange(pages["items"].shape[0]), c.page_size)[:n]
    position = np.tile(np.arange(1, c.page_size + 1), pages["items"].shape[0])[:n]
    item = pages["items"].ravel()[:n]
    cat, user = world.item_category[item], pages["user"][page]
    mods_q, mods_i = pages["mods"][page], world.item_mods[item]
    overlap = ((mods_q[:, :, None] == mods_i[:, None, :]) & (mods_q[:, :, None] >= 0)).sum((1, 2))
    eta = (c.affinity * np.einsum("nr,nr->n", world.user_vec[user], world.category_vec[cat])
           + quality[item] + world.shop_effect[world.item_shop[item]]
           + world.brand_effect[world.item_brand[item]] + world.category_effect[cat]
           + c.head_match * (world.item_head[item] == pages["head"][page])
           + c.modifier_match * overlap
           - c.off_category * (cat != pages["category"][page])
           - c.position_decay * np.log(position)
           - c.price_penalty * world.item_zprice[item] ** 2
           + c.rating_effect * np.tanh(2.0 * (world.shop_rating[world.item_shop[item]] - 4.2)))
    return eta, page, position


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bias(seed: int, world: _World, c: SearchLogConfig) -> float:
    """``b`` with mean ``σ(b + η₀)`` = base_ctr over a fixed pilot sample of period 0."""
    quality, popularity = _period_state(seed, 0, world, c)
    rng = np.random.default_rng([seed, 3])
    pages = _draw_pages(-(-_PILOT_IMPRESSIONS // c.page_size), world, popularity, c, rng)
    eta, _, _ = _logit(pages, _PILOT_IMPRESSIONS, world, quality, c)
    low, high = -40.0, 40.0
    for _ in range(80):  # bisection: the mean CTR is increasing in b
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.mean(_sigmoid(mid + eta)) < c.base_ctr else (low, mid)
    return 0.5 * (low + high)


def search_log(n: int, seed: int = 0, *, period: int = 0,
               config: SearchLogConfig | None = None) -> SearchLog:
    """Generate ``n`` impressions of a search log with a known click probability.

    Args:
      n: number of impressions (rows); pages of ``config.page_size``, the last one cut.
      seed: the world (catalogue, users, effects) and the draws are functions of the seed.
      period: 0 for the base period; ``k > 0`` for the k-th later window of the same world,
        with drifted item quality and popularity and timestamps in ``[k T, (k + 1) T)``.
      config: sizes and effect scales (:class:`SearchLogConfig`; defaults if None).

    Returns:
      A :class:`SearchLog`; ``bayes_auc(log)`` gives the best achievable AUC on it.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(period, bool) or not isinstance(period, int | np.integer) or period < 0:
        raise ValueError(f"period must be a non-negative int, got {period!r}")
    c = SearchLogConfig() if config is None else config
    if not isinstance(c, SearchLogConfig):
        raise TypeError(f"config must be a SearchLogConfig, got {type(c).__name__}")
    world = _world(seed, c)
    bias = _bias(seed, world, c)
    quality, popularity = _period_state(seed, period, world, c)
    rng = np.random.default_rng([seed, 2, period])

    # synthetic history before this window: the item statistics a ranker would log
    item_level = (quality + world.shop_effect[world.item_shop] + world.brand_effect[
        world.item_brand] + world.category_effect[world.item_category])
    hist_imp = rng.poisson(c.history_impressions * popularity)
    hist_clicks = rng.binomial(hist_imp, _sigmoid(bias + item_level))
    ctr_hist = (hist_clicks + _CTR_SMOOTHING * c.base_ctr) / (hist_imp + _CTR_SMOOTHING)

    num_pages = -(-n // c.page_size)
    pages = _draw_pages(num_pages, world, popularity, c, rng)
    eta, page, position = _logit(pages, n, world, quality, c)
    prob = _sigmoid(bias + eta)
    label = (rng.random(n) < prob).astype(np.int8)
    page_time = period * c.period_seconds + np.sort(rng.random(num_pages)) * c.period_seconds
    pv_time = page_time[page]
    delay = 2.0 + rng.exponential(25.0, n)
    click_time = np.where(label == 1, pv_time + delay, np.nan)

    vocab = world.vocabulary
    modifiers = vocab[c.num_categories * c.words_per_category:]
    texts = np.array([" ".join([*(modifiers[m] for m in mods if m >= 0), vocab[h]])
                      for mods, h in zip(pages["mods"].tolist(), pages["head"].tolist(),
                                         strict=True)], dtype=object)
    item = pages["items"].ravel()[:n]
    stats = np.stack([ctr_hist[item], np.log1p(hist_imp[item]), world.item_price[item],
                      position, world.shop_rating[world.item_shop[item]]], 1)
    return SearchLog(
        pageview_id=period * _PAGEVIEWS_PER_PERIOD + page.astype(np.int64),
        pv_time=pv_time,
        click_time=click_time,
        user_id=pages["user"][page].astype(np.int32),
        query=texts[page],
        item_id=item.astype(np.int32),
        shop_id=world.item_shop[item],
        category_id=world.item_category[item],
        brand_id=world.item_brand[item],
        stats=stats.astype(np.float32),
        label=label,
        true_prob=prob,
        num_users=c.num_users,
        num_items=c.num_items,
        num_shops=c.num_shops,
        num_categories=c.num_categories,
        num_brands=c.num_brands,
    )
