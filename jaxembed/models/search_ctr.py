r"""The eight-layer search CTR model over a schema's fields (``--model search_ctr``).

The seed's architecture (:class:`jaxembed.nn.ctr.SearchCTR`) on the own-data path. A
*domain* is a group of fields (``[options] domains = {item = ["item", "shop"], ...}`` in the
schema; a field in no domain is a domain of its own). Per domain ``d``:

    (2) sparse inner product   e_d = Σ_{f ∈ d} pool_f(x_f @ W_f)     (one width per domain)
    (3), (4) fully connected   16, then 32, ReLU

then (5) the concatenation of the domains, (6)–(8) ReLU layers 64, 64 and a 1-unit output.
The wide part (per-id weights of every field and the hashed crosses,
:meth:`~jaxembed.nn.fields.FieldEmbeddings.first_order`) and the statistics tower (the dense
features through two hidden layers, tanh then sigmoid, and a 1-unit output) add their logits:
:math:`z = z_\mathrm{deep} + z_\mathrm{wide} + z_\mathrm{stats}`.

With every field of a domain in the ``sum`` combiner, ``e_d`` is the multi-hot product of the
domain's whole bag of ids, as in the seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxembed.models.inputs import ModelInputs
from jaxembed.models.parts import widths
from jaxembed.nn.ctr import MLP, StatsTower
from jaxembed.nn.fields import FieldEmbeddings, Rows, module_rows


def resolve_domains(inputs: ModelInputs, domains: Mapping[str, Sequence[str]] | None
                    ) -> dict[str, tuple[str, ...]]:
    """The domains in order, each field in exactly one (the unnamed ones alone); a field
    named twice, an unknown field or a domain of mixed widths is a ValueError naming it."""
    names = [f.name for f in inputs.fields]
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for domain, fields in (domains or {}).items():
        fields = tuple(fields)
        if not fields:
            raise ValueError(f"domain {domain!r} has no fields")
        for name in fields:
            if name not in names:
                raise ValueError(f"domain {domain!r}: no embedded field {name!r} (fields: "
                                 f"{', '.join(names)})")
            if name in seen:
                raise ValueError(f"field {name!r} is in domains {seen[name]!r} and {domain!r}")
            seen[name] = domain
        dims = {inputs.dim(name) for name in fields}
        if len(dims) != 1:
            raise ValueError(f"domain {domain!r} mixes embedding widths "
                             f"{ {n: inputs.dim(n) for n in fields} }; give its fields one dim")
        out[str(domain)] = fields
    for name in names:
        if name not in seen:
            out[name] = (name,)
    return out


class SearchCTR(nnx.Module):
    """The search CTR model on a schema; ``domains`` (default: the schema's ``[options]
    domains``) groups the fields, ``behavior`` and ``prediction`` are the FC widths."""

    def __init__(self, inputs: ModelInputs, *, rngs: nnx.Rngs,
                 domains: Mapping[str, Sequence[str]] | None = None,
                 behavior: Sequence[int] = (16, 32), prediction: Sequence[int] = (64, 64),
                 stats: Sequence[int] = (32, 16), init_std: float = 0.01) -> None:
        self.inputs = inputs
        self.domains = tuple(resolve_domains(inputs, domains).items())  # static: hashable
        behavior = widths(behavior, "behavior", allow_empty=False)
        hidden = widths(prediction, "prediction")
        self.fields = FieldEmbeddings(inputs, rngs=rngs, linear=True, wide=True,
                                      init_std=init_std)
        self.behavior = nnx.Dict({
            name: MLP(inputs.dim(fields[0]), behavior, [jax.nn.relu] * len(behavior),
                      rngs=rngs)
            for name, fields in self.domains})
        self.prediction = MLP(behavior[-1] * len(self.domains), (*hidden, 1),
                              [jax.nn.relu] * len(hidden) + [None], rngs=rngs)
        self.has_stats = inputs.num_dense > 0
        self.stats = nnx.Dict({"tower": StatsTower(inputs.num_dense,
                                                   widths=widths(stats, "stats"), rngs=rngs)}
                              if self.has_stats else {})

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(module_rows(self, batch), batch)

    def head(self, rows: Rows, batch: Mapping[str, Any]) -> jax.Array:
        """The logits ``f[B]``."""
        parts = []
        for name, fields in self.domains:
            pooled = sum(self.fields.pooled(rows, batch, f) for f in fields)
            parts.append(self.behavior[name](pooled))
        logit = self.prediction(jnp.concatenate(parts, axis=-1))[:, 0]
        logit = logit + self.fields.first_order(rows, batch)
        if self.has_stats:
            logit = logit + self.stats["tower"](jnp.asarray(batch["dense"], jnp.float32))
        return logit
