"""Names and types of an expression, checked against a resource (`resolve_expr`).

Pure. The tree it returns has every literal coerced to the Python type of the field it is
compared with, so that evaluate and the SQL compiler never guess.
"""

from __future__ import annotations

import datetime
import decimal
import difflib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or, Value
from charpente.design.flags import flag_key, flag_name
from charpente.design.model import Design, Flag, Kind, Resource
from charpente.errors import ExprError

__all__ = ["FAMILY_OPS", "JSON_KEY", "family_of", "resolve_expr"]

_ORDER = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in"})
FAMILY_OPS: dict[str, frozenset[str]] = {
    "text": _ORDER | {"~"},
    "uuid": frozenset({"==", "!=", "in", "not in"}),
    "number": _ORDER,
    "date": _ORDER,
    "datetime": _ORDER,
    "bool": frozenset({"==", "!="}),
    "json": frozenset({"==", "!="}),
}
_FAMILIES = {
    Kind.STRING: "text",
    Kind.TEXT: "text",
    Kind.EMAIL: "text",
    Kind.URL: "text",
    Kind.ENUM: "text",
    Kind.UUID: "uuid",
    Kind.REF: "uuid",
    Kind.INT: "number",
    Kind.COUNT: "number",
    Kind.FLOAT: "number",
    Kind.DECIMAL: "number",
    Kind.BOOL: "bool",
    Kind.DATE: "date",
    Kind.DATETIME: "datetime",
    Kind.JSON: "json",
}
_AUTH_KINDS = {"id": Kind.UUID, "role": Kind.ENUM, "mfa": Kind.BOOL}
_INT64 = (-(2**63), 2**63 - 1)
JSON_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # a key of a path into json
MEMBER_DEPTH = 8  # keys in a path into a json field: meta.a.b … at most
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


@dataclass(frozen=True, slots=True)
class _Operand:
    """What a name stands for: its kind, the choices of an enum, and how to name it."""

    kind: Kind
    label: str
    choices: tuple[str, ...] = ()
    member: bool = False  # a value inside a json field (`meta.lang`): typed by what it meets

    @property
    def family(self) -> str:
        return family_of(self.kind)


def family_of(kind: Kind) -> str:
    """The comparison family of a kind: values of one family compare with each other."""
    return _FAMILIES[kind]


def resolve_expr(
    expr: Expr,
    resource: Resource,
    design: Design,
    *,
    allow_auth: bool = False,
    allow_exists: bool = False,
) -> Expr:
    """Check every name and comparison of `expr` against `resource`; return it with typed literals.

    Raises ExprError at the offending node's `pos`. With `allow_auth` (access rules),
    `auth.id`, `auth.role` and `auth` alone (signed in, read as `auth.id != null`) are
    accepted and left as names. With `allow_exists`, `exists(resource, condition)` is too:
    inside it a name is a field of that resource, else of the outer one, and the resolved
    tree names outer fields in full (`posts.author`) so that no name is ambiguous.
    """
    return _Resolver(resource, design, allow_auth, allow_exists).condition(expr)


