"""Pages of children for many parents at once: what a nested GraphQL connection reads.

One statement for every parent: the rows are numbered per parent (`ROW_NUMBER() OVER
(PARTITION BY <ref> ORDER BY <sort>)`, which SQLite has had since 3.25) and each parent
keeps its first `limit + 1`, in the page's own keyset order; the counts, when asked, are
one grouped COUNT under the same filter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from charpente.compile.plan import ListQuery
from charpente.sql.expr import expr_to_sql
from charpente.sql.pages import keyset_condition, order_term, where_parameters

__all__ = ["GroupStatements", "grouped_pages"]


@dataclass(frozen=True, slots=True)
class GroupStatements:
    """The rows of every parent's page, its grouped count, and their parameters."""

    rows: sa.Select[Any]
    count: sa.Select[Any]
    params: dict[str, Any]


def grouped_pages(
    tables: Mapping[str, sa.Table],
    query: ListQuery,
    via: str,
    parents: Sequence[str],
    columns: Sequence[sa.Column[Any]],
) -> GroupStatements:
    """The statements of `query`'s page for each parent id whose `via` field holds it."""
    table = tables[query.resource]
    conditions: list[sa.ColumnElement[bool]] = [
        table.c[via].in_(sa.bindparam("_parents", expanding=True))
    ]
    params: dict[str, Any] = {"_parents": list(parents)}
    if query.where is not None:
        names = (f"w{i}" for i in range(1_000_000))
        conditions.append(expr_to_sql(query.where, table, tables, names=names))
        params.update(where_parameters(query.where))
    if query.after is not None:
        conditions.append(keyset_condition(table, query.sort, query.after))
    order = [order_term(table.c[key.field], key.descending) for key in query.sort]
    wanted = list({c.name: c for c in (*columns, table.c[via])}.values())
    number = sa.func.row_number().over(partition_by=table.c[via], order_by=order).label("_rn")
    inner = sa.select(*wanted, number).where(*conditions).subquery()
    rows = (
        sa.select(*(inner.c[c.name] for c in wanted))
        .where(inner.c._rn <= query.limit + 1)
        .order_by(inner.c[via], inner.c._rn)
    )
    count = (
        sa.select(table.c[via], sa.func.count().label("_n"))
        .where(*conditions)
        .group_by(table.c[via])
    )
    return GroupStatements(rows, count, params)
