"""The GraphQL schema of a design, as SDL text and as a map the executor walks.

Pure. One object type per resource (its readable fields), a ref field as the object it
points at, every resource that points here as a connection (`account.posts`), connections
with the REST keyset cursors, and one create/update/delete mutation per resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from charpente.design.model import Design, Field, Kind, Resource
from charpente.errors import Problem

__all__ = [
    "GraphField",
    "GraphSchema",
    "GraphType",
    "graph_problems",
    "graph_schema",
    "type_name",
]

_SCALARS = {
    Kind.STRING: "String",
    Kind.TEXT: "String",
    Kind.EMAIL: "String",
    Kind.URL: "String",
    Kind.ENUM: "String",
    Kind.DECIMAL: "String",
    Kind.INT: "Int",
    Kind.COUNT: "Int",
    Kind.FLOAT: "Float",
    Kind.BOOL: "Boolean",
    Kind.DATE: "Date",
    Kind.DATETIME: "DateTime",
    Kind.JSON: "JSON",
    Kind.UUID: "ID",
    Kind.REF: "ID",
}
_CONNECTION_ARGS = "first: Int, after: String, where: String, orderBy: String"
RESERVED_TYPE_NAMES = frozenset(
    {"Query", "Mutation", "Subscription", "PageInfo", "Date", "DateTime", "JSON"}
    | {"String", "Int", "Float", "Boolean", "ID"}
)


@dataclass(frozen=True, slots=True)
class GraphField:
    """One field of an object type: a stored field (`column`), a ref (`ref` → its
    resource), or a connection of the records of `many` whose ref field `via` points here."""

    name: str
    column: str | None = None
    ref: str | None = None
    many: str | None = None
    via: str | None = None


@dataclass(frozen=True, slots=True)
class GraphType:
    """The object type of one resource and its fields by GraphQL name."""

    resource: str
    name: str
    fields: dict[str, GraphField] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GraphSchema:
    """The SDL, each resource's type, and the root fields: list, one, and mutations."""

    sdl: str
    types: dict[str, GraphType]  # by resource name
    by_type: dict[str, GraphType]  # by GraphQL type name
    lists: dict[str, str]  # Query field → resource (a connection)
    ones: dict[str, str]  # Query field → resource (one record by id)
    creates: dict[str, str]  # Mutation field → resource
    updates: dict[str, str]
    deletes: dict[str, str]


def graph_schema(design: Design, hidden: Mapping[str, frozenset[str]] | None = None) -> GraphSchema:
    """The schema of `design` (see the module's docstring and docs/graphql.md); without
    the fields in `hidden` (by resource: those a caller may never read)."""
    resources = list(design.resources.values())
    names = {r.name: type_name(r.name) for r in resources}
    hide = hidden or {}
    types = {r.name: _graph_type(r, names[r.name], resources, hide) for r in resources}
    lists = {r.name: r.name for r in resources}
    ones = {_camel(_singular(r.name)): r.name for r in resources}
    ones = {k if k not in lists else f"{k}ById": v for k, v in ones.items()}
    creates = {f"create{names[r.name]}": r.name for r in resources}
    updates = {f"update{names[r.name]}": r.name for r in resources}
    deletes = {f"delete{names[r.name]}": r.name for r in resources}
    parts = [_PREAMBLE]
    query = [f"  {name}({_CONNECTION_ARGS}): {names[r]}Connection" for name, r in lists.items()]
    query += [f"  {name}(id: ID!, asOf: DateTime): {names[r]}" for name, r in ones.items()]
    parts.append("type Query {\n" + "\n".join(query) + "\n}\n")
    mutation = []
    for r in resources:
        t = names[r.name]
        mutation.append(f"  create{t}(input: {t}Input!, idempotencyKey: String): {t}")
        mutation.append(f"  update{t}(id: ID!, patch: {t}Input!, expectedVersion: Int): {t}")
        mutation.append(f"  delete{t}(id: ID!, expectedVersion: Int): Boolean")
    parts.append("type Mutation {\n" + "\n".join(mutation) + "\n}\n")
    for r in resources:
        parts.append(_type_sdl(r, types[r.name], names))
    return GraphSchema(
        sdl="\n".join(parts),
        types=types,
        by_type={t.name: t for t in types.values()},
        lists=lists,
        ones=ones,
        creates=creates,
        updates=updates,
        deletes=deletes,
    )


