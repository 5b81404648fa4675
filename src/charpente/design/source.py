"""The parsed design document: a tree of nodes that remember where they were written,
and a Reader that takes typed values out of it, collecting a Problem for each wrong one.

Pure: the YAML adapter (charpente.loader) builds the tree; design.load and design.check read it.
"""

from __future__ import annotations

import datetime
import decimal
import difflib
import enum
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from charpente.design.model import Field, Kind, Position
from charpente.errors import Problem

__all__ = [
    "LATER_KEYS",
    "Node",
    "NodeKind",
    "Reader",
    "Scalar",
    "did_you_mean",
    "literal_value",
    "offset_position",
]

# Keys of later versions of the format: an ignored access rule would be a security hole.
LATER_KEYS: frozenset[str] = frozenset()  # keys of later versions, refused by name

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

Scalar = str | int | float | bool | None


class NodeKind(enum.Enum):
    """What a node holds."""

    SCALAR = "scalar"
    LIST = "list"
    MAP = "map"


@dataclass(frozen=True, slots=True)
class Node:
    """One value of the document: a scalar, a list of nodes, or a mapping kept as its pairs.

    Mapping keys are scalar nodes whose value is the key as written (always a string), and
    every pair is kept, duplicates included, so that readers can report them. `style` is
    the scalar's YAML style ("" plain, "'" or '"' quoted, "|" or ">" block) and `raw` its
    source text, which lets a reader point inside a scalar.
    """

    kind: NodeKind
    pos: Position
    value: Scalar = None
    items: tuple[Node, ...] = ()
    pairs: tuple[tuple[Node, Node], ...] = ()
    style: str = ""
    raw: str = ""

    @classmethod
    def scalar(cls, value: Scalar, pos: Position, style: str = "", raw: str = "") -> Node:
        return cls(NodeKind.SCALAR, pos, value=value, style=style, raw=raw)

    @classmethod
    def list_of(cls, items: Iterable[Node], pos: Position) -> Node:
        return cls(NodeKind.LIST, pos, items=tuple(items))

    @classmethod
    def mapping(cls, pairs: Iterable[tuple[Node, Node]], pos: Position) -> Node:
        return cls(NodeKind.MAP, pos, pairs=tuple(pairs))

    @property
    def is_map(self) -> bool:
        return self.kind is NodeKind.MAP

    @property
    def is_list(self) -> bool:
        return self.kind is NodeKind.LIST

    @property
    def is_scalar(self) -> bool:
        return self.kind is NodeKind.SCALAR

    @property
    def text(self) -> str | None:
        """The value when this is a string scalar, else None."""
        return self.value if self.is_scalar and isinstance(self.value, str) else None

    def get(self, key: str) -> Node | None:
        """The value of the first pair whose key is `key`, or None (also when not a mapping)."""
        for k, v in self.pairs:
            if k.value == key:
                return v
        return None

    def entries(self) -> Iterator[tuple[str, Node]]:
        """(key, value) for each pair with a string key, first occurrence only."""
        seen: set[str] = set()
        for k, v in self.pairs:
            if isinstance(k.value, str) and k.value not in seen:
                seen.add(k.value)
                yield k.value, v

    def describe(self) -> str:
        """What this node is, for messages: "a list", "a number", "true/false"..."""
        if not self.is_scalar:
            return "a list" if self.is_list else "a mapping"
        value = self.value
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true/false"
        return "a string" if isinstance(value, str) else "a number"

    def problem(self, message: str, severity: str = "error") -> Problem:
        """A Problem pointing at this node."""
        pos = self.pos
        return Problem(message, pos.file, pos.line, pos.column, severity)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ " (did you mean `x`?)" for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


@dataclass
class Reader:
    """Reads typed values out of nodes; each wrong value becomes a Problem in `problems`.

    Getters return None both for a missing key and for a wrong value (already reported).
    """

    problems: list[Problem] = field(default_factory=list)

    def error(self, node: Node, message: str) -> None:
        self.problems.append(node.problem(message))

    def warn(self, node: Node, message: str) -> None:
        self.problems.append(node.problem(message, "warning"))

    def pairs(self, node: Node, what: str) -> list[tuple[Node, Node]]:
        """The pairs of a mapping, each key once; a repeated key or a non-mapping is reported."""
        if not node.is_map:
            self.error(node, f"{what} must be a mapping, not {node.describe()}")
            return []
        first: dict[str, int] = {}
        kept = []
        for key, value in node.pairs:
            if not isinstance(key.value, str):
                continue  # a non-scalar key, reported by the loader
            if key.value in first:
                line = first[key.value]
                self.error(key, f"`{key.value}` is given twice (first on line {line})")
                continue
            first[key.value] = key.pos.line
            kept.append((key, value))
        return kept

    def mapping(self, node: Node, allowed: Sequence[str], what: str) -> dict[str, Node] | None:
        """A mapping's values by key; unknown keys are reported with a suggestion."""
        if not node.is_map:
            self.error(node, f"{what} must be a mapping, not {node.describe()}")
            return None
        values: dict[str, Node] = {}
        for key, value in self.pairs(node, what):
            name = str(key.value)
            if name in allowed:
                values[name] = value
            elif name in LATER_KEYS:
                self.error(key, f"`{name}` is not available in this version of charpente")
            else:
                self.error(key, f"unknown key `{name}` in {what}{did_you_mean(name, allowed)}")
        return values

    def flag(self, values: dict[str, Node], key: str) -> bool | None:
        node = values.get(key)
        if node is None:
            return None
        if isinstance(node.value, bool):
            return node.value
        self.error(node, f"`{key}` must be true or false, not {node.describe()}")
        return None

    def whole(self, values: dict[str, Node], key: str, low: int = 0, high: int = 0) -> int | None:
        """An integer in [low, high] (no upper bound when high is 0)."""
        node = values.get(key)
        if node is None:
            return None
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(node, f"`{key}` must be a whole number, not {node.describe()}")
        elif value < low:
            bound = "cannot be negative" if low == 0 else f"must be at least {low}"
            self.error(node, f"`{key}` {bound}")
        elif high and value > high:
            self.error(node, f"`{key}` must be at most {high}")
        else:
            return value
        return None

    def number(self, values: dict[str, Node], key: str) -> int | float | None:
        node = values.get(key)
        if node is None:
            return None
        value = node.value
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return value
        self.error(node, f"`{key}` must be a number, not {node.describe()}")
        return None

    def string(self, values: dict[str, Node], key: str, limit: int = 200) -> str | None:
        node = values.get(key)
        if node is None:
            return None
        text = node.text
        if text is None:
            self.error(node, f"`{key}` must be a string, not {node.describe()}")
        elif len(text) > limit:
            self.error(node, f"`{key}` is longer than {limit} characters")
        else:
            return text
        return None


