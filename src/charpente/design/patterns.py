"""Design patterns (`pattern:`): how they compile, and which ones are too slow to run.

Pure. `$` in a design pattern is the very end of the value (never before a final newline).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["compile_pattern", "end_anchored", "slow_pattern"]

_parser: Any = importlib.import_module("re._parser")  # the stdlib regex parser, untyped
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled design pattern, for `search`: `$` outside `[...]` matches only at the end."""
    return re.compile(end_anchored(pattern))


def end_anchored(pattern: str) -> str:
    """`pattern` with every unescaped `$` outside a character class written `\\Z`."""
    out: list[str] = []
    i, first_member = 0, -1  # first_member >= 0: inside a class, whose first member is there
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if first_member >= 0 and char == "]" and i != first_member:
            first_member = -1
        elif first_member < 0 and char == "[":
            first_member = i + 2 if pattern.startswith("^", i + 1) else i + 1
        out.append("\\Z" if char == "$" and first_member < 0 else char)
        i += 1
    return "".join(out)


def slow_pattern(pattern: str) -> bool:
    """Whether a repeated group repeats something of variable length inside it.

    Such patterns (`(a+)+`, `(\\w+\\s?)+`, `(a|aa)+`) can backtrack exponentially.
    `pattern` must be a valid regular expression.
    """
    return any(_risky(tree) for tree in _repeated_bodies(_parser.parse(pattern)))


def _repeated_bodies(tree: Any) -> Iterator[Any]:
    """The body of every repeat that may match more than once, at any depth."""
    for op, arg in _items(tree):
        if str(op) in _REPEATS and arg[1] > 1:
            yield arg[2]
        yield from (sub for child in _children(op, arg) for sub in _repeated_bodies(child))


def _risky(tree: Any) -> bool:
    """Whether something inside `tree` can match text of more than one length or way."""
    for op, arg in _items(tree):
        if str(op) in _REPEATS and arg[0] != arg[1]:
            return True
        if str(op) == "BRANCH" and _ambiguous(arg[1]):
            return True
        if any(_risky(child) for child in _children(op, arg)):
            return True
    return False


def _ambiguous(alternatives: list[Any]) -> bool:
    """Alternatives of different widths, or two that may start with the same character."""
    if len({alt.getwidth() for alt in alternatives}) > 1:
        return True
    firsts = [_first_literal(alt) for alt in alternatives]
    return None in firsts or len(set(firsts)) < len(firsts)


def _first_literal(tree: Any) -> int | None:
    items = _items(tree)
    if items and str(items[0][0]) == "LITERAL":
        return int(items[0][1])
    return None


def _items(tree: Any) -> list[tuple[Any, Any]]:
    return list(tree)


def _children(op: Any, arg: Any) -> list[Any]:
    """The sub-patterns directly inside one parsed item."""
    name = str(op)
    if name in _REPEATS:
        return [arg[2]]
    if name == "SUBPATTERN":
        return [arg[3]]
    if name == "BRANCH":
        return list(arg[1])
    if name in ("ASSERT", "ASSERT_NOT"):
        return [arg[1]]
    if name == "ATOMIC_GROUP":
        return [arg]
    if name == "GROUPREF_EXISTS":
        return [part for part in arg[1:] if part is not None]
    return []
