"""A resolved expression compiled to a SQLAlchemy condition (`expr_to_sql`).

Every value is a bound parameter typed like the column it meets; `~` compiles to a
case-sensitive substring test per dialect (never LIKE, so no wildcard escaping).
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or
from charpente.design.resolve import JSON_KEY
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


class JsonMember(FunctionElement[Any]):
    """`meta.lang`: the value at a path of keys in a json field when it is of the wanted
    type (`want`: "text", "number", "bool"), else NULL; with "any", a non-null marker when
    a value other than json null is there (for `== null` / `!= null`)."""

    name = "json_member"
    inherit_cache = True
    _traverse_internals = [
        *FunctionElement._traverse_internals,
        ("keys", InternalTraversal.dp_plain_obj),
        ("want", InternalTraversal.dp_string),
    ]

    def __init__(self, column: sa.ColumnElement[Any], keys: tuple[str, ...], want: str) -> None:
        for key in keys:
            if not JSON_KEY.fullmatch(key):  # design.resolve allows nothing else; never quoted
                raise ExprError(f"{key!r} is not a key of a json path")
        self.keys, self.want = keys, want
        self.type = _MEMBER_TYPES[want]
        super().__init__(column)


_MEMBER_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "text": sa.Text(),
    "number": sa.Numeric(),
    "bool": sa.Boolean(),
    "any": sa.Text(),
}
_SQLITE_TYPES = {"text": "('text')", "number": "('integer', 'real')", "bool": "('true', 'false')"}
_PG_TYPES = {"text": "string", "number": "number", "bool": "boolean"}
_PG_VALUES = {"text": '{} COLLATE "C"', "number": "{}::numeric", "bool": "{}::boolean"}


@compiles(JsonMember)
@compiles(JsonMember, "sqlite")
def _json_member_sqlite(element: JsonMember, compiler: SQLCompiler, **kw: Any) -> str:
    (document,) = (compiler.process(c, **kw) for c in element.clauses)
    path = "'$." + ".".join(element.keys) + "'"
    kind = f"json_type({document}, {path})"
    if element.want == "any":
        return f"NULLIF({kind}, 'null')"
    value = f"json_extract({document}, {path})"
    return f"(CASE WHEN {kind} IN {_SQLITE_TYPES[element.want]} THEN {value} END)"


@compiles(JsonMember, "postgresql")
def _json_member_postgresql(element: JsonMember, compiler: SQLCompiler, **kw: Any) -> str:
    (document,) = (compiler.process(c, **kw) for c in element.clauses)
    path = "'{" + ",".join(element.keys) + "}'"
    kind = f"jsonb_typeof({document} #> {path})"
    if element.want == "any":
        return f"NULLIF({kind}, 'null')"
    value = _PG_VALUES[element.want].format(f"({document} #>> {path})")
    return f"(CASE WHEN {kind} = '{_PG_TYPES[element.want]}' THEN {value} END)"


class JsonHolds(FunctionElement[bool]):
    """`"x" in tags`: whether a json array holds a scalar (the needle is a one-item json
    array, `["x"]`); false, never NULL, when the field is null or not an array."""

    type = sa.Boolean()
    name = "json_holds"
    inherit_cache = True


@compiles(JsonHolds)
@compiles(JsonHolds, "sqlite")
def _json_holds_sqlite(element: JsonHolds, compiler: SQLCompiler, **kw: Any) -> str:
    document, needle = (compiler.process(c, **kw) for c in element.clauses)
    numbers = "('integer', 'real')"
    same_type = f"(j.type = n.type OR (j.type IN {numbers} AND n.type IN {numbers}))"
    return (  # compiled fragments only; the needle is a bound parameter
        f"(coalesce(json_type({document}) = 'array', 0) AND EXISTS (SELECT 1 FROM "  # noqa: S608
        f"json_each({document}) AS j, json_each({needle}) AS n "
        f"WHERE {same_type} AND j.value = n.value))"
    )


@compiles(JsonHolds, "postgresql")
def _json_holds_postgresql(element: JsonHolds, compiler: SQLCompiler, **kw: Any) -> str:
    document, needle = (compiler.process(c, **kw) for c in element.clauses)
    # jsonb containment: an array contains ["x"] when an element equals "x" (numbers by value)
    return f"coalesce(jsonb_typeof({document}) = 'array' AND {document} @> {needle}, false)"


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
        literal = next((s for s in (node.left, node.right) if isinstance(s, Literal)), None)
        named = node.left if isinstance(node.left, Name) else node.right
        typed = self.column(named, literal)
        left = typed if node.left is named else self.operand(node.left, typed)
        right = typed if node.right is named else self.operand(node.right, typed)
        if node.op == "~":
            return Contains(left, right)
        return _ORDER[node.op](left, right)

    def membership(self, node: Compare) -> sa.ColumnElement[bool]:
        if isinstance(node.right, Name):
            return self.holds(node)
        assert isinstance(node.right, ListOf)
        first = node.right.items[0] if node.right.items else None
        column = self.column(node.left, first)
        values: Any = [item.value for item in node.right.items]
        if self.names is not None:
            values = sa.bindparam(next(self.names), expanding=True, type_=column.type)
        return column.in_(values) if node.op == "in" else column.not_in(values)

    def holds(self, node: Compare) -> sa.ColumnElement[bool]:
        document = self.column(node.right)
        if not isinstance(node.left, Literal):
            raise ExprError(f"{_dotted(node.left)} cannot be compiled to SQL here", node.pos)
        needle: Any = [node.left.value]
        if self.names is not None:
            needle = sa.bindparam(next(self.names), type_=document.type)
        else:
            needle = sa.bindparam(None, needle, type_=document.type)
        found = JsonHolds(document, needle)
        return found if node.op == "in" else sa.not_(found)

    def operand(self, expr: Expr, typed: sa.ColumnElement[Any]) -> Operand:
        """A column, or a literal bound with the type of the column it is compared with."""
        if isinstance(expr, Literal):
            if self.names is not None:
                return sa.bindparam(next(self.names), type_=typed.type)
            return sa.bindparam(None, expr.value, type_=typed.type)
        return self.column(expr)

    def column(self, expr: Expr, literal: Literal | None = None) -> sa.ColumnElement[Any]:
        """The column a name stands for; a path into a json field is typed by `literal`."""
        if not isinstance(expr, Name):
            raise ExprError("expected a field", expr.pos)
        table, path = self.table, expr.path
        if len(path) == 2 and self.outer is not None and path[0] == _name(self.outer):
            table, path = self.outer, path[1:]
        if len(path) == 2 and path[1] == "length" and path[0] in table.c:
            column = table.c[path[0]]
            if isinstance(column.type, sa.JSON):
                return JsonLength(column)
        if len(path) > 1 and path[0] in table.c and isinstance(table.c[path[0]].type, sa.JSON):
            return JsonMember(table.c[path[0]], path[1:], _wanted(literal))
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


def _wanted(literal: Literal | None) -> str:
    """What a path into json is compared as: the type of the literal it meets."""
    value = None if literal is None else literal.value
    if value is None:
        return "any"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | decimal.Decimal):
        return "number"
    return "text"


def _dotted(expr: Expr) -> str:
    return expr.dotted if isinstance(expr, Name) else "this side"


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
            if op in ("in", "not in") and isinstance(right, Name):
                assert isinstance(left, Literal)
                return shape, ([left.value],)  # the needle, a one-item json array
            if op in ("in", "not in"):
                assert isinstance(right, ListOf)
                return shape, ([item.value for item in right.items],)
            sides = (left, right)
            if any(isinstance(side, Literal) and side.value is None for side in sides):
                return shape, ()
            return shape, tuple(side.value for side in sides if isinstance(side, Literal))
        case Literal(value):
            # null compiles to IS NULL, a folded true/false to a constant: not parameters; the
            # type is kept since a path into json is compared as the type of what it meets
            kind = value if value is None or isinstance(value, bool) else _wanted(expr)
            return ("literal", kind), ()
        case ListOf(items):
            return ("list", _wanted(items[0]) if items else None), ()
        case Name(path):
            return ("name", path), ()
        case Call(name, args):
            walked = [_walked(a) for a in args]
            shape = ("call", name, tuple(s for s, _ in walked))
            return shape, tuple(v for _, values in walked for v in values)
    raise AssertionError(f"not an expression: {expr!r}")
