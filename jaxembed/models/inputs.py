"""What a model built from a schema sees: its tables, its fields and the batch they make.

A schema (:mod:`jaxembed.data.schema`) describes a user's log; after the vocabularies are
built it becomes a :class:`ModelInputs`, the one description every model of the zoo is
constructed from (``Model(inputs, rngs=..., **hyper)``). The batch a model is called on is::

    batch = {field.name: Bags, ...        one Bags per field (ids index field.table's rows)
             "dense": f32[B, num_dense],  the numeric features (shape [B, 0] when none)
             "wide": Bags}                the hashed crosses, ids < wide_size (when wide_size)

A *table* may be indexed by several fields (``share = "item"`` in the schema): a user's
``recent_items`` history and the candidate ``item`` look up the same rows. Such a multi-valued
field that shares a single-valued field's table is that field's **history** (DIN attends from
the field to its histories).
"""

from __future__ import annotations

from dataclasses import dataclass

COMBINERS = ("sum", "mean", "sqrtn")
"""How a field's bag is pooled to one row (TensorFlow's ``embedding_lookup_sparse``)."""


@dataclass(frozen=True)
class TableSpec:
    """One embedding table: ``rows`` ids (vocabulary, OOV buckets, hash buckets) of ``dim``
    features."""

    name: str
    rows: int
    dim: int

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"table name must be a non-empty string, got {self.name!r}")
        for what in ("rows", "dim"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"table {self.name!r}: {what} must be an int >= 1, got {value!r}")


@dataclass(frozen=True)
class FieldSpec:
    """One field of the batch: ``batch[name]`` is a Bags of ids into table ``table``, pooled
    with ``combiner``; ``multi`` when a row may hold several ids (width ``width``)."""

    name: str
    table: str
    combiner: str = "sum"
    multi: bool = False
    width: int = 1

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"field name must be a non-empty string, got {self.name!r}")
        if self.name in ("dense", "wide"):
            raise ValueError(f"field name {self.name!r} is reserved for the batch's own entry")
        if self.combiner not in COMBINERS:
            raise ValueError(f"field {self.name!r}: combiner must be one of {COMBINERS}, "
                             f"got {self.combiner!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"field {self.name!r}: width must be an int >= 1, got {self.width!r}")


@dataclass(frozen=True)
class ModelInputs:
    """The tables, fields, numeric features and wide crosses of a model's batch."""

    tables: tuple[TableSpec, ...]
    fields: tuple[FieldSpec, ...]
    num_dense: int = 0
    wide_size: int = 0

    def __post_init__(self) -> None:
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate table names in {names}")
        fields = [f.name for f in self.fields]
        if not fields:
            raise ValueError("a model needs at least one field")
        if len(set(fields)) != len(fields):
            raise ValueError(f"duplicate field names in {fields}")
        for f in self.fields:
            if f.table not in names:
                raise ValueError(f"field {f.name!r} indexes table {f.table!r}, which is not "
                                 f"among the tables {names}")
        for what in ("num_dense", "wide_size"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{what} must be an int >= 0, got {value!r}")

    def table(self, name: str) -> TableSpec:
        """The table called ``name``."""
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} (tables: {[t.name for t in self.tables]})")

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r} (fields: {[f.name for f in self.fields]})")

    def dim(self, field: str) -> int:
        """The embedding width of a field (its table's ``dim``)."""
        return self.table(self.field(field).table).dim

    def histories(self, field: str) -> tuple[str, ...]:
        """The multi-valued fields that share the single-valued ``field``'s table."""
        target = self.field(field)
        if target.multi:
            return ()
        return tuple(f.name for f in self.fields if f.multi and f.table == target.table)
