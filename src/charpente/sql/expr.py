"""A resolved expression compiled to a SQLAlchemy condition (`expr_to_sql`).

Every value is a bound parameter typed like the column it meets; `~` compiles to a
case-sensitive substring test per dialect (never LIKE, so no wildcard escaping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or
from charpente.errors import ExprError

__all__ = ["Contains", "expr_to_sql"]

Operand = sa.ColumnElement[Any]

_ORDER: dict[str, Callable[[Operand, Operand], sa.ColumnElement[bool]]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class Contains(FunctionElement[bool]):
    """`haystack ~ needle`: whether the text contains the other, case-sensitively."""

    type = sa.Boolean()
    name = "contains"
    inherit_cache = True


@compiles(Contains)
@compiles(Contains, "sqlite")
def _contains_sqlite(element: Contains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"(instr({haystack}, {needle}) > 0)"


@compiles(Contains, "postgresql")
def _contains_postgresql(element: Contains, compiler: SQLCompiler, **kw: Any) -> str:
    haystack, needle = (compiler.process(c, **kw) for c in element.clauses)
    return f"(strpos({haystack}, {needle}) > 0)"


def expr_to_sql(
    expr: Expr, table: sa.Table, tables: Mapping[str, sa.Table] | None = None
) -> sa.ColumnElement[bool]:
    """The condition `expr` (a tree returned by resolve_expr) on the rows of `table`.

    `tables` (every table by resource name) is for `exists(...)`, not compiled yet.
    Raises ExprError for what SQL cannot express here: `auth.*` names and calls.
    """
    match expr:
        case And(left, right):
            return sa.and_(expr_to_sql(left, table, tables), expr_to_sql(right, table, tables))
        case Or(left, right):
            return sa.or_(expr_to_sql(left, table, tables), expr_to_sql(right, table, tables))
        case Not(operand):
            return sa.not_(expr_to_sql(operand, table, tables))
        case Compare():
            return _compare(expr, table)
        case Call(name, _, pos):
            raise ExprError(f"{name}() cannot be compiled to SQL yet", pos)
    raise ExprError("not a condition: resolve the expression first", expr.pos)


def _compare(node: Compare, table: sa.Table) -> sa.ColumnElement[bool]:
    if node.op in ("in", "not in"):
        return _membership(node, table)
    for null_side, other in ((node.right, node.left), (node.left, node.right)):
        if isinstance(null_side, Literal) and null_side.value is None:
            column = _column(other, table)
            return column.is_(None) if node.op == "==" else column.is_not(None)
    typed = _column(node.left if isinstance(node.left, Name) else node.right, table)
    left, right = _operand(node.left, table, typed), _operand(node.right, table, typed)
    if node.op == "~":
        return Contains(left, right)
    return _ORDER[node.op](left, right)


def _membership(node: Compare, table: sa.Table) -> sa.ColumnElement[bool]:
    assert isinstance(node.right, ListOf)
    column = _column(node.left, table)
    values = [item.value for item in node.right.items]
    return column.in_(values) if node.op == "in" else column.not_in(values)


def _operand(expr: Expr, table: sa.Table, typed: sa.ColumnElement[Any]) -> Operand:
    """A column, or a literal bound with the type of the column it is compared with."""
    if isinstance(expr, Literal):
        return sa.bindparam(None, expr.value, type_=typed.type)
    return _column(expr, table)


def _column(expr: Expr, table: sa.Table) -> sa.ColumnElement[Any]:
    if not isinstance(expr, Name):
        raise ExprError("expected a field", expr.pos)
    if len(expr.path) > 1:
        raise ExprError(f"{expr.dotted} cannot be compiled to SQL yet", expr.pos)
    if expr.path[0] not in table.c:
        raise ExprError(f"unknown field {expr.path[0]!r}", expr.pos)
    return table.c[expr.path[0]]
