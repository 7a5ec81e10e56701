"""Generated data sets with a known ground truth.

* :func:`search_log`: an e-commerce search log whose click probability ``p(x)`` is known, with
  a Zipf item-popularity tail, an item → shop/category/brand hierarchy, query text, statistics
  features, timestamps and drifting later periods; :func:`bayes_auc` is the best AUC a model
  can reach on a sample. CSV/Parquet readers and writers keep the same columns.
"""

from jaxembed.data.search_log import (
    COLUMN_DTYPES,
    ID_FIELDS,
    STAT_NAMES,
    SearchLog,
    SearchLogConfig,
    bayes_auc,
    search_log,
)
from jaxembed.data.search_log_io import (
    CSV_COLUMNS,
    read_csv,
    read_parquet,
    write_csv,
    write_parquet,
)

__all__ = [
    "COLUMN_DTYPES",
    "CSV_COLUMNS",
    "ID_FIELDS",
    "STAT_NAMES",
    "SearchLog",
    "SearchLogConfig",
    "bayes_auc",
    "read_csv",
    "read_parquet",
    "search_log",
    "write_csv",
    "write_parquet",
]