@dataclass(frozen=True, slots=True)
class _Resolver:
    resource: Resource
    design: Design
    allow_auth: bool
    allow_exists: bool
    outer: Resource | None = None  # inside exists(): the resource of the rule

    def condition(self, expr: Expr) -> Expr:
        match expr:
            case And(left, right, pos):
                return And(self.condition(left), self.condition(right), pos)
            case Or(left, right, pos):
                return Or(self.condition(left), self.condition(right), pos)
            case Not(operand, pos):
                return Not(self.condition(operand), pos)
            case Compare():
                return self.compare(expr)
            case Call():
                return self.call(expr)
            case Name(("auth",), pos) if self.allow_auth:
                return Compare("!=", Name(("auth", "id"), pos), Literal(None, pos), pos)
        what = "a field" if isinstance(expr, Name) else "a value"
        raise ExprError(
            f"{what} alone is not a condition: compare it, e.g. with == or !=", expr.pos
        )

    def call(self, call: Call) -> Expr:
        if call.name == "flag":
            name, flag = self.flag(call)
            if flag.variants:
                raise ExprError(
                    f'flag {name!r} has variants: compare it, e.g. flag("{name}") == '
                    f'"{flag.variants[0].name}"',
                    call.pos,
                )
            return Compare("==", flag_name(name, call.pos), Literal(True, call.pos), call.pos)
        if call.name != "exists":
            raise ExprError(f"unknown function {call.name!r}", call.pos)
        if not self.allow_exists:
            raise ExprError("exists() is only for access rules", call.pos)
        if self.outer is not None:
            raise ExprError("exists() cannot be nested in another exists()", call.pos)
        if len(call.args) != 2 or not isinstance(call.args[0], Name):
            raise ExprError("write exists(resource, condition)", call.pos)
        target = call.args[0]
        inner = self.design.resource(target.dotted)
        if inner is None:
            known = difflib.get_close_matches(target.dotted, list(self.design.resources), n=1)
            hint = f"; did you mean {known[0]!r}?" if known else ""
            raise ExprError(f"unknown resource {target.dotted!r}{hint}", target.pos)
        scope = _Resolver(inner, self.design, self.allow_auth, False, self.resource)
        return Call("exists", (Name((inner.name,), target.pos), scope.condition(call.args[1])))

    def flag(self, call: Call) -> tuple[str, Flag]:
        """The flag `flag("name")` reads; ExprError for a flag the design does not declare."""
        if not self.allow_auth:
            raise ExprError("flag() is only for access rules", call.pos)
        if len(call.args) != 1 or not isinstance(call.args[0], Literal):
            raise ExprError('write flag("name") with the name of a declared flag', call.pos)
        name = call.args[0].value
        if not isinstance(name, str):
            raise ExprError('write flag("name") with the name of a declared flag', call.pos)
        flag = self.design.flags.get(name)
        if flag is None:
            close = difflib.get_close_matches(name, list(self.design.flags), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ExprError(f"unknown flag {name!r}: declare it under `flags`{hint}", call.pos)
        return name, flag

    def compare(self, node: Compare) -> Expr:
        node = Compare(node.op, self.flag_side(node.left), self.flag_side(node.right), node.pos)
        for side in (node.left, node.right):
            if not isinstance(side, Name | Literal | ListOf):
                raise ExprError("each side of a comparison must be a field or a value", side.pos)
        node = Compare(node.op, self.qualified(node.left), self.qualified(node.right), node.pos)
        if node.op in ("in", "not in"):
            return self.membership(node)
        for side in (node.left, node.right):
            if isinstance(side, ListOf):
                raise ExprError("a list can only follow 'in' or 'not in'", side.pos)
        if isinstance(node.left, Name) and isinstance(node.right, Name):
            return self.fields(node, self.operand(node.left), self.operand(node.right))
        if isinstance(node.left, Name):
            right = self.value(node, self.operand(node.left), node.right)
            return Compare(node.op, node.left, right, node.pos)
        if isinstance(node.right, Name):
            if node.op == "~":
                raise ExprError("the left side of '~' must be a field", node.left.pos)
            left = self.value(node, self.operand(node.right), node.left)
            return Compare(node.op, left, node.right, node.pos)
        raise ExprError("a comparison needs a field on at least one side", node.pos)

    def flag_side(self, side: Expr) -> Expr:
        """`flag("name")` as one side of a comparison: the caller's value of the flag."""
        if isinstance(side, Call) and side.name == "flag":
            return flag_name(self.flag(side)[0], side.pos)
        return side

    def membership(self, node: Compare) -> Expr:
        if isinstance(node.right, Name):
            return self.element(node)
        if not isinstance(node.left, Name):
            raise ExprError(f"the left side of {node.op!r} must be a field", node.left.pos)
        if not isinstance(node.right, ListOf):
            raise ExprError(f"{node.op!r} must be followed by a list: [a, b]", node.right.pos)
        operand = self.operand(node.left)
        if operand.member:
            operand = _member_kind(operand, node.right.items[0] if node.right.items else None)
        _check_op(node, operand)
        items = tuple(self.item(operand, item) for item in node.right.items)
        return Compare(node.op, node.left, ListOf(items, node.right.pos), node.pos)

    def element(self, node: Compare) -> Expr:
        """`"x" in tags`: whether a json array holds the value (false when it is no array)."""
        assert isinstance(node.right, Name)
        operand = self.operand(node.right)
        if operand.kind is not Kind.JSON or operand.member:
            raise ExprError(
                f"{node.op!r} must be followed by a list: [a, b], or by a json field",
                node.right.pos,
            )
        if isinstance(node.left, Name):
            is_caller = node.left.path[0] == "auth" and len(node.left.path) == 2
            if not is_caller or self.operand(node.left).family not in ("text", "uuid"):
                raise ExprError(
                    f"before {node.op!r} a json field, write a value or auth.id", node.left.pos
                )
            return node
        assert isinstance(node.left, Literal)
        value = node.left.value
        if value is None:
            raise ExprError("null cannot be looked for in a json array", node.left.pos)
        if isinstance(value, str):
            value = _text(operand, value, node.op)
        elif type(value) is int:
            value = _int(operand, value, node.op)
        elif type(value) is not float and not isinstance(value, bool):
            raise ExprError("look for a string, a number, true or false", node.left.pos)
        return Compare(node.op, Literal(value, node.left.pos), node.right, node.pos)

    def item(self, operand: _Operand, item: Literal) -> Literal:
        if item.value is None:
            raise ExprError("null cannot be in a list: use == null", item.pos)
        return Literal(_coerce(operand, item, "in"), item.pos)

    def fields(self, node: Compare, left: _Operand, right: _Operand) -> Expr:
        if node.op == "~":
            raise ExprError("the right side of '~' must be a string value", node.right.pos)
        if left.family != right.family or left.family == "json":
            raise ExprError(
                f"{left.label} and {right.label} cannot be compared with each other", node.pos
            )
        _check_op(node, left)
        return node

    def value(self, node: Compare, operand: _Operand, literal: Expr) -> Literal:
        assert isinstance(literal, Literal)
        if literal.value is None:
            if node.op not in ("==", "!="):
                raise ExprError("null can only be compared with == or !=", node.pos)
            return literal
        if operand.member:
            operand = _member_kind(operand, literal)
        elif operand.family == "json":
            side = node.left if isinstance(node.left, Name) else node.right
            field = side.dotted if isinstance(side, Name) else "field"
            raise ExprError(
                f"{operand.label} can only be compared with null; compare a value inside it "
                f'({field}.key == "x") or look for one in an array ("x" in {field})',
                literal.pos,
            )
        _check_op(node, operand)
        return Literal(_coerce(operand, literal, node.op), literal.pos)

    def qualified(self, side: Expr) -> Expr:
        """`auth` alone as `auth.id`; inside exists(), a name of the outer resource in full."""
        if self.allow_auth and isinstance(side, Name) and side.path == ("auth",):
            return Name(("auth", "id"), side.pos)
        if self.outer is None or not isinstance(side, Name) or side.path[0] == "auth":
            return side
        name = side.path[0]
        if len(side.path) == 1 and self.resource.field(name) is None and self.outer.field(name):
            return Name((self.outer.name, name), side.pos)
        return side

    def operand(self, name: Name) -> _Operand:
        if name.path[0] == "auth" and len(name.path) > 1:
            return self.auth(name)
        if self.outer is not None and len(name.path) == 2 and name.path[0] == self.outer.name:
            return _Resolver(self.outer, self.design, False, False).operand(Name(name.path[1:]))
        if len(name.path) == 2 and name.path[1] == "length":
            return self.length(name)
        if len(name.path) > 1:
            json_field = self.resource.field(name.path[0])
            if json_field is not None and json_field.kind is Kind.JSON:
                return self.member(name)
            raise ExprError(
                f"{name.dotted!r} is not a field: dotted names are for auth.id and auth.role, "
                "and for a value inside a json field (meta.lang)",
                name.pos,
            )
        field = self.resource.field(name.path[0])
        if field is None:
            raise ExprError(self.unknown(name.path[0]), name.pos)
        if field.writeonly:
            raise ExprError(f"field {field.name!r} is write-only: it cannot be used", name.pos)
        return _Operand(field.kind, f"field {field.name!r} ({field.kind})", field.choices)

    def length(self, name: Name) -> _Operand:
        """`tags.length`: the length of a json array (null when the value is not an array)."""
        field = self.resource.field(name.path[0])
        if field is None:
            raise ExprError(self.unknown(name.path[0]), name.pos)
        if field.kind is not Kind.JSON:
            raise ExprError(
                f"{name.dotted!r}: .length applies to a json field, not to "
                f"field {field.name!r} ({field.kind})",
                name.pos,
            )
        if field.writeonly:
            raise ExprError(f"field {field.name!r} is write-only: it cannot be used", name.pos)
        return _Operand(Kind.INT, f"{name.dotted} (json array length)")

    def member(self, name: Name) -> _Operand:
        """`meta.lang`: the value at a path of keys inside a json field (null when absent)."""
        field = self.resource.field(name.path[0])
        assert field is not None
        if field.writeonly:
            raise ExprError(f"field {field.name!r} is write-only: it cannot be used", name.pos)
        keys = name.path[1:]
        if len(keys) > MEMBER_DEPTH:
            raise ExprError(
                f"{name.dotted!r}: at most {MEMBER_DEPTH} keys into a json field", name.pos
            )
        for key in keys:
            if not JSON_KEY.fullmatch(key):
                raise ExprError(
                    f"{key!r} is not a key: letters, digits and _, at most 64", name.pos
                )
        return _Operand(Kind.JSON, f"{name.dotted} (in json field {field.name!r})", member=True)

    def auth(self, name: Name) -> _Operand:
        if name.path[1].startswith(flag_key("")) and len(name.path) == 2:
            flag = self.design.flags[name.path[1].removeprefix(flag_key(""))]
            label = f'flag("{flag.name}")'
            if flag.variants:
                return _Operand(Kind.ENUM, label, tuple(v.name for v in flag.variants))
            return _Operand(Kind.BOOL, label)
        if not self.allow_auth:
            raise ExprError(f"{name.dotted!r}: the caller (auth) is not available here", name.pos)
        kind = _AUTH_KINDS.get(name.path[1]) if len(name.path) == 2 else None
        if kind is None:
            raise ExprError(
                f"unknown {name.dotted!r}: use auth.id, auth.role or auth.mfa", name.pos
            )
        if kind is Kind.ENUM:
            return _Operand(kind, "auth.role", self.design.auth.roles)
        return _Operand(kind, f"{name.dotted} ({kind})")

    def unknown(self, name: str) -> str:
        known = [f.name for f in self.resource.all_fields if not f.writeonly]
        message = f"unknown field {name!r} in {self.resource.name!r}"
        close = difflib.get_close_matches(name, known, n=1)
        return f"{message}; did you mean {close[0]!r}?" if close else message


def _member_kind(operand: _Operand, literal: Literal | None) -> _Operand:
    """A value inside a json field, typed by the literal it is compared with."""
    value = None if literal is None else literal.value
    if isinstance(value, bool):
        kind = Kind.BOOL
    elif isinstance(value, int | float):
        kind = Kind.DECIMAL  # exact on PostgreSQL (numeric); a double on SQLite
    elif isinstance(value, str) or literal is None:
        kind = Kind.STRING
    else:
        raise ExprError(
            f"{operand.label}: compare it with a string, a number, true or false", literal.pos
        )
    path = operand.label.split(" ")[0]
    return _Operand(kind, f"{path} (compared as {family_of(kind)})")


def _check_op(node: Compare, operand: _Operand) -> None:
    if node.op not in FAMILY_OPS[operand.family]:
        allowed = " ".join(op for op in FAMILY_OPS[operand.family])
        raise ExprError(
            f"{node.op!r} does not apply to {operand.label}; use one of: {allowed}", node.pos
        )


def _coerce(operand: _Operand, literal: Literal, op: str) -> Value:
    """The literal as a value of the operand's kind, or ExprError at the literal."""
    try:
        return _COERCIONS[operand.kind](operand, literal.value, op)
    except (ValueError, TypeError, OverflowError, ArithmeticError) as error:
        raise ExprError(f"{operand.label}: {error}", literal.pos) from None


def _text(operand: _Operand, value: Value, op: str) -> Value:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {_show(value)}")
    if "\x00" in value:
        raise ValueError("a string cannot contain the NUL character")
    if operand.kind is Kind.ENUM and op != "~" and value not in operand.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(operand.choices)}")
    return value


