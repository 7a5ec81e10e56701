"""Importing the optional peers that benchmarks compare against.

PecanPy imports ``nptyping``, which still reads NumPy 1.x aliases (``np.bool8``, ``np.int0``
...) that NumPy 2 removed, while JAX needs NumPy 2. Before importing it we point the missing
aliases at their NumPy 2 names; nothing of jaxembed uses them.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

_NUMPY1_ALIASES = {
    "bool8": np.bool_, "object0": np.object_, "int0": np.intp, "uint0": np.uintp,
    "void0": np.void, "str0": np.str_, "bytes0": np.bytes_, "float_": np.float64,
    "complex_": np.complex128, "unicode_": np.str_, "string_": np.bytes_,
    "longfloat": np.longdouble, "singlecomplex": np.complex64, "cfloat": np.complex128,
    "clongfloat": np.clongdouble, "longcomplex": np.clongdouble,
}


def import_pecanpy() -> ModuleType | None:
    """``pecanpy.pecanpy`` (the walk generators), or None when PecanPy is not installed."""
    for name, alias in _NUMPY1_ALIASES.items():
        if not hasattr(np, name):
            setattr(np, name, alias)
    try:
        from pecanpy import pecanpy
    except ImportError:
        return None
    return pecanpy


def import_gensim_word2vec() -> type | None:
    """``gensim.models.Word2Vec``, or None when gensim is not installed."""
    try:
        from gensim.models import Word2Vec
    except ImportError:
        return None
    return Word2Vec
