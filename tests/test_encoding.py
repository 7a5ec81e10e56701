"""Encodings: fixed hash values, measured collision/overlap rates against their formulas,
vocabulary files, attach behaviour, CJK segmentation, and bad input.

Statistical checks use fixed seeds (so they are deterministic) and a tolerance of 5 standard
deviations of the statistic under the ideal-hash model: a correct hash fails one with
probability below 1e-6, while the alternatives they guard against (no finalizer, position
ranges instead of k-subsets, a shared seed) miss by far more.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import jaxembed as je
from jaxembed.encoding import (
    AttachEncoder,
    RandomCode,
    SegmentEncoder,
    Segmenter,
    Vocabulary,
    bags_from_values,
    cross_bags,
    expected_colliding_pairs,
    expected_occupied_buckets,
    expected_shared_positions,
    fnv1a64,
    hash_bucket,
    hash_cross,
    hash_ints,
    hash_strings,
    identical_code_probability,
    mix64,
    random_code,
    shared_positions_variance,
)

IDS = np.array([0, 1, -1, 2**40, 10**12])
WORDS = ["", "a", "iphone", "手机壳"]


def colliding_pairs(buckets: np.ndarray) -> int:
    """Σ_b C(c_b, 2): pairs of keys that share a bucket."""
    _, counts = np.unique(buckets, return_counts=True)
    return int(np.sum(counts * (counts - 1) // 2))


# --- fixed values: a changed hash function (or machine) fails here ----------------------------
def test_published_vectors():
    """splitmix64's first output for seed 0 and the FNV-1a 64 test vectors."""
    assert int(mix64(np.uint64(0x9E3779B97F4A7C15))) == 0xE220A8397B1DCDAF
    assert [hex(h) for h in fnv1a64(["", "a", "foobar"]).tolist()] == [
        "0xcbf29ce484222325", "0xaf63dc4c8601ec8c", "0x85944171f73967e8"]


def test_fixed_hash_values():
    assert [hex(h) for h in hash_ints(IDS).tolist()] == [
        "0xa706dd2f4d197e6f", "0x8b4fda8c892b50e", "0x2dd82c88fa32b270",
        "0xc9083d067d0fde2f", "0xde5c9ce57bc033ce"]
    assert [hex(h) for h in hash_ints(IDS, seed=42).tolist()] == [
        "0x57e1faba65107204", "0xf34fe9248c9342e5", "0xcc340ae644c83c33",
        "0xa4f419709ee93f3e", "0xf5ebcb64096ca929"]
    assert [hex(h) for h in hash_strings(WORDS).tolist()] == [
        "0xaebe53f85cdc3c4c", "0x66d7010a9a2ca88d", "0x1ca778f625c49048", "0xf08ae652d94af51"]
    assert [hex(h) for h in hash_strings(WORDS, seed=42).tolist()] == [
        "0x34869d7f6b4aa57f", "0x47cd347cb135a6e8", "0x8e9b569f44b99d8f", "0x284d390226406ec1"]
    assert hash_bucket(np.array([7, 8, 9]), 1000).tolist() == [319, 373, 542]
    assert hash_bucket(["iphone", "case"], 1000, seed=3).tolist() == [653, 983]
    assert hash_cross([np.array([1, 2]), np.array([10, 20])], 2**20).tolist() == [294119, 228291]
    assert random_code(np.array([0, 1, 123456789]), 2**20, 4).tolist() == [
        [835217, 142420, 64068, 149258], [425904, 346801, 415612, 556576],
        [95051, 498788, 831072, 11432]]
    assert random_code(["iphone"], 16, 3, seed=5).tolist() == [[10, 1, 9]]
    vocab = Vocabulary(["a", "b", "c"], num_oov_buckets=4, seed=1)
    assert vocab.lookup(["b", "zebra", "a", "手机"]).tolist() == [1, 5, 0, 4]


