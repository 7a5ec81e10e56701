"""``jaxembed search`` and ``jaxembed index``: Talk-to-Books style sentence search.

::

    jaxembed search "how do I read a file line by line" -k 5
    jaxembed index notes/*.txt --out my-index
    jaxembed search "what happens on timeout" --index my-index

Both start from the general encoder (:meth:`jaxembed.text.retriever.Retriever.pretrained`:
trained once on the documentation the standard library and the installed packages ship,
cached under ``~/.cache/jaxembed``, or ``--cache-dir``; ``$XDG_CACHE_HOME`` is honoured).
``search`` without ``--index`` uses an index of the built-in corpus (CPython's reference text
and standard-library docstrings, :func:`jaxembed.text.corpus.builtin_corpus`) encoded by it,
cached too; ``index`` fine-tunes it on the files when they hold enough sentence pairs.
``--ranking hybrid|dense|bm25`` chooses the score (default hybrid: dense and BM25, each
standardized per query, summed with a tuned weight); a sentence repeated in the corpus is
shown once. Each hit is printed with its score, its document, and the sentences before and
after it.

``add_search_parser`` / ``add_index_parser`` register the subcommands on an ``argparse``
subparsers object; each sets ``handler`` (``handler(args) -> exit code``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, TextIO

from jaxembed.commands import _args
from jaxembed.samples import sample_path

__all__ = [
    "add_index_parser",
    "add_search_parser",
    "builtin_index_dir",
    "print_hits",
    "run_index",
    "run_search",
]

TRAINING_DEFAULTS = {"dim": 256, "buckets": 2**17, "epochs": 2, "batch_size": 1024,
                     "dropout": 0.5, "seed": 0}
"""The general encoder's options (``jaxembed.text.retriever.GeneralConfig``'s defaults)."""


def _add_training_options(p: argparse.ArgumentParser) -> None:
    d = TRAINING_DEFAULTS
    p.add_argument("--ranking", choices=("hybrid", "dense", "bm25"), default="hybrid",
                   help="hybrid: dense and BM25 scores, standardized and summed with a tuned "
                   "weight; dense: the dual encoder alone; bm25: Okapi BM25 alone")
    p.add_argument("--cache-dir", metavar="DIR", type=_args.output_dir,
                   help="where the general encoder and the built-in index are cached "
                   "(default ~/.cache/jaxembed)")
    p.add_argument("--dim", type=_args.positive_int, default=d["dim"],
                   help=f"embedding size, floats per sentence (default {d['dim']})")
    p.add_argument("--buckets", type=_args.positive_int, default=d["buckets"],
                   help=f"hashed n-gram buckets, table rows (default {d['buckets']})")
    p.add_argument("--epochs", type=_args.positive_int, default=d["epochs"],
                   help=f"passes over the sentence pairs (default {d['epochs']})")
    p.add_argument("--batch-size", type=_args.int_at_least(2), default=d["batch_size"],
                   help=f"pairs per step, the in-batch negatives (default {d['batch_size']})")
    p.add_argument("--dropout", type=_args.float_in(0.0, 1.0, high_open=True),
                   default=d["dropout"],
                   help=f"n-gram dropout while training, in [0, 1) (default {d['dropout']})")
    p.add_argument("--seed", type=_args.nonneg_int, default=d["seed"],
                   help="random seed (default 0)")


def add_search_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``search QUERY [--index DIR] [-k K] [--ranking R]`` on ``subparsers``."""
    p = subparsers.add_parser(
        "search", help="find the sentences that answer or follow a query",
        description="Semantic search: prints the k best sentences for QUERY, each with the "
        "sentences around it, ranked by a general dual encoder combined with BM25 (see "
        "--ranking). Without --index, searches the built-in corpus (CPython's "
        "documentation); the general encoder (trained once on the documentation the "
        "standard library and the installed packages ship) and the index are built and "
        "cached on first use (minutes). The training options configure the general encoder.",
        epilog='try: jaxembed search "how do I read a file line by line" -k 3   (the built-in '
        "corpus; the first call builds and caches the general encoder and the index)")
    p.add_argument("query", nargs="+", metavar="QUERY", type=_args.nonempty_text,
                   help="the query text")
    p.add_argument("--index", metavar="DIR", type=_args.existing_dir,
                   help="an index written by 'jaxembed index' (default: the built-in corpus)")
    p.add_argument("-k", type=_args.positive_int, default=5, help="results to show (default 5)")
    p.add_argument("--approx", action="store_true",
                   help="approximate top-k (lax.approx_max_k; fast on TPUs; --ranking dense)")
    _add_training_options(p)
    p.set_defaults(handler=run_search, check=check_search)
    return p


