"""jaxembed: embeddings in JAX with the math proven.

``x @ W`` with ``x`` one-hot is ``W[i]``; with ``x`` multi-hot it is ``Σ_j x_j W[j]``. Each
equation is written twice — the literal product and the fast gather — and proven equal in
``proofs/``.
"""

from jaxembed.bags import PAD_ID, Bags, bucket_width
from jaxembed.checks import checked
from jaxembed.lookup import (
    COMBINERS,
    bag_lookup,
    clip_rows,
    dense_lookup,
    lookup,
    multi_hot,
    one_hot,
    safe_bag_lookup,
)
from jaxembed.partition import join_shards, partitioned_lookup, shard_sizes, split_table

__version__ = "0.1.0"

# Subpackages load on first use (``je.optim.ftrl``, ``je.graph.node2vec`` ...), so that
# ``import jaxembed`` stays as light as the core.
_SUBPACKAGES = ("data", "encoding", "graph", "metrics", "models", "nn", "optim",
                "serving", "sharding", "stream", "text", "train")


# ``je.fit``: the own-data path (jaxembed.train.runs); ``je.evaluate``, ``je.predict``: scoring a
# fitted run (jaxembed.train.scoring);
# ``je.update``: the online phase on a fitted run (jaxembed.train.update).
_RUNS = {"fit": "jaxembed.train.runs", "evaluate": "jaxembed.train.scoring",
         "predict": "jaxembed.train.scoring", "update": "jaxembed.train.update"}


def __getattr__(name: str):
    if name in _RUNS:
        import importlib

        module = importlib.import_module(_RUNS[name])
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        import importlib

        module = importlib.import_module(f"jaxembed.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'jaxembed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES, *_RUNS])


__all__ = [
    "COMBINERS",
    "PAD_ID",
    "Bags",
    "bag_lookup",
    "bucket_width",
    "checked",
    "clip_rows",
    "dense_lookup",
    "join_shards",
    "lookup",
    "multi_hot",
    "one_hot",
    "partitioned_lookup",
    "safe_bag_lookup",
    "shard_sizes",
    "split_table",
]
