r"""Text corpora that need no download: CPython's own documentation, and generated noisy texts.

**The built-in corpus** (:func:`builtin_corpus`) is English prose that ships with every CPython:

* ``"topics"`` — :data:`pydoc_data.topics.topics`, the language reference text behind
  ``help("assignment")`` (about 80 topics, half a million characters);
* ``"docstrings"`` — the docstrings of the standard library's Python sources (module, class,
  function and method docstrings, read with :mod:`ast` — nothing is imported — file by file in
  sorted path order, depth first in source order), test suites and tools excepted
  (:data:`EXCLUDED_PACKAGES`). An install without the ``.py`` sources simply has none.

Each topic or docstring is a *document*. Its text is cut into paragraphs at blank lines;
headings (a line underlined with ``*``, ``=``, ``-`` or ``~``) become one sentence; code is
dropped (a paragraph indented deeper than the document's prose, a ``>>>`` session, a grammar
rule with ``::=``); the remaining paragraphs are joined into one line and split into sentences
after ``.``, ``!`` or ``?`` (and a closing quote or bracket) followed by white space and an
upper-case letter, a digit, a quote or a bracket. Sentences of fewer than ``min_words`` words are
dropped. The result is deterministic for a given CPython version (the text is CPython's).

A :class:`Corpus` keeps the sentences in reading order with their document ids, so that
:meth:`Corpus.pairs` gives the (statement, next sentence) pairs a next-sentence model trains
on, and :meth:`Corpus.split` holds out whole documents (no sentence of a held-out document is
seen in training).

**Noisy texts** (:func:`noisy_texts`): groups of short templated messages, each group one
underlying message, each member a copy with random typos (a character dropped, doubled,
swapped with its neighbour or replaced by a keyboard neighbour) and random case. The group id
is the ground truth for a nearest-neighbour test of a character-level encoder.

**Association pairs** (:func:`association_pairs`): (statement, next sentence) pairs whose only
link is learned, not lexical — a statement names a *cue* word of a topic, its next sentence an
*answer* word of the same topic, and the two share no word but common filler. TF-IDF cannot
tell which answer follows which cue; a next-sentence model can learn it.
"""

from __future__ import annotations

import ast
import re
import sysconfig
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "EXCLUDED_PACKAGES",
    "HELD_OUT_FRACTION",
    "PACKAGE_EXCLUDED",
    "Corpus",
    "association_pairs",
    "builtin_corpus",
    "general_documents",
    "held_out_module",
    "noisy_texts",
    "package_sources",
    "split_sentences",
    "stdlib_sources",
]

EXCLUDED_PACKAGES: frozenset[str] = frozenset({
    "test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "site-packages",
    "__pycache__", "__phello__",
})
"""Standard-library folders left out of ``"docstrings"``: test suites, tools, bundled wheels."""

