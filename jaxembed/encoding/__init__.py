"""Host-side feature encodings: raw ids and strings to codes to :class:`~jaxembed.Bags`.

All numpy, vectorized over a batch, and deterministic across runs and machines (stable
hashes, never Python's salted ``hash()``):

* :mod:`~jaxembed.encoding.hashing` — stable int/string hashes, hash buckets, hashed crosses;
* :mod:`~jaxembed.encoding.random_code` — k-hot random codes (Bloom-embedding style);
* :mod:`~jaxembed.encoding.vocab` — vocabularies with hashed OOV buckets and a text format;
* :mod:`~jaxembed.encoding.attach` — cold ids take their first warm ancestor's code;
* :mod:`~jaxembed.encoding.segment` — text to tokens (CJK-aware) to bags of token ids.
"""

from jaxembed.encoding.attach import AttachCodes, AttachEncoder
from jaxembed.encoding.hashing import (
    bags_from_values,
    cross_bags,
    expected_colliding_pairs,
    expected_occupied_buckets,
    fnv1a64,
    hash_bucket,
    hash_cross,
    hash_ints,
    hash_strings,
    hash_values,
    mix64,
)
from jaxembed.encoding.random_code import (
    RandomCode,
    expected_shared_positions,
    identical_code_probability,
    random_code,
    shared_positions_variance,
)
from jaxembed.encoding.segment import SegmentEncoder, Segmenter
from jaxembed.encoding.vocab import Vocabulary

__all__ = [
    "AttachCodes",
    "AttachEncoder",
    "RandomCode",
    "SegmentEncoder",
    "Segmenter",
    "Vocabulary",
    "bags_from_values",
    "cross_bags",
    "expected_colliding_pairs",
    "expected_occupied_buckets",
    "expected_shared_positions",
    "fnv1a64",
    "hash_bucket",
    "hash_cross",
    "hash_ints",
    "hash_strings",
    "hash_values",
    "identical_code_probability",
    "mix64",
    "random_code",
    "shared_positions_variance",
]
