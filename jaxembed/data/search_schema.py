"""The generated search log on the one data path: its columns as a table, and its schema.

:func:`search_table` lays a :class:`~jaxembed.data.search_log.SearchLog` and its derived
columns (:class:`~jaxembed.data.search_stats.SearchStatistics`) out as a ``pyarrow.Table``;
:func:`search_schema` describes that table with the field kinds any user's log can use, so
``jaxembed train`` fits the search CTR model through the same schema → vocabularies → loader
→ trainer path as ``jaxembed fit`` on a user's own file. The seed's encodings, per domain:

* ``item`` — **attach encoding** along item → shop → category (a cold item takes its shop's
  id, a cold shop its category's); ``shop`` — attach along shop → category;
* ``category`` and ``query_category`` (one domain), ``brand``, ``user`` — vocabularies;
* ``query`` and its ``head`` word (one domain) — **word segmentation** to a vocabulary with OOV
  buckets, and a hash of the head word;
* the wide part — every field's per-id weight and the crosses of :data:`WIDE_CROSSES`;
* the statistics tower — the :data:`~jaxembed.data.search_stats.STAT_FEATURES`, standardized
  with the training rows' moments.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jaxembed.data.schema import Cross, Field, Label, Options, Schema
from jaxembed.data.search_log import SearchLog
from jaxembed.data.search_stats import STAT_FEATURES, SearchStatistics

LABEL = "clicked"
DOMAINS = {"item": ("item",), "shop": ("shop",), "category": ("category", "query_category"),
           "brand": ("brand",), "query": ("query", "head"), "user": ("user",)}
"""The behaviour domains of the search CTR model and the fields pooled into each."""
WIDE_CROSSES = (("user", "item"), ("user", "shop"), ("user", "category"), ("head", "item"),
                ("head", "category"), ("query_category", "category"))
"""The wide part's hashed id crosses (``item`` is the item's attach id)."""


def search_schema(*, dim: int = 16, min_count: int = 5, cross_buckets: int = 2**16,
                  head_buckets: int = 4096, query_width: int = 8) -> Schema:
    """The schema of :func:`search_table`'s columns (see the module docstring): warm ids have
    at least ``min_count`` training rows; each cross hashes into ``cross_buckets`` rows."""
    features = [
        Field("item", "attach", column="item", dim=dim, min_count=min_count, oov_buckets=16,
              parents=("shop", "category")),
        Field("shop", "attach", column="shop", dim=dim, min_count=min_count, oov_buckets=16,
              parents=("category",)),
        Field("category", "categorical", column="category", dim=dim),
        Field("query_category", "categorical", column="query_category", dim=dim),
        Field("brand", "categorical", column="brand", dim=dim, min_count=min_count,
              oov_buckets=16),
        Field("query", "segment", column="query", dim=dim, min_count=2, oov_buckets=64,
              max_len=query_width, combiner="sum"),
        Field("head", "hashed", column="head", dim=dim, buckets=head_buckets),
        Field("user", "categorical", column="user", dim=dim, oov_buckets=16),
        *(Field(name, "dense", column=name, dim=dim, transform="standardize")
          for name in STAT_FEATURES),
    ]
    crosses = tuple(Cross(fields, cross_buckets) for fields in WIDE_CROSSES)
    options = Options(group="user", time="pv_time", domains=DOMAINS, dim=dim)
    return Schema(Label(LABEL), tuple(features), crosses, options, dict(FIT_OPTIONS))


FIT_OPTIONS = {"embedding_optimizer": "adagrad", "embedding_learning_rate": 0.05,
               "linear_learning_rate": 0.5, "linear_initial_accumulator": 0.1,
               "batch_size": 1024}
"""The schema's ``[model]`` table: fit options measured on this data. Row-sparse Adagrad on
the embedding tables keeps improving for 3–4 epochs where lazy Adam (the general default)
overfits after the first: the Bayes gap of ``search_ctr`` on a validation world (seed 3,
100 users, 250k training rows) fell from 0.0205 to 0.0176 (docs/model.md). The wide part
keeps FTRL at rate 0.5 from accumulators of 0.1 (the general default became 0.2 from 1e-3):
on the validation worlds 3 and 4 of ``jaxembed train`` the general default lost 0.0015
offline and 0.004 after the online phase (docs/benchmarks.md). These were measured at batch
1024, which the schema keeps (the general default became ``"auto"``, 256 on logs under
524,288 rows): on the validation world (seed 3, 250k training rows) batch 256 lost 0.001 for
``search_ctr`` (0.7806 → 0.7796) and for ``fm`` (0.7768 → 0.7758)."""


def search_table(log: SearchLog, statistics: SearchStatistics) -> pa.Table:
    """The log's rows with its derived columns: ids as ``int64`` (a query category the fit
    log never showed is null), ``query`` and ``head`` as strings, the statistics as
    ``float64``, the label as ``clicked`` and the page view's ``pageview_id`` and
    ``pv_time``."""
    derived = statistics.columns(log)
    qcat = derived.pop("query_category")
    columns = {
        "pageview_id": pa.array(log.pageview_id, pa.int64()),
        "pv_time": pa.array(log.pv_time, pa.float64()),
        "user": pa.array(log.user_id, pa.int64()),
        "item": pa.array(log.item_id, pa.int64()),
        "shop": pa.array(log.shop_id, pa.int64()),
        "category": pa.array(log.category_id, pa.int64()),
        "brand": pa.array(log.brand_id, pa.int64()),
        "query": pa.array(log.query.tolist(), pa.string()),
        "head": pa.array(derived.pop("head").tolist(), pa.string()),
        "query_category": pa.array(qcat, pa.int64(), mask=qcat < 0),
        **{name: pa.array(np.asarray(values, np.float64)) for name, values in derived.items()},
        LABEL: pa.array(log.label.astype(np.int64)),
    }
    return pa.table(columns)
