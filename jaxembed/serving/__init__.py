"""Serving: a fitted run as a ``jax.export``-ed function plus its schema and vocabularies.

::

    import jaxembed as je
    je.serving.export("run/", "served/")        # or: jaxembed export --run run/ --out served/
    score = je.serving.load("served/")
    score([{"I1": 3, ..., "C26": "a1b2c3d4"}])  # -> float64[n] click probabilities

:func:`load` needs none of the training code (no model class, optimizer or checkpoint
library): the served folder holds the serialized function, the parameters as ``.npy`` files,
the schema and the vocabularies (:mod:`jaxembed.serving.folder`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from jaxembed.serving.folder import FORMAT, ServingError
from jaxembed.serving.served import ServedModel, load

DEFAULT_PLATFORMS = ("cpu", "cuda")


def export(run: Any, out: str | os.PathLike, *,
           platforms: Sequence[str] = DEFAULT_PLATFORMS) -> str:
    """Write the served folder of ``run`` (a fitted :class:`~jaxembed.train.runs.Run` or its
    folder) to ``out`` and return ``out``: the prediction function serialized with
    ``jax.export`` for a symbolic batch size, the parameters as ``.npy`` files, the schema and
    the vocabularies. Written beside ``out`` and renamed into place when complete; an
    existing ``out`` is replaced only if it is an earlier export (or empty). ``platforms``:
    what the function is lowered for (any of ``cpu``, ``cuda``, ``rocm``, ``tpu``).

    The training code is imported here, not by :func:`load`.
    """
    from jaxembed.serving.exporter import export as _export

    return _export(run, out, platforms=platforms)


__all__ = ["DEFAULT_PLATFORMS", "FORMAT", "ServedModel", "ServingError", "export", "load"]
