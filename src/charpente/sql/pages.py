"""List pages: the statement of a ListQuery, built and compiled once per shape.

A page's SQL depends only on its shape (resource, fields, sort, limit, the filter's tree
without its values, which cursor values are null); its values are named parameters. So
a shape's statement is built once and reused, and a request only computes parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from charpente.compile.plan import ListQuery, SortKey
from charpente.design.expr import Expr, Value
from charpente.sql.expr import expr_shape, expr_to_sql, expr_values

__all__ = [
    "PageStatement",
    "PageStatements",
    "RuleStatements",
    "keyset_condition",
    "order_term",
    "where_parameters",
]

_MAX_SHAPES = 1000  # statements kept; beyond that the cache starts over


@dataclass(frozen=True, slots=True)
class PageStatement:
    """The rows query of a page shape, and its COUNT query (same filter, no keyset)."""

    rows: sa.Select[Any]
    count: sa.Select[Any]


class PageStatements:
    """Page statements by shape. `keep` sees each new statement and `forget` each dropped
    one, so that a compiler can compile each once and hold no more than this cache does."""

    def __init__(
        self,
        tables: Mapping[str, sa.Table],
        columns: Callable[[sa.Table, ListQuery], list[sa.Column[Any]]],
        keep: Callable[[sa.Executable], None] | None = None,
        forget: Callable[[sa.Executable], None] | None = None,
    ) -> None:
        self._tables = tables
        self._columns = columns
        self._keep = keep
        self._forget = forget
        self._by_shape: dict[Hashable, PageStatement] = {}

    def of(self, query: ListQuery) -> tuple[PageStatement, dict[str, Any]]:
        """The statements for `query` and the parameters to run them with."""
        key = _shape(query)
        found = self._by_shape.get(key)
        if found is None:
            if len(self._by_shape) >= _MAX_SHAPES:
                self._drop_all()
            found = self._by_shape[key] = self._build(query)
        return found, _parameters(query)

    def _drop_all(self) -> None:
        if self._forget is not None:
            for statement in self._by_shape.values():
                self._forget(statement.rows)
                self._forget(statement.count)
        self._by_shape.clear()

    def _build(self, query: ListQuery) -> PageStatement:
        table = self._tables[query.resource]
        where = []
        if query.where is not None:
            names = (f"w{i}" for i in range(1_000_000))
            where.append(expr_to_sql(query.where, table, self._tables, names=names))
        keyset = []
        if query.after is not None:
            keyset.append(keyset_condition(table, query.sort, query.after, _named_key))
        order = [order_term(table.c[key.field], key.descending) for key in query.sort]
        rows = (
            sa.select(*self._columns(table, query))
            .where(*where, *keyset)
            .order_by(*order)
            .limit(query.limit + 1)
        )
        count = sa.select(sa.func.count()).select_from(table).where(*where)
        if self._keep is not None:
            self._keep(rows)
            self._keep(count)
        return PageStatement(rows, count)


class RuleStatements:
    """Reads by id under a rule (`where`), built and compiled once per shape, like pages:
    `one` (a record, locked or not), `ids` (a batch, for expand), `matches` (SELECT 1)."""

    def __init__(
        self,
        tables: Mapping[str, sa.Table],
        keep: Callable[[sa.Executable], None] | None = None,
        forget: Callable[[sa.Executable], None] | None = None,
    ) -> None:
        self._tables = tables
        self._keep = keep
        self._forget = forget
        self._by_shape: dict[Hashable, sa.Select[Any]] = {}

    def one(
        self, resource: str, columns: tuple[str, ...] | None, where: Expr, *, lock: bool
    ) -> sa.Select[Any]:
        """SELECT columns WHERE id = :_id AND where [FOR UPDATE]."""
        key = ("one", resource, columns, lock, expr_shape(where))
        return self._get(key, lambda: self._one(resource, columns, where, lock))

    def ids(self, resource: str, columns: tuple[str, ...] | None, where: Expr) -> sa.Select[Any]:
        """SELECT columns WHERE id IN :_ids AND where."""
        key = ("ids", resource, columns, expr_shape(where))
        return self._get(key, lambda: self._ids(resource, columns, where))

    def matches(self, resource: str, where: Expr) -> sa.Select[Any]:
        """SELECT (SELECT 1 WHERE id = :_id AND where): always one row, 1 or null."""
        key = ("matches", resource, expr_shape(where))
        return self._get(key, lambda: self._matches(resource, where))

    def _get(self, key: Hashable, build: Callable[[], sa.Select[Any]]) -> sa.Select[Any]:
        found = self._by_shape.get(key)
        if found is None:
            if len(self._by_shape) >= _MAX_SHAPES:
                if self._forget is not None:
                    for statement in self._by_shape.values():
                        self._forget(statement)
                self._by_shape.clear()
            found = self._by_shape[key] = build()
            if self._keep is not None:
                self._keep(found)
        return found

    def _condition(self, table: sa.Table, where: Expr) -> sa.ColumnElement[bool]:
        names = (f"w{i}" for i in range(1_000_000))
        return expr_to_sql(where, table, self._tables, names=names)

    def _one(
        self, resource: str, columns: tuple[str, ...] | None, where: Expr, lock: bool
    ) -> sa.Select[Any]:
        table = self._tables[resource]
        stmt = sa.select(*_pick(table, columns)).where(
            table.c.id == sa.bindparam("_id"), self._condition(table, where)
        )
        return stmt.with_for_update(of=table) if lock else stmt

    def _ids(self, resource: str, columns: tuple[str, ...] | None, where: Expr) -> sa.Select[Any]:
        table = self._tables[resource]
        ids = table.c.id.in_(sa.bindparam("_ids", expanding=True))
        return sa.select(*_pick(table, columns)).where(ids, self._condition(table, where))

    def _matches(self, resource: str, where: Expr) -> sa.Select[Any]:
        table = self._tables[resource]
        found = sa.select(sa.literal(1)).where(
            table.c.id == sa.bindparam("_id"), self._condition(table, where)
        )
        # One row whatever the answer: a scalar read of no row fails on some executors.
        return sa.select(found.scalar_subquery())


def where_parameters(where: Expr) -> dict[str, Any]:
    """The named parameters of a condition compiled by RuleStatements."""
    return {f"w{i}": v for i, v in enumerate(expr_values(where))}


def _pick(table: sa.Table, columns: tuple[str, ...] | None) -> list[sa.Column[Any]]:
    if columns is None:
        return list(table.c)
    wanted = {*columns, "id", "version"}
    return [c for c in table.c if c.name in wanted]


def _shape(query: ListQuery) -> Hashable:
    nulls = None if query.after is None else tuple(v is None for v in query.after)
    where = None if query.where is None else expr_shape(query.where)
    return (query.resource, query.fields, query.sort, query.limit, nulls, where)


def _parameters(query: ListQuery) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if query.where is not None:
        params.update((f"w{i}", v) for i, v in enumerate(expr_values(query.where)))
    if query.after is not None:
        params.update((f"k{i}", v) for i, v in enumerate(query.after) if v is not None)
    return params


def _named_key(i: int, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(f"k{i}", type_=column.type)


def order_term(column: sa.Column[Any], descending: bool) -> sa.ColumnElement[Any]:
    """NULL sorts as the greatest value on every dialect (PostgreSQL's default)."""
    if not column.nullable:
        return column.desc() if descending else column.asc()
    return column.desc().nulls_first() if descending else column.asc().nulls_last()


def keyset_condition(
    table: sa.Table,
    sort: tuple[SortKey, ...],
    after: tuple[Value, ...],
    bind: Callable[[int, sa.Column[Any]], Any] | None = None,
) -> sa.ColumnElement[bool]:
    """Rows strictly after `after` in `sort` order, NULL sorting as the greatest value.

    One direction, no nullable key and no null value: a row-value comparison, which an
    index can walk.
    `bind(i, column)` gives what stands for the i-th value (default: the value itself);
    which values are null still shapes the condition.
    """
    columns = [table.c[k.field] for k in sort]
    value = bind or (lambda i, column: after[i])
    directions = {k.descending for k in sort}
    if len(directions) == 1 and not any(c.nullable for c in columns) and None not in after:
        left = sa.tuple_(*columns)
        right = sa.tuple_(*(_bound(value(i, c), c) for i, c in enumerate(columns)))
        return left < right if sort[0].descending else left > right
    branches = []
    for i, key in enumerate(sort):
        beyond = _beyond(columns[i], after[i], value(i, columns[i]), key.descending)
        if beyond is not None:
            equal = [_equal(columns[j], after[j], value(j, columns[j])) for j in range(i)]
            branches.append(sa.and_(*equal, beyond))
    condition = sa.or_(sa.false(), *branches)
    first = columns[0]
    if first.nullable or after[0] is None:
        return condition
    # Redundant, but it gives the planner an index range on the first key.
    bound = first <= value(0, first) if sort[0].descending else first >= value(0, first)
    return sa.and_(bound, condition)


def _bound(value: Any, column: sa.Column[Any]) -> Any:
    """A value as an SQL literal of the column's type (a bound parameter stays as it is)."""
    return value if isinstance(value, sa.BindParameter) else sa.literal(value, column.type)


def _equal(column: sa.Column[Any], value: Value, bound: Any) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == bound


def _beyond(
    column: sa.Column[Any], value: Value, bound: Any, descending: bool
) -> sa.ColumnElement[bool] | None:
    """Strictly later in the order than `value` (NULL is the greatest value); None: nothing."""
    if descending:
        return column.is_not(None) if value is None else column < bound
    if value is None:
        return None
    return sa.or_(column > bound, column.is_(None)) if column.nullable else column > bound
