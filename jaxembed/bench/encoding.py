"""``jaxembed bench encoding``: records per second of each host-side encoder.

A generated batch of ``num_records`` search-log records (user and item ids from Zipf laws,
an item → shop → category chain, ``user_<id>`` strings, and queries mixing Latin words, CJK
runs and the odd emoji) goes through every encoder of :mod:`jaxembed.encoding`; each is
timed as the best of ``repeats`` runs over the whole batch. Next to each, a peer doing the
same job is timed on the first ``peer_records`` records and scaled: scikit-learn's
``FeatureHasher`` / ``HashingVectorizer`` (C murmur3) where it applies, otherwise a plain
Python per-record loop computing the same codes. The ratio is time per record,
jaxembed / peer (below 1: jaxembed is faster).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxembed.bench.timing import machine, ratio
from jaxembed.encoding import (
    AttachEncoder,
    RandomCode,
    SegmentEncoder,
    Segmenter,
    Vocabulary,
    cross_bags,
    hash_bucket,
    hash_strings,
)
from jaxembed.encoding.hashing import GAMMA, seed_key

_MASK = (1 << 64) - 1


def _best(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall-clock seconds of ``fn()`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_records(num_records: int, seed: int = 0) -> dict[str, Any]:
    """A generated search log: id columns, user strings and query texts."""
    rng = np.random.default_rng(seed)
    n = num_records
    item = (rng.zipf(1.3, n).astype(np.int64) * 2654435761) % 10**10
    user = (rng.zipf(1.5, n).astype(np.int64) * 40503) % 10**9
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(5000)]
    cjk = [chr(c) for c in 0x4E00 + rng.integers(0, 3000, 3000)]
    n_words, n_cjk = rng.integers(1, 4, n), rng.integers(0, 6, n)
    w_ids, c_ids = rng.integers(0, 5000, (n, 3)), rng.integers(0, 3000, (n, 5))
    emoji = rng.random(n) < 0.001
    queries = [
        " ".join(words[w] for w in w_ids[i, : n_words[i]]) + " "
        + "".join(cjk[c] for c in c_ids[i, : n_cjk[i]]) + (" 😀" if emoji[i] else "")
        for i in range(n)
    ]
    return {
        "user": user, "item": item, "shop": item // 37, "category": item // 37 // 50,
        "user_str": [f"user_{u}" for u in user.tolist()], "query": queries,
    }


def _py_hash_int(x: int, key: int) -> int:
    """The literal splitmix64 hash of one id (the per-record Python peer)."""
    z = (((x & _MASK) ^ key) + GAMMA) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _sklearn() -> Any:
    try:
        from sklearn import feature_extraction
    except ImportError:
        return None
    return feature_extraction


def run(
    num_records: int = 1_000_000,
    peer_records: int = 100_000,
    repeats: int = 3,
    num_buckets: int = 2**20,
    k: int = 4,
) -> dict[str, float]:
    """Print records/s of every encoder (and its peer); return jaxembed's records/s."""
    print(f"machine: {machine()}")
    print(f"batch: {num_records} generated records; peers timed on {peer_records} and scaled; "
          f"best of {repeats}")
    rec = make_records(num_records)
    m = min(peer_records, num_records)
    sub = {name: col[:m] for name, col in rec.items()}
    key = int(seed_key(0))
    vocab_tokens = Segmenter().batch(rec["query"][:100_000])[0]
    segment = SegmentEncoder(Vocabulary.from_tokens(vocab_tokens, min_count=2,
                                                    num_oov_buckets=1000))
    user_vocab = Vocabulary.from_tokens(rec["user_str"][: num_records // 2], min_count=2,
                                        num_oov_buckets=1000)
    attach = AttachEncoder.fit(rec, ("item", "shop", "category"), min_count=5)
    code = RandomCode(num_buckets // 16, k)
    fx = _sklearn()

    def hasher(n_features: int) -> Any:
        return fx.FeatureHasher(n_features=n_features, input_type="string",
                                alternate_sign=False)

    rows: list[tuple[str, Callable[[], Any], str, Callable[[], Any] | None]] = [
        ("hash bucket, int ids", lambda: hash_bucket(rec["item"], num_buckets),
         "python loop", lambda: [_py_hash_int(x, key) % num_buckets for x in sub["item"].tolist()]),
        ("hash bucket, strings", lambda: hash_bucket(rec["user_str"], num_buckets),
         "sklearn FeatureHasher",
         None if fx is None else lambda: hasher(num_buckets).transform([[s] for s in
                                                                     sub["user_str"]])),
        ("crosses user×item, user×shop", lambda: cross_bags(
            rec, [("user", "item"), ("user", "shop")], num_buckets),
         "sklearn FeatureHasher",
         None if fx is None else lambda: hasher(num_buckets).transform(
             [[f"u×i={u}|{i}", f"u×s={u}|{s}"] for u, i, s in
              zip(sub["user"].tolist(), sub["item"].tolist(), sub["shop"].tolist(),
                  strict=True)])),
        (f"random code k={k}, M={num_buckets // 16}", lambda: code.bags(rec["item"]),
         f"sklearn FeatureHasher, {k} salted",
         None if fx is None else lambda: hasher(num_buckets // 16).transform(
             [[f"{j}#{x}" for j in range(k)] for x in sub["item"].tolist()])),
        ("vocabulary lookup (+OOV)", lambda: user_vocab.lookup(rec["user_str"]),
         "python dict loop", lambda: _dict_lookup(user_vocab, sub["user_str"])),
        ("attach item→shop→category", lambda: attach.ids(rec),
         "python dict loop", lambda: _attach_loop(attach, sub)),
        ("segment query → Bags", lambda: segment.bags(rec["query"]),
         "sklearn HashingVectorizer 1-2 gram",
         None if fx is None else lambda: fx.text.HashingVectorizer(
             n_features=num_buckets, ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
             alternate_sign=False, norm=None).transform(sub["query"])),
    ]
    results: dict[str, float] = {}
    header = f"{'encoder':34s} {'records/s':>12s}  {'peer':36s} {'records/s':>12s} {'ratio':>6s}"
    print(header)
    print("-" * len(header))
    for name, ours, peer_name, peer in rows:
        ours_s = _best(ours, repeats) / num_records
        peer_s = None if peer is None else _best(peer, 1) / m
        results[name] = 1.0 / ours_s
        peer_rate = "-" if peer_s is None else f"{1.0 / peer_s:12,.0f}"
        print(f"{name:34s} {1.0 / ours_s:12,.0f}  {peer_name:36s} {peer_rate:>12s} "
              f"{ratio(ours_s, peer_s):>6s}")
    return results


def _dict_lookup(vocab: Vocabulary, keys: list[str]) -> list[int]:
    index = {t: i for i, t in enumerate(vocab.tokens)}
    out = []
    for key in keys:
        i = index.get(key)
        if i is None:
            i = vocab.vocab_size + int(hash_strings([key], vocab.seed)[0]) % vocab.num_oov_buckets
        out.append(i)
    return out


def _attach_loop(enc: AttachEncoder, rec: dict[str, Any]) -> list[int]:
    ranks = [{int(v): enc.starts[l] + r for r, v in enumerate(w.tolist())}
             for l, w in enumerate(enc.warm)]
    key = int(seed_key(enc.seed))
    cols = [rec[name].tolist() for name in enc.chain]
    out = []
    for values in zip(*cols, strict=True):
        for rank, value in zip(ranks, values, strict=True):
            if value in rank:
                out.append(rank[value])
                break
        else:
            out.append(enc.starts[-1] + _py_hash_int(values[0], key) % enc.num_oov_buckets)
    return out
