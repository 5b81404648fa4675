"""`renamed_from: old_name` on a field or a resource: read and checked (pure).

The name is a hint for migrations: the stored column (or table) called `old_name` becomes
this field (or resource), keeping its values, instead of being dropped and added again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from charpente.design.model import Field, Resource
from charpente.design.source import Node, Reader
from charpente.errors import Problem

__all__ = ["rename_problems", "renamed_from"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def renamed_from(reader: Reader, options: dict[str, Node], own: str, what: str) -> str | None:
    """The old name a field or resource says it had, checked on its own."""
    node = options.get("renamed_from")
    if node is None:
        return None
    old = reader.string(options, "renamed_from", limit=63)
    if old is None:
        return None
    if not _NAME.fullmatch(old):
        reader.error(
            node,
            f"`renamed_from` of {what} `{own}` must be a name (lowercase letters, digits and "
            f"`_`, starting with a letter), not `{old}`",
        )
        return None
    if old == own:
        reader.error(node, f"{what} `{own}` cannot be renamed from its own name")
        return None
    if old.startswith("charpente_"):
        reader.error(node, f"`{old}` is a reserved name: charpente's own tables are never renamed")
        return None
    return old


def rename_problems(resources: Mapping[str, Resource]) -> Iterator[Problem]:
    """Old names that would be ambiguous: still in use, or claimed twice."""
    claimed: dict[str, str] = {}
    for resource in resources.values():
        old = resource.renamed_from
        if old is None:
            continue
        if old in resources:
            yield _at(
                resource,
                f"resource `{resource.name}` is renamed from `{old}`, "
                f"but the design still has a resource `{old}`",
            )
        elif old in claimed:
            yield _at(
                resource, f"`{old}` is renamed to both `{claimed[old]}` and `{resource.name}`"
            )
        else:
            claimed[old] = resource.name
    for resource in resources.values():
        yield from _field_problems(resource)


def _field_problems(resource: Resource) -> Iterator[Problem]:
    names = {f.name for f in resource.fields}
    claimed: dict[str, str] = {}
    for field in resource.fields:
        old = field.renamed_from
        if old is None:
            continue
        where = f"`{resource.name}.{field.name}`"
        if old in names:
            yield _at(
                field,
                f"{where} is renamed from `{old}`, but `{resource.name}` still has "
                f"a field `{old}`: remove it, or drop `renamed_from`",
            )
        elif old in claimed:
            yield _at(
                field,
                f"`{resource.name}.{old}` is renamed to both `{claimed[old]}` and `{field.name}`",
            )
        else:
            claimed[old] = field.name


def _at(item: Field | Resource, message: str) -> Problem:
    return Problem(message, item.pos.file, item.pos.line, item.pos.column)
