r"""Generated click logs with a behaviour history, where target attention matters.

``history_log(n, seed)`` draws ``n`` impressions of a candidate ``item`` to a ``user`` whose
recent items (``history``, most recent first, 1 to ``max_len`` of them) are in the row. Items
belong to latent categories (never shown in the log); each user likes a few categories
(Dirichlet(0.1) preferences over them), draws the history's items from them, and is shown a
candidate that comes from the same preferences half the time and from overall popularity
otherwise. The click probability is

.. math::

    p = \sigma\Big(b + \gamma \log\big(1 + k(h, t)\big) + a[t] + d[\mathrm{device}]
        + s[\mathrm{slot}] + \beta\, z(\log \mathrm{price})\Big), \qquad
    k(h, t) = \#\{l : \mathrm{cat}(h_l) = \mathrm{cat}(t)\},

the number ``k`` of history items in the candidate's category (a count, not a share: how
*much* interest the user showed in what is offered, so a pool that weighs each history item
by its relevance to the candidate, DIN's target attention, can express it where a mean over
the history cannot), plus a per-item effect ``a``, a device effect ``d``, a position effect
``s`` falling with the slot, and the standardized log price ``z``. Items are Zipf-popular
within their category. The same ``world_seed`` gives the same items, categories, users and
effects, so logs drawn with different ``seed`` come from one world. The AUC of the returned
probabilities is the best AUC any model can reach on the sample (the Bayes-optimal AUC).

:func:`history_schema` describes the table: ``history`` is a ``multi`` field with ``share =
"item"`` (it indexes the item table with the item vocabulary), so ``din`` takes ``item`` as its
target and ``history`` as the target's history.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jaxembed.data.schema import Field, Label, Options, Schema

LABEL = "label"
COLUMNS = (LABEL, "user", "item", "history", "device", "slot", "price")
"""The columns of :func:`history_log`'s table, in order."""
GAMMA = 1.5
"""The weight of ``log(1 + k)``, the history's interest in the candidate's category."""
DEVICES = 4
SLOTS = 10


def history_log(n: int, seed: int = 0, *, world_seed: int = 0, users: int = 1000,
                items: int = 500, categories: int = 10, max_len: int = 16
                ) -> tuple[pa.Table, np.ndarray]:
    """``(table, p)``: ``n`` rows in :data:`COLUMNS` (``history`` the item ids joined by
    ``"|"``) and each row's click probability (see the module docstring)."""
    for name, value, low in (("n", n, 1), ("users", users, 1), ("items", items, 1),
                             ("categories", categories, 1), ("max_len", max_len, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if categories > items:
        raise ValueError(f"categories ({categories}) must not exceed items ({items}): every "
                         f"category needs an item")
    world = np.random.default_rng([world_seed, 13])
    rng = np.random.default_rng([seed, world_seed, 17])
    # every category gets one item, the rest are spread at random
    category = np.concatenate([np.arange(categories),
                               world.integers(0, categories, items - categories)])
    world.shuffle(category)
    popularity = 1.0 / (1.0 + world.permutation(items)) ** 0.8
    item_effect = world.normal(0.0, 0.3, items)
    device_effect = world.normal(0.0, 0.3, DEVICES)
    slot_effect = -0.12 * np.arange(SLOTS)
    preference = world.dirichlet(np.full(categories, 0.1), users)
    # items of category c drawn by popularity: inverse CDF over ``c + cdf`` (items by category)
    by_category = np.argsort(category, kind="stable")
    weights = popularity[by_category]
    sorted_category = category[by_category]
    sizes = np.bincount(category, minlength=categories)
    totals = np.bincount(category, weights=popularity, minlength=categories)
    before = np.repeat(np.cumsum(totals) - totals, sizes)
    item_cdf = sorted_category + (np.cumsum(weights) - before) / np.repeat(totals, sizes)
    user_cdf = (np.arange(users)[:, None] + np.cumsum(preference, axis=1)).ravel()

    def liked(user: np.ndarray) -> np.ndarray:  # a category by the user's preferences
        picks = np.searchsorted(user_cdf, user + _inside(rng, user.shape))
        return np.minimum(picks - user * categories, categories - 1)

    def item_of(cat: np.ndarray) -> np.ndarray:  # an item of category cat, by popularity
        picks = np.searchsorted(item_cdf, cat + _inside(rng, cat.shape))
        return by_category[np.minimum(picks, items - 1)]

    user = rng.integers(0, users, n)
    length = rng.integers(1, max_len + 1, n)
    history = item_of(liked(np.repeat(user[:, None], max_len, axis=1)))
    shown = np.arange(max_len)[None, :] < length[:, None]
    from_taste = rng.random(n) < 0.5
    popular = np.searchsorted(np.cumsum(popularity) / popularity.sum(), rng.random(n))
    target = np.where(from_taste, item_of(liked(user)), np.minimum(popular, items - 1))
    k = ((category[history] == category[target][:, None]) & shown).sum(axis=1)
    device = rng.integers(0, DEVICES, n)
    slot = rng.integers(0, SLOTS, n)
    log_price = rng.normal(3.0, 1.0, n)
    logit = (-2.2 + GAMMA * np.log1p(k) + item_effect[target] + device_effect[device]
             + slot_effect[slot] - 0.3 * (log_price - 3.0))
    p = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(n) < p).astype(np.int64)
    names = np.array([str(i) for i in range(items)], dtype=object)
    joined = ["|".join(names[row[:m]]) for row, m in zip(history, length, strict=True)]
    return pa.table({
        LABEL: pa.array(label),
        "user": pa.array(np.char.add("u", user.astype(str)), pa.string()),
        "item": pa.array(names[target], pa.string()),
        "history": pa.array(joined, pa.string()),
        "device": pa.array(np.char.add("d", device.astype(str)), pa.string()),
        "slot": pa.array(np.char.add("s", slot.astype(str)), pa.string()),
        "price": pa.array(np.round(np.exp(log_price), 2)),
    }), p


def _inside(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform draws kept ``1e-9`` away from 0 and 1, so ``c + u`` never lands on a
    neighbouring segment's rounded end in the inverse CDFs above."""
    return 1e-9 + rng.random(shape) * (1.0 - 2e-9)


def history_schema(dim: int = 16, max_len: int = 16) -> Schema:
    """The schema of :func:`history_log`'s table: ``user``, ``item``, ``device``, ``slot``
    categorical, ``history`` a multi field sharing ``item``'s vocabulary and table (at most
    ``max_len`` items, mean-pooled where a model pools it), ``price`` log1p-standardized;
    its ``[model]`` table is :data:`FIT_OPTIONS`."""
    features = (
        Field("user", "categorical", dim=dim),
        Field("item", "categorical", dim=dim),
        Field("history", "multi", dim=dim, share="item", max_len=max_len, combiner="mean"),
        Field("device", "categorical", dim=dim),
        Field("slot", "categorical", dim=dim),
        Field("price", "dense", dim=dim, transform="log1p"),
    )
    return Schema(Label(LABEL), features, options=Options(dim=dim), model=dict(FIT_OPTIONS))


FIT_OPTIONS = {"embedding_learning_rate": 0.004}
"""The schema's ``[model]`` table: fit options measured on this data (validation rows of
``history_log(50_000, 0)``, 40k training rows). With 39 steps an epoch at batch 1024, the
general default (lazy Adam at 1e-3 on the tables) learns the item embeddings too slowly
for early stopping with patience 1: best validation AUC of ``din`` 0.7765 → 0.7841, of
``deepfm`` 0.6128 → 0.7135 (docs/benchmarks.md)."""
