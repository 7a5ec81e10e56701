r"""Host-side encodings, each fast (vectorized numpy) path against a literal python reference.

Equations proven (one test each, drawn with hypothesis):

* ``mix64`` is the splitmix64 finalizer and a bijection: ``unmix64(mix64(z)) = z``;
* ``h_s(x) = mix64((x ⊕ K_s) + γ)``, ``K_s = mix64(s + γ)``, over all 64-bit ids;
* ``hash_strings(t) = mix64(FNV-1a_{basis ⊕ K_s}(utf8(t)))`` for any text (CJK, emoji, empty);
* hash bucket ``h mod M`` and cross ``g_i = mix64((g_{i-1} + γ) ⊕ h_s(c_i))``;
* random code: the first ``k`` distinct values of ``mix64(h_s(x) + tγ) mod M``, ``t = 1, 2 ..``
  (so ``k`` distinct positions in ``[0, M)``), and through ``bag_lookup``:
  ``Σ_{j∈c(x)} W_j`` with gradient ``∂/∂W_j Σ_b e_b = #{b : j ∈ c(x_b)}``;
* vocabulary: ``id(t) = index(t)`` in vocabulary, else ``V + h_s(t) mod B``; save/load is the
  identity on tokens and counts;
* attach: ``code(r) = S_ℓ + rank_ℓ(x_ℓ)`` for the first warm level ``ℓ``, else
  ``S_m + h_s(x_0) mod B``;
* segmentation: the batched regex/numpy tokenizer equals a character-by-character state
  machine (NFKC, lowercase, word = letter/number then letters/numbers/marks, CJK runs to
  n-grams), and the bags hold the vocabulary ids of those tokens.

The statistical claims (birthday bound, overlap ``k²/M``, identical codes ``1/C(M, k)``) are
measured in ``tests/test_encoding.py``.
"""

from __future__ import annotations

import os
import tempfile
import unicodedata

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import jaxembed as je
from jaxembed.encoding import (
    AttachEncoder,
    RandomCode,
    SegmentEncoder,
    Segmenter,
    Vocabulary,
    fnv1a64,
    hash_bucket,
    hash_cross,
    hash_ints,
    hash_strings,
    mix64,
    random_code,
)
from proofs import strategies as S

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
C1, C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3

# --- strategies ------------------------------------------------------------------------------
SEEDS = st.one_of(st.sampled_from([0, 1, 2**64 - 1]), st.integers(0, 2**64 - 1))
INT64 = st.integers(-(2**63), 2**63 - 1)
# Characters from every class the tokenizer knows: ASCII, Latin-1 accents, combining marks,
# Devanagari, Hangul, CJK, kana (full and half width), full-width Latin, punctuation, emoji,
# a supplementary ideograph, the batch separator U+001E and NUL.
TEXT_CHARS = st.one_of(
    st.sampled_from([*"aZ9 _-.,!'\t\n", "\x1e", "\x00"]),
    st.sampled_from([*"éÅßİ\u0301\u0308ँि्नमहां한국어", "\ufe0f"]),
    st.sampled_from(list("手机壳東京日本語の文章ですタワーｶﾀｶﾅｉＰ１、。・々〇")),
    st.sampled_from(["😀", "❤", "\U0002000b", "\U0001b001", "\U00010400"]),
    st.characters(codec="utf-8"),
)
TEXTS = st.text(TEXT_CHARS, max_size=24)
TOKEN_CHARS = st.characters(codec="utf-8", exclude_characters="\t\n\r")
TOKENS = st.text(TOKEN_CHARS, min_size=1, max_size=8).filter(lambda t: t[0] != "\ufeff")


# --- literal references ----------------------------------------------------------------------
def ref_mix64(z: int) -> int:
    z ^= z >> 30
    z = (z * C1) & MASK
    z ^= z >> 27
    z = (z * C2) & MASK
    return z ^ (z >> 31)


