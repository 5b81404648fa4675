"""A resolved expression evaluated on one row, with SQL's three-valued logic (`evaluate`).

Pure. It answers what the SQL compilation of the same tree answers for that row.
"""

from __future__ import annotations

import decimal
import operator
from collections.abc import Callable, Mapping
from typing import Any

from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or
from charpente.errors import ExprError

__all__ = ["evaluate"]

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def evaluate(
    expr: Expr, row: Mapping[str, object], auth: Mapping[str, object] | None = None
) -> bool | None:
    """True, False or None (unknown) for a tree returned by resolve_expr, on `row`.

    SQL semantics: a comparison with a null operand is unknown, except `x == null` (is null)
    and `x != null` (is not null); `and`, `or`, `not` follow Kleene logic; `x in []` is False
    and `x not in []` True even for a null x; `~` is a case-sensitive substring test; strings
    order by code point. `auth.id` / `auth.role` are read from `auth` (missing: null).

    Callers decide what unknown means: a filter keeps only rows where the answer is True
    (None excludes the row, like SQL WHERE); a check fails only on False (None passes, like
    an SQL CHECK constraint). A field missing from `row` counts as null (an unset column).
    """
    match expr:
        case And(left, right):
            return _and(evaluate(left, row, auth), evaluate(right, row, auth))
        case Or(left, right):
            return _or(evaluate(left, row, auth), evaluate(right, row, auth))
        case Not(operand):
            value = evaluate(operand, row, auth)
            return None if value is None else not value
        case Compare():
            return _compare(expr, row, auth)
        case Call(name, _, pos):
            raise ExprError(f"{name}() cannot be evaluated on a single row", pos)
        case Literal(value) if value is None or isinstance(value, bool):
            return value  # a constant that design.bind folded
    raise ExprError("not a condition: resolve the expression first", expr.pos)


def _and(left: bool | None, right: bool | None) -> bool | None:
    if left is False or right is False:
        return False
    if left is None or right is None:
        return None
    return True


def _or(left: bool | None, right: bool | None) -> bool | None:
    if left is True or right is True:
        return True
    if left is None or right is None:
        return None
    return False


def _compare(
    node: Compare, row: Mapping[str, object], auth: Mapping[str, object] | None
) -> bool | None:
    if node.op in ("in", "not in"):
        return _membership(node, row, auth)
    for null_side, other in ((node.right, node.left), (node.left, node.right)):
        if isinstance(null_side, Literal) and null_side.value is None:
            is_null = _value(other, row, auth) is None
            return is_null if node.op == "==" else not is_null
    kind = next((s.value for s in (node.left, node.right) if isinstance(s, Literal)), None)
    left, right = _value(node.left, row, auth, kind), _value(node.right, row, auth, kind)
    if left is None or right is None:
        return None
    if node.op == "~":
        return str(right) in str(left)
    return _ORDER[node.op](left, right)


def _membership(
    node: Compare, row: Mapping[str, object], auth: Mapping[str, object] | None
) -> bool | None:
    if isinstance(node.right, Name):
        return _element(node, row, auth)
    assert isinstance(node.right, ListOf)
    items = [item.value for item in node.right.items]
    if not items:
        return node.op == "not in"
    value = _value(node.left, row, auth, items[0])
    if value is None:
        return None
    found = any(value == item for item in items)
    return found if node.op == "in" else not found


def _element(
    node: Compare, row: Mapping[str, object], auth: Mapping[str, object] | None
) -> bool | None:
    """`"x" in tags`: false when the field is not an array; bool and number never equal."""
    assert isinstance(node.right, Name)
    value = _value(node.left, row, auth)
    if value is None:
        return None  # an anonymous caller's auth.id: unknown, as design.bind folds it
    array = row.get(node.right.path[0])
    found = isinstance(array, list) and any(_same_scalar(value, item) for item in array)
    return found if node.op == "in" else not found


def _same_scalar(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def _value(
    expr: Expr,
    row: Mapping[str, object],
    auth: Mapping[str, object] | None,
    kind: object = None,
) -> object:
    """A side's value; `kind` (a literal's value) types what a path into json yields."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Name):
        if expr.path[0] == "auth" and len(expr.path) == 2:
            return None if auth is None else auth.get(expr.path[1])
        if len(expr.path) == 2 and expr.path[1] == "length":
            array = row.get(expr.path[0])
            return len(array) if isinstance(array, list) else None  # not an array: null
        if len(expr.path) > 1 and expr.dotted not in row:  # not an outer record's field
            return _member(row.get(expr.path[0]), expr.path[1:], kind)
        return row.get(expr.dotted)
    raise ExprError("each side of a comparison must be a field or a value", expr.pos)


def _member(document: object, keys: tuple[str, ...], kind: object) -> object:
    """The value at `keys` inside a json document if it is of `kind`'s type, else null."""
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    if kind is None:
        return document  # == null / != null: absent and json null are both null
    if isinstance(kind, bool):
        return document if isinstance(document, bool) else None
    if isinstance(kind, decimal.Decimal):
        if isinstance(document, bool) or not isinstance(document, int | float):
            return None
        return decimal.Decimal(document if isinstance(document, int) else repr(document))
    return document if isinstance(document, str) else None
