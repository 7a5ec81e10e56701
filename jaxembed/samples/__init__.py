"""Small inputs shipped with jaxembed, so that every command can be tried without data.

* ``karate.edgelist`` — Zachary's karate club, 34 nodes and 78 edges, ``u v`` per line
  (from ``networkx.karate_club_graph``), and ``karate.labels`` — the club each member
  joined (``node club`` per line): ``jaxembed node2vec``;
* ``topics.txt`` — 1,000 generated sentences on 8 planted topics
  (:func:`jaxembed.bench.word2vec.topic_corpus`, seed 0): ``jaxembed word2vec``;
* ``embeddings.txt`` — a few paragraphs of plain English prose: ``jaxembed index``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NAMES", "sample_path"]

NAMES = ("karate.edgelist", "karate.labels", "topics.txt", "embeddings.txt")


def sample_path(name: str) -> str:
    """The absolute path of the shipped sample ``name`` (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise ValueError(f"no sample named {name!r}; the samples are {', '.join(NAMES)}")
    return str(Path(__file__).resolve().parent / name)