_UNDERLINE = re.compile(r"^\s*([*=\-~^#])\1{2,}\s*$")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(\s+)(?=[A-Z0-9\"'“‘(\[])")
_BULLET = re.compile(r"^\s*(?:[*\-•]|\d+\.|\([a-z0-9]\))\s+")
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Corpus:
    """Sentences in reading order, each with the index of its document.

    Attributes:
        sentences: the sentences, document after document.
        doc_ids: ``int64[N]``, non-decreasing: ``doc_ids[i]`` is the document of sentence ``i``.
        doc_names: one name per document (a topic, or ``module.member``).
    """

    sentences: list[str]
    doc_ids: np.ndarray
    doc_names: list[str]

    def __post_init__(self) -> None:
        if len(self.sentences) != len(self.doc_ids):
            raise ValueError(f"{len(self.sentences)} sentences but {len(self.doc_ids)} doc ids")

    def __len__(self) -> int:
        return len(self.sentences)

    def pair_indices(self) -> np.ndarray:
        """``int64[P]``: every ``i`` whose sentence ``i + 1`` follows it in the same document."""
        ids = np.asarray(self.doc_ids)
        return np.flatnonzero(ids[:-1] == ids[1:]).astype(np.int64)

    def pairs(self) -> tuple[list[str], list[str]]:
        """(statements, next sentences): sentence ``i`` and sentence ``i + 1`` of its document."""
        idx = self.pair_indices()
        return [self.sentences[i] for i in idx], [self.sentences[i + 1] for i in idx]

    def context(self, i: int) -> tuple[str | None, str | None]:
        """The sentences before and after sentence ``i`` in its document (``None`` at an end)."""
        if not 0 <= i < len(self.sentences):
            raise IndexError(f"sentence {i} is out of range for {len(self.sentences)} sentences")
        ids = self.doc_ids
        before = self.sentences[i - 1] if i > 0 and ids[i - 1] == ids[i] else None
        after = (self.sentences[i + 1]
                 if i + 1 < len(self.sentences) and ids[i + 1] == ids[i] else None)
        return before, after

    def split(self, holdout: float = 0.1, seed: int = 0) -> tuple[Corpus, Corpus]:
        """(train, held-out): a ``holdout`` fraction of the documents (at least one), drawn with
        ``numpy.random.default_rng(seed)``, goes to the held-out corpus, whole."""
        if not 0.0 < holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
        num_docs = len(self.doc_names)
        if num_docs < 2:
            raise ValueError(f"need at least 2 documents to split, got {num_docs}")
        count = min(max(1, round(holdout * num_docs)), num_docs - 1)
        held = np.zeros(num_docs, dtype=bool)
        held[np.random.default_rng(seed).choice(num_docs, count, replace=False)] = True
        return self._subset(~held), self._subset(held)

    def _subset(self, keep_docs: np.ndarray) -> Corpus:
        docs = np.flatnonzero(keep_docs)
        renumber = np.full(len(self.doc_names), -1, dtype=np.int64)
        renumber[docs] = np.arange(len(docs))
        mask = keep_docs[self.doc_ids]
        return Corpus([s for s, m in zip(self.sentences, mask, strict=True) if m],
                      renumber[self.doc_ids[mask]], [self.doc_names[d] for d in docs])

    @classmethod
    def from_documents(cls, documents: Sequence[tuple[str, str]], min_words: int = 3) -> Corpus:
        """A corpus from ``(name, text)`` documents, each split with :func:`split_sentences`."""
        sentences: list[str] = []
        doc_ids: list[int] = []
        names: list[str] = []
        for name, text in documents:
            if not isinstance(text, str):
                raise TypeError(f"document {name!r} is {type(text).__name__}, not str")
            found = split_sentences(text, min_words=min_words)
            if not found:
                continue
            sentences.extend(found)
            doc_ids.extend([len(names)] * len(found))
            names.append(str(name))
        return cls(sentences, np.asarray(doc_ids, dtype=np.int64), names)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _paragraphs(text: str) -> list[list[str]]:
    blocks: list[list[str]] = [[]]
    for line in text.expandtabs(8).splitlines():
        if line.strip():
            blocks[-1].append(line.rstrip())
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def _is_code(block: list[str], base: int) -> bool:
    first = block[0].lstrip()
    return (min(_indent(line) for line in block) > base + 1 or first.startswith(">>>")
            or any("::=" in line for line in block))


def split_sentences(text: str, *, min_words: int = 3) -> list[str]:
    """The prose sentences of one document, in order (the rules in the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    blocks = _paragraphs(text)
    prose = [b for b in blocks if not b[0].lstrip().startswith(">>>")]
    base = min((_indent(line) for b in prose for line in b), default=0)
    out: list[str] = []
    for block in blocks:
        lines = [line for line in block if not _UNDERLINE.match(line)]
        if not lines:
            continue
        if len(lines) < len(block):  # a heading: its title line is one sentence
            out.append(" ".join(line.strip() for line in lines))
            continue
        if _is_code(lines, base):
            continue
        joined = " ".join(_BULLET.sub("", line.strip()) if i == 0 else line.strip()
                          for i, line in enumerate(lines))
        start = 0
        for end in _SENTENCE_END.finditer(joined):
            out.append(joined[start:end.start(1)])
            start = end.end(1)
        out.append(joined[start:])
    return [s for s in out if len(_WORD.findall(s)) >= min_words]


def _topic_documents() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [(name, topics[name]) for name in sorted(topics)]


def stdlib_sources(packages: Sequence[str] | None = None) -> list[Path]:
    """The standard library's ``.py`` files, sorted by relative path, outside
    :data:`EXCLUDED_PACKAGES`; only the top-level modules/packages in ``packages`` if given."""
    root = Path(sysconfig.get_paths()["stdlib"])
    wanted = None if packages is None else set(packages)
    found = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        top = parts[0].removesuffix(".py")
        if any(part in EXCLUDED_PACKAGES for part in parts[:-1]) or top in EXCLUDED_PACKAGES:
            continue
        if wanted is None or top in wanted:
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _docstrings(tree: ast.Module, module: str) -> list[tuple[str, str]]:
    """Docstrings of a module and its classes and functions, depth first in source order."""
    out: list[tuple[str, str]] = []

    def visit(node: ast.AST, name: str) -> None:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        if doc:
            out.append((name, doc))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{name}.{child.name}")

    visit(tree, module)
    return out


def _docstring_documents(packages: Sequence[str] | None) -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[tuple[str, str]] = []
    for path in stdlib_sources(packages):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old sources
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError):  # a template file that is not Python
                continue
        docs.extend(_docstrings(tree, module.removesuffix(".__init__")))
    return docs


PACKAGE_EXCLUDED: frozenset[str] = frozenset({
    "test", "tests", "testing", "_vendor", "vendor", "vendored", "__pycache__",
})
"""Folders of installed packages left out of :func:`general_documents`: test suites and
vendored copies of other packages."""

HELD_OUT_FRACTION = 0.05
"""The share of modules (and reference topics) :func:`general_documents` keeps out of the
general encoder's training text, chosen by a stable hash of the module name."""


def held_out_module(module: str, fraction: float = HELD_OUT_FRACTION) -> bool:
    """Whether ``module`` (a dotted module name, or a topic name) is held out: its stable
    string hash (:func:`~jaxembed.encoding.hashing.hash_strings`) as a fraction of
    :math:`2^{64}` is below ``fraction`` — the same on every machine."""
    from jaxembed.encoding.hashing import hash_strings

    h = int(hash_strings(np.array([module], dtype=object))[0])
    return h / 2.0**64 < fraction


def package_sources(root: str | Path | None = None) -> list[tuple[str, Path]]:
    """``(module, path)`` of every ``.py`` file of the installed packages (``purelib``), sorted
    by path, outside :data:`PACKAGE_EXCLUDED` folders."""
    root = Path(sysconfig.get_paths()["purelib"] if root is None else root)
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if any(part in PACKAGE_EXCLUDED or part.endswith((".dist-info", ".egg-info"))
               for part in parts[:-1]):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        found.append((module.removesuffix(".__init__"), path))
    return sorted(found, key=lambda item: item[1].relative_to(root).as_posix())


def _file_docstrings(path: Path, module: str) -> list[tuple[str, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old sources
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):  # a template, not Python; unreadable
            return []
    return _docstrings(tree, module)


def general_documents(*, packages: bool = True, fraction: float = HELD_OUT_FRACTION,
                      limit: int | None = None
                      ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(training, held_out)`` documents: the largest text available offline.

    The reference topics, the standard library's docstrings and (``packages``) the docstrings
    of every installed package (:func:`package_sources`), each docstring one document named
    ``module.qualname``. Whole modules (and topics) whose :func:`held_out_module` is true go to
    ``held_out`` — text the general encoder never trains on, for measuring it on unseen
    documents. ``limit`` keeps the first ``limit`` source files of each kind (tests).
    """
    training: list[tuple[str, str]] = []
    held: list[tuple[str, str]] = []
    for name, text in _topic_documents():
        (held if held_out_module(name, fraction) else training).append((name, text))
    stdlib_root = Path(sysconfig.get_paths()["stdlib"])
    sources = [(".".join(p.relative_to(stdlib_root).with_suffix("").parts)
                .removesuffix(".__init__"), p) for p in stdlib_sources()][:limit]
    if packages:
        sources += package_sources()[:limit]
    for module, path in sources:
        out = held if held_out_module(module, fraction) else training
        out.extend(_file_docstrings(path, module))
    return training, held


def builtin_corpus(sources: Sequence[str] = ("topics", "docstrings"), *,
                   packages: Sequence[str] | None = None, min_words: int = 3) -> Corpus:
    """The corpus that ships with CPython: reference topics and standard-library docstrings.

    Args:
        sources: any of ``"topics"`` and ``"docstrings"``, in the order they appear.
        packages: the top-level standard-library modules read for ``"docstrings"`` (``None``:
            all but :data:`EXCLUDED_PACKAGES`).
        min_words: drop sentences with fewer words.
    """
    if isinstance(sources, str):
        sources = (sources,)
    documents: list[tuple[str, str]] = []
    for source in sources:
        if source == "topics":
            documents.extend(_topic_documents())
        elif source == "docstrings":
            documents.extend(_docstring_documents(packages))
        else:
            raise ValueError(f"unknown source {source!r}; choose 'topics' or 'docstrings'")
    return Corpus.from_documents(documents, min_words=min_words)


# --- generated noisy texts ----------------------------------------------------------------------
_SUBJECTS = ("the game", "my phone", "this album", "the new movie", "our team", "the concert",
             "the weather", "my flight", "the election", "this coffee", "the traffic",
             "the update", "her book", "the market", "the show", "his car")
_VERBS = ("is", "was", "looks", "seems", "sounds", "feels", "got", "became")
_ADJECTIVES = ("amazing", "terrible", "awesome", "boring", "crazy", "beautiful", "broken",
               "delayed", "perfect", "weird", "expensive", "hilarious", "slow", "brilliant")
_TAILS = ("today", "tonight", "again", "right now", "this morning", "lol", "#fail", "#win",
          "so far", "as usual", "for real", "this week")
_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _typo(text: str, rng: np.random.Generator) -> str:
    if len(text) < 2:
        return text
    i = int(rng.integers(0, len(text) - 1))
    kind = int(rng.integers(0, 4))
    if kind == 0:  # drop
        return text[:i] + text[i + 1:]
    if kind == 1:  # double
        return text[:i] + text[i] + text[i:]
    if kind == 2:  # swap with the next
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    row = next((r for r in _KEYBOARD if text[i] in r), None)
    if row is None:
        return text
    j = row.index(text[i])
    near = row[max(j - 1, 0):j] + row[j + 1:j + 2]
    return text[:i] + near[int(rng.integers(0, len(near)))] + text[i + 1:]


def noisy_texts(num_groups: int, per_group: int, seed: int = 0, *,
                typos: int = 2) -> tuple[list[str], np.ndarray]:
    """``(texts, groups)``: ``num_groups`` templated messages, ``per_group`` noisy copies each.

    A message is ``"<subject> <verb> <adjective> <tail>"`` (distinct across groups); each copy
    gets ``0..typos`` random typos and, half the time, upper-case first letters. ``groups`` is
    ``int64[num_groups * per_group]``; texts come group by group.
    """
    if num_groups < 1 or per_group < 1:
        raise ValueError(f"num_groups and per_group must be >= 1, got {num_groups}, {per_group}")
    total = len(_SUBJECTS) * len(_VERBS) * len(_ADJECTIVES) * len(_TAILS)
    if num_groups > total:
        raise ValueError(f"num_groups={num_groups} exceeds the {total} distinct messages")
    rng = np.random.default_rng(seed)
    codes = rng.choice(total, num_groups, replace=False)
    texts: list[str] = []
    for code in codes.tolist():
        code, tail = divmod(code, len(_TAILS))
        code, adjective = divmod(code, len(_ADJECTIVES))
        subject, verb = divmod(code, len(_VERBS))
        message = (f"{_SUBJECTS[subject]} {_VERBS[verb]} {_ADJECTIVES[adjective]} "
                   f"{_TAILS[tail]}")
        for _ in range(per_group):
            text = message
            for _ in range(int(rng.integers(0, typos + 1))):
                text = _typo(text, rng)
            if rng.random() < 0.5:
                text = " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
            texts.append(text)
    groups = np.repeat(np.arange(num_groups, dtype=np.int64), per_group)
    return texts, groups


_SYLLABLES = ("ka", "zo", "mi", "tu", "re", "pa", "lo", "ni", "su", "ve", "do", "gi")
_FILLER = ("the", "a", "this", "that", "we", "it", "is", "was", "then", "and", "so", "of")


def _pseudo_word(i: int) -> str:
    out = ""
    for _ in range(3):
        i, r = divmod(i, len(_SYLLABLES))
        out += _SYLLABLES[r]
    return out


def association_pairs(num_topics: int, pairs_per_topic: int, seed: int = 0, *,
                      words_per_topic: int = 3) -> tuple[list[str], list[str], np.ndarray]:
    """``(statements, responses, topics)``: ``num_topics * pairs_per_topic`` pairs.

    Topic ``t`` owns ``words_per_topic`` cue and as many answer pseudo-words (distinct across
    topics). A statement is four filler words around one cue word of its topic, its response
    four filler words around one answer word, each drawn with ``numpy.random.default_rng(seed)``.
    """
    if num_topics < 1 or pairs_per_topic < 1 or words_per_topic < 1:
        raise ValueError("num_topics, pairs_per_topic and words_per_topic must be >= 1")
    if 2 * num_topics * words_per_topic > len(_SYLLABLES) ** 3:
        raise ValueError(f"too many topic words: {2 * num_topics * words_per_topic}")
    rng = np.random.default_rng(seed)
    words = [_pseudo_word(i) for i in range(2 * num_topics * words_per_topic)]
    statements, responses = [], []
    for t in range(num_topics):
        base = 2 * t * words_per_topic
        cues, answers = words[base: base + words_per_topic], words[base + words_per_topic:
                                                                   base + 2 * words_per_topic]
        for _ in range(pairs_per_topic):
            for out, pool in ((statements, cues), (responses, answers)):
                filler = [_FILLER[j] for j in rng.integers(0, len(_FILLER), 4)]
                filler.insert(int(rng.integers(0, 5)), pool[int(rng.integers(0, len(pool)))])
                out.append(" ".join(filler))
    topics = np.repeat(np.arange(num_topics, dtype=np.int64), pairs_per_topic)
    return statements, responses, topics