def literal_value(field: Field, node: Node) -> object:
    """`node` as a value of `field`'s kind (constraints aside); ValueError says why it is not."""
    if node.is_scalar and node.value is None and field.kind is not Kind.JSON:
        raise ValueError("cannot be null: leave `default` out instead")
    if field.kind is Kind.JSON:
        return _plain(node)
    convert = _CONVERTERS.get(field.kind, _text)
    return convert(field, node)


def _plain(node: Node) -> object:
    if node.is_list:
        return [_plain(item) for item in node.items]
    if node.is_map:
        return {str(k.value): _plain(v) for k, v in node.pairs}
    return node.value


def _text(field: Field, node: Node) -> str:
    text = node.text
    if text is None:
        raise ValueError(f"must be a string, not {node.describe()} (quote it)")
    if field.kind is Kind.EMAIL and not _EMAIL.fullmatch(text):
        raise ValueError(f"`{text}` is not an email address")
    if field.kind is Kind.URL and not _is_url(text):
        raise ValueError(f"`{text}` is not an http or https URL")
    return text


def _is_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _integer(field: Field, node: Node) -> int:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, not {node.describe()}")
    return value


def _float(field: Field, node: Node) -> float:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {node.describe()}")
    return float(value)


def _decimal(field: Field, node: Node) -> decimal.Decimal:
    value = node.value
    if isinstance(value, bool) or value is None or not node.is_scalar:
        raise ValueError(f"must be a number, not {node.describe()}")
    try:
        number = decimal.Decimal(node.raw if node.style == "" and node.raw else str(value))
    except decimal.InvalidOperation:
        raise ValueError(f"`{value}` is not a number") from None
    exponent = number.as_tuple().exponent
    if not number.is_finite() or not isinstance(exponent, int):
        raise ValueError(f"`{value}` is not a finite number")
    if -exponent > field.scale or len(str(abs(int(number)))) > field.precision - field.scale:
        raise ValueError(
            f"{number} does not fit precision {field.precision} and scale {field.scale}"
        )
    return number


def _boolean(field: Field, node: Node) -> bool:
    if not isinstance(node.value, bool):
        raise ValueError(f"must be true or false, not {node.describe()}")
    return node.value


def _date(field: Field, node: Node) -> datetime.date:
    text = node.text
    if text is None:
        raise ValueError(f"must be a date written YYYY-MM-DD, not {node.describe()}")
    if not _DATE.fullmatch(text):
        raise ValueError(f"`{text}` is not a date written YYYY-MM-DD")
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"`{text}` is not a valid date") from None


def _datetime(field: Field, node: Node) -> datetime.datetime:
    text = node.text
    if text is None or not _DATETIME.fullmatch(text):
        shown = f"`{text}`" if text is not None else node.describe()
        raise ValueError(f"{shown} is not an RFC 3339 date-time such as 2026-01-31T09:30:00Z")
    try:
        value = datetime.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{text}` is not a valid date-time") from None
    return value.astimezone(datetime.UTC)


def _uuid(field: Field, node: Node) -> str:
    text = node.text
    try:
        return str(uuid.UUID(text or ""))
    except ValueError:
        shown = f"`{text}`" if text is not None else node.describe()
        raise ValueError(f"{shown} is not a UUID") from None


_CONVERTERS = {
    Kind.INT: _integer,
    Kind.FLOAT: _float,
    Kind.DECIMAL: _decimal,
    Kind.BOOL: _boolean,
    Kind.DATE: _date,
    Kind.DATETIME: _datetime,
    Kind.UUID: _uuid,
    Kind.REF: _uuid,
}


_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


def offset_position(node: Node, offset: int) -> tuple[int, int]:
    """Line and column of character `offset` of a scalar's value, in the design file.

    Exact for single-line plain and quoted scalars; the scalar's start for the others.
    """
    pos = node.pos
    if node.style not in ("", "'", '"') or "\n" in node.raw:
        return pos.line, pos.column
    if node.style == "":
        return pos.line, pos.column + offset
    body, index = node.raw[1:], 0
    for _ in range(offset):
        if index >= len(body):
            break
        if node.style == "'" and body.startswith("''", index):
            index += 2
        elif node.style == '"' and body[index] == "\\":
            index += 2 + _HEX_ESCAPES.get(body[index + 1 : index + 2], 0)
        else:
            index += 1
    return pos.line, pos.column + 1 + index
