"""An access rule with the caller filled in (`bind_caller`): what is left is about the row.

Pure. `auth.id` and `auth.role` become values, and every part that no longer depends on the
row folds to a constant with SQL's three-valued logic: `Literal(True)`, `Literal(False)` or
`Literal(None)` (unknown). The result is either such a constant or a condition on the row
(possibly with `exists(...)`) that the SQL compiler turns into a WHERE clause and that
`design.evaluate` can test on one row.

A caller without an account has a null `auth.id`: `author == auth.id` is then unknown, never
`author IS NULL`, which is why names are not simply replaced by literals.
"""

from __future__ import annotations

from collections.abc import Mapping

from charpente.design.evaluate import evaluate
from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or

__all__ = ["FALSE", "TRUE", "UNKNOWN", "bind_caller", "can_hold", "uses_exists"]

TRUE = Literal(True)
FALSE = Literal(False)
UNKNOWN = Literal(None)


def bind_caller(expr: Expr, auth: Mapping[str, object]) -> Expr:
    """`expr` (resolved, with auth names) for the caller `auth` ({"id": …, "role": …})."""
    match expr:
        case And(left, right, pos):
            return _and(bind_caller(left, auth), bind_caller(right, auth), pos)
        case Or(left, right, pos):
            return _or(bind_caller(left, auth), bind_caller(right, auth), pos)
        case Not(operand, pos):
            inner = bind_caller(operand, auth)
            if isinstance(inner, Literal):
                return UNKNOWN if inner.value is None else Literal(not inner.value)
            return Not(inner, pos)
        case Compare():
            return _compare(expr, auth)
        case Call("exists", (target, condition), pos):
            inner = bind_caller(condition, auth)
            if not can_hold(inner):
                return FALSE  # no row can satisfy it: EXISTS is false, never unknown
            return Call("exists", (target, inner), pos)
        case Literal():
            return expr
    raise AssertionError(f"not a resolved condition: {expr!r}")


def can_hold(expr: Expr) -> bool:
    """Whether a bound rule may be true for some row (False: it grants nothing)."""
    match expr:
        case Literal(value):
            return value is True
        case And(left, right):
            return can_hold(left) and can_hold(right)
        case Or(left, right):
            return can_hold(left) or can_hold(right)
    return True


def uses_exists(expr: Expr) -> bool:
    """Whether `expr` needs the database to be decided (it holds an exists())."""
    match expr:
        case And(left, right) | Or(left, right):
            return uses_exists(left) or uses_exists(right)
        case Not(operand):
            return uses_exists(operand)
        case Call():
            return True
    return False


def _is(expr: Expr, value: bool | None) -> bool:
    return isinstance(expr, Literal) and expr.value is value


def _and(left: Expr, right: Expr, pos: int) -> Expr:
    for one, other in ((left, right), (right, left)):
        if _is(one, False):
            return FALSE
        if _is(one, True):
            return other
    if _is(left, None) and _is(right, None):
        return UNKNOWN
    return And(left, right, pos)


def _or(left: Expr, right: Expr, pos: int) -> Expr:
    for one, other in ((left, right), (right, left)):
        if _is(one, True):
            return TRUE
        if _is(one, False):
            return other
    if _is(left, None) and _is(right, None):
        return UNKNOWN
    return Or(left, right, pos)


def _compare(node: Compare, auth: Mapping[str, object]) -> Expr:
    sides = (node.left, node.right)
    if not any(_is_auth(side) for side in sides):
        return node
    if all(_is_auth(side) or isinstance(side, Literal | ListOf) for side in sides):
        return Literal(evaluate(node, {}, auth))
    bound = [_bound(side, auth) for side in sides]
    if any(side is None for side in bound):
        return UNKNOWN  # the caller's value is null: the comparison is unknown for every row
    left, right = bound
    assert left is not None
    assert right is not None
    return Compare(node.op, left, right, node.pos)


def _bound(side: Expr, auth: Mapping[str, object]) -> Expr | None:
    """The side with the caller's value in place of an auth name; None for a null value."""
    if not _is_auth(side):
        return side
    assert isinstance(side, Name)
    value = auth.get(side.path[1])
    if value is None:
        return None
    assert isinstance(value, str | bool)
    return Literal(value, side.pos)


def _is_auth(side: Expr) -> bool:
    return isinstance(side, Name) and len(side.path) == 2 and side.path[0] == "auth"