def graph_problems(design: Design) -> list[Problem]:
    """Names the GraphQL schema cannot hold (warnings: REST is served, GraphQL is not):
    two resources with one type name, or with a name another type is derived to."""
    problems: list[Problem] = []
    taken: dict[str, str] = {}
    for resource in design.resources.values():
        base = type_name(resource.name)
        for name in (base, f"{base}Connection", f"{base}Edge", f"{base}Input"):
            other = taken.get(name)
            if other is not None:
                problems.append(
                    _clash(resource, f"{other!r} and {resource.name!r} both make {name}")
                )
            taken.setdefault(name, resource.name)
        for f in resource.fields:
            if f.name.startswith("__"):
                message = f"field {f.name!r}: names starting with __ are reserved in GraphQL"
                problems.append(_clash(resource, message, f))
    return problems


def _clash(resource: Resource, message: str, at: Field | None = None) -> Problem:
    pos = at.pos if at is not None else resource.pos
    text = f"GraphQL: {message}; rename one (GraphQL is not served while this stands)"
    return Problem(text, pos.file, pos.line, pos.column, "warning")


def type_name(resource: str) -> str:
    """`posts` → `Post`, `blog_entries` → `BlogEntry`; a reserved name gets `Record` after it."""
    name = "".join(part[:1].upper() + part[1:] for part in _singular(resource).split("_"))
    return f"{name}Record" if name in RESERVED_TYPE_NAMES else name


def _singular(name: str) -> str:
    if name.endswith("ies") and len(name) > 3:
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss") and len(name) > 1:
        return name[:-1]
    return name


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _graph_type(
    resource: Resource, name: str, resources: list[Resource], hide: Mapping[str, frozenset[str]]
) -> GraphType:
    fields: dict[str, GraphField] = {}
    never = hide.get(resource.name, frozenset())
    for f in resource.all_fields:
        if f.writeonly or f.name in never:
            continue
        if f.kind is Kind.REF and f.ref:
            fields[f.name] = GraphField(f.name, column=f.name, ref=f.ref)
        else:
            fields[f.name] = GraphField(f.name, column=f.name)
    for other in resources:
        hidden_there = hide.get(other.name, frozenset())
        pointing = [
            f
            for f in other.fields
            if f.kind is Kind.REF and f.ref == resource.name and f.name not in hidden_there
        ]
        for f in pointing:
            base = other.name if len(pointing) == 1 else f"{other.name}_by_{f.name}"
            key = base if base not in fields else f"{base}_{f.name}"
            fields[key] = GraphField(key, many=other.name, via=f.name)
    return GraphType(resource.name, name, fields)


def _type_sdl(resource: Resource, graph: GraphType, names: dict[str, str]) -> str:
    t = graph.name
    lines = []
    for g in graph.fields.values():
        if g.many is not None:
            lines.append(f"  {g.name}({_CONNECTION_ARGS}): {names[g.many]}Connection")
        elif g.ref is not None:
            lines.append(f"  {g.name}: {names[g.ref]}")
        else:
            found = resource.field(g.name)
            assert found is not None
            lines.append(f"  {g.name}: {_scalar(found)}{'!' if g.name in _ALWAYS else ''}")
    inputs = [
        f"  {f.name}: {_input_scalar(f)}" for f in resource.fields if f.kind is not Kind.COUNT
    ]
    text = f"type {t} {{\n" + "\n".join(lines) + "\n}\n\n"
    text += f"type {t}Connection {{\n  nodes: [{t}!]!\n  edges: [{t}Edge!]!\n"
    text += "  pageInfo: PageInfo!\n  totalCount: Int!\n}\n\n"
    text += f"type {t}Edge {{\n  node: {t}!\n}}\n\n"
    if not inputs:
        inputs = ["  _: Boolean"]
    text += f"input {t}Input {{\n" + "\n".join(inputs) + "\n}\n"
    return text


_ALWAYS = frozenset({"id", "version"})


def _scalar(f: Field) -> str:
    return _SCALARS.get(f.kind, "String")


def _input_scalar(f: Field) -> str:
    return "ID" if f.kind is Kind.REF else _scalar(f)


_PREAMBLE = '''"""An RFC 3339 date, as in REST: 2026-01-31."""
scalar Date

"""An RFC 3339 time with its offset, as in REST: 2026-01-31T12:00:00Z."""
scalar DateTime

"""Any JSON value."""
scalar JSON

type PageInfo {
  hasNextPage: Boolean!
  endCursor: String
}
'''