def add_index_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``index FILES... --out DIR`` on ``subparsers``."""
    p = subparsers.add_parser(
        "index", help="index text files for sentence search",
        description="Splits each UTF-8 text file (one document each) into sentences and writes "
        "an index folder for 'jaxembed search --index'. The encoder starts from the general "
        "one (built and cached on first use) and is fine-tuned on the files' (sentence, next "
        "sentence) pairs when they hold at least --min-pairs of them; --from-scratch trains "
        "on the files alone.",
        epilog=f"try: jaxembed index {sample_path('embeddings.txt')} --out my-index "
        "--from-scratch --dim 32 --epochs 2 --batch-size 8   (a few shipped paragraphs), then: "
        'jaxembed search "how are large tables split" --index my-index -k 2')
    p.add_argument("files", nargs="+", metavar="FILES", type=_args.text_file,
                   help="UTF-8 text files")
    p.add_argument("--out", required=True, metavar="DIR", type=_args.output_dir,
                   help="the index folder to write")
    p.add_argument("--fine-tune-epochs", type=_args.nonneg_int, default=3,
                   help="fine-tuning passes over the files' pairs (0: none)")
    p.add_argument("--min-pairs", type=_args.positive_int, default=256,
                   help="fine-tune only with at least this many pairs")
    p.add_argument("--from-scratch", action="store_true",
                   help="train a new encoder on the files alone (the training options)")
    _add_training_options(p)
    p.set_defaults(handler=run_index)
    return p


def general_config(args: argparse.Namespace) -> Any:
    """The general encoder's :class:`~jaxembed.text.retriever.GeneralConfig` from the options
    (hidden width twice the embedding size, as by default)."""
    from jaxembed.text.retriever import GeneralConfig

    return GeneralConfig(dim=args.dim, num_buckets=args.buckets, hidden=2 * args.dim,
                         epochs=args.epochs, batch_size=args.batch_size,
                         ngram_dropout=args.dropout, seed=args.seed)


def _general_retriever(args: argparse.Namespace) -> Any:
    from jaxembed.text.retriever import Retriever

    return Retriever.pretrained(args.cache_dir, config=general_config(args), progress=True)


def _scratch_retriever(corpus: Any, args: argparse.Namespace) -> Any:
    import jax

    from jaxembed.text.retrieval import train_dual_encoder
    from jaxembed.text.retriever import Retriever, unique_pairs

    statements, responses = unique_pairs(corpus)
    if len(statements) < 2:
        raise _args.UsageError(f"the text has {len(statements)} pair(s) of consecutive "
                               "sentences; at least 2 are needed to train")
    model, _ = train_dual_encoder(statements, responses, jax.random.key(args.seed),
                                  num_buckets=args.buckets, dim=args.dim, epochs=args.epochs,
                                  batch_size=args.batch_size, ngram_dropout=args.dropout,
                                  progress=True)
    return Retriever(model)


CACHE_FORMAT = 3
"""Bumped when the saved index changes form (2: the model's parameters are an orbax
checkpoint; 3: built from the general encoder, with the hybrid weight), so an older cache is
rebuilt rather than misread."""


def builtin_index_dir(cache_dir: str | os.PathLike | None, args: argparse.Namespace) -> Path:
    """The cache folder of the built-in index for these training options and this Python."""
    from jaxembed._cache import cache_root

    options = {name: getattr(args, name) for name in TRAINING_DEFAULTS}
    options["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    options["format"] = CACHE_FORMAT
    options["general"] = general_config(args).key()
    digest = hashlib.blake2b(json.dumps(options, sort_keys=True).encode(),
                             digest_size=6).hexdigest()
    return cache_root(cache_dir) / f"search-builtin-{digest}"


def _builtin_index(args: argparse.Namespace) -> Any:
    from jaxembed.text import corpus as corpus_module
    from jaxembed.text.retrieval import SentenceIndex

    folder = builtin_index_dir(args.cache_dir, args)
    if (folder / "sentences.json").is_file():
        return SentenceIndex.load(folder)
    retriever = _general_retriever(args)
    print(f"building the built-in index in {folder} (once)", file=sys.stderr)
    index = SentenceIndex(retriever.model, corpus_module.builtin_corpus(),
                          weight=retriever.weight,
                          stop_words=retriever.stop_words)
    index.save(folder)
    print(f"wrote the built-in index to {folder}", file=sys.stderr)
    return index


def print_hits(hits: list[Any], corpus: Any, out: TextIO | None = None,
               width: int = 100) -> None:
    """Print each hit (to ``out``, default stdout): rank, score, document, then the sentence
    with its neighbours."""
    out = sys.stdout if out is None else out
    for rank, hit in enumerate(hits, start=1):
        doc = corpus.doc_names[int(corpus.doc_ids[hit.index])]
        print(f"{rank}. [{hit.score:.3f}] {doc}", file=out)
        for label, text in (("before", hit.before), ("  >>  ", hit.sentence),
                            ("after ", hit.after)):
            if text is not None:
                print(textwrap.shorten(f"   {label} {text}", width=width, placeholder=" ..."),
                      file=out)


def run_search(args: argparse.Namespace) -> int:
    """Handler of ``jaxembed search``."""
    from jaxembed.text.retrieval import SentenceIndex

    index = SentenceIndex.load(args.index) if args.index else _builtin_index(args)
    query = " ".join(args.query)
    (hits,) = index.search([query], k=args.k, ranking=args.ranking, approx=args.approx)
    print_hits(hits, index.corpus)
    return 0


def run_index(args: argparse.Namespace) -> int:
    """Handler of ``jaxembed index``."""
    from jaxembed.text.corpus import Corpus
    from jaxembed.text.retrieval import SentenceIndex

    documents = []
    for name in args.files:
        try:
            documents.append((name, Path(name).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as err:
            raise _args.UsageError(f"cannot read {name}: {err}") from err
    corpus = Corpus.from_documents(documents)
    if not len(corpus):
        raise _args.UsageError("the files hold no sentence of at least 3 words")
    if args.from_scratch:
        retriever = _scratch_retriever(corpus, args)
    else:
        import jax

        retriever = _general_retriever(args).fit(
            documents, epochs=args.fine_tune_epochs, min_pairs=args.min_pairs,
            key=jax.random.key(args.seed), progress=True)
    index = SentenceIndex(retriever.model, corpus, weight=retriever.weight,
                          stop_words=retriever.stop_words)
    index.save(args.out)
    print(f"indexed {len(corpus)} sentences from {len(corpus.doc_names)} file(s) into "
          f"{os.path.abspath(args.out)}", file=sys.stderr)
    return 0


def check_search(args: argparse.Namespace) -> None:
    """Options ``search --index`` cannot honour: an index keeps the options it was built
    with, and the cache holds only the built-in index."""
    if args.index:
        ignored = sorted(_args.given(args) & {*TRAINING_DEFAULTS, "cache_dir"})
        if ignored:
            names = ", ".join("--" + name.replace("_", "-") for name in ignored)
            verb = "applies" if len(ignored) == 1 else "apply"
            raise _args.UsageError(f"{names} only {verb} to the built-in index; {args.index!r} "
                                   "was built with its own options (drop --index or them)")
