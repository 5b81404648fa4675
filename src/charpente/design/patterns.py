"""Design patterns (`pattern:`): how they compile, and which ones are too slow to run.

Pure. `$` in a design pattern is the very end of the value (never before a final newline).
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterator
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
    """Whether a repeated group can split the same text between its repetitions in many ways.

    Such patterns (`(a+)+`, `(\\w+\\s?)+`, `(a|aa)+`) can backtrack exponentially. A group
    whose repetitions start with a literal none of its inner repeats can match
    (`(\\.[a-z]+)*`) is unambiguous, hence fast. `pattern` must be a valid regex.
    """
    return any(_risky(body) for body in _repeated_bodies(_parser.parse(pattern)))


def _repeated_bodies(tree: Any) -> Iterator[Any]:
    """The body of every repeat that may match more than once, at any depth."""
    for op, arg in _items(tree):
        if str(op) in _REPEATS and arg[1] > 1:
            yield arg[2]
        yield from (sub for child in _children(op, arg) for sub in _repeated_bodies(child))


def _risky(body: Any) -> bool:
    """Whether a repeated body can match the same text in more than one way."""
    if any(_ambiguous(arg[1]) for op, arg in _walk(body) if str(op) == "BRANCH"):
        return True
    variable = [arg[2] for op, arg in _walk(body) if str(op) in _REPEATS and arg[0] != arg[1]]
    if not variable:
        return False
    lead = _leading_literal(body)
    return lead is None or any(_may_start_with(inner, lead) for inner in variable)


def _walk(tree: Any) -> Iterator[tuple[Any, Any]]:
    for op, arg in _items(tree):
        yield op, arg
        for child in _children(op, arg):
            yield from _walk(child)


def _leading_literal(tree: Any) -> int | None:
    """The character every match of `tree` starts with, when it is one fixed literal."""
    items = _items(tree)
    if not items:
        return None
    op, arg = items[0]
    if str(op) == "LITERAL":
        return int(arg)
    if str(op) == "SUBPATTERN":
        return _leading_literal(arg[3])
    if str(op) in _REPEATS and arg[0] >= 1:
        return _leading_literal(arg[2])
    return None


def _may_start_with(tree: Any, code: int) -> bool:
    """Whether a match of `tree` may start with character `code` (True when unsure)."""
    items = _items(tree)
    if not items:
        return False
    op, arg = items[0]
    name = str(op)
    if name == "LITERAL":
        return int(arg) == code
    if name == "NOT_LITERAL":
        return int(arg) != code
    if name == "IN":
        return _in_set(arg, code)
    if name == "SUBPATTERN":
        return _may_start_with(arg[3], code)
    if name in _REPEATS and arg[0] >= 1:
        return _may_start_with(arg[2], code)
    return True


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


_CATEGORIES: dict[str, Callable[[str], bool]] = {
    "CATEGORY_DIGIT": str.isdigit,
    "CATEGORY_SPACE": str.isspace,
    "CATEGORY_WORD": _is_word,
}


def _in_set(members: list[tuple[Any, Any]], code: int) -> bool:
    negate, hit = False, False
    for op, arg in members:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            hit = hit or int(arg) == code
        elif name == "RANGE":
            hit = hit or arg[0] <= code <= arg[1]
        elif name == "CATEGORY" and str(arg).replace("NOT_", "") in _CATEGORIES:
            test = _CATEGORIES[str(arg).replace("NOT_", "")]
            hit = hit or (test(chr(code)) != str(arg).startswith("CATEGORY_NOT_"))
        else:
            return True  # anything else: assume it may
    return hit != negate


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