def test_same_values_in_another_process_with_another_hash_seed():
    """Python's ``hash()`` changes with PYTHONHASHSEED; ours must not."""
    code = (
        "import numpy as np\n"
        "from jaxembed.encoding import hash_strings, random_code, Segmenter, Vocabulary\n"
        "print(hash_strings(['a', 'iphone', '手机壳'], 7).tolist())\n"
        "print(random_code(['x', 'y'], 1000, 3).tolist())\n"
        "print(Segmenter()('iPhone 手机壳 case'))\n"
        "print(Vocabulary(['a'], num_oov_buckets=97).lookup(['q', 'r']).tolist())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.splitlines()
    assert out == [
        str(hash_strings(["a", "iphone", "手机壳"], 7).tolist()),
        str(random_code(["x", "y"], 1000, 3).tolist()),
        str(Segmenter()("iPhone 手机壳 case")),
        str(Vocabulary(["a"], num_oov_buckets=97).lookup(["q", "r"]).tolist()),
    ]


def test_deterministic_across_calls_and_batches():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 2**62, 1000)
    strs = [f"user_{i}" for i in ids]
    assert np.array_equal(hash_bucket(ids, 977), hash_bucket(ids, 977))
    # an id's code does not depend on the rest of the batch
    assert np.array_equal(hash_bucket(strs, 977)[500:], hash_bucket(strs[500:], 977))
    assert np.array_equal(random_code(ids, 512, 4)[10:20], random_code(ids[10:20], 512, 4))


# --- collision rates vs the birthday bound ---------------------------------------------------
@pytest.mark.parametrize("kind", ["ints", "strings", "cross"])
def test_bucket_collisions_match_birthday_bound(kind):
    """n = 20000 distinct keys in M = 2^20 buckets: colliding pairs ~ Poisson(C(n,2)/M ≈ 190.7)
    and occupied buckets ≈ M(1 - (1 - 1/M)^n); both within 5 sqrt(λ) ≈ 69. The keys are
    deliberately regular (consecutive ids, 'user_<i>' strings, a full grid of pairs)."""
    n, m = 20000, 2**20
    if kind == "ints":
        buckets = hash_bucket(np.arange(n) * 1024, m)
    elif kind == "strings":
        buckets = hash_bucket([f"user_{i}" for i in range(n)], m)
    else:
        users, items = np.divmod(np.arange(n), 100)
        buckets = hash_cross([users, items], m)
    lam = expected_colliding_pairs(n, m)
    assert lam == pytest.approx(190.73, abs=0.01)
    assert abs(colliding_pairs(buckets) - lam) <= 5 * math.sqrt(lam)
    occupied = np.unique(buckets).shape[0]
    assert abs(occupied - expected_occupied_buckets(n, m)) <= 5 * math.sqrt(lam)


@pytest.mark.parametrize("kind", ["ints", "strings"])
def test_small_bucket_counts_are_uniform(kind):
    """Low bits are mixed: ids that are all multiples of 1024 (plain ``id % 1024`` would put
    every one in bucket 0) spread over M = 1024 buckets with a chi-square statistic within
    5 sd of its mean (df = M - 1, sd = sqrt(2 df))."""
    n, m = 50000, 1024
    keys = np.arange(n) * 1024 if kind == "ints" else [f"{i * 1024}" for i in range(n)]
    counts = np.bincount(hash_bucket(keys, m), minlength=m)
    chi2 = float(np.sum((counts - n / m) ** 2 / (n / m)))
    assert abs(chi2 - (m - 1)) <= 5 * math.sqrt(2 * (m - 1))


def test_seeds_give_independent_bucketings():
    """Same keys, seeds 0 and 1: the number agreeing on a bucket is Binomial(n, 1/M)."""
    n, m = 20000, 1024
    keys = [f"item_{i}" for i in range(n)]
    agree = int(np.sum(hash_bucket(keys, m, seed=0) == hash_bucket(keys, m, seed=1)))
    assert abs(agree - n / m) <= 5 * math.sqrt(n / m)
    ints = np.arange(n)
    agree = int(np.sum(hash_bucket(ints, m, seed=0) == hash_bucket(ints, m, seed=1)))
    assert abs(agree - n / m) <= 5 * math.sqrt(n / m)