def ref_unmix64(z: int) -> int:
    """The inverse of ``mix64``: undo each xor-shift (iterate) and each odd multiplication."""

    def unshift(y: int, s: int) -> int:
        x = y
        for _ in range(64 // s + 1):
            x = y ^ (x >> s)
        return x

    z = unshift(z, 31)
    z = (z * pow(C2, -1, 1 << 64)) & MASK
    z = unshift(z, 27)
    z = (z * pow(C1, -1, 1 << 64)) & MASK
    return unshift(z, 30)


def ref_key(seed: int) -> int:
    return ref_mix64((seed + GAMMA) & MASK)


def ref_hash_int(x: int, seed: int) -> int:
    return ref_mix64((((x & MASK) ^ ref_key(seed)) + GAMMA) & MASK)


def ref_hash_str(text: str | bytes, seed: int) -> int:
    data = text.encode() if isinstance(text, str) else text
    h = FNV_OFFSET ^ ref_key(seed)
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return ref_mix64(h)


def ref_hash(value, seed: int) -> int:
    return (
        ref_hash_str(value, seed) if isinstance(value, str | bytes) else ref_hash_int(value, seed)
    )


def ref_random_code(value, m: int, k: int, seed: int) -> list[int]:
    base, t, code = ref_hash(value, seed), 0, []
    while len(code) < k:
        t += 1
        u = ref_mix64((base + t * GAMMA) & MASK) % m
        if u not in code:
            code.append(u)
    return code


REF_CJK = (
    (0x3005, 0x3007),
    (0x3021, 0x3029),
    (0x3038, 0x303C),
    (0x3040, 0x309F),
    (0x30A0, 0x30FF),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
    (0x1B000, 0x1B16F),
    (0x20000, 0x3134F),
)


def ref_class(ch: str) -> str:
    cat = unicodedata.category(ch)
    if cat[0] == "M":
        return "mark"
    if cat[0] not in "LN":
        return "other"
    return "cjk" if any(lo <= ord(ch) <= hi for lo, hi in REF_CJK) else "word"


def ref_tokens(text: str, ngrams=(1, 2)) -> list[str]:
    """Character by character: words, then the n-grams of each CJK run, in text order."""
    text = unicodedata.normalize("NFKC", text.replace("\x1e", " ")).lower()
    words, runs, word, run = [], [], "", ""
    for ch in text + " ":
        kind = ref_class(ch)
        if kind == "word" or (kind == "mark" and word):
            word += ch
        elif word:
            words.append(word)
            word = ""
        if kind == "cjk":
            run += ch
        elif run:
            runs.append(run)
            run = ""
    grams = [r[i : i + n] for n in ngrams for r in runs for i in range(len(r) - n + 1)]
    return words + grams


# --- hashing ---------------------------------------------------------------------------------
@given(st.lists(st.integers(0, MASK), min_size=1, max_size=16))
def test_mix64_is_the_splitmix_finalizer_and_a_bijection(zs):
    """``mix64(z)`` equals the literal xor-shift-multiply chain and ``unmix64(mix64(z)) = z``."""
    out = mix64(np.array(zs, dtype=np.uint64)).tolist()
    assert out == [ref_mix64(z) for z in zs]
    assert [ref_unmix64(h) for h in out] == zs


@given(st.lists(INT64, max_size=16), SEEDS, st.sampled_from([np.int64, np.uint64, np.int32]))
def test_hash_ints_equals_reference(xs, seed, dtype):
    """``h_s(x) = mix64((x ⊕ K_s) + γ)`` for 64-bit ids of any integer dtype (mod 2**64)."""
    values = np.array(xs, dtype=np.int64).astype(dtype)
    expect = [ref_hash_int(int(x), seed) for x in values.tolist()]
    assert hash_ints(values, seed).tolist() == expect


@given(st.lists(TEXTS, max_size=24), SEEDS, st.booleans())
def test_hash_strings_equals_reference(texts, seed, as_bytes):
    """``hash_strings`` = finalized seeded FNV-1a of the UTF-8 bytes, for every text; the
    vectorized byte rounds (and their Python tail for the longest strings) change nothing."""
    texts = [*texts, "x" * 40, "手" * 13]  # some strings reach the Python tail
    items = [t.encode() for t in texts] if as_bytes else texts
    assert hash_strings(items, seed).tolist() == [ref_hash_str(t, seed) for t in texts]
    for text, h in zip(texts, fnv1a64(items).tolist(), strict=True):
        expect = FNV_OFFSET  # the published, unseeded FNV-1a
        for byte in text.encode():
            expect = ((expect ^ byte) * FNV_PRIME) & MASK
        assert h == expect


@given(st.lists(INT64, min_size=1, max_size=12), st.integers(1, 2**40), SEEDS, st.data())
def test_bucket_and_cross_equal_reference(xs, m, seed, data):
    """``bucket = h_s(v) mod M`` and the cross chain, for id and string columns."""
    assert hash_bucket(np.array(xs), m, seed).tolist() == [ref_hash_int(x, seed) % m for x in xs]
    strs = data.draw(st.lists(TEXTS, min_size=len(xs), max_size=len(xs)))
    assert hash_bucket(strs, m, seed).tolist() == [ref_hash_str(t, seed) % m for t in strs]
    expect = []
    for x, t in zip(xs, strs, strict=True):
        g = ref_key(seed)
        for h in (ref_hash_int(x, seed), ref_hash_str(t, seed)):
            g = ref_mix64(((g + GAMMA) & MASK) ^ h)
        expect.append(g % m)
    assert hash_cross([np.array(xs), strs], m, seed).tolist() == expect
    assert all(0 <= v < m for v in expect)


# --- random code -----------------------------------------------------------------------------
@given(
    st.lists(INT64, max_size=12),
    st.sampled_from([(1, 1), (3, 3), (8, 2), (16, 5), (1000, 4), (2**20, 8)]),
    SEEDS,
)
def test_random_code_equals_reference(xs, mk, seed):
    """Code = first ``k`` distinct ``mix64(h_s(x) + tγ) mod M``: ``k`` distinct positions in
    ``[0, M)``, the same for an id alone or in any batch (``k = M`` forces many re-draws)."""
    m, k = mk
    codes = random_code(np.array(xs, dtype=np.int64), m, k, seed)
    assert codes.shape == (len(xs), k)
    assert codes.tolist() == [ref_random_code(x, m, k, seed) for x in xs]
    for row in codes.tolist():
        assert len(set(row)) == k and all(0 <= p < m for p in row)


@jax.jit
def _sum_rows_and_grad(table, bags):
    def total(w):
        out = je.bag_lookup(w, bags, combiner="sum")
        return jnp.sum(out), out

    return jax.grad(total, has_aux=True)(table)


@given(
    S.tables(vocab=st.just(64), features=st.just(3)),
    st.lists(st.text(max_size=6), min_size=8, max_size=8),
    st.sampled_from([1, 2, 4]),
)
def test_random_code_bags_sum_rows_and_gradient(table, keys, k):
    """Through ``bag_lookup(sum)``: ``e(x) = Σ_{j∈c(x)} W_j``, and the gradient of
    ``Σ_b Σ e_b`` w.r.t. ``W_j`` is the number of codes holding ``j`` (each row once per id).
    Shapes are fixed (8 keys, a 64 x 3 table) so each ``k`` compiles once."""
    bags = RandomCode(64, k, seed=7).bags(keys)
    codes = [ref_random_code(t, 64, k, 7) for t in keys]
    expect = np.stack([table[c].sum(axis=0) for c in codes])
    grad, out = _sum_rows_and_grad(table, bags)
    np.testing.assert_allclose(np.asarray(out), expect, rtol=1e-5, atol=1e-5)
    count = np.zeros(64)
    for c in codes:
        count[c] += 1
    np.testing.assert_array_equal(np.asarray(grad), np.repeat(count[:, None], 3, 1))


# --- vocabulary ------------------------------------------------------------------------------
@given(
    st.lists(TOKENS, max_size=10, unique=True),
    st.lists(TOKENS, max_size=10),
    st.integers(0, 5),
    SEEDS,
)
def test_vocabulary_lookup_equals_reference(tokens, keys, buckets, seed):
    """``id(t) = index(t)`` in vocabulary, else ``V + h_s(t) mod B`` (StaticVocabularyTable)."""
    vocab = Vocabulary(tokens, num_oov_buckets=buckets, seed=seed)
    keys = keys + tokens[:2]
    oov = [t for t in keys if t not in tokens]
    if buckets == 0 and oov:
        try:
            vocab.lookup(keys)
        except KeyError as err:
            assert repr(oov[0]) in err.args[0]
        else:
            raise AssertionError("an OOV key with num_oov_buckets=0 must raise")
        return
    expect = [
        tokens.index(t) if t in tokens else len(tokens) + ref_hash_str(t, seed) % buckets
        for t in keys
    ]
    ids = vocab.lookup(keys)
    assert ids.tolist() == expect
    assert all(0 <= i < vocab.size for i in expect)


@given(st.lists(TOKENS, max_size=12, unique=True), st.data(), st.booleans())
def test_vocabulary_save_load_round_trip(tokens, data, with_counts):
    """``load(save(v))`` has the same tokens (same ids) and counts."""
    counts = (
        data.draw(st.lists(st.integers(0, 2**62), min_size=len(tokens), max_size=len(tokens)))
        if with_counts
        else None
    )
    vocab = Vocabulary(tokens, counts)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vocab.txt")
        vocab.save(path)
        back = Vocabulary.load(path)
        assert os.listdir(tmp) == ["vocab.txt"]
    assert back.tokens == tuple(tokens)
    assert (back.counts is None) == (counts is None or not tokens)  # no lines, no counts
    if counts:
        assert back.counts.tolist() == counts


# --- attach ----------------------------------------------------------------------------------
@given(st.data(), st.sampled_from([1, 3]), st.integers(1, 4))
def test_attach_equals_reference(data, buckets, min_count):
    """First warm level's code ``S_ℓ + rank_ℓ``, else ``S_m + h_s(item) mod B``."""
    chain = ("item", "shop", "brand")
    n = data.draw(st.sampled_from([1, 5, 12]))
    col = st.lists(st.integers(-1, 6), min_size=n, max_size=n)
    records = {name: np.array(data.draw(col)) for name in chain}
    train = {
        name: np.array(data.draw(st.lists(st.integers(-1, 6), min_size=20, max_size=20)))
        for name in chain
    }
    enc = AttachEncoder.fit(train, chain, min_count, num_oov_buckets=buckets, seed=3)
    warm = {
        name: sorted(
            {int(v) for v in train[name] if v >= 0 and (train[name] == v).sum() >= min_count}
        )
        for name in chain
    }
    starts = np.cumsum([0] + [len(warm[name]) for name in chain]).tolist()
    expect, levels = [], []
    for r in range(n):
        for lvl, name in enumerate(chain):
            value = int(records[name][r])
            if value in warm[name]:
                expect.append(starts[lvl] + warm[name].index(value))
                levels.append(lvl)
                break
        else:
            expect.append(starts[-1] + ref_hash_int(int(records["item"][r]), 3) % buckets)
            levels.append(-1)
    codes = enc.encode(records)
    assert codes.ids.tolist() == expect
    assert codes.level.tolist() == levels
    assert enc.size == starts[-1] + buckets


# --- segmentation ----------------------------------------------------------------------------
@given(st.lists(TEXTS, min_size=1, max_size=6), st.sampled_from([(1, 2), (1,), (2, 3)]))
def test_segmenter_equals_char_by_char_reference(texts, ngrams):
    """The batched tokenizer equals the character state machine, text by text (the batch
    separator, NUL and emoji inside texts included)."""
    tokens, offsets = Segmenter(ngrams).batch(texts)
    got = [tokens[offsets[b] : offsets[b + 1]] for b in range(len(texts))]
    assert got == [ref_tokens(t, ngrams) for t in texts]


@given(
    st.lists(TEXTS, min_size=1, max_size=6),
    st.lists(TEXTS, max_size=6),
    st.sampled_from([None, 1, 3]),
)
def test_segment_bags_hold_vocabulary_ids(texts, train, max_tokens):
    """Bag ``b`` holds ``id(t)`` for the first ``max_tokens`` tokens ``t`` of text ``b``."""
    enc = SegmentEncoder.fit(train, max_tokens=max_tokens, num_oov_buckets=2, seed=5)
    vocab = list(enc.vocab.tokens)
    bags = enc.bags(texts)
    lists, _ = bags.to_lists()
    expect = [
        [
            vocab.index(t) if t in vocab else len(vocab) + ref_hash_str(t, 5) % 2
            for t in ref_tokens(text)
        ][:max_tokens]
        for text in texts
    ]
    assert lists == expect
    assert bags.width == je.bucket_width(max(map(len, expect)))
