"""The schema of a user's click log: its label, fields, crosses and options (TOML <-> Python).

A schema says which column is the label and what each feature column is::

    [label]
    column = "clicked"            # 0/1; or a numeric column with threshold = 4 (label = v >= 4)
    [[feature]]
    name = "user"
    kind = "categorical"          # vocabulary from the training data
    dim = 16
    [[feature]]
    name = "tags"
    kind = "multi"                # several values in one column, split on `separator`
    separator = "|"
    max_len = 8
    combiner = "mean"
    [[feature]]
    name = "price"
    kind = "dense"                # transform = "standardize" | "log1p" | "none"; buckets = 10
    transform = "log1p"
    [[cross]]
    fields = ["user", "tags"]     # hashed cross for the wide part
    buckets = 100000
    [options]
    group = "user"                # GAUC groups
    time = "ts"                   # --split time:0.8

Field kinds (every key of a kind is listed in :data:`KIND_KEYS`):

* ``categorical`` — one value per row, mapped through a vocabulary built from the training
  data (``min_count``, ``max_size``, ``oov_buckets``: Keras ``StringLookup`` semantics: ids
  ``0..V-1`` for the vocabulary, ``V..V+B-1`` hashed for the rest);
* ``multi`` — several values per row (``separator``), at most ``max_len`` kept, pooled by
  ``combiner``; ``share = "item"`` makes a field use field ``item``'s vocabulary and table (a
  behaviour history), and any categorical field may share too;
* ``hashed`` — a stable hash of the value into ``buckets`` rows, no vocabulary;
* ``dense`` — a number, ``transform``-ed (``standardize``: ``(x - μ)/σ``; ``log1p``:
  ``sign(x) log(1 + |x|)``, then standardized; ``none``); with ``buckets = N`` it becomes
  categorical instead, one id per quantile bucket of the training data;
* ``attach`` — a categorical id whose cold values (fewer than ``min_count`` rows) take the id
  of their first warm ancestor along ``parents = ["shop", "category"]`` (the seed's attach
  encoding for cold items);
* ``random_code`` — a ``k``-hot random code of the value over ``buckets`` rows (the seed's
  random encoding: ``k`` rows summed per value);
* ``segment`` — a text split into words (the seed's word segmentation), each word through a
  vocabulary, at most ``max_len`` words.

Missing values (empty cells, nulls) follow ``missing``: for categorical-like kinds
``"category"`` (its own value, the default), ``"empty"`` (an empty bag: a zero row) or
``"error"``; for ``dense`` ``"mean"`` (the training mean, the default), ``"zero"`` or
``"error"``.

:meth:`Schema.from_toml` validates everything and names the field and key of any problem.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jaxembed import _atomic

KINDS = ("categorical", "multi", "hashed", "dense", "attach", "random_code", "segment")
CATEGORICAL_KINDS = ("categorical", "multi", "attach", "segment")
"""Kinds whose ids come from a vocabulary built on the training data."""
MULTI_KINDS = ("multi", "segment")
"""Kinds whose rows hold several ids."""
COMBINERS = ("sum", "mean", "sqrtn")
TRANSFORMS = ("standardize", "log1p", "none")

_COMMON = ("name", "kind", "column", "dim", "missing")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "categorical": (*_COMMON, "min_count", "max_size", "oov_buckets", "share"),
    "multi": (*_COMMON, "min_count", "max_size", "oov_buckets", "share", "separator", "max_len",
              "combiner"),
    "hashed": (*_COMMON, "buckets"),
    "dense": (*_COMMON, "transform", "buckets"),
    "attach": (*_COMMON, "min_count", "oov_buckets", "parents"),
    "random_code": (*_COMMON, "buckets", "k"),
    "segment": (*_COMMON, "min_count", "max_size", "oov_buckets", "max_len", "combiner"),
}
"""The keys each field kind accepts."""


class SchemaError(ValueError):
    """A schema that cannot work: the message names the field (or section) and the key."""


@dataclass(frozen=True)
class Label:
    """The label column: 0/1 values, or any number made binary by ``value >= threshold``."""

    column: str
    threshold: float | None = None


@dataclass(frozen=True)
class Field:
    """One feature. ``column`` defaults to ``name``; unset numbers take the kind's default
    (:meth:`Schema.from_dict` fills them, so a loaded field has every value it uses)."""

    name: str
    kind: str
    column: str = ""
    dim: int = 16
    missing: str = ""
    min_count: int = 1
    max_size: int | None = None
    oov_buckets: int = 1
    share: str | None = None
    separator: str = "|"
    max_len: int = 8
    combiner: str = ""
    buckets: int | None = None
    transform: str = "standardize"
    parents: tuple[str, ...] = ()
    k: int = 4

    def __post_init__(self) -> None:
        """Fill what a field made in Python leaves unset with the defaults a TOML schema
        gets: ``column`` the name, ``missing`` ``"mean"`` (dense) or ``"category"``,
        ``combiner`` ``"mean"`` (multi-valued kinds) or ``"sum"``."""
        if not self.column:
            object.__setattr__(self, "column", self.name)
        if not self.missing:
            object.__setattr__(self, "missing", "mean" if self.kind == "dense" else "category")
        if not self.combiner:
            object.__setattr__(self, "combiner", "mean" if self.kind in MULTI_KINDS else "sum")

    @property
    def multi(self) -> bool:
        """Whether a row may hold several ids."""
        return self.kind in MULTI_KINDS

    @property
    def embedded(self) -> bool:
        """Whether the field looks up an embedding table (all but plain dense features)."""
        return not (self.kind == "dense" and self.buckets is None)

    @property
    def table(self) -> str:
        """The name of the table (and vocabulary) the field uses."""
        return self.share or self.name

    @property
    def columns(self) -> tuple[str, ...]:
        """The log columns the field reads (its own, and an attach field's parents)."""
        return (self.column, *self.parents)


@dataclass(frozen=True)
class Cross:
    """A hashed cross of fields for the wide part; a multi-valued field contributes each of
    its values (the Cartesian product, as TensorFlow's ``crossed_column``)."""

    fields: tuple[str, ...]
    buckets: int = 100_000

    @property
    def name(self) -> str:
        return "×".join(self.fields)


@dataclass(frozen=True)
class Options:
    """Data-set options: ``group`` (GAUC groups), ``time`` (``--split time:0.8``),
    ``domains`` (``search_ctr``'s behaviour domains: name -> fields), the CSV ``delimiter``
    and ``header`` (``names`` gives the columns of a file without one), ``format``
    (``"criteo"``: the Criteo preset's columns), ``dim`` (every field's default width)."""

    group: str | None = None
    time: str | None = None
    domains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    delimiter: str | None = None
    header: bool = True
    names: tuple[str, ...] = ()
    format: str | None = None
    dim: int = 16


@dataclass(frozen=True)
class Schema:
    """A log's label, feature fields, wide crosses, options and model hyperparameters."""

    label: Label
    features: tuple[Field, ...]
    crosses: tuple[Cross, ...] = ()
    options: Options = field(default_factory=Options)
    model: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    # --- lookups ----------------------------------------------------------------------------
    def field(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        raise SchemaError(f"no field {name!r} (fields: {[f.name for f in self.features]})")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every log column the schema reads, label first, each once."""
        out = [self.label.column]
        for f in self.features:
            out.extend(f.columns)
        for extra in (self.options.group, self.options.time):
            if extra:
                out.append(extra)
        return tuple(dict.fromkeys(out))

    @property
    def vocab_owners(self) -> tuple[Field, ...]:
        """The fields that own a table (every embedded field that does not ``share``)."""
        return tuple(f for f in self.features if f.embedded and f.share is None)

    # --- TOML -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Schema:
        """Read and validate a schema file; errors name the file and the problem."""
        try:
            with open(path, "rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(f"schema file {os.fspath(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as err:
            raise SchemaError(f"schema {os.fspath(path)!r} is not valid TOML: {err}") from None
        except UnicodeDecodeError:
            raise SchemaError(f"schema {os.fspath(path)!r} is not UTF-8 text") from None
        try:
            return cls.from_dict(raw)
        except SchemaError as err:
            raise SchemaError(f"schema {os.fspath(path)!r}: {err}") from None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Schema:
        """The schema of a parsed TOML document (the same keys)."""
        _keys(raw, ("label", "feature", "cross", "options", "model"), "the schema")
        if "label" not in raw:
            raise SchemaError("no [label] section (it names the 0/1 click column)")
        label_raw = _table(raw["label"], "[label]")
        _keys(label_raw, ("column", "threshold"), "[label]")
        if "column" not in label_raw:
            raise SchemaError("[label] has no 'column'")
        label = Label(_str(label_raw["column"], "[label] column"),
                      None if label_raw.get("threshold") is None
                      else _number(label_raw["threshold"], "[label] threshold"))
        options_raw = _table(raw.get("options", {}), "[options]")
        _keys(options_raw, tuple(f.name for f in dataclasses.fields(Options)), "[options]")
        options = _options(options_raw)
        features_raw = raw.get("feature", [])
        if not isinstance(features_raw, list) or not features_raw:
            raise SchemaError("no [[feature]] entries")
        features = tuple(_field(_table(f, f"[[feature]] {i + 1}"), i, options)
                         for i, f in enumerate(features_raw))
        crosses_raw = raw.get("cross", [])
        if not isinstance(crosses_raw, list):
            raise SchemaError("[[cross]] must be an array of tables")
        crosses = []
        for i, c in enumerate(crosses_raw):
            c = _table(c, f"[[cross]] {i + 1}")
            _keys(c, ("fields", "buckets"), f"[[cross]] {i + 1}")
            names = c.get("fields")
            if not isinstance(names, list) or not names:
                raise SchemaError(f"[[cross]] {i + 1}: 'fields' must be a non-empty list of "
                                  f"field names, got {names!r}")
            crosses.append(Cross(tuple(_str(n, f"[[cross]] {i + 1} fields") for n in names),
                                 _int(c.get("buckets", 100_000), f"[[cross]] {i + 1} buckets",
                                      low=1)))
        model = dict(_table(raw.get("model", {}), "[model]"))
        return cls(label, features, tuple(crosses), options, model)

    def to_dict(self) -> dict[str, Any]:
        """The schema as TOML-ready data (every field value written out)."""
        label = {"column": self.label.column}
        if self.label.threshold is not None:
            label["threshold"] = self.label.threshold
        features = []
        for f in self.features:
            entry = {"name": f.name, "kind": f.kind}
            for key in KIND_KEYS[f.kind][2:]:
                value = getattr(f, key)
                if value is None or value == () or (key == "share" and not value):
                    continue
                entry[key] = list(value) if isinstance(value, tuple) else value
            features.append(entry)
        out: dict[str, Any] = {"label": label, "feature": features}
        if self.crosses:
            out["cross"] = [{"fields": list(c.fields), "buckets": c.buckets}
                            for c in self.crosses]
        options = {}
        for f in dataclasses.fields(Options):
            value = getattr(self.options, f.name)
            if value is None or value == () or value == {}:
                continue
            if f.name == "domains":
                value = {k: list(v) for k, v in value.items()}
            options[f.name] = list(value) if isinstance(value, tuple) else value
        out["options"] = options
        if self.model:
            out["model"] = dict(self.model)
        return out

    def to_toml(self, path: str | os.PathLike) -> None:
        """Write the schema as TOML (atomically); :meth:`from_toml` reads it back equal."""
        _atomic.write_text(path, dumps_toml(self.to_dict()))


# --- validation ------------------------------------------------------------------------------
def _keys(raw: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise SchemaError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SchemaError(f"{where} must be a table, got {value!r}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _int(value: Any, where: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SchemaError(f"{where} must be an integer >= {low}, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SchemaError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _options(raw: Mapping[str, Any]) -> Options:
    kwargs: dict[str, Any] = {}
    for key in ("group", "time", "format"):
        if key in raw:
            kwargs[key] = _str(raw[key], f"[options] {key}")
    if "delimiter" in raw:
        delimiter = raw["delimiter"]
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise SchemaError(f"[options] delimiter must be one character, got {delimiter!r}")
        kwargs["delimiter"] = delimiter
    if "header" in raw:
        if not isinstance(raw["header"], bool):
            raise SchemaError(f"[options] header must be true or false, got {raw['header']!r}")
        kwargs["header"] = raw["header"]
    if "names" in raw:
        names = raw["names"]
        if not isinstance(names, list) or not names:
            raise SchemaError(f"[options] names must be a list of column names, got {names!r}")
        kwargs["names"] = tuple(_str(n, "[options] names") for n in names)
    if "dim" in raw:
        kwargs["dim"] = _int(raw["dim"], "[options] dim", low=1)
    if "domains" in raw:
        domains = _table(raw["domains"], "[options] domains")
        kwargs["domains"] = {
            _str(name, "[options] domains"): tuple(
                _str(f, f"[options] domains {name}") for f in _list(fields, name))
            for name, fields in domains.items()}
    if kwargs.get("format") not in (None, "criteo"):
        raise SchemaError(f"[options] format must be 'criteo', got {kwargs['format']!r}")
    return Options(**kwargs)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise SchemaError(f"[options] domains {where} must be a non-empty list of fields")
    return value


def _field(raw: Mapping[str, Any], index: int, options: Options) -> Field:
    where = f"[[feature]] {index + 1}"
    name = _str(raw.get("name"), f"{where} name")
    where = f"field {name!r}"
    kind = raw.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    _keys(raw, KIND_KEYS[kind], f"{where} ({kind})")
    kwargs: dict[str, Any] = {"name": name, "kind": kind,
                              "column": _str(raw.get("column", name), f"{where} column"),
                              "dim": _int(raw.get("dim", options.dim), f"{where} dim", low=1)}
    default_missing = "mean" if kind == "dense" else "category"
    allowed_missing = ("mean", "zero", "error") if kind == "dense" else (
        "category", "empty", "error")
    missing = raw.get("missing", default_missing)
    if missing not in allowed_missing:
        raise SchemaError(f"{where}: missing must be one of {', '.join(allowed_missing)}, "
                          f"got {missing!r}")
    kwargs["missing"] = missing
    for key, low in (("min_count", 1), ("oov_buckets", 0), ("max_len", 1), ("k", 1)):
        if key in raw:
            kwargs[key] = _int(raw[key], f"{where} {key}", low=low)
    if "max_size" in raw:
        kwargs["max_size"] = _int(raw["max_size"], f"{where} max_size", low=1)
    if "buckets" in raw:
        kwargs["buckets"] = _int(raw["buckets"], f"{where} buckets", low=2 if kind == "dense"
                                 else 1)
    elif kind in ("hashed", "random_code"):
        raise SchemaError(f"{where}: a {kind} field needs 'buckets' (its table's rows)")
    if "separator" in raw:
        if not isinstance(raw["separator"], str) or not raw["separator"]:
            raise SchemaError(f"{where}: separator must be a non-empty string, "
                              f"got {raw['separator']!r}")
        kwargs["separator"] = raw["separator"]
    kwargs["combiner"] = raw.get("combiner", "mean" if kind in MULTI_KINDS else "sum")
    if kwargs["combiner"] not in COMBINERS:
        raise SchemaError(f"{where}: combiner must be one of {', '.join(COMBINERS)}, "
                          f"got {kwargs['combiner']!r}")
    if "transform" in raw and raw["transform"] not in TRANSFORMS:
        raise SchemaError(f"{where}: transform must be one of {', '.join(TRANSFORMS)}, "
                          f"got {raw['transform']!r}")
    if "transform" in raw:
        kwargs["transform"] = raw["transform"]
    if "share" in raw:
        kwargs["share"] = _str(raw["share"], f"{where} share")
    if "parents" in raw:
        parents = raw["parents"]
        if not isinstance(parents, list) or not parents:
            raise SchemaError(f"{where}: parents must be a non-empty list of columns, "
                              f"got {parents!r}")
        kwargs["parents"] = tuple(_str(p, f"{where} parents") for p in parents)
    elif kind == "attach":
        raise SchemaError(f"{where}: an attach field needs 'parents' (its ancestors' columns, "
                          f"e.g. [\"shop\", \"category\"])")
    if kind == "random_code" and kwargs.get("k", 4) > kwargs["buckets"]:
        raise SchemaError(f"{where}: k = {kwargs.get('k', 4)} exceeds buckets = "
                          f"{kwargs['buckets']}")
    return Field(**kwargs)


def _validate(schema: Schema) -> None:
    names = [f.name for f in schema.features]
    seen = set()
    for name in names:
        if name in seen:
            raise SchemaError(f"field {name!r} is defined twice")
        if name in ("dense", "wide"):
            raise SchemaError(f"field name {name!r} is reserved (the batch's own entry)")
        seen.add(name)
    for f in schema.features:
        if f.column == schema.label.column:
            raise SchemaError(f"field {f.name!r} reads the label column {f.column!r}")
        if f.share is not None:
            if f.share == f.name:
                raise SchemaError(f"field {f.name!r} shares with itself")
            if f.share not in seen:
                raise SchemaError(f"field {f.name!r}: share = {f.share!r} names no field")
            owner = schema.field(f.share)
            if owner.kind not in ("categorical", "multi") or owner.share is not None:
                raise SchemaError(f"field {f.name!r}: share = {f.share!r} must name a "
                                  f"categorical or multi field that owns its vocabulary")
            if owner.dim != f.dim:
                raise SchemaError(f"field {f.name!r}: dim {f.dim} differs from the dim "
                                  f"{owner.dim} of the table it shares ({f.share!r})")
    for c in schema.crosses:
        if len(c.fields) < 2:
            raise SchemaError(f"cross {list(c.fields)}: a cross needs at least two fields")
        for name in c.fields:
            if name not in seen:
                raise SchemaError(f"cross {list(c.fields)}: no field {name!r}")
            if not schema.field(name).embedded:
                raise SchemaError(f"cross {list(c.fields)}: field {name!r} is a plain dense "
                                  f"number; give it buckets = N to cross it")
    for domain, fields in schema.options.domains.items():
        for name in fields:
            if name not in seen:
                raise SchemaError(f"[options] domains {domain}: no field {name!r}")


# --- a small TOML writer (tomllib reads; the standard library writes none) --------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r}")
        return repr(value)
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\t", "\\t").replace("\r", "\\r"))
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(f"TOML cannot hold a {type(value).__name__}: {value!r}")


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return _toml_value(key)


def dumps_toml(document: Mapping[str, Any]) -> str:
    """TOML text of a document of tables (``{name: {...}}``) and arrays of tables
    (``{name: [{...}, ...]}``) whose values are scalars, lists or inline tables."""
    lines: list[str] = []
    for name, value in document.items():
        if isinstance(value, list):
            for entry in value:
                lines.append(f"[[{_toml_key(name)}]]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items())
                lines.append("")
        else:
            lines.append(f"[{_toml_key(name)}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
            lines.append("")
    return "\n".join(lines)


def criteo_schema(dim: int = 16, min_count: int = 10) -> Schema:
    """The Criteo display-ads preset: label, integer features ``I1..I13`` (log1p, then
    standardized) and categorical features ``C1..C26`` (vocabulary of values seen at least
    ``min_count`` times, the rest in one OOV bucket), tab-separated, no header."""
    features = [Field(f"I{i}", "dense", column=f"I{i}", dim=dim, missing="mean",
                      transform="log1p") for i in range(1, 14)]
    features += [Field(f"C{i}", "categorical", column=f"C{i}", dim=dim, missing="category",
                       min_count=min_count) for i in range(1, 27)]
    return Schema(Label("label"), tuple(features),
                  options=Options(format="criteo", header=False, delimiter="\t",
                                  names=CRITEO_COLUMNS, dim=dim))


CRITEO_COLUMNS = ("label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27)))
"""The columns of a Criteo file, in order (label, 13 integer, 26 categorical)."""