def test_cross_is_ordered_and_salted():
    users, items = np.arange(1000), np.arange(1000)[::-1].copy()
    assert not np.array_equal(hash_cross([users, items], 2**30), hash_cross([items, users], 2**30))
    records = {"user": users, "item": items, "shop": items}
    bags = cross_bags(records, [("user", "item"), ("user", "shop")], 2**30)
    ids = np.asarray(bags.ids)
    assert ids.shape == (1000, 2)
    # item and shop hold the same values, yet the two crosses differ (salted by their names)
    assert np.mean(ids[:, 0] == ids[:, 1]) < 0.01
    assert ids.min() >= 0 and ids.max() < 2**30


# --- random code: distinct positions, overlap k^2/M, identical codes 1/C(M, k) ----------------
def test_random_code_positions_distinct_and_in_range():
    codes = random_code(np.arange(20000), 8, 8)  # k = M: every code is a permutation
    assert np.array_equal(np.sort(codes, axis=1), np.tile(np.arange(8), (20000, 1)))
    codes = random_code(np.arange(20000), 1000, 6, seed=9)
    assert codes.min() >= 0 and codes.max() < 1000
    srt = np.sort(codes, axis=1)
    assert np.all(srt[:, 1:] != srt[:, :-1])


def test_random_code_overlap_matches_k2_over_m():
    """50000 disjoint pairs of distinct ids, M = 1024, k = 4: mean shared positions within
    5 standard errors of k²/M = 0.015625 (hypergeometric variance), and
    P(shared >= 1) within 5 se of 1 - C(M-k, k)/C(M, k)."""
    m, k, pairs = 1024, 4, 50000
    codes = random_code(np.arange(2 * pairs), m, k, seed=1)
    a, b = codes[0::2], codes[1::2]
    shared = np.sum(a[:, :, None] == b[:, None, :], axis=(1, 2))
    mean = expected_shared_positions(k, m)
    assert mean == 0.015625
    se = math.sqrt(shared_positions_variance(k, m) / pairs)
    assert abs(shared.mean() - mean) <= 5 * se
    p_any = 1 - math.comb(m - k, k) / math.comb(m, k)
    assert abs(np.mean(shared >= 1) - p_any) <= 5 * math.sqrt(p_any * (1 - p_any) / pairs)


def test_random_code_positions_uniform():
    n, m, k = 50000, 1024, 4
    counts = np.bincount(random_code(np.arange(n), m, k).ravel(), minlength=m)
    expected = n * k / m
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert abs(chi2 - (m - 1)) <= 5 * math.sqrt(2 * (m - 1))


def test_identical_codes_match_one_over_m_choose_k():
    """2000 ids, M = 32, k = 3: pairs with identical codes ~ Poisson(C(n,2)/C(M,k) ≈ 403),
    within 5 sqrt(λ) ≈ 100; drawing position j from its own range of M/k slots would give
    (k/M)^k and about 1647 pairs."""
    n, m, k = 2000, 32, 3
    codes = np.sort(random_code(np.arange(n), m, k, seed=2), axis=1)
    keys = (codes[:, 0] * m + codes[:, 1]) * m + codes[:, 2]
    lam = math.comb(n, 2) * identical_code_probability(k, m)
    assert lam == pytest.approx(403.0, abs=0.5)
    assert abs(colliding_pairs(keys) - lam) <= 5 * math.sqrt(lam)


def test_random_code_bags():
    rc = RandomCode(4096, 4, seed=3)
    bags = rc.bags(np.array([5, 6, 7]))
    assert bags.ids.shape == (3, 4) and bags.weights is None
    assert np.array_equal(np.asarray(bags.ids), rc.codes(np.array([5, 6, 7])))
    multi = rc.bags(np.array([5, 6, 7]), offsets=[0, 0, 1], weights=[1.0, 2.0, 3.0])
    lists, weights = multi.to_lists()
    codes = rc.codes(np.array([5, 6, 7])).tolist()
    assert lists == [[], codes[0], codes[1] + codes[2]]
    assert weights == [[], [1.0] * 4, [2.0] * 4 + [3.0] * 4]
    assert multi.width == 8
    assert rc.expected_shared() == 16 / 4096
    assert rc.identical_probability() == 1 / math.comb(4096, 4)
    table = np.arange(4096 * 2, dtype=np.float32).reshape(4096, 2)
    out = np.asarray(je.bag_lookup(table, bags, combiner="sum"))
    np.testing.assert_allclose(out, table[rc.codes(np.array([5, 6, 7]))].sum(axis=1))


