r"""Word-segmentation encoding: query and title strings to bags of token ids.

A text becomes tokens, tokens become vocabulary ids (unknown tokens fall in hashed OOV
buckets, :class:`~jaxembed.encoding.vocab.Vocabulary`), and a batch of texts becomes
:class:`~jaxembed.Bags` with a power-of-two width (:func:`jaxembed.bucket_width`), ready
for :func:`jaxembed.bag_lookup`: the text's embedding is :math:`\sum_t W_{\mathrm{id}(t)}`.

**Tokens.** The text is NFKC-normalized (full-width ``ｉＰｈｏｎｅ`` becomes ``iphone``) and
lowercased. Characters fall in three classes (Unicode general categories):

* **CJK** — Han ideographs, Hiragana and Katakana letters and numbers (scripts written
  without spaces between words);
* **word** — every other letter or number (``L*``, ``N*``): Latin, Cyrillic, Greek, Hangul,
  Arabic, Devanagari, digits ...;
* **mark** (``M*``) — continues a word (``नमस्ते``, a decomposed accent), never starts one.

Everything else (spaces, punctuation, symbols, emoji, ``_``) separates tokens. A **word
token** is a word character followed by word characters and marks. A **run** of CJK
characters :math:`c_1 \dots c_r` has no spaces to split on, so it becomes its character
n-grams :math:`c_i \dots c_{i+n-1}` for each :math:`n` of ``cjk_ngrams`` (default unigrams and
bigrams: ``手机壳`` → ``手 机 壳 手机 机壳``), :math:`\max(r - n + 1, 0)` of each; n-grams never
cross a space, a word or punctuation. The tokens of a text come in this order: its words,
then its CJK unigrams, then its bigrams, ... (each in text order). A mixed text works as one
expects: ``"iPhone 手机壳 case"`` → ``iphone case 手 机 壳 手机 机壳``.

**Batches.** The texts are joined with record separators (U+001E; one inside a text is
treated as a space), normalized once, and each regular expression (words; CJK runs) runs once
over the whole batch, in C. Record boundaries come back from the separator matches with
numpy, and the n-grams of all runs are cut at once from their UTF-32 code points, so there
is no per-text or per-token Python loop. ``re`` checks a character above U+FFFF against a
class range by range (hundreds of ranges), so only the texts that hold such characters
(emoji, rare ideographs) go through the full classes; the rest use the one-lookup BMP ones.

The character classes come from Python's Unicode database (``unicodedata``), so tokens are
the same on every machine running the same Python minor version.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from itertools import compress
from typing import Any

import numpy as np

from jaxembed.bags import Bags
from jaxembed.encoding.vocab import Vocabulary

# Blocks of scripts written without spaces between words (Han, Hiragana, Katakana).
CJK_BLOCKS: tuple[tuple[int, int], ...] = (
    (0x3005, 0x3007),    # 々 〆 〇
    (0x3021, 0x3029),    # Hangzhou numerals
    (0x3038, 0x303C),
    (0x3040, 0x309F),    # Hiragana
    (0x30A0, 0x30FF),    # Katakana
    (0x31F0, 0x31FF),    # Katakana phonetic extensions
    (0x3400, 0x4DBF),    # CJK Extension A
    (0x4E00, 0x9FFF),    # CJK Unified Ideographs
    (0xF900, 0xFAFF),    # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),    # half-width Katakana
    (0x1B000, 0x1B16F),  # Kana supplement and extensions
    (0x20000, 0x3134F),  # CJK Extensions B-G
)
_SEP = "\x1e"  # ASCII RECORD SEPARATOR


@functools.cache
def _classes(bmp_only: bool) -> dict[str, str]:
    """Regex character-class bodies (``[...]``) of the cjk, word and mark characters, from the
    Basic Multilingual Plane only (``bmp_only``) or from all of Unicode.

    ``re`` tests a BMP character against a class in one table lookup, but the ranges above
    U+FFFF one by one (hundreds of them), so texts without such characters use the BMP
    classes: the same tokens, several times faster.
    """
    top = 0x10000 if bmp_only else 0x110000
    cjk = np.zeros(top, dtype=bool)
    for lo, hi in CJK_BLOCKS:
        cjk[lo : min(hi + 1, top)] = True
    cat = np.frombuffer(
        "".join(unicodedata.category(chr(c))[0] for c in range(top)).encode("ascii"),
        dtype=np.uint8,
    )
    letter_or_number = (cat == ord("L")) | (cat == ord("N"))
    masks = {"cjk": letter_or_number & cjk, "word": letter_or_number & ~cjk,
             "mark": cat == ord("M")}
    out = {}
    for name, mask in masks.items():
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.view(np.int8), [0]])))
        out[name] = "".join(f"\\U{lo:08x}-\\U{hi - 1:08x}" for lo, hi in edges.reshape(-1, 2))
    return out


@functools.cache
def _patterns(bmp_only: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(words, CJK runs), each also matching the record separator."""
    c = _classes(bmp_only)
    words = re.compile(f"{_SEP}|[{c['word']}][{c['word']}{c['mark']}]*")
    runs = re.compile(f"{_SEP}|[{c['cjk']}]+")
    return words, runs


