r"""Click-through-rate models: the eight-layer search CTR network and Wide & Deep.

:class:`SearchCTR` predicts the click logit of a (user, query, item) impression from one bag
of ids per *domain* (item, shop, category, brand, query, user, ...). Its deep part has exactly
eight layers::

    (1) encoding      one Bags per domain (ids already hashed/coded host-side)
    (2) sparse inner product   per domain: EmbedBag, x_d @ W_d -> 16
    (3) fully connected        per domain: 16 -> 16, ReLU
    (4) fully connected        per domain: 16 -> 32, ReLU
    (5) concatenation          of the domains: 32 · D
    (6) fully connected        -> 64, ReLU
    (7) fully connected        -> 64, ReLU
    (8) fully connected        -> 1 (the deep logit)

and two more parts whose logits are added to the deep one:

* the **wide part** — a linear model over hashed ids and id crosses,
  :math:`z_\mathrm{wide} = \sum_{j \in \mathrm{wide}_b} v_j + c`, i.e. a one-column
  :class:`EmbedBag` with the ``sum`` combiner (:class:`WideLinear`);
* the **statistics tower** — an MLP over dense statistics features ``f[B, S]`` (historical
  CTRs, counts, prices): two hidden layers (tanh, then sigmoid) and a 1-unit output.

The logit is :math:`z = z_\mathrm{deep} + z_\mathrm{wide} + z_\mathrm{stats}` and the click
probability :math:`\sigma(z)`. Training uses :func:`sigmoid_cross_entropy`, equal (value and
gradient; ``proofs/proof_ctr_loss.py``) to the 2-class softmax cross-entropy over the logits
:math:`[0, z]` that two-output CTR networks use.

**Parameter paths** (for optimizer partitions, e.g. FTRL on the wide part, Adagrad on the
embeddings, Adam on the dense layers)::

    wide/kernel, wide/bias                                  the wide linear model
    behavior/<domain>/embed/embedding                       the embedding tables
    behavior/<domain>/dense/layers/<i>/{kernel,bias}        per-domain FC layers
    prediction/layers/<i>/{kernel,bias}                     the prediction network
    stats_tower/layers/<i>/{kernel,bias}                    the statistics tower

:class:`WideAndDeep` is the general form of Cheng et al. (2016).

References:
    Cheng, H.-T. et al. (2016). Wide & Deep Learning for Recommender Systems. DLRS.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxembed.bags import Bags
from jaxembed.lookup import COMBINERS, bag_lookup
from jaxembed.nn.embed import EmbedBag

__all__ = [
    "DEFAULT_DOMAINS",
    "MLP",
    "BehaviorNetwork",
    "SearchCTR",
    "StatsTower",
    "WideAndDeep",
    "WideLinear",
    "sigmoid_cross_entropy",
]

DEFAULT_DOMAINS: tuple[str, ...] = ("item", "shop", "category", "brand", "query", "user")
"""The behaviour domains of the search CTR model, in the usual order."""

Activation = Callable[[jax.Array], jax.Array]


def _widths(widths: Sequence[int], what: str) -> tuple[int, ...]:
    out = tuple(widths)
    for w in out:
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or w <= 0:
            raise ValueError(f"{what} must be positive integers, got {tuple(widths)!r}")
    return tuple(int(w) for w in out)


def _count(value: Any, what: str, *, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return int(value)


def sigmoid_cross_entropy(logits: Any, labels: Any) -> jax.Array:
    r"""Per-example logistic loss :math:`\ell(z, y) = \log(1 + e^{z}) - y z`, computed stably as
    :math:`\max(z, 0) - y z + \log(1 + e^{-|z|})`.

    This is the cross-entropy of :math:`\sigma(z)` against a label :math:`y \in [0, 1]`, and
    equals the 2-class softmax cross-entropy over the logits :math:`[0, z]`:
    :math:`-y \log \mathrm{softmax}_1 - (1-y) \log \mathrm{softmax}_0 = \log(1 + e^{z}) - y z`.
    Its gradient is :math:`\partial \ell / \partial z = \sigma(z) - y`. Finite for every finite
    :math:`z` (no :math:`\log 0`). Concrete labels outside ``[0, 1]`` raise ``ValueError``.
    """
    z = jnp.asarray(logits)
    y = jnp.asarray(labels)
    if z.shape != y.shape:
        raise ValueError(f"logits shape {tuple(z.shape)} != labels shape {tuple(y.shape)}")
    if not isinstance(y, jax.core.Tracer) and y.size:
        host = np.asarray(y, dtype=np.float64)
        bad = ~((host >= 0) & (host <= 1))
        if np.any(bad):
            pos = np.unravel_index(int(np.argmax(bad)), host.shape)
            raise ValueError(f"label {host[pos]} at position {pos} is outside [0, 1]")
    z = z.astype(jnp.promote_types(z.dtype, jnp.float32))
    y = y.astype(z.dtype)
    # logaddexp(0, z) = max(z, 0) + log1p(exp(-|z|)), with the derivative σ(z) even at z = 0.
    return jnp.logaddexp(jnp.zeros((), z.dtype), z) - y * z


class MLP(nnx.Module):
    """Fully connected layers ``layers[i]`` with ``activations[i]`` after each (``None``: no
    nonlinearity)."""

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int],
        activations: Sequence[Activation | None],
        *,
        rngs: nnx.Rngs,
    ) -> None:
        widths = _widths(widths, "widths")
        if len(activations) != len(widths):
            raise ValueError(f"{len(widths)} widths but {len(activations)} activations")
        sizes = (_count(in_features, "in_features", allow_zero=False), *widths)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
        self.activations = tuple(activations)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer, activation in zip(self.layers, self.activations, strict=True):
            x = layer(x)
            if activation is not None:
                x = activation(x)
        return x


class WideLinear(nnx.Module):
    r"""A linear model over a bag of hashed ids: :math:`z_b = \sum_l w_{bl}\, v_{i_{bl}} + c`.

    The one-column sparse inner product layer (``EmbedBag(V, 1, combiner="sum")`` plus a
    bias), named ``kernel``/``bias`` so the wide part's path holds no ``embed``. Weights start
    at zero, as a linear model trained by FTRL does.
    """

    def __init__(self, num_features: int, *, param_dtype: Any = jnp.float32) -> None:
        self.num_features = _count(num_features, "num_features", allow_zero=False)
        self.kernel = nnx.Param(jnp.zeros((self.num_features, 1), param_dtype))
        self.bias = nnx.Param(jnp.zeros((), param_dtype))

    def __call__(self, bags: Bags) -> jax.Array:
        return bag_lookup(self.kernel[...], bags, combiner="sum")[:, 0] + self.bias[...]


class BehaviorNetwork(nnx.Module):
    """One domain's behaviour network: sparse inner product layer, then FC layers.

    ``embed = EmbedBag(V, embed_dim, combiner)`` then ``dense`` (widths, ``activation`` after
    each).
    """

    def __init__(
        self,
        num_embeddings: int,
        *,
        embed_dim: int = 16,
        widths: Sequence[int] = (16, 32),
        combiner: str = "sum",
        activation: Activation = jax.nn.relu,
        rngs: nnx.Rngs,
    ) -> None:
        widths = _widths(widths, "behavior_widths")
        self.embed = EmbedBag(num_embeddings, embed_dim, combiner=combiner, rngs=rngs)
        self.dense = MLP(embed_dim, widths, [activation] * len(widths), rngs=rngs)
        self.out_features = widths[-1] if widths else embed_dim

    def __call__(self, bags: Bags) -> jax.Array:
        return self.dense(self.embed(bags))


class StatsTower(MLP):
    """MLP over dense statistics ``f[B, S]`` -> one logit per row ``(B,)``: hidden layers
    ``widths`` with ``activations`` (tanh, then sigmoid), then a 1-unit linear layer."""

    def __init__(
        self,
        num_stats: int,
        *,
        widths: Sequence[int] = (32, 16),
        activations: Sequence[Activation] = (jnp.tanh, jax.nn.sigmoid),
        rngs: nnx.Rngs,
    ) -> None:
        widths = _widths(widths, "stats_widths")
        if len(activations) != len(widths):
            raise ValueError(
                f"stats_widths has {len(widths)} layers but {len(activations)} activations"
            )
        self.num_stats = _count(num_stats, "num_stats", allow_zero=False)
        super().__init__(self.num_stats, (*widths, 1), [*activations, None], rngs=rngs)

    def __call__(self, stats: jax.Array) -> jax.Array:
        stats = jnp.asarray(stats)
        if stats.ndim != 2 or stats.shape[1] != self.num_stats:
            raise ValueError(f"stats must be [B, {self.num_stats}], got shape {tuple(stats.shape)}")
        return super().__call__(stats)[:, 0]


def _bags(batch: Mapping[str, Any], name: str) -> Bags:
    if name not in batch:
        raise ValueError(f"batch has no {name!r} entry (keys: {sorted(batch)})")
    value = batch[name]
    if not isinstance(value, Bags):
        raise TypeError(f"batch[{name!r}] must be a jaxembed.Bags, got {type(value).__name__}")
    return value


def _same_batch(sizes: dict[str, int]) -> int:
    distinct = set(sizes.values())
    if len(distinct) != 1:
        raise ValueError(f"batch entries disagree on the batch size: {sizes}")
    return distinct.pop()


def _check_vocab(table_sizes: Mapping[str, int], what: str, reserved: tuple[str, ...]) -> dict:
    if not isinstance(table_sizes, Mapping) or not table_sizes:
        raise ValueError(f"{what} must be a non-empty dict name -> vocabulary size")
    out = {}
    for name, size in table_sizes.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} names must be non-empty strings, got {name!r}")
        if name in reserved:
            raise ValueError(f"{what} name {name!r} is reserved for the batch's {name} entry")
        out[name] = _count(size, f"{what}[{name!r}]", allow_zero=False)
    return out


class SearchCTR(nnx.Module):
    r"""The eight-layer search CTR model, plus its wide part and statistics tower.

    ``model(batch) -> logits (B,)`` for ``batch = {domain: Bags, ..., "wide": Bags,
    "stats": f[B, S]}``; :math:`z = z_\mathrm{deep} + z_\mathrm{wide} + z_\mathrm{stats}`.

    Args:
        domains: name -> vocabulary size of each behaviour domain (e.g. ``{"item": 2**20,
            "shop": ...}``, see :data:`DEFAULT_DOMAINS`); concatenated in this order.
        num_stats: ``S``, the number of statistics features (0: no statistics tower).
        wide_size: the wide part's hashed feature space (0: no wide part).
        embed_dim: width of each domain's sparse inner product layer (16).
        behavior_widths: the per-domain FC widths after it ((16, 32)).
        prediction_widths: the hidden widths of the prediction network ((64, 64)); a 1-unit
            linear layer follows.
        stats_widths: the statistics tower's two hidden widths ((32, 16)).
        stats_activations: their nonlinearities ((tanh, sigmoid)).
        combiner: how a domain's bag is pooled ("sum": the multi-hot product itself).
        activation: the nonlinearity after every hidden FC layer of the deep part (ReLU).
        rngs: ``params`` stream for the initial weights.
    """

    def __init__(
        self,
        domains: Mapping[str, int],
        num_stats: int,
        wide_size: int,
        *,
        rngs: nnx.Rngs,
        embed_dim: int = 16,
        behavior_widths: Sequence[int] = (16, 32),
        prediction_widths: Sequence[int] = (64, 64),
        stats_widths: Sequence[int] = (32, 16),
        stats_activations: Sequence[Activation] = (jnp.tanh, jax.nn.sigmoid),
        combiner: str = "sum",
        activation: Activation = jax.nn.relu,
    ) -> None:
        domains = _check_vocab(domains, "domains", reserved=("wide", "stats"))
        if combiner not in COMBINERS:
            raise ValueError(f"combiner must be one of {COMBINERS}, got {combiner!r}")
        self.domain_names = tuple(domains)
        self.num_stats = _count(num_stats, "num_stats", allow_zero=True)
        self.wide_size = _count(wide_size, "wide_size", allow_zero=True)
        _count(embed_dim, "embed_dim", allow_zero=False)
        self.behavior = nnx.Dict(
            {
                name: BehaviorNetwork(
                    size,
                    embed_dim=embed_dim,
                    widths=behavior_widths,
                    combiner=combiner,
                    activation=activation,
                    rngs=rngs,
                )
                for name, size in domains.items()
            }
        )
        concat = sum(self.behavior[name].out_features for name in self.domain_names)
        hidden = _widths(prediction_widths, "prediction_widths")
        self.prediction = MLP(concat, (*hidden, 1), [activation] * len(hidden) + [None], rngs=rngs)
        self.wide = WideLinear(self.wide_size) if self.wide_size else None
        self.stats_tower = (
            StatsTower(
                self.num_stats, widths=stats_widths, activations=stats_activations, rngs=rngs
            )
            if self.num_stats
            else None
        )

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        return self.head(self.embed(batch), batch)

    def embed(self, batch: Mapping[str, Any]) -> dict[str, jax.Array]:
        """The sparse inner products: layer (2) of each domain, ``{domain: f[B, embed_dim]}``,
        and the wide part's sum ``{"wide": f[B, 1]}`` (its bias is added by :meth:`head`).

        Split from :meth:`head` so a trainer can differentiate the loss w.r.t. these pooled
        rows and update the tables row-sparsely (:func:`jaxembed.lookup.bag_row_grads`).
        """
        codes = {name: _bags(batch, name) for name in self.domain_names}
        sizes = {name: bags.batch_size for name, bags in codes.items()}
        if self.wide is not None:
            sizes["wide"] = _bags(batch, "wide").batch_size
        if self.stats_tower is not None:
            if "stats" not in batch:
                raise ValueError(f"batch has no 'stats' entry (keys: {sorted(batch)})")
            sizes["stats"] = jnp.shape(batch["stats"])[0]
        _same_batch(sizes)
        pooled = {name: self.behavior[name].embed(codes[name]) for name in self.domain_names}
        if self.wide is not None:
            pooled["wide"] = bag_lookup(self.wide.kernel[...], batch["wide"], combiner="sum")
        return pooled

    def head(self, pooled: Mapping[str, jax.Array], batch: Mapping[str, Any]) -> jax.Array:
        """Layers (3)–(8) on the pooled rows of :meth:`embed`, plus the wide sum and bias and
        the statistics tower: the logits ``(B,)``."""
        behavior = [self.behavior[name].dense(pooled[name]) for name in self.domain_names]
        logit = self.prediction(jnp.concatenate(behavior, axis=-1))[:, 0]
        if self.wide is not None:
            logit = logit + pooled["wide"][:, 0] + self.wide.bias[...]
        if self.stats_tower is not None:
            logit = logit + self.stats_tower(batch["stats"])
        return logit


class WideAndDeep(nnx.Module):
    r"""Wide & Deep (Cheng et al., 2016): :math:`z = z_\mathrm{wide} + z_\mathrm{deep}`.

    * wide: :class:`WideLinear` over ``batch["wide"]``, a Bags of hashed ids and crosses;
    * deep: each categorical Bags ``batch[name]`` embedded (``embed[name]``, an
      :class:`EmbedBag` pooling multivalent features with ``combiner``), concatenated with the
      dense features ``batch["dense"] f[B, D]``, then ReLU layers ``hidden_widths`` and a
      1-unit output (``deep``).

    The paper's defaults: 32-dim embeddings and hidden widths (1024, 512, 256).
    Parameter paths: ``wide/...``, ``embed/<name>/embedding``, ``deep/layers/<i>/...``.
    """

    def __init__(
        self,
        wide_size: int,
        categorical: Mapping[str, int],
        num_dense: int,
        *,
        rngs: nnx.Rngs,
        embed_dim: int = 32,
        hidden_widths: Sequence[int] = (1024, 512, 256),
        combiner: str = "mean",
        activation: Activation = jax.nn.relu,
    ) -> None:
        categorical = _check_vocab(categorical, "categorical", reserved=("wide", "dense"))
        self.feature_names = tuple(categorical)
        self.num_dense = _count(num_dense, "num_dense", allow_zero=True)
        _count(embed_dim, "embed_dim", allow_zero=False)
        self.wide = WideLinear(wide_size)
        self.embed = nnx.Dict(
            {
                name: EmbedBag(size, embed_dim, combiner=combiner, rngs=rngs)
                for name, size in categorical.items()
            }
        )
        hidden = _widths(hidden_widths, "hidden_widths")
        width = embed_dim * len(self.feature_names) + self.num_dense
        self.deep = MLP(width, (*hidden, 1), [activation] * len(hidden) + [None], rngs=rngs)

    def __call__(self, batch: Mapping[str, Any]) -> jax.Array:
        codes = {name: _bags(batch, name) for name in self.feature_names}
        wide = _bags(batch, "wide")
        sizes = {name: bags.batch_size for name, bags in codes.items()}
        sizes["wide"] = wide.batch_size
        parts = [self.embed[name](codes[name]) for name in self.feature_names]
        if self.num_dense:
            if "dense" not in batch:
                raise ValueError(f"batch has no 'dense' entry (keys: {sorted(batch)})")
            dense = jnp.asarray(batch["dense"])
            if dense.ndim != 2 or dense.shape[1] != self.num_dense:
                raise ValueError(
                    f"dense must be [B, {self.num_dense}], got shape {tuple(dense.shape)}"
                )
            sizes["dense"] = dense.shape[0]
            parts.append(dense.astype(parts[0].dtype))
        _same_batch(sizes)
        deep = self.deep(jnp.concatenate(parts, axis=-1))[:, 0]
        return self.wide(wide) + deep