# --- vocabulary ------------------------------------------------------------------------------
def test_vocabulary_from_counts_and_oov_semantics():
    vocab = Vocabulary.from_counts({"b": 5, "a": 5, "c": 9, "rare": 1}, min_count=2,
                                   num_oov_buckets=3)
    assert vocab.tokens == ("c", "a", "b")  # count desc, ties by token
    assert vocab.counts.tolist() == [9, 5, 5]
    assert (vocab.vocab_size, vocab.size) == (3, 6)
    ids = vocab.lookup(np.array([["a", "rare"], ["zzz", "c"]]))
    assert ids.shape == (2, 2)
    assert ids[0, 0] == 1 and ids[1, 1] == 0
    assert 3 <= ids[0, 1] < 6 and 3 <= ids[1, 0] < 6
    assert vocab.lookup(["rare"])[0] == ids[0, 1]  # the same OOV key, the same bucket
    assert "a" in vocab and "rare" not in vocab
    assert Vocabulary.from_counts({"x": 3, "y": 2, "z": 1}, max_size=2).tokens == ("x", "y")
    assert Vocabulary.from_tokens(["x", "y", "x"]).tokens == ("x", "y")
    with pytest.raises(KeyError, match="'zzz' is not in the vocabulary"):
        Vocabulary(["a"], num_oov_buckets=0).lookup(["a", "zzz"])
    bags = vocab.bags(["a", "b", "c"], offsets=[0, 2])
    assert bags.to_lists()[0] == [[1, 2], [0]]


def test_oov_buckets_spread_evenly():
    vocab = Vocabulary(["a"], num_oov_buckets=64)
    ids = vocab.lookup([f"unseen{i}" for i in range(64000)])
    counts = np.bincount(ids - 1, minlength=64)
    assert ids.min() >= 1 and ids.max() < 65
    chi2 = float(np.sum((counts - 1000) ** 2 / 1000))
    assert abs(chi2 - 63) <= 5 * math.sqrt(2 * 63)


def test_vocabulary_bad_construction():
    with pytest.raises(ValueError, match=r"'a' appears twice \(at 0 and 2\)"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="token 1: empty token"):
        Vocabulary(["a", ""])
    with pytest.raises(ValueError, match="contains '\\\\t'"):
        Vocabulary(["a\tb"])
    with pytest.raises(TypeError, match="token 0: token 3 is a int"):
        Vocabulary([3])
    with pytest.raises(ValueError, match="counts has shape"):
        Vocabulary(["a"], [1, 2])
    with pytest.raises(ValueError, match="num_oov_buckets must be >= 0"):
        Vocabulary(["a"], num_oov_buckets=-1)
    with pytest.raises(TypeError, match="key 1 is 5 of type int"):
        Vocabulary(["a"]).lookup(["a", 5])
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        Vocabulary.from_counts({"a": 1}, min_count=0)


