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


class JsonLength(FunctionElement[int]):
    """`tags.length`: the length of a json array, NULL when the value is not an array."""

    type = sa.BigInteger()
    name = "json_length"
    inherit_cache = True


@compiles(JsonLength)
@compiles(JsonLength, "sqlite")
def _json_length_sqlite(element: JsonLength, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CASE WHEN json_type({value}) = 'array' THEN json_array_length({value}) END)"


@compiles(JsonLength, "postgresql")
def _json_length_postgresql(element: JsonLength, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CASE WHEN jsonb_typeof({value}) = 'array' THEN jsonb_array_length({value}) END)"


def expr_to_sql(
    expr: Expr,
    table: sa.Table,
    tables: Mapping[str, sa.Table] | None = None,
    *,
    names: Iterator[str] | None = None,
) -> sa.ColumnElement[bool]:
    """The condition `expr` (a tree returned by resolve_expr, auth names bound) on `table`.

    Values are bound with the literal's value, or — with `names` — as named parameters
    without a value, one per value of `expr_values(expr)` in that order, so that one
    compiled statement serves every expression of the same `expr_shape`.
    `tables` (every table by resource name) is for `exists(resource, condition)`, which
    becomes a correlated EXISTS subquery. Constants folded by design.bind become TRUE,
    FALSE or NULL. Raises ExprError for what SQL cannot express: unbound `auth.*` names.
    """
    return _Compiler(table, tables or {}, names).condition(expr)


class _Compiler:
    """Compiles one condition; `outer` is the rule's table while inside exists()."""

    def __init__(
        self,
        table: sa.FromClause,
        tables: Mapping[str, sa.Table],
        names: Iterator[str] | None,
        outer: sa.FromClause | None = None,
    ) -> None:
        self.table, self.tables, self.names, self.outer = table, tables, names, outer

    def condition(self, expr: Expr) -> sa.ColumnElement[bool]:
        match expr:
            case And(left, right):
                return sa.and_(self.condition(left), self.condition(right))
            case Or(left, right):
                return sa.or_(self.condition(left), self.condition(right))
            case Not(operand):
                return sa.not_(self.condition(operand))
            case Compare():
                return self.compare(expr)
            case Call("exists", (Name((target,)), inner)):
                return self.exists(target, inner, expr.pos)
            case Call(name, _, pos):
                raise ExprError(f"{name}() cannot be compiled to SQL", pos)
            case Literal(value) if value is None or isinstance(value, bool):
                return _CONSTANTS[value]
        raise ExprError("not a condition: resolve the expression first", expr.pos)

    def exists(self, target: str, inner: Expr, pos: int) -> sa.ColumnElement[bool]:
        if target not in self.tables:
            raise ExprError(f"unknown resource {target!r}", pos)
        alias = self.tables[target].alias(f"x_{target}")
        scope = _Compiler(alias, self.tables, self.names, self.table)
        # OFFSET 0 fences the subquery: without it PostgreSQL may plan the EXISTS as a
        # hashed SubPlan that reads every row matching the caller's part of the condition
        # once per query (all of a caller's follows), where probing a unique index per
        # outer row is far cheaper for the pages the API serves.
        probe = sa.select(sa.literal(1)).select_from(alias).where(scope.condition(inner))
        return probe.offset(0).exists()

    def compare(self, node: Compare) -> sa.ColumnElement[bool]:
        if node.op in ("in", "not in"):
            return self.membership(node)
        for null_side, other in ((node.right, node.left), (node.left, node.right)):
            if isinstance(null_side, Literal) and null_side.value is None:
                column = self.column(other)
                return column.is_(None) if node.op == "==" else column.is_not(None)
        typed = self.column(node.left if isinstance(node.left, Name) else node.right)
        left = self.operand(node.left, typed)
        right = self.operand(node.right, typed)
        if node.op == "~":
            return Contains(left, right)
        return _ORDER[node.op](left, right)

    def membership(self, node: Compare) -> sa.ColumnElement[bool]:
        assert isinstance(node.right, ListOf)
        column = self.column(node.left)
        values: Any = [item.value for item in node.right.items]
        if self.names is not None:
            values = sa.bindparam(next(self.names), expanding=True, type_=column.type)
        return column.in_(values) if node.op == "in" else column.not_in(values)

    def operand(self, expr: Expr, typed: sa.ColumnElement[Any]) -> Operand:
        """A column, or a literal bound with the type of the column it is compared with."""
        if isinstance(expr, Literal):
            if self.names is not None:
                return sa.bindparam(next(self.names), type_=typed.type)
            return sa.bindparam(None, expr.value, type_=typed.type)
        return self.column(expr)

    def column(self, expr: Expr) -> sa.ColumnElement[Any]:
        if not isinstance(expr, Name):
            raise ExprError("expected a field", expr.pos)
        table, path = self.table, expr.path
        if len(path) == 2 and self.outer is not None and path[0] == _name(self.outer):
            table, path = self.outer, path[1:]
        if len(path) == 2 and path[1] == "length" and path[0] in table.c:
            column = table.c[path[0]]
            if isinstance(column.type, sa.JSON):
                return JsonLength(column)
        if len(path) > 1:
            raise ExprError(f"{expr.dotted} cannot be compiled to SQL here", expr.pos)
        if path[0] not in table.c:
            raise ExprError(f"unknown field {path[0]!r}", expr.pos)
        return table.c[path[0]]


