"""The design model: what a design file declares, as small frozen records.

Pure data, no behaviour beyond lookups. design.load builds it; everything else reads it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field as dc_field

from charpente.design.expr import Expr

__all__ = [
    "SYSTEM_FIELDS",
    "Check",
    "CountSource",
    "Default",
    "Design",
    "Field",
    "Index",
    "IndexColumn",
    "Kind",
    "OnDelete",
    "Position",
    "Resource",
]


class Kind(enum.StrEnum):
    """A field's type, as written in a design."""

    STRING = "string"
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    DECIMAL = "decimal"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    ENUM = "enum"
    JSON = "json"
    EMAIL = "email"
    URL = "url"
    UUID = "uuid"
    REF = "ref"
    COUNT = "count"  # a counter kept exact by the engine: `count: likes.post`


class OnDelete(enum.StrEnum):
    """What happens to a referencing row when the referenced row is deleted."""

    RESTRICT = "restrict"
    CASCADE = "cascade"
    SET_NULL = "set_null"


@dataclass(frozen=True, slots=True)
class Position:
    """Where something stands in a design file (1-based line and column)."""

    file: str = "<design>"
    line: int = 0
    column: int = 0


NOWHERE = Position()


@dataclass(frozen=True, slots=True)
class Default:
    """A field's default: a literal `value` (already of the field's kind) or the time of the write.

    `expr` is reserved for defaults computed from the caller (`auth.id`).
    """

    value: object = None
    now: bool = False
    expr: Expr | None = None


@dataclass(frozen=True, slots=True)
class CountSource:
    """`count: likes.post`: rows of `resource` whose `field` references this record."""

    resource: str
    field: str


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a resource.

    Values at run time, by kind: str (string, text, email, url, enum, uuid, ref), int (int,
    count), float, decimal.Decimal, bool, datetime.date, datetime.datetime (aware, UTC),
    and any JSON value for json. Ids and refs are canonical lowercase UUID strings.
    """

    name: str
    kind: Kind
    required: bool = False
    default: Default | None = None
    unique: bool = False
    readonly: bool = False  # clients never set it (422 if they try)
    writeonly: bool = False  # clients set it, it is never returned
    immutable: bool = False  # set on create, never changed
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()  # enum values
    ref: str | None = None  # target resource of a ref
    on_delete: OnDelete = OnDelete.RESTRICT
    count: CountSource | None = None
    precision: int = 18  # decimal digits in all (decimal only)
    scale: int = 2  # decimal digits after the point (decimal only)
    system: bool = False  # id, created_at, updated_at, version: managed by the server
    description: str | None = None  # a sentence for the API docs
    pos: Position = dc_field(default=NOWHERE, compare=False)

    @property
    def is_client_writable(self) -> bool:
        """Whether a client may ever put this field in a body."""
        return not (self.system or self.readonly or self.kind is Kind.COUNT)


SYSTEM_FIELDS: tuple[Field, ...] = (
    Field("id", Kind.UUID, readonly=True, system=True),
    Field("created_at", Kind.DATETIME, readonly=True, system=True),
    Field("updated_at", Kind.DATETIME, readonly=True, system=True),
    Field("version", Kind.INT, readonly=True, system=True),
)


@dataclass(frozen=True, slots=True)
class IndexColumn:
    """One column of an index; `-created_at` in a design is descending."""

    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Index:
    """A (possibly composite) index the design asks for."""

    columns: tuple[IndexColumn, ...]
    unique: bool = False
    pos: Position = dc_field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Check:
    """A declared check: an expression every row must satisfy."""

    source: str
    expr: Expr
    message: str | None = None
    pos: Position = dc_field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Resource:
    """A collection of records with the same fields: `/v1/{name}`."""

    name: str
    fields: tuple[Field, ...]  # declared fields, in design order (no system fields)
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[Index, ...] = ()
    checks: tuple[Check, ...] = ()
    require_if_match: bool = False
    description: str | None = None
    pos: Position = dc_field(default=NOWHERE, compare=False)

    @property
    def all_fields(self) -> tuple[Field, ...]:
        """System fields and declared ones: id first, then the design's, then the timestamps."""
        return (SYSTEM_FIELDS[0], *self.fields, *SYSTEM_FIELDS[1:])

    def field(self, name: str) -> Field | None:
        """The field called `name` (system ones included), or None."""
        for f in SYSTEM_FIELDS:
            if f.name == name:
                return f
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def counters(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind is Kind.COUNT)


@dataclass(frozen=True)
class Design:
    """A whole design file: its resources and the engine options it sets."""

    name: str
    api_version: int
    resources: Mapping[str, Resource]
    hooks: str | None = None  # a module name or a .py file relative to the design
    format_version: int = 1
    source: str = "<design>"  # the file it came from, for messages
    warnings: tuple[str, ...] = ()

    def resource(self, name: str) -> Resource | None:
        return self.resources.get(name)

    def referencing(self, name: str) -> tuple[tuple[Resource, Field], ...]:
        """Every (resource, ref field) that points at resource `name`."""
        return tuple((r, f) for r in self.resources.values() for f in r.fields if f.ref == name)