def test_vocabulary_save_load(tmp_path):
    vocab = Vocabulary(["c", "new york", "手机"], [9, 5, 1], num_oov_buckets=2)
    path = tmp_path / "vocab.txt"
    vocab.save(path)
    assert path.read_bytes() == "c\t9\nnew york\t5\n手机\t1\n".encode()
    back = Vocabulary.load(path, num_oov_buckets=2)
    assert back.tokens == vocab.tokens and back.counts.tolist() == [9, 5, 1]
    keys = ["c", "手机", "unknown", "other"]
    assert np.array_equal(back.lookup(keys), vocab.lookup(keys))
    vocab.save(path, with_counts=False)
    assert path.read_text(encoding="utf-8") == "c\nnew york\n手机\n"
    assert Vocabulary.load(path).counts is None
    assert sorted(os.listdir(tmp_path)) == ["vocab.txt"]  # no temporary file left
    # TextFileInitializer-style files: CRLF, a byte-order mark, no final newline
    path.write_bytes(b"\xef\xbb\xbfa\r\nb\r\nc")
    assert Vocabulary.load(path).tokens == ("a", "b", "c")
    with pytest.raises(ValueError, match="has no counts"):
        Vocabulary(["a"]).save(path, with_counts=True)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "vocab.txt"
    Vocabulary(["old"]).save(path)

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        Vocabulary(["new"]).save(path)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["vocab.txt"]


