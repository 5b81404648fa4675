"""Query shapes: what a read asks of the database, with every value left out.

A shape is a plain tuple (cheap to build and hash on every request):
`(kind, resource, where, sort, keyset, expand, count)`, where `where` is the condition's
tree with each literal replaced by a placeholder (null, true and false stay: they change
the SQL), and `sort` is ((field, descending), …). `shape_spec` turns one into JSON-ready
data, `describe_shape` into one readable line, `shape_id` into a stable key.

Pure: standard library only.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from charpente.compile.plan import GetQuery, ListQuery, SortKey
from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or

__all__ = [
    "Shape",
    "describe_shape",
    "get_shape",
    "ids_shape",
    "list_shape",
    "shape_id",
    "shape_spec",
    "sort_keys",
    "where_shape",
]

Shape = tuple[Any, ...]
"""(kind, resource, where, sort, keyset, expand, count): see the module's docstring."""

_VALUE = ("value",)
_NULL, _TRUE, _FALSE, _LIST = ("null",), ("true",), ("false",), ("list",)
_LOGIC: dict[type, str] = {And: "and", Or: "or"}
_COMPOUND = frozenset({And, Or, Not, Call, Compare})
_NAMES: dict[tuple[str, ...], tuple[str, str]] = {}
_TREES: dict[int, tuple[Expr, tuple[Any, ...]]] = {}
_TREES_LIMIT = 4096


def list_shape(query: ListQuery) -> Shape:
    """The shape of a page query."""
    where = None if query.where is None else where_shape(query.where)
    return (
        "list",
        query.resource,
        where,
        query.sort,
        query.after is not None,
        query.expand,
        query.count,
    )


def get_shape(query: GetQuery) -> Shape:
    """The shape of a read by id (under the caller's rule, if any)."""
    where = None if query.where is None else where_shape(query.where)
    return ("get", query.resource, where, (), False, query.expand, False)


def ids_shape(resource: str, where: Expr | None) -> Shape:
    """The shape of a batch read by ids (what `expand` runs)."""
    return ("ids", resource, None if where is None else where_shape(where), (), False, (), False)


def where_shape(expr: Expr) -> tuple[Any, ...]:
    """The tree of `expr` without its values. A compound node is walked once per object:
    a caller's bound rule is one object, reused request after request. Dispatch is by
    exact type (this runs on every query)."""
    if type(expr) is Compare:
        return ("cmp", expr.op, _operand(expr.left), _operand(expr.right))
    found = _TREES.get(id(expr))
    if found is not None and found[0] is expr:
        return found[1]
    tree = _compound(expr)
    if len(_TREES) >= _TREES_LIMIT:
        _TREES.clear()
    _TREES[id(expr)] = (expr, tree)
    return tree


def _compound(expr: Expr) -> tuple[Any, ...]:
    kind = type(expr)
    if kind is And or kind is Or:
        assert isinstance(expr, And | Or)
        return (_LOGIC[kind], where_shape(expr.left), where_shape(expr.right))
    if isinstance(expr, Not):
        return ("not", where_shape(expr.operand))
    if isinstance(expr, Call):
        match expr.args:
            case (Name((target,)), inner) if expr.name == "exists":
                return ("exists", target, where_shape(inner))
        return ("call", expr.name, *(where_shape(a) for a in expr.args))
    return _operand(expr)


def _operand(expr: Expr) -> tuple[Any, ...]:
    kind = type(expr)
    if kind is Name:
        assert isinstance(expr, Name)
        found = _NAMES.get(expr.path)
        if found is None:
            if len(_NAMES) >= _TREES_LIMIT:
                _NAMES.clear()
            found = _NAMES[expr.path] = ("name", ".".join(expr.path))
        return found
    if kind is Literal:
        assert isinstance(expr, Literal)
        value = expr.value
        if value is None:
            return _NULL
        if value is True:
            return _TRUE
        return _FALSE if value is False else _VALUE
    if kind is ListOf:
        return _LIST
    if kind in _COMPOUND:
        return where_shape(expr)
    raise AssertionError(f"not an expression: {expr!r}")


def shape_spec(shape: Shape) -> dict[str, Any]:
    """The shape as JSON-ready data (what the shape log stores and `advise` reads)."""
    kind, resource, where, sort, keyset, expand, count = shape
    return {
        "kind": kind,
        "resource": resource,
        "where": where,
        "sort": [[key.field, key.descending] for key in sort],
        "keyset": keyset,
        "expand": list(expand),
        "count": count,
    }


def shape_id(spec: dict[str, Any]) -> str:
    """A stable key for a shape: the same in every process and across restarts."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def describe_shape(spec: dict[str, Any]) -> str:
    """One line: `list posts where author == ? and visibility == ? sort -created_at,-id`."""
    parts = [str(spec["kind"]), str(spec["resource"])]
    if spec.get("where") is not None:
        parts += ["where", _text(spec["where"])]
    sort = spec.get("sort") or []
    if sort:
        parts += ["sort", ",".join(f"-{f}" if desc else str(f) for f, desc in sort)]
    if spec.get("keyset"):
        parts.append("after cursor")
    if spec.get("expand"):
        parts += ["expand", ",".join(spec["expand"])]
    if spec.get("count"):
        parts.append("count")
    return " ".join(parts)


def _text(node: Any) -> str:
    match node:
        case ["and", left, right]:
            return f"{_grouped(left, 'or')} and {_grouped(right, 'or')}"
        case ["or", left, right]:
            return f"{_text(left)} or {_text(right)}"
        case ["not", operand]:
            return f"not ({_text(operand)})"
        case ["cmp", op, left, right]:
            return f"{_text(left)} {op} {_text(right)}"
        case ["exists", target, inner]:
            return f"exists({target}, {_text(inner)})"
        case ["call", name, *args]:
            return f"{name}({', '.join(_text(a) for a in args)})"
        case ["name", dotted]:
            return str(dotted)
        case ["value"]:
            return "?"
        case ["list"]:
            return "[?]"
        case [constant]:
            return str(constant)
    return "?"


def _grouped(node: Any, looser: str) -> str:
    text = _text(node)
    return f"({text})" if node and node[0] == looser else text


def sort_keys(spec: dict[str, Any]) -> tuple[SortKey, ...]:
    """The sort of a stored shape as SortKeys."""
    return tuple(SortKey(str(f), bool(d)) for f, d in spec.get("sort") or [])
