"""Support for the proofs of the model zoo: a model of random numbers without eager init.

:func:`random_model` builds a model's structure abstractly (``nnx.eval_shape``, so no
per-example eager initialization ops) and fills every parameter from a seeded numpy
generator; the proofs then run the model's fast forms inside one ``jax.jit`` per example.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxembed.models.inputs import ModelInputs


def random_model(cls: type, inputs: ModelInputs, seed: int, scale: float = 0.5,
                 tables: dict[str, np.ndarray] | None = None, **hyper: Any):
    """``(graphdef, state)`` of ``cls(inputs, **hyper)`` with every parameter drawn from
    :math:`\\mathcal N(0, \\mathrm{scale}^2)`; ``tables[name]`` (when given) replaces the
    embedding table ``name``."""
    abstract = nnx.eval_shape(lambda: cls(inputs, rngs=nnx.Rngs(0), **hyper))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)
    state = jax.tree.map(
        lambda s: jnp.asarray(scale * rng.normal(size=s.shape), jnp.float32), state)
    for name, table in (tables or {}).items():
        if name in state["fields"]["embedding"]:
            state["fields"]["embedding"][name].value = jnp.asarray(table)
    return graphdef, state