@pytest.mark.parametrize(("data", "message"), [
    (b"a\n\nb\n", "line 2: empty token"),
    (b"a\nb\na\n", "line 3: duplicate token 'a' \\(first on line 1\\)"),
    (b"a\t3\nb\tx\n", "line 2: count 'x' of token 'b' is not a non-negative integer"),
    (b"a\t-1\n", "line 1: count '-1'"),
    (b"a\t99999999999999999999\n", "line 1: count"),
    (b"a\t3\nb\n", "line 2: no count on this line, but line 1 has"),
    (b"a\nb\t3\n", "line 2: a count on this line, but line 1 has none"),
    (b"a\t1\t2\n", "line 1: expected 'token' or 'token<TAB>count'"),
    (b"a\n\xff\xfeb\n", "line 2: not valid UTF-8"),
    (b"a\nb\rc\n", "line 2: token 'b\\\\rc' contains a carriage return"),
    (b"\tb\n", "line 1: empty token"),
])
def test_malformed_vocabulary_files(tmp_path, data, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as err:
        Vocabulary.load(path)
    assert str(path) in str(err.value)


# --- attach ----------------------------------------------------------------------------------
CHAIN = ("item", "shop", "category")


def catalogue():
    """A training log: item 1 (shop 10, category 100) is popular, shop 20 is popular through
    many different items, category 300 only through its shops."""
    items = [1] * 5 + list(range(100, 106)) + [200, 201, 202]
    shops = [10] * 5 + [20] * 6 + [30, 31, 32]
    cats = [100] * 5 + [200] * 6 + [300, 300, 300]
    return {"item": np.array(items), "shop": np.array(shops), "category": np.array(cats)}


def test_attach_takes_first_warm_ancestor():
    enc = AttachEncoder.fit(catalogue(), CHAIN, min_count=3)
    assert [w.tolist() for w in enc.warm] == [[1], [10, 20], [100, 200, 300]]
    assert enc.size == 1 + 2 + 3 + 1
    assert enc.level_range("shop") == (1, 3) and enc.level_range("oov") == (6, 7)
    batch = {
        "item": np.array([1, 1, 105, 999, 998, 997, 996]),
        "shop": np.array([10, 77, 20, 20, 31, 77, -1]),
        "category": np.array([100, 100, 200, 300, 300, 777, -1]),
    }
    codes = enc.encode(batch)
    # warm item keeps its own code whatever its ancestors; cold items climb the chain
    assert codes.ids.tolist() == [0, 0, 2, 2, 5, enc.size - 1, enc.size - 1]
    assert codes.level.tolist() == [0, 0, 1, 1, 2, -1, -1]
    assert np.array_equal(enc.ids(batch), codes.ids)


def test_attach_oov_buckets_and_per_level_thresholds():
    enc = AttachEncoder.fit(catalogue(), CHAIN, min_count={"item": 6, "category": 4},
                            num_oov_buckets=8, seed=1)
    # no item is seen 6 times; every shop is warm (default 1); categories 100 and 200 (5, 6)
    assert [w.tolist() for w in enc.warm] == [[], [10, 20, 30, 31, 32], [100, 200]]
    batch = {"item": np.arange(5000), "shop": np.full(5000, -1), "category": np.full(5000, 9)}
    ids = enc.ids(batch)
    lo, hi = enc.level_range("oov")
    assert ids.min() >= lo and ids.max() < hi
    assert np.unique(ids).shape[0] == 8  # cold ids spread over the OOV buckets


def test_attach_bags_multi_valued():
    enc = AttachEncoder.fit(catalogue(), CHAIN, min_count=3)
    clicks = {"item": np.array([1, 105, 999]), "shop": np.array([10, 20, 31]),
              "category": np.array([100, 200, 300])}
    bags = enc.bags(clicks, offsets=[0, 0, 2], weights=[1.0, 0.5, 2.0])
    lists, weights = bags.to_lists()
    assert lists == [[], [0, 2], [5]]
    assert weights == [[], [1.0, 0.5], [2.0]]
    single = enc.bags(clicks)
    assert single.ids.shape == (3, 1)


def test_attach_from_counts_and_vectorized_batch():
    counts = {"item": (np.array([5, 9]), np.array([10, 1])),
              "shop": (np.array([1, 2]), np.array([3, 30]))}
    enc = AttachEncoder.from_counts(("item", "shop"), counts, min_count=5)
    assert [w.tolist() for w in enc.warm] == [[5], [2]]
    rng = np.random.default_rng(0)
    batch = {"item": rng.integers(0, 20, 100000), "shop": rng.integers(0, 3, 100000)}
    ids = enc.ids(batch)
    expect = np.where(batch["item"] == 5, 0, np.where(batch["shop"] == 2, 1, 2))
    assert np.array_equal(ids, expect)


def test_attach_bad_input():
    enc = AttachEncoder.fit(catalogue(), CHAIN, min_count=3)
    with pytest.raises(KeyError, match="no column 'category'"):
        enc.ids({"item": np.array([1]), "shop": np.array([1])})
    with pytest.raises(ValueError, match="column 'shop' has 2 rows, column 'item' has 1"):
        enc.ids({"item": np.array([1]), "shop": np.array([1, 2]), "category": np.array([1])})
    with pytest.raises(TypeError, match="column 'item' must hold integer ids, got dtype float"):
        enc.ids({"item": np.array([1.5]), "shop": np.array([1]), "category": np.array([1])})
    with pytest.raises(ValueError, match="id 3 appears twice"):
        AttachEncoder(("item",), {"item": [3, 3]})
    with pytest.raises(ValueError, match="must be >= 0, got -2"):
        AttachEncoder(("item",), {"item": [-2, 3]})
    with pytest.raises(ValueError, match="min_count for 'item' must be an integer >= 1"):
        AttachEncoder.fit(catalogue(), CHAIN, min_count=0)
    with pytest.raises(KeyError, match="not in the chain"):
        AttachEncoder.fit(catalogue(), CHAIN, min_count={"brand": 2})
    with pytest.raises(ValueError, match="names a column twice"):
        AttachEncoder(("item", "item"), {"item": [1]})
    with pytest.raises(ValueError, match="num_oov_buckets must be >= 1"):
        AttachEncoder(("item",), {"item": [1]}, num_oov_buckets=0)


# --- segmentation ----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "tokens"), [
    ("iPhone 手机壳 case", ["iphone", "case", "手", "机", "壳", "手机", "机壳"]),
    ("ｉＰｈｏｎｅ１５ Pro-Max", ["iphone15", "pro", "max"]),
    ("Men's T-shirt, 3.5mm!", ["men", "s", "t", "shirt", "3", "5mm"]),
    ("东京タワー", ["东", "京", "タ", "ワ", "ー", "东京", "京タ", "タワ", "ワー"]),
    ("包", ["包"]),
    ("手机，壳", ["手", "机", "壳", "手机"]),  # a comma ends a run: no 机壳 bigram
    ("삼성 갤럭시 S24", ["삼성", "갤럭시", "s24"]),  # Hangul is spaced: words
    ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # vowel signs and virama stay in the word
    ("❤️ love 😀 snake_case", ["love", "snake", "case"]),
    ("   ", []),
    ("", []),
])
def test_segment_examples(text, tokens):
    assert Segmenter()(text) == tokens


