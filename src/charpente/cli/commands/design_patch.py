"""Adding `indexes:` entries to a design file's text, leaving the rest as it was written.

The YAML is edited as text (comments, order and quoting stay), then loaded again by the
caller to check the result. A resource's `indexes:` written in flow style on one line
(`indexes: [[a, b]]`) or as a block list gets the new entries appended; a resource without
one gets an `indexes:` line at the end of its block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from charpente.errors import ConfigError

__all__ = ["add_indexes"]

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")


def add_indexes(text: str, indexes: Mapping[str, Sequence[Sequence[str]]]) -> str:
    """`text` with each resource's new `indexes:` entries (lists of `field` / `-field`)."""
    lines = text.splitlines()
    for resource, entries in indexes.items():
        if entries:
            lines = _add(lines, resource, [list(e) for e in entries])
    return "\n".join(lines) + "\n"


def _add(lines: list[str], resource: str, entries: list[list[str]]) -> list[str]:
    start, indent = _resource_line(lines, resource)
    end = start + 1
    child = None
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.lstrip().startswith("#"):
            depth = len(line) - len(line.lstrip(" "))
            if depth <= indent:
                break
            child = depth if child is None else child
        end += 1
    if child is None:
        raise ConfigError(f"the design's resource {resource!r} has no fields block to extend")
    flow = ", ".join(_flow(e) for e in entries)
    for i in range(start + 1, end):
        found = _KEY.match(lines[i])
        if found and len(found["indent"]) == child and found["key"] == "indexes":
            rest = found["rest"].split("#")[0].strip()
            if rest.startswith("[") and rest.endswith("]"):
                inner = rest[1:-1].strip()
                joined = f"{inner}, {flow}" if inner else flow
                lines[i] = f"{found['indent']}indexes: [{joined}]"
                return lines
            last = i
            while last + 1 < end and (
                not lines[last + 1].strip() or _deeper(lines[last + 1], child)
            ):
                last += 1
            item_indent = " " * (child + 2)
            return [
                *lines[: last + 1],
                *(f"{item_indent}- {_flow(e)}" for e in entries),
                *lines[last + 1 :],
            ]
    last = end - 1
    while last > start and not lines[last].strip():
        last -= 1
    return [*lines[: last + 1], f"{' ' * child}indexes: [{flow}]", *lines[last + 1 :]]


def _deeper(line: str, depth: int) -> bool:
    return len(line) - len(line.lstrip(" ")) > depth or line.lstrip().startswith("- ")


def _resource_line(lines: list[str], resource: str) -> tuple[int, int]:
    in_resources, depth = False, -1
    for i, line in enumerate(lines):
        found = _KEY.match(line)
        if found is None:
            continue
        indent = len(found["indent"])
        if indent == 0:
            in_resources = found["key"] == "resources"
            depth = -1
            continue
        if in_resources:
            depth = indent if depth < 0 else depth
            if indent == depth and found["key"] == resource:
                return i, indent
    raise ConfigError(f"the design has no resource {resource!r} written as a block")


def _flow(entry: Sequence[str]) -> str:
    return "[" + ", ".join(entry) + "]"