_CONSTANTS: dict[bool | None, sa.ColumnElement[bool]] = {
    True: sa.true(),
    False: sa.false(),
    None: sa.cast(sa.null(), sa.Boolean()),  # unknown: excludes the row, like SQL's NULL
}


def _name(clause: sa.FromClause) -> str:
    return str(getattr(clause, "name", ""))


def expr_shape(expr: Expr) -> Hashable:
    """What decides the SQL text of `expr`: its tree without the literal values."""
    return _walked(expr)[0]


def expr_values(expr: Expr) -> tuple[object, ...]:
    """The values `expr_to_sql(..., names=...)` leaves as parameters, in the same order."""
    return _walked(expr)[1]


_Walked = tuple[Hashable, tuple[object, ...]]

# Shapes and values of compound nodes by identity: a caller's bound access rule is one
# object reused request after request (and a subtree of every filtered list), so it is
# walked once. Entries hold their node, so an id is never reused while it is remembered.
_WALKED: dict[int, tuple[Expr, _Walked]] = {}
_WALKED_LIMIT = 4096


def _walked(expr: Expr) -> _Walked:
    match expr:
        case And() | Or() | Not() | Call():
            found = _WALKED.get(id(expr))
            if found is not None and found[0] is expr:
                return found[1]
            walked = _walk(expr)
            if len(_WALKED) >= _WALKED_LIMIT:
                _WALKED.clear()
            _WALKED[id(expr)] = (expr, walked)
            return walked
    return _walk(expr)


def _walk(expr: Expr) -> _Walked:
    match expr:
        case And(left, right) | Or(left, right):
            (left_shape, left_values), (right_shape, right_values) = _walked(left), _walked(right)
            return (type(expr).__name__, left_shape, right_shape), left_values + right_values
        case Not(operand):
            shape, values = _walked(operand)
            return ("not", shape), values
        case Compare(op, left, right):
            shape = ("compare", op, _walked(left)[0], _walked(right)[0])
            if op in ("in", "not in"):
                assert isinstance(right, ListOf)
                return shape, ([item.value for item in right.items],)
            sides = (left, right)
            if any(isinstance(side, Literal) and side.value is None for side in sides):
                return shape, ()
            return shape, tuple(side.value for side in sides if isinstance(side, Literal))
        case Literal(value):
            # null compiles to IS NULL, a folded true/false to a constant: not parameters
            return ("literal", value if value is None or isinstance(value, bool) else 0), ()
        case ListOf():
            return ("list",), ()
        case Name(path):
            return ("name", path), ()
        case Call(name, args):
            walked = [_walked(a) for a in args]
            shape = ("call", name, tuple(s for s, _ in walked))
            return shape, tuple(v for _, values in walked for v in values)
    raise AssertionError(f"not an expression: {expr!r}")