def test_segment_options():
    assert Segmenter((2,))("手机壳 a") == ["a", "手机", "机壳"]
    assert Segmenter((1, 2, 3))("手机壳") == ["手", "机", "壳", "手机", "机壳", "手机壳"]
    assert Segmenter(lowercase=False)("iPhone") == ["iPhone"]
    assert Segmenter(normalize=None)("ｉＰ") == ["ｉｐ"]
    with pytest.raises(ValueError, match="cjk_ngrams"):
        Segmenter((0,))
    with pytest.raises(TypeError, match="text 1 is 5 of type int"):
        Segmenter().batch(["a", 5])
    with pytest.raises(TypeError, match="got a single str"):
        Segmenter().batch("a text")


def test_segment_batch_offsets_and_separator_inside_text():
    tokens, offsets = Segmenter().batch(["a b", "", "x\x1ey 手", "😀 c"])
    assert offsets.tolist() == [0, 2, 2, 5, 6]
    assert tokens == ["a", "b", "x", "y", "手", "c"]


def test_segment_encoder_bags():
    train = ["iphone 手机壳 case", "iphone case", "手机 case"]
    enc = SegmentEncoder.fit(train, min_count=2, num_oov_buckets=4)
    assert set(enc.vocab.tokens) == {"iphone", "case", "手", "机", "手机"}
    assert enc.size == 5 + 4
    bags = enc.bags(["iPhone 手机壳 case", "", "samsung galaxy s24 ultra 手机"])
    lists, _ = bags.to_lists()
    v = enc.vocab
    first = v.lookup(["iphone", "case", "手", "机", "壳", "手机", "机壳"]).tolist()
    assert lists[0] == first and lists[1] == []
    assert all(5 <= i < 9 for i in lists[2][:4])  # OOV words in the OOV buckets
    assert bags.width == 8  # 7 tokens -> the power-of-two bucket 8
    assert enc.bags(["a"], min_width=4).width == 4
    capped = SegmentEncoder(v, max_tokens=2).bags(["iPhone 手机壳 case", "手"])
    assert capped.to_lists()[0] == [first[:2], v.lookup(["手"]).tolist()]


# --- small helpers and bad input -------------------------------------------------------------
def test_bags_from_values_and_bad_input():
    assert bags_from_values(np.array([3, 4])).ids.shape == (2, 1)
    assert bags_from_values(np.array([[3, 4]])).ids.shape == (1, 2)
    assert bags_from_values(np.array([3, 4, 5]), offsets=[0, 1]).to_lists()[0] == [[3], [4, 5]]
    with pytest.raises(ValueError, match="shape"):
        bags_from_values(np.zeros((1, 1, 1), dtype=np.int32))
    with pytest.raises(TypeError, match="integer dtype, got float64"):
        hash_ints(np.array([1.5]))
    with pytest.raises(ValueError, match="fit neither int64 nor uint64"):
        hash_ints([-1, 2**63])
    with pytest.raises(TypeError, match="item 1 is 3 of type int"):
        hash_strings(["a", 3])
    with pytest.raises(ValueError, match="item 1 '\\\\ud800' is not encodable"):
        hash_strings(["a", "\ud800"])
    with pytest.raises(TypeError, match="got a single str"):
        hash_strings("abc")
    with pytest.raises(ValueError, match="num_buckets must be in"):
        hash_bucket(np.array([1]), 0)
    with pytest.raises(ValueError, match="seed must be in"):
        hash_ints(np.array([1]), seed=-1)
    with pytest.raises(ValueError, match="k must be an integer in \\[1, num_buckets=4\\]"):
        random_code(np.array([1]), 4, 5)
    with pytest.raises(ValueError, match="column 1 has 1 rows, column 0 has 2"):
        hash_cross([np.array([1, 2]), np.array([1])], 10)
    with pytest.raises(KeyError, match="no column 'shop'"):
        cross_bags({"user": np.array([1])}, [("user", "shop")], 10)
