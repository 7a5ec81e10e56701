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
* ``wide``: hashed ids of user, item, query head word and the crosses user×item,
  user×shop, user×category, query×item, query×category.

``item_encoding="hash"`` swaps the attach + random code of ``item`` for one plain hash bucket
per item: the baseline attach encoding is measured against on the cold-item slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from jaxembed.bags import Bags
from jaxembed.data.search_log import SearchLog
from jaxembed.encoding import (
    AttachEncoder,
    RandomCode,
    SegmentEncoder,
    cross_bags,
    hash_bucket,
    hash_strings,
)

DOMAINS = ("item", "shop", "category", "brand", "query", "user")
WIDE_CROSSES = (("user",), ("item",), ("head",), ("user", "item"), ("user", "shop"),
                ("user", "category"), ("head", "item"), ("head", "category"))


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


@dataclass
class SearchFeaturizer:
    """Fitted encoders of each domain; see the module docstring.

    Build with :meth:`fit`; ``sizes`` gives the table rows per domain for
    :class:`jaxembed.models.SearchCTR`, ``wide_size`` and ``num_stats`` its other sizes.
    """

    item_attach: AttachEncoder | None
    shop_attach: AttachEncoder
    item_code: RandomCode | None
    shop_code: RandomCode
    user_code: RandomCode
    query: SegmentEncoder
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
        seed: int = 0,
    ) -> SearchFeaturizer:
        """Fit on a training log: warm ids have at least ``min_count`` impressions; codes are
        ``code_k``-hot over ``code_buckets`` positions; small ids hash to ``hash_buckets``."""
        if item_encoding not in ("attach", "hash"):
            raise ValueError(f"item_encoding must be 'attach' or 'hash', got {item_encoding!r}")
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
        stats = np.log1p(np.abs(log.stats)) * np.sign(log.stats)
        return cls(
            item_attach=item_attach,
            shop_attach=shop_attach,
            item_code=item_code,
            shop_code=RandomCode(code_buckets, code_k, seed=seed + 2),
            user_code=RandomCode(code_buckets, code_k, seed=seed + 3),
            query=query,
            stats_mean=stats.mean(axis=0),
            stats_std=stats.std(axis=0) + 1e-6,
            hash_buckets=hash_buckets,
            wide_size=wide_size,
            query_width=query_width,
        )

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
        if self.item_attach is None:
            item = Bags(hash_bucket(log.item_id, self.hash_buckets, seed=11)[:, None])
        else:
            item = self.item_code.bags(self.item_attach.ids(records))
        domains = {
            "item": item,
            "shop": self.shop_code.bags(self.shop_attach.ids(records)),
            "category": Bags(hash_bucket(log.category_id, self.hash_buckets, seed=12)[:, None]),
            "brand": Bags(hash_bucket(log.brand_id, self.hash_buckets, seed=13)[:, None]),
            "query": self.query.bags(list(log.query), min_width=self.query_width),
            "user": self.user_code.bags(log.user_id),
        }
        stats = np.log1p(np.abs(log.stats)) * np.sign(log.stats)
        stats = ((stats - self.stats_mean) / self.stats_std).astype(np.float32)
        wide = cross_bags(records, WIDE_CROSSES, self.wide_size, seed=17)
        return Features(domains, stats, wide, log.label.astype(np.float32))


def _records(log: SearchLog) -> dict[str, np.ndarray]:
    """The id columns the encoders read, plus the query's head word (its last token)."""
    heads = np.array([q.rsplit(" ", 1)[-1] for q in log.query], dtype=object)
    return {"user": log.user_id, "item": log.item_id, "shop": log.shop_id,
            "category": log.category_id, "brand": log.brand_id,
            "head": hash_strings(heads).astype(np.int64) & np.int64(2**62 - 1)}
