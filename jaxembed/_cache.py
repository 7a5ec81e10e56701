"""Where jaxembed keeps what it builds once: ``$XDG_CACHE_HOME/jaxembed`` (else
``~/.cache/jaxembed``) — the general text encoder and, for the command line, XLA's compiled
programs.

**Compiled programs.** Every ``jaxembed`` command turns on JAX's persistent compilation cache
in ``CACHE/xla`` (:func:`use_compilation_cache`), so a program compiled once — the training
step of a model on a schema, the update step a daily ``jaxembed update`` runs, the scoring
function — is loaded from disk by the next process instead of compiled again. It is set
through JAX's own environment variables before JAX starts, so an explicit
``JAX_COMPILATION_CACHE_DIR`` wins, and ``JAXEMBED_COMPILATION_CACHE=0`` turns it off. In
Python, ``jax.config.update("jax_compilation_cache_dir", path)`` does the same.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | os.PathLike | None = None,
               environ: dict[str, str] | None = None) -> Path:
    """``cache_dir``, else ``$XDG_CACHE_HOME/jaxembed``, else ``~/.cache/jaxembed``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxembed"


def use_compilation_cache(environ: dict[str, str] | None = None) -> str | None:
    """Point JAX's persistent compilation cache at ``CACHE/xla`` (every program, however
    quick to compile) unless ``JAXEMBED_COMPILATION_CACHE=0`` or the user set
    ``JAX_COMPILATION_CACHE_DIR``; returns the folder in use (None: off). Takes effect when
    JAX is imported after it."""
    env = os.environ if environ is None else environ
    if env.get("JAXEMBED_COMPILATION_CACHE", "").lower() in ("0", "false", "no", "off"):
        return None
    if "JAX_COMPILATION_CACHE_DIR" not in env:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_root(environ=env) / "xla")
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return env["JAX_COMPILATION_CACHE_DIR"]
