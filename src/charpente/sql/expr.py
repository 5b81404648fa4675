"""A resolved expression compiled to a SQLAlchemy condition (`expr_to_sql`).

Every value is a bound parameter typed like the column it meets; `~` compiles to a
case-sensitive substring test per dialect (never LIKE, so no wildcard escaping).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or
from charpente.errors import ExprError

__all__ = ["Contains", "expr_shape", "expr_to_sql", "expr_values"]

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
    expr: Expr,
    table: sa.Table,
    tables: Mapping[str, sa.Table] | None = None,
    *,
    names: Iterator[str] | None = None,
) -> sa.ColumnElement[bool]:
    """The condition `expr` (a tree returned by resolve_expr) on the rows of `table`.

    Values are bound with the literal's value, or — with `names` — as named parameters
    without a value, one per value of `expr_values(expr)` in that order, so that one
    compiled statement serves every expression of the same `expr_shape`.
    `tables` (every table by resource name) is for `exists(...)`, not compiled yet.
    Raises ExprError for what SQL cannot express here: `auth.*` names and calls.
    """
    match expr:
        case And(left, right):
            return sa.and_(
                expr_to_sql(left, table, tables, names=names),
                expr_to_sql(right, table, tables, names=names),
            )
        case Or(left, right):
            return sa.or_(
                expr_to_sql(left, table, tables, names=names),
                expr_to_sql(right, table, tables, names=names),
            )
        case Not(operand):
            return sa.not_(expr_to_sql(operand, table, tables, names=names))
        case Compare():
            return _compare(expr, table, names)
        case Call(name, _, pos):
            raise ExprError(f"{name}() cannot be compiled to SQL yet", pos)
    raise ExprError("not a condition: resolve the expression first", expr.pos)


def expr_shape(expr: Expr) -> Hashable:
    """What decides the SQL text of `expr`: its tree without the literal values."""
    match expr:
        case And(left, right) | Or(left, right):
            return (type(expr).__name__, expr_shape(left), expr_shape(right))
        case Not(operand):
            return ("not", expr_shape(operand))
        case Compare(op, left, right):
            return ("compare", op, expr_shape(left), expr_shape(right))
        case Literal(value):
            return ("literal", value is None)  # null compiles to IS NULL, not a parameter
        case ListOf():
            return ("list",)
        case Name(path):
            return ("name", path)
        case Call(name, args):
            return ("call", name, tuple(expr_shape(a) for a in args))
    raise AssertionError(f"not an expression: {expr!r}")


def expr_values(expr: Expr) -> list[object]:
    """The values `expr_to_sql(..., names=...)` leaves as parameters, in the same order."""
    match expr:
        case And(left, right) | Or(left, right):
            return [*expr_values(left), *expr_values(right)]
        case Not(operand):
            return expr_values(operand)
        case Compare(op, left, right):
            if op in ("in", "not in"):
                assert isinstance(right, ListOf)
                return [[item.value for item in right.items]]
            sides = (left, right)
            if any(isinstance(side, Literal) and side.value is None for side in sides):
                return []
            return [side.value for side in sides if isinstance(side, Literal)]
    return []


def _compare(node: Compare, table: sa.Table, names: Iterator[str] | None) -> sa.ColumnElement[bool]:
    if node.op in ("in", "not in"):
        return _membership(node, table, names)
    for null_side, other in ((node.right, node.left), (node.left, node.right)):
        if isinstance(null_side, Literal) and null_side.value is None:
            column = _column(other, table)
            return column.is_(None) if node.op == "==" else column.is_not(None)
    typed = _column(node.left if isinstance(node.left, Name) else node.right, table)
    left = _operand(node.left, table, typed, names)
    right = _operand(node.right, table, typed, names)
    if node.op == "~":
        return Contains(left, right)
    return _ORDER[node.op](left, right)


def _membership(
    node: Compare, table: sa.Table, names: Iterator[str] | None
) -> sa.ColumnElement[bool]:
    assert isinstance(node.right, ListOf)
    column = _column(node.left, table)
    values: Any = [item.value for item in node.right.items]
    if names is not None:
        values = sa.bindparam(next(names), expanding=True, type_=column.type)
    return column.in_(values) if node.op == "in" else column.not_in(values)


def _operand(
    expr: Expr, table: sa.Table, typed: sa.ColumnElement[Any], names: Iterator[str] | None
) -> Operand:
    """A column, or a literal bound with the type of the column it is compared with."""
    if isinstance(expr, Literal):
        if names is not None:
            return sa.bindparam(next(names), type_=typed.type)
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
