"""Checked mode: id range checks that raise under ``jit`` too.

Eager calls on concrete ids already raise ``IndexError`` naming the bad id. Inside ``jit`` the
ids are traced, so by default a lookup turns an out-of-range id into a row of NaN (never a
silently wrong row, as JAX's default index clamping would give). :func:`checked` compiles a
function with :mod:`jax.experimental.checkify` so that the same condition raises a
``JaxRuntimeError`` naming the id and its flat position, at the cost of one device-to-host
flag per call::

    lookup_checked = je.checked(lambda table, ids: je.lookup(table, ids))
    lookup_checked(table, ids)        # raises if any id is outside [-1, V)
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import checkify

_CHECKED = contextvars.ContextVar("jaxembed_checked", default=False)


def checks_enabled() -> bool:
    """True while a function wrapped by :func:`checked` is being traced."""
    return _CHECKED.get()


def check_ids(ids: jax.Array, valid: jax.Array, num_embeddings: int, what: str) -> None:
    """Inside :func:`checked`, fail when any ``valid`` entry is false (naming the first)."""
    if not checks_enabled() or valid.size == 0:
        return
    flat_valid = valid.reshape(-1)
    first = jnp.argmin(flat_valid)
    checkify.check(
        jnp.all(flat_valid),
        f"{what}: id {{bad}} at flat position {{pos}} is out of range for a table of "
        f"{num_embeddings} rows (valid ids: 0..{num_embeddings - 1}, -1 = padding)",
        bad=ids.reshape(-1)[first],
        pos=first,
    )


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jit``-compile ``fn`` with its id range checks turned into runtime errors.

    Positional arguments are traced; bind static configuration with ``functools.partial``.
    The returned function raises ``jax.experimental.checkify.JaxRuntimeError`` when a lookup
    inside ``fn`` meets an id outside ``[-1, num_embeddings)``.
    """

    def traced(*args: Any) -> Any:
        token = _CHECKED.set(True)
        try:
            return fn(*args)
        finally:
            _CHECKED.reset(token)

    compiled = jax.jit(checkify.checkify(traced, errors=checkify.user_checks))

    @functools.wraps(fn)
    def run(*args: Any) -> Any:
        error, out = compiled(*args)
        error.throw()
        return out

    return run
