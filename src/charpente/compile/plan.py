"""Plans: what a request asks of the database, as small frozen records.

compile.request builds them from a parsed request and the design; the Database port runs
them. Pure data: no behaviour here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from charpente.design.expr import Expr, Value

__all__ = [
    "Delete",
    "GetQuery",
    "Insert",
    "ListQuery",
    "Page",
    "Record",
    "SortKey",
    "Update",
]

Record = dict[str, object]
"""A row as Python values keyed by field name (see design.model.Field for the types)."""


@dataclass(frozen=True, slots=True)
class SortKey:
    """One sort column: `-created_at` is SortKey("created_at", descending=True)."""

    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A page of a collection, in keyset order.

    `sort` always ends with `id`, so the order is total. `after` holds the sort values of
    the last row of the previous page (decoded from the cursor), in the order of `sort`.
    `where` has been type-checked against the resource: its literals have the field's
    Python type. `fields` None means every field the caller may read.
    """

    resource: str
    where: Expr | None = None
    sort: tuple[SortKey, ...] = (SortKey("id"),)
    limit: int = 20
    after: tuple[Value, ...] | None = None
    fields: tuple[str, ...] | None = None
    expand: tuple[str, ...] = ()
    count: bool = False


@dataclass(frozen=True, slots=True)
class GetQuery:
    """One record by id, if it also satisfies `where` (the caller's read rule)."""

    resource: str
    id: str
    fields: tuple[str, ...] | None = None
    expand: tuple[str, ...] = ()
    where: Expr | None = None


@dataclass(frozen=True, slots=True)
class Insert:
    """A new record: `values` are validated and complete (id, timestamps, version included)."""

    resource: str
    values: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Update:
    """Changes to one record; `expected_version` is the If-Match version, if any."""

    resource: str
    id: str
    changes: Mapping[str, object]
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Removal of one record; `expected_version` is the If-Match version, if any."""

    resource: str
    id: str
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """What a ListQuery returns: up to `limit` rows, whether more follow, and the total if asked."""

    rows: list[Record]
    has_more: bool
    total: int | None = None
