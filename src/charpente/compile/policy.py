"""Access rules for one caller: the row filter of an action, and the fields it may see or set.

Pure. A rule bound to the caller (design.bind) is a constant or a condition on the row;
`row_filter` turns it into what a plan needs: None (every row), a condition for the
WHERE clause, or `DENIED` (no row at all, so the caller learns nothing by asking).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from charpente.design.bind import bind_caller, uses_exists
from charpente.design.evaluate import evaluate
from charpente.design.expr import And, Call, Compare, Expr, Literal, Name, Not, Or
from charpente.design.model import Resource, Rule

__all__ = [
    "DENIED",
    "FieldView",
    "Filter",
    "field_view",
    "row_fields",
    "row_filter",
    "with_filter",
    "writable",
]

Filter = Expr | None
"""A rule for one caller: None grants every row, DENIED none, any other tree some."""

DENIED: Expr = Literal(False)


def row_filter(resource: Resource, action: str, auth: Mapping[str, object] | None) -> Filter:
    """The rows of `resource` on which the caller (`auth` None: the engine itself) may `action`."""
    if auth is None:
        return None
    assert resource.access is not None
    return _as_filter(bind_caller(resource.access.rules[action].expr, auth))


def with_filter(where: Expr | None, rule: Filter) -> Expr | None:
    """A client's filter and a rule's, both applying."""
    if rule is None:
        return where
    return rule if where is None else And(where, rule)


@dataclass(frozen=True, slots=True)
class FieldView:
    """Which fields a caller may read: `hidden` never, `per_row` where their condition holds."""

    hidden: frozenset[str]
    per_row: Mapping[str, Expr]

    @property
    def restricts(self) -> bool:
        return bool(self.hidden or self.per_row)

    def visible(self, name: str) -> bool:
        """Whether `name` is visible on every row (so it can be filtered and sorted on)."""
        return name not in self.hidden and name not in self.per_row

    def hidden_in(self, row: Mapping[str, object], auth: Mapping[str, object]) -> set[str]:
        """The fields of `row` to hide from this caller."""
        hide = set(self.hidden)
        hide.update(n for n, cond in self.per_row.items() if evaluate(cond, row, auth) is not True)
        return hide


OPEN_VIEW = FieldView(frozenset(), {})


def field_view(resource: Resource, auth: Mapping[str, object] | None) -> FieldView:
    """The field read rules of `resource` for a caller (`auth` None: the engine sees all)."""
    if auth is None or resource.access is None or not resource.access.fields_read:
        return OPEN_VIEW
    hidden, per_row = set(), {}
    for name, rule in resource.access.fields_read.items():
        bound = _as_filter(bind_caller(rule.expr, auth))
        if bound is DENIED:
            hidden.add(name)
        elif bound is not None:
            per_row[name] = bound
    return FieldView(frozenset(hidden), per_row)


def writable(
    rules: Mapping[str, Rule],
    names: set[str],
    row: Mapping[str, object],
    auth: Mapping[str, object],
) -> list[str]:
    """Of `names` (fields a body sets), those whose write rule does not hold for this caller."""
    refused = []
    for name in sorted(names & rules.keys()):
        bound = bind_caller(rules[name].expr, auth)
        if uses_exists(bound) or evaluate(bound, row, auth) is not True:
            refused.append(name)
    return refused


def row_fields(expr: Expr, *, inside: bool = False) -> Iterator[str]:
    """The fields of the row an expression reads (a filter's, a field rule's); names inside
    exists() are another resource's, except those qualified with the row's."""
    match expr:
        case And(left, right) | Or(left, right):
            yield from row_fields(left, inside=inside)
            yield from row_fields(right, inside=inside)
        case Not(operand):
            yield from row_fields(operand, inside=inside)
        case Compare(_, left, right):
            for side in (left, right):
                if not isinstance(side, Name) or side.path[0] == "auth":
                    continue
                if len(side.path) == 1 or not inside:
                    yield side.path[0]  # a field, or the json field of tags.length, meta.lang
        case Call(_, args):
            for arg in args[1:]:
                yield from row_fields(arg, inside=True)


def _as_filter(bound: Expr) -> Filter:
    if isinstance(bound, Literal):
        return None if bound.value is True else DENIED
    return bound
