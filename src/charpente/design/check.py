"""Cross-references of a design: unique constraints, indexes, refs, counters and checks.

Pure. Runs on the Design that design.load read, with the document tree for positions;
whatever names another field or resource is read and resolved here, and the declared
checks are parsed and type-checked against the finished resources.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from charpente.design.access import read_access
from charpente.design.auth import ACCOUNTS
from charpente.design.expr import And, Call, Compare, Expr, Name, Not, Or
from charpente.design.model import (
    Check,
    Design,
    Field,
    Index,
    IndexColumn,
    Kind,
    Position,
    Resource,
)
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.design.source import Node, Reader, did_you_mean, offset_position
from charpente.errors import ExprError, Problem

__all__ = ["check_design"]

_INDEX_KEYS = ("fields", "unique")
_CHECK_KEYS = ("check", "message")


def check_design(design: Design, root: Node, reader: Reader) -> Design:
    """`design` completed with its unique constraints, indexes and checks.

    Every problem (and warning) goes to `reader`; parts that are wrong are left out.
    """
    tree = _Tree(root)
    resources = {
        name: _complete(_Scope(design, resource, tree, reader))
        for name, resource in design.resources.items()
    }
    design = replace(design, resources=resources)
    for resource in design.resources.values():
        _check_references(_Scope(design, resource, tree, reader))
    checked = {
        name: replace(resource, checks=_checks(_Scope(design, resource, tree, reader)))
        for name, resource in design.resources.items()
    }
    design = replace(design, resources=checked)
    guarded = {
        name: replace(resource, access=read_access(design, resource, tree.access(name), reader))
        for name, resource in design.resources.items()
    }
    design = replace(design, resources=guarded)
    _refuse_encrypted_in_rules(design, reader)
    _warn_hidden_counts(design, tree, reader)
    return design


def _warn_hidden_counts(design: Design, tree: _Tree, reader: Reader) -> None:
    """A counter shows how many rows point at a record, even rows the caller may not read."""
    for resource in design.resources.values():
        for field in resource.counters:
            if field.count is None or field.count.hidden:
                continue  # a malformed count (reported already), or one counting on purpose
            source = design.resources.get(field.count.resource)
            counted = None if source is None else source.access
            if counted is not None and counted.declared and counted.rules["list"].source != "true":
                node = tree.option(resource.name, field.name, "count")
                if node is not None:
                    message = (
                        f"`{field.name}` counts `{field.count.resource}` records that not "
                        "everyone may read: the count is visible to whoever reads this record "
                        "(add `count_hidden: true` if that is intended)"
                    )
                    reader.warn(node, message)


class _Tree:
    """Finds the nodes of the document by resource and field name."""

    def __init__(self, root: Node) -> None:
        self.resources = root.get("resources") or Node.mapping((), root.pos)
        self.auth = root.get("auth")

    def access(self, resource: str) -> Node | None:
        """The `access` block of a resource (`auth: access:` for the built-in accounts)."""
        if resource == ACCOUNTS:
            return self.auth.get("access") if self.auth is not None and self.auth.is_map else None
        return self.resource(resource).get("access")

    def resource(self, name: str) -> Node:
        return self.resources.get(name) or Node.mapping((), self.resources.pos)

    def declared_resources(self) -> list[str]:
        return [ACCOUNTS, *(name for name, _ in self.resources.entries())]

    def fields(self, resource: str) -> Node:
        if resource == ACCOUNTS:
            profile = self.auth.get("profile") if self.auth is not None else None
            return profile or Node.mapping((), self.resources.pos)
        node = self.resource(resource)
        return node.get("fields") or Node.mapping((), node.pos)

    def declared_fields(self, resource: str) -> list[str]:
        return [name for name, _ in self.fields(resource).entries()]

    def option(self, resource: str, field: str, key: str) -> Node | None:
        node = self.fields(resource).get(field)
        return node.get(key) if node is not None else None


class _Scope:
    """One resource being checked, with what the checks need around it."""

    def __init__(self, design: Design, resource: Resource, tree: _Tree, reader: Reader) -> None:
        self.design, self.resource, self.tree, self.reader = design, resource, tree, reader
        self.node = tree.resource(resource.name)

    def has_field(self, name: str, node: Node) -> bool:
        """Whether the resource has field `name`; reports it at `node` when it does not."""
        if self.resource.field(name) is not None:
            return True
        declared = self.tree.declared_fields(self.resource.name)
        if name not in declared:  # a declared field that failed to load is already reported
            choices = [*declared, "id", "created_at", "updated_at", "version"]
            message = f"resource `{self.resource.name}` has no field `{name}`"
            self.reader.error(node, message + did_you_mean(name, choices))
        return False


def _complete(scope: _Scope) -> Resource:
    unique = _unique(scope, scope.node.get("unique"))
    indexes = _indexes(scope, scope.node.get("indexes"))
    _warn_redundant_indexes(scope, unique, indexes)
    return replace(scope.resource, unique=unique, indexes=indexes)


def _names(scope: _Scope, node: Node, what: str) -> list[str] | None:
    """A non-empty list of field names (`-` in front allowed); None when any is wrong."""
    if not node.is_list or not node.items:
        scope.reader.error(node, f"{what} must be a non-empty list of field names")
        return None
    names = []
    for item in node.items:
        text = item.text
        if text is None:
            scope.reader.error(item, f"{what} lists field names, not {item.describe()}")
        elif scope.has_field(text.removeprefix("-") if what == "an index" else text, item):
            if _is_encrypted(scope.resource, text.removeprefix("-")):
                message = f"`{text.removeprefix('-')}` is encrypted: it cannot be in {what}"
                scope.reader.error(item, message + " (its stored values are sealed)")
                continue
            names.append(text)
    return names if len(names) == len(node.items) else None


def _unique(scope: _Scope, node: Node | None) -> tuple[tuple[str, ...], ...]:
    if node is None:
        return ()
    if not node.is_list or any(item.is_scalar for item in node.items):
        scope.reader.error(node, "`unique` is a list of field lists: write `unique: [[a, b]]`")
        return ()
    constraints: dict[frozenset[str], tuple[str, ...]] = {}
    for item in node.items:
        names = _names(scope, item, "a unique constraint")
        if names is None:
            continue
        key = frozenset(names)
        if key in constraints:
            listed = ", ".join(names)
            scope.reader.error(item, f"the unique constraint on ({listed}) is declared twice")
            continue
        constraints[key] = tuple(names)
    return tuple(constraints.values())


def _indexes(scope: _Scope, node: Node | None) -> tuple[Index, ...]:
    if node is None:
        return ()
    if not node.is_list:
        scope.reader.error(node, f"`indexes` must be a list, not {node.describe()}")
        return ()
    indexes: list[Index] = []
    for item in node.items:
        index = _index(scope, item)
        if index is None:
            continue
        if any(i.columns == index.columns for i in indexes):
            listed = ", ".join(("-" if c.descending else "") + c.field for c in index.columns)
            scope.reader.error(item, f"the index on ({listed}) is declared twice")
            continue
        indexes.append(index)
    return tuple(indexes)


def _index(scope: _Scope, node: Node) -> Index | None:
    unique = False
    names_node: Node | None = node
    if node.is_map:
        options = scope.reader.mapping(node, _INDEX_KEYS, "an index") or {}
        unique = bool(scope.reader.flag(options, "unique"))
        names_node = options.get("fields")
        if names_node is None:
            scope.reader.error(node, "an index needs `fields`")
    names = _names(scope, names_node, "an index") if names_node is not None else None
    if names is None:
        return None
    columns = tuple(IndexColumn(n.removeprefix("-"), n.startswith("-")) for n in names)
    return Index(columns, unique=unique, pos=node.pos)


def _warn_redundant_indexes(
    scope: _Scope, unique: tuple[tuple[str, ...], ...], indexes: tuple[Index, ...]
) -> None:
    """Warn about an index that a unique constraint already provides."""
    covered = {*unique, *((f.name,) for f in scope.resource.fields if f.unique), ("id",)}
    for index in indexes:
        names = tuple(c.field for c in index.columns)
        if names in covered and len({c.descending for c in index.columns}) == 1:
            message = f"this index repeats the unique constraint on ({', '.join(names)})"
            pos, message = index.pos, message + ", which is indexed already"
            scope.reader.problems.append(
                Problem(message, pos.file, pos.line, pos.column, "warning")
            )


def _check_references(scope: _Scope) -> None:
    for field in scope.resource.fields:
        if field.ref is not None:
            _check_ref(scope, field)
        if field.count is not None:
            _check_count(scope, field)


def _check_ref(scope: _Scope, field: Field) -> None:
    target = str(field.ref)
    node = scope.tree.option(scope.resource.name, field.name, "ref")
    declared = scope.tree.declared_resources()
    if node is not None and target not in declared:
        message = f"`ref: {target}`: there is no resource `{target}`"
        scope.reader.error(node, message + did_you_mean(target, declared))


def _check_count(scope: _Scope, field: Field) -> None:
    assert field.count is not None
    node = scope.tree.option(scope.resource.name, field.name, "count")
    source = scope.design.resource(field.count.resource)
    if node is None or source is None:
        declared = scope.tree.declared_resources()
        if node is not None and field.count.resource not in declared:
            message = f"`count: {node.text}`: there is no resource `{field.count.resource}`"
            scope.reader.error(node, message + did_you_mean(field.count.resource, declared))
        return
    counted = _Scope(scope.design, source, scope.tree, scope.reader)
    if not counted.has_field(field.count.field, node):
        return
    ref = source.field(field.count.field)
    if ref is None or ref.kind is not Kind.REF or ref.ref != scope.resource.name:
        message = (
            f"`count: {node.text}` needs `{node.text}` to be a ref to `{scope.resource.name}`: "
            "a counter counts the rows that point at this record"
        )
        scope.reader.error(node, message)


def _checks(scope: _Scope) -> tuple[Check, ...]:
    node = scope.node.get("checks")
    if node is None:
        return ()
    if not node.is_list:
        scope.reader.error(node, f"`checks` must be a list of expressions, not {node.describe()}")
        return ()
    checks = []
    for item in node.items:
        source, message = _check_source(scope.reader, item)
        check = _check(scope, source, message) if source is not None else None
        if check is not None:
            checks.append(check)
    return tuple(checks)


def _check_source(reader: Reader, item: Node) -> tuple[Node | None, str | None]:
    """The expression node of a check and its message, from `a != b` or `{check, message}`."""
    if item.text is not None:
        return item, None
    if not item.is_map:
        reader.error(
            item, f"a check is an expression or {{check: ..., message: ...}}, not {item.describe()}"
        )
        return None, None
    options = reader.mapping(item, _CHECK_KEYS, "a check") or {}
    message = reader.string(options, "message", limit=500)
    source = options.get("check")
    if source is None:
        reader.error(item, "a check needs `check`: the expression rows must satisfy")
    elif source.text is None:
        reader.error(source, f"`check` must be an expression, not {source.describe()}")
        source = None
    return source, message


def _check(scope: _Scope, node: Node, message: str | None) -> Check | None:
    text = str(node.text)
    try:
        expr = resolve_expr(parse_expr(text), scope.resource, scope.design)
    except ExprError as error:
        line, column = offset_position(node, error.offset)
        pos = node.pos
        scope.reader.problems.append(Problem(error.message, pos.file, line, column))
        return None
    sealed = sorted(set(_encrypted_names(scope.design, scope.resource, expr)))
    if sealed:
        what = ", ".join(f"`{name}`" for name in sealed)
        scope.reader.error(node, f"a check cannot read encrypted fields: {what}")
        return None
    return Check(text, expr, message, node.pos)


# --- encrypted fields ----------------------------------------------------------------------


def _is_encrypted(resource: Resource, name: str) -> bool:
    field = resource.field(name)
    return field is not None and field.encrypted


def _refuse_encrypted_in_rules(design: Design, reader: Reader) -> None:
    """Access rules run as SQL on stored values: an encrypted field's are sealed."""
    for resource in design.resources.values():
        access = resource.access
        if access is None:
            continue
        rules = [*access.rules.values(), *access.fields_read.values()]
        rules += access.fields_write.values()
        reported: set[Position] = set()
        for rule in rules:
            sealed = sorted(set(_encrypted_names(design, resource, rule.expr)))
            if sealed and rule.pos not in reported:
                reported.add(rule.pos)  # `read` sets list and get: one problem is enough
                what = ", ".join(f"`{name}`" for name in sealed)
                message = f"an access rule cannot read encrypted fields: {what}"
                pos = rule.pos
                reader.problems.append(Problem(message, pos.file, pos.line, pos.column))


def _encrypted_names(design: Design, resource: Resource, expr: Expr) -> Iterator[str]:
    """The encrypted fields a resolved expression reads (inside exists(), those of the
    resource it names; qualified names are the outer resource's)."""
    match expr:
        case Name(path):
            owner = resource if len(path) == 1 else design.resource(path[0])
            if owner is not None and _is_encrypted(owner, path[-1]):
                yield path[-1] if owner is resource else ".".join(path)
        case Compare(_, left, right) | And(left, right) | Or(left, right):
            yield from _encrypted_names(design, resource, left)
            yield from _encrypted_names(design, resource, right)
        case Not(operand):
            yield from _encrypted_names(design, resource, operand)
        case Call("exists", (Name(target), condition)):
            inner = design.resource(target[0])
            if inner is not None:
                yield from (
                    f"{inner.name}.{n}" if "." not in n else n
                    for n in _encrypted_names(design, inner, condition)
                )
        case Call(_, args):
            for arg in args:
                yield from _encrypted_names(design, resource, arg)