_ABOVE_BMP = re.compile(r"[\U00010000-\U0010ffff]")


def _split(stream: list[str], records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the separators of a findall stream; the record (of ``records``) of each token."""
    sep = np.fromiter(map(_SEP.__eq__, stream), dtype=bool, count=len(stream))
    tokens = np.array(stream, dtype=object)[~sep]
    return tokens, records[np.cumsum(sep)[~sep]]


def _ngrams(runs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All character n-grams of each run, and the index of the run each came from.

    The runs are laid end to end as UTF-32 code points; n-gram ``i`` of a run starting at
    ``s`` is ``cp[s + i : s + i + n]``, read back as a numpy ``U{n}`` string.
    """
    lengths = np.fromiter(map(len, runs), dtype=np.int64, count=runs.shape[0])
    counts = np.maximum(lengths - n + 1, 0)
    if counts.sum() == 0:
        return np.zeros(0, dtype=object), np.zeros(0, dtype=np.int64)
    cps = np.frombuffer("".join(runs).encode("utf-32-le"), dtype=np.uint32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    owner = np.repeat(np.arange(runs.shape[0]), counts)
    first = np.repeat(starts, counts) + (np.arange(owner.shape[0])
                                         - np.repeat(np.cumsum(counts) - counts, counts))
    grams = np.stack([cps[first + t] for t in range(n)], axis=1)
    return np.array(grams.view(f"<U{n}").ravel().tolist(), dtype=object), owner


class Segmenter:
    """Text to tokens: NFKC, lowercase, split words, CJK runs to character n-grams.

    Args:
        cjk_ngrams: the n-gram orders taken from CJK runs (distinct, each ``>= 1``).
        lowercase: lowercase after normalization.
        normalize: a ``unicodedata`` normal form (``"NFKC"``) or ``None``.
    """

    def __init__(
        self,
        cjk_ngrams: Sequence[int] = (1, 2),
        *,
        lowercase: bool = True,
        normalize: str | None = "NFKC",
    ) -> None:
        ngrams = tuple(int(n) for n in cjk_ngrams)
        if not ngrams or any(n < 1 for n in ngrams) or len(set(ngrams)) != len(ngrams):
            raise ValueError(f"cjk_ngrams must be distinct integers >= 1, got {cjk_ngrams!r}")
        if normalize not in (None, "NFC", "NFD", "NFKC", "NFKD"):
            raise ValueError(f"normalize must be None or a Unicode normal form, got {normalize!r}")
        self.cjk_ngrams = tuple(sorted(ngrams))
        self.lowercase = bool(lowercase)
        self.normalize = normalize

    def __repr__(self) -> str:
        return (f"Segmenter(cjk_ngrams={self.cjk_ngrams}, lowercase={self.lowercase}, "
                f"normalize={self.normalize!r})")

    def __call__(self, text: str) -> list[str]:
        """The tokens of one text."""
        tokens, _ = self.batch([text])
        return tokens

    def batch(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Tokens of a batch of texts, flat, and ``offsets int64[B + 1]``: text ``b`` has
        ``tokens[offsets[b]:offsets[b+1]]``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, got a single str")
        texts = texts.ravel().tolist() if isinstance(texts, np.ndarray) else list(texts)
        num = len(texts)
        if num == 0:
            return [], np.zeros(1, dtype=np.int64)
        try:
            joined = _SEP.join(texts)
        except TypeError:
            i = next(i for i, t in enumerate(texts) if not isinstance(t, str))
            raise TypeError(f"text {i} is {texts[i]!r} of type {type(texts[i]).__name__}, "
                            "not str") from None
        if joined.count(_SEP) != num - 1:  # a text holds a separator: make it a space
            joined = _SEP.join(t.replace(_SEP, " ") for t in texts)
        if self.normalize is not None:
            joined = unicodedata.normalize(self.normalize, joined)
        if self.lowercase:
            joined = joined.lower()
        records = np.arange(num)
        groups = [(joined, records, True)]
        above = [m.start() for m in _ABOVE_BMP.finditer(joined)]
        if above:  # the texts with characters above U+FFFF get the full classes
            parts = joined.split(_SEP)
            ends = np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=num) + 1)
            slow = np.zeros(num, dtype=bool)
            slow[np.searchsorted(ends, above, side="right")] = True
            groups = [(_SEP.join(compress(parts, mask.tolist())), records[mask], bmp)
                      for mask, bmp in ((~slow, True), (slow, False)) if mask.any()]
        kinds = 1 + len(self.cjk_ngrams)  # words, then each n-gram order
        tokens, keys = [], []
        for text, recs, bmp in groups:
            words, runs = _patterns(bmp)
            found, owner = _split(words.findall(text), recs)
            tokens.append(found)
            keys.append(owner * kinds)
            run_tokens, run_owner = _split(runs.findall(text), recs)
            for kind, n in enumerate(self.cjk_ngrams, start=1):
                grams, run = _ngrams(run_tokens, n)
                tokens.append(grams)
                keys.append(run_owner[run] * kinds + kind)
        key = np.concatenate(keys)
        order = np.argsort(key, kind="stable")  # by text, then kind, then position
        offsets = np.zeros(num + 1, dtype=np.int64)
        np.cumsum(np.bincount(key // kinds, minlength=num), out=offsets[1:])
        return np.concatenate(tokens)[order].tolist(), offsets


class SegmentEncoder:
    """Texts to :class:`~jaxembed.Bags` of token ids: :class:`Segmenter` then
    :meth:`Vocabulary.lookup <jaxembed.encoding.vocab.Vocabulary.lookup>`.

    Args:
        vocab: the token vocabulary (its ``size`` is the table's row count).
        segmenter: the tokenizer (default :class:`Segmenter()`).
        max_tokens: keep at most this many tokens per text (``None``: all).
    """

    def __init__(
        self,
        vocab: Vocabulary,
        segmenter: Segmenter | None = None,
        *,
        max_tokens: int | None = None,
    ) -> None:
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        self.vocab = vocab
        self.segmenter = segmenter if segmenter is not None else Segmenter()
        self.max_tokens = max_tokens

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        *,
        segmenter: Segmenter | None = None,
        max_tokens: int | None = None,
        **vocab_kwargs: Any,
    ) -> SegmentEncoder:
        """Build the vocabulary from the tokens of ``texts``
        (``min_count``, ``max_size``, ``num_oov_buckets``, ``seed``: see
        :meth:`Vocabulary.from_counts <jaxembed.encoding.vocab.Vocabulary.from_counts>`)."""
        segmenter = segmenter if segmenter is not None else Segmenter()
        tokens, _ = segmenter.batch(texts)
        return cls(Vocabulary.from_counts(Counter(tokens), **vocab_kwargs), segmenter,
                   max_tokens=max_tokens)

    @property
    def size(self) -> int:
        """Rows of the embedding table: ``vocab.size``."""
        return self.vocab.size

    def ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Flat token ids of a batch and ``offsets int64[B + 1]`` (after ``max_tokens``)."""
        tokens, offsets = self.segmenter.batch(texts)
        ids = self.vocab.lookup_strings(tokens)  # tokens are str by construction
        if self.max_tokens is not None:
            lengths = np.diff(offsets)
            position = np.arange(ids.shape[0]) - np.repeat(offsets[:-1], lengths)
            ids = ids[position < self.max_tokens]
            offsets = np.concatenate([[0], np.cumsum(np.minimum(lengths, self.max_tokens))])
        return ids, offsets

    def bags(self, texts: Sequence[str], *, min_width: int = 1) -> Bags:
        """One bag per text (an empty text gives an empty bag), width bucketed to a power of
        two (at least ``min_width``)."""
        ids, offsets = self.ids(texts)
        return Bags.from_offsets(ids, offsets, include_last_offset=True, min_width=min_width)
