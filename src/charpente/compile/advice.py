"""Index candidates for a query shape: what `charpente advise` asks the planner about.

From a shape's spec (see compile.shapes): equality columns first, then the keyset sort
columns with their directions and the `id` tie-breaker (`author, created_at DESC, id
DESC`), or the first range column when the sort does not start with it; a rule's
`exists()` probe gets a candidate on the table it reads. Candidates an existing index
already serves (it starts with the same columns) are left out; `~` (contains) gets a
note, since no btree index serves a substring test.

Pure: standard library only. The planner, not this module, decides which candidate helps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from charpente.design.model import IndexColumn

__all__ = [
    "IndexCandidate",
    "ShapeCandidates",
    "candidates_for",
    "design_columns",
    "is_served",
]

T = TypeVar("T")

_RANGE = frozenset({"<", "<=", ">", ">="})
_EQUAL = frozenset({"==", "in"})
MAX_COLUMNS = 6  # wider btree indexes cost more to write than they save


@dataclass(frozen=True, slots=True)
class IndexCandidate:
    """One index to try: on `resource`, these columns in this order and direction."""

    resource: str
    columns: tuple[IndexColumn, ...]
    reason: str
    equal: int = 0  # leading columns compared for equality (their direction plays no part)

    @property
    def label(self) -> str:
        """`posts (author, created_at DESC, id DESC)`."""
        parts = (f"{c.field} DESC" if c.descending else c.field for c in self.columns)
        return f"{self.resource} ({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class ShapeCandidates:
    """What to try for one shape, and what no index can fix (notes)."""

    candidates: tuple[IndexCandidate, ...]
    notes: tuple[str, ...] = field(default=())


@dataclass(slots=True)
class _Conditions:
    equal: list[str] = field(default_factory=list)  # == and IS NULL, in the shape's order
    member: list[str] = field(default_factory=list)  # in [...]
    ranges: list[str] = field(default_factory=list)
    contains: list[str] = field(default_factory=list)
    probes: list[tuple[str, list[str]]] = field(default_factory=list)  # exists(target, ...)
    has_or: bool = False


def candidates_for(
    spec: Mapping[str, Any],
    existing: Mapping[str, Sequence[tuple[IndexColumn, ...]]],
    fields: Mapping[str, Iterable[str]],
) -> ShapeCandidates:
    """The candidates for the shape `spec`. `existing` holds each resource's indexes (the
    primary key and unique constraints included); `fields` each resource's column names."""
    resource = str(spec["resource"])
    found = _Conditions()
    if spec.get("where") is not None:
        _collect(spec["where"], found, set(fields.get(resource, ())))
    sort = [IndexColumn(str(f), bool(d)) for f, d in spec.get("sort") or []]
    tried: list[IndexCandidate] = []
    notes = [
        f"{resource}.{name} ~ …: a substring test no btree index serves "
        "(on PostgreSQL, a pg_trgm GIN index does)"
        for name in found.contains
    ]
    if found.has_or:
        notes.append(f"{resource}: an `or` condition; each side is planned on its own")
    for columns, reason, equal in _shapes_of(found, sort, str(spec.get("kind", "list"))):
        tried.append(IndexCandidate(resource, columns, reason, equal))
    for target, names in found.probes:
        columns = tuple(IndexColumn(n) for n in _unique(names))
        if columns:
            tried.append(IndexCandidate(target, columns, "the rule's exists() probe", len(columns)))
    kept = [
        c for c in _unique(tried) if not is_served(c.columns, existing.get(c.resource, ()), c.equal)
    ]
    return ShapeCandidates(tuple(kept), tuple(notes))


def _shapes_of(
    found: _Conditions, sort: list[IndexColumn], kind: str
) -> list[tuple[tuple[IndexColumn, ...], str, int]]:
    equal = [IndexColumn(n) for n in _unique([*found.equal, *found.member])]
    if kind != "list":
        # By id, or a batch of ids: the primary key serves it, whatever else is asked.
        return []
    shapes: list[tuple[tuple[IndexColumn, ...], str, int]] = []
    names = {c.field for c in equal}
    ordered = [c for c in sort if c.field not in names]
    if equal or len(ordered) > 1:
        shapes.append(((*equal, *ordered)[:MAX_COLUMNS], "equality, then the sort", len(equal)))
    first_range = next((n for n in found.ranges if n not in names), None)
    if first_range is not None and (not ordered or ordered[0].field != first_range):
        with_range = [*equal, IndexColumn(first_range)]
        shapes.append((tuple(with_range)[:MAX_COLUMNS], "equality, then the range", len(equal)))
    if equal and found.member:
        only = tuple(IndexColumn(n) for n in found.equal)[:MAX_COLUMNS]
        shapes.append((only, "equality", len(only)))
    return [shape for shape in shapes if shape[0]]


def _collect(node: Any, found: _Conditions, columns: set[str]) -> None:
    """Conditions of the top-level `and` chain; an `or` is noted, not indexed."""
    match node:
        case ["and", left, right]:
            _collect(left, found, columns)
            _collect(right, found, columns)
        case ["or", *_]:
            found.has_or = True
        case ["cmp", op, ["name", name], right] if name in columns:
            _compare(str(op), str(name), right, found)
        case ["cmp", op, left, ["name", name]] if name in columns and left[0] == "value":
            _compare(_flipped(str(op)), str(name), left, found)
        case ["exists", target, inner]:
            found.probes.append((str(target), _probe_columns(inner)))


def _compare(op: str, name: str, right: Any, found: _Conditions) -> None:
    if op == "~":
        found.contains.append(name)
    elif op == "==" and right[0] in ("value", "null", "true", "false"):
        found.equal.append(name)
    elif op == "in":
        found.member.append(name)
    elif op in _RANGE and right[0] == "value":
        found.ranges.append(name)


def _probe_columns(node: Any) -> list[str]:
    """Inner columns an exists() compares for equality: with a value or an outer column."""
    match node:
        case ["and", left, right]:
            return [*_probe_columns(left), *_probe_columns(right)]
        case ["cmp", op, ["name", name], _] if op in _EQUAL and "." not in str(name):
            return [str(name)]
        case ["cmp", op, _, ["name", name]] if op in _EQUAL and "." not in str(name):
            return [str(name)]
    return []


def _flipped(op: str) -> str:
    return {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)


def _unique(items: Iterable[T]) -> list[T]:
    seen: list[T] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def is_served(
    columns: tuple[IndexColumn, ...],
    existing: Sequence[tuple[IndexColumn, ...]],
    equal: int = 0,
) -> bool:
    """Whether an existing index starts with `columns`: the same fields, and after the
    first `equal` ones (compared for equality, where direction plays no part) the same
    directions or all of them reversed (a btree is walked both ways)."""
    fields = [c.field for c in columns]
    wanted = [c.descending for c in columns[equal:]]
    for index in existing:
        if [c.field for c in index[: len(columns)]] != fields:
            continue
        found = [c.descending for c in index[equal : len(columns)]]
        if found in (wanted, [not d for d in wanted]):
            return True
    return False


def design_columns(candidate: IndexCandidate) -> list[str]:
    """The candidate as a design's `indexes:` entry: `-` for descending, and without the
    trailing `id` that charpente adds to every index in the last column's direction."""
    columns = list(candidate.columns)
    if len(columns) > 1 and columns[-1].field == "id":
        last = columns.pop()
        if last.descending != columns[-1].descending:
            columns.append(last)  # a tie-breaker in the other direction must be written
    return [f"-{c.field}" if c.descending else c.field for c in columns]