def _uuid(operand: _Operand, value: Value, op: str) -> Value:
    if not isinstance(value, str):
        raise TypeError(f"expected a UUID string, not {_show(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid UUID") from None


def _int(operand: _Operand, value: Value, op: str) -> Value:
    if type(value) is not int:
        raise TypeError(f"expected an integer, not {_show(value)}")
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError("the number is out of range (signed 64 bits)")
    return value


def _float(operand: _Operand, value: Value, op: str) -> Value:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, not {_show(value)}")
    assert isinstance(value, int | float)
    try:
        return float(value)
    except OverflowError:
        raise ValueError("the number is out of range") from None


def _decimal(operand: _Operand, value: Value, op: str) -> Value:
    if type(value) is int:
        return decimal.Decimal(value)
    if type(value) is float:
        return decimal.Decimal(repr(value))  # the literal's digits, not the binary float's
    raise TypeError(f"expected a number, not {_show(value)}")


def _bool(operand: _Operand, value: Value, op: str) -> Value:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, not {_show(value)}")
    return value


def _date(operand: _Operand, value: Value, op: str) -> Value:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError(f'expected a date as "YYYY-MM-DD", not {_show(value)}')
    return datetime.date.fromisoformat(value)


def _datetime(operand: _Operand, value: Value, op: str) -> Value:
    if isinstance(value, str) and _DATE.fullmatch(value):
        return datetime.datetime.combine(
            datetime.date.fromisoformat(value), datetime.time(), datetime.UTC
        )
    match = _DATETIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f'expected a time like "2026-01-01T10:00:00Z" or a date, not {_show(value)}'
        )
    return _rfc3339(match)


def _rfc3339(match: re.Match[str]) -> datetime.datetime:
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or "0").ljust(6, "0")[:6])
    zone = datetime.UTC
    if match.group(9):
        offset = datetime.timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        zone = datetime.timezone(-offset if match.group(9) == "-" else offset)
    moment = datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=zone)
    return moment.astimezone(datetime.UTC)


def _json(operand: _Operand, value: Value, op: str) -> Value:
    raise TypeError("a json field can only be compared with null")


def _show(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


_COERCIONS: dict[Kind, Callable[[_Operand, Value, str], Value]] = {
    Kind.STRING: _text,
    Kind.TEXT: _text,
    Kind.EMAIL: _text,
    Kind.URL: _text,
    Kind.ENUM: _text,
    Kind.UUID: _uuid,
    Kind.REF: _uuid,
    Kind.INT: _int,
    Kind.COUNT: _int,
    Kind.FLOAT: _float,
    Kind.DECIMAL: _decimal,
    Kind.BOOL: _bool,
    Kind.DATE: _date,
    Kind.DATETIME: _datetime,
    Kind.JSON: _json,
}
