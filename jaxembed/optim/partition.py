"""Label parameters by their path and give each label its own optimizer.

A wide-and-deep model wants FTRL on the wide part, SGD/Adam on the deep part and perhaps a
frozen pretrained embedding. Parameters are told apart by their path in the pytree, written
``'/'``-joined (``"wide/kernel"``, ``"mlp/layers/0/bias"``); rules map path patterns to labels
and :func:`partitioned` builds the ``optax.partition`` over those labels, with ``"frozen"``
bound to ``optax.set_to_zero()``.

Flax NNX works unchanged: ``nnx.Optimizer`` calls ``tx.init`` on an ``nnx.State`` whose leaves
sit inside ``nnx.Variable`` nodes (their path ends in an attribute ``.value``) and ``tx.update``
on plain arrays; :func:`param_path` drops that trailing ``.value`` so both give the same path.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import optax

__all__ = ["FROZEN", "label_by_path", "param_path", "partitioned"]

FROZEN = "frozen"

Syntax = Literal["regex", "glob"]


def _key_name(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey | jax.tree_util.FlattenedIndexKey):
        return str(key.idx)
    return str(key)


def param_path(path: Sequence[Any]) -> str:
    """The ``'/'``-joined path of a leaf, from ``jax.tree_util`` key entries.

    ``{"wide": {"kernel": w}}`` gives ``"wide/kernel"``; list/tuple positions give their index.
    A trailing attribute ``value`` (the array inside an ``nnx.Variable``) is dropped, so an
    ``nnx.State`` of Variables and its pure-array form give the same paths.
    """
    keys = list(path)
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    return "/".join(_key_name(k) for k in keys)


def _matcher(pattern: str, syntax: Syntax, position: int) -> Callable[[str], bool]:
    if not isinstance(pattern, str):
        raise TypeError(f"rule {position}: pattern must be a string, got {pattern!r}")
    if syntax == "glob":
        return lambda path: fnmatch.fnmatchcase(path, pattern)
    if syntax != "regex":
        raise ValueError(f"syntax must be 'regex' or 'glob', got {syntax!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"rule {position}: invalid regular expression {pattern!r}: {err}") from err
    return lambda path: compiled.search(path) is not None


def _compile_rules(
    rules: Sequence[tuple[str, str]], syntax: Syntax
) -> list[tuple[Callable[[str], bool], str]]:
    compiled = []
    for position, rule in enumerate(rules):
        if not (isinstance(rule, tuple | list) and len(rule) == 2):
            raise TypeError(f"rule {position} must be a (pattern, label) pair, got {rule!r}")
        pattern, label = rule
        if not isinstance(label, str):
            raise TypeError(f"rule {position}: label must be a string, got {label!r}")
        compiled.append((_matcher(pattern, syntax, position), label))
    return compiled


def label_by_path(
    params: Any,
    rules: Sequence[tuple[str, str]],
    default: str | None = None,
    *,
    syntax: Syntax = "regex",
) -> Any:
    """A pytree of labels, one per leaf of ``params``: the label of the first matching rule.

    Args:
      params: any pytree of arrays (dicts, lists, ``nnx.State``, pure dicts of NNX state).
      rules: ``(pattern, label)`` pairs, tried in order on each leaf's :func:`param_path`.
        With ``syntax="regex"`` (default) a pattern matches when ``re.search`` finds it in the
        path (anchor with ``^``/``$`` for exact names: ``"^wide/"``); with ``syntax="glob"`` it
        must ``fnmatch`` the whole path (``"wide/*"``, ``"*/bias"``).
      default: the label of leaves no rule matches; ``None`` makes such a leaf an error.

    Returns:
      A pytree with the structure of ``params`` whose leaves are label strings.

    Raises:
      ValueError: a leaf matches no rule and ``default`` is None (the path is named), or a
        pattern is not a valid regular expression.
      TypeError: a rule is not a ``(str, str)`` pair.
    """
    compiled = _compile_rules(rules, syntax)

    def label(path: Sequence[Any], _leaf: Any) -> str:
        name = param_path(path)
        for matches, tag in compiled:
            if matches(name):
                return tag
        if default is None:
            raise ValueError(
                f"parameter {name!r} matches no rule and no default label was given "
                f"(rules: {[pattern for pattern, _ in rules]})"
            )
        return default

    return jax.tree_util.tree_map_with_path(label, params)


def partitioned(
    transforms: Mapping[str, optax.GradientTransformation],
    rules: Sequence[tuple[str, str]],
    default: str | None = None,
    *,
    syntax: Syntax = "regex",
) -> optax.GradientTransformation:
    """``optax.partition`` over the labels of :func:`label_by_path`.

    The label ``"frozen"`` is bound to ``optax.set_to_zero()`` (no state, zero updates, so
    frozen parameters stay bit-identical) unless ``transforms`` gives it another transform.
    Every label a rule or the default can produce must have a transform; this is checked here,
    before any parameter is seen. Use it directly with ``nnx.Optimizer``::

        tx = partitioned({"ftrl": je.optim.ftrl(0.05), "sgd": optax.sgd(0.1)},
                         rules=[("^wide/", "ftrl"), ("^embed/", "frozen")], default="sgd")
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    Raises:
      ValueError: a rule's or the default label has no transform.
    """
    _compile_rules(rules, syntax)  # fail early on bad rules
    table = dict(transforms)
    table.setdefault(FROZEN, optax.set_to_zero())
    wanted = [label for _, label in rules] + ([] if default is None else [default])
    missing = sorted({label for label in wanted if label not in table})
    if missing:
        raise ValueError(
            f"labels {missing} have no transform; transforms are given for {sorted(table)}"
        )

    def labels(params: Any) -> Any:
        return label_by_path(params, rules, default, syntax=syntax)

    return optax.partition(table, labels)
