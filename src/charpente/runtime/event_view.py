"""What one caller may see of a change event: its read rule, its filter and its field rules.

An event carries its record as JSON (after the change; as it was, for a delete).
`typed_record` gives the values the Python types of their fields, so that rules and
filters compare them as SQL compares the columns. A read rule without exists() is evaluated
on that record. A rule with exists() is first evaluated with each exists() unknown: when
the record alone decides, no query runs. Otherwise each exists() becomes one query: its
condition, with the record's values in place of the record's fields, asked of the other
resource as it is now. A delete is judged the same way, on the record as it was: a
follower sees a followers-only post go, a stranger never learns it existed.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from charpente.compile.plan import ListQuery, Record
from charpente.compile.policy import FieldView, Filter
from charpente.compile.values import parse_date, parse_datetime, parse_uuid
from charpente.design.bind import can_hold, uses_exists
from charpente.design.evaluate import evaluate
from charpente.design.expr import And, Call, Compare, Expr, Literal, Name, Not, Or, Value
from charpente.design.model import Kind, Resource
from charpente.runtime.events import Event
from charpente.runtime.ports import Database

__all__ = ["Change", "EventView", "typed_record"]

_UNKNOWN = Literal(None)


@dataclass(frozen=True, slots=True)
class Change:
    """One event as a subscriber may see it: `type` is `{resource}.{action}`, `data` what
    is sent (the record's id, action, version, time, actor, changes and record)."""

    id: str
    type: str
    data: Mapping[str, object]


class EventView:
    """Decides whether a caller sees an event, and which of its fields.

    `rule` is the caller's bound read rule (None: every record; never DENIED), `where` the
    caller's own filter, `view` its field read rules and `auth` the caller as rules read it
    (None: the engine itself).
    """

    def __init__(
        self,
        resource: Resource,
        database: Database,
        *,
        rule: Filter,
        where: Expr | None,
        view: FieldView,
        auth: Mapping[str, object] | None,
    ) -> None:
        self.resource = resource
        self.database = database
        self.rule = rule
        self.where = where
        self.view = view
        self.auth = auth
        self._needs_database = rule is not None and uses_exists(rule)
        self._without_exists = None if rule is None else _exists_unknown(rule)

    async def show(self, event: Event, row: Record) -> Change | None:
        """The change this caller may see of `event` (`row` is its record, typed), or None."""
        if self.where is not None and evaluate(self.where, row) is not True:
            return None
        if not await self.allows(row):
            return None
        hidden: set[str] = set()
        if self.view.restricts and self.auth is not None:
            hidden = self.view.hidden_in(row, self.auth)
        data = {
            "id": event.record_id,
            "action": event.action,
            "version": event.version,
            "at": event.at,
            "actor": event.actor,
            "changes": {k: v for k, v in event.changes.items() if k not in hidden},
            "record": {k: v for k, v in event.record.items() if k not in hidden},
        }
        return Change(event.id, event.type, data)

    async def allows(self, row: Record) -> bool:
        """Whether the read rule holds for the record `row`."""
        if self.rule is None:
            return True
        if not self._needs_database:
            return evaluate(self.rule, row, self.auth) is True
        assert self._without_exists is not None
        quick = evaluate(self._without_exists, row, self.auth)
        if quick is not None:
            return quick
        decided = await self._decided(self.rule, row)
        return evaluate(decided, row, self.auth) is True

    async def _decided(self, expr: Expr, row: Record) -> Expr:
        """`expr` with each exists() replaced by what the database answers for `row`."""
        match expr:
            case And(left, right, pos):
                return And(await self._decided(left, row), await self._decided(right, row), pos)
            case Or(left, right, pos):
                return Or(await self._decided(left, row), await self._decided(right, row), pos)
            case Not(operand, pos):
                return Not(await self._decided(operand, row), pos)
            case Call("exists", (Name((target,)), inner)):
                return Literal(await self._exists(target, inner, row))
        return expr

    async def _exists(self, target: str, inner: Expr, row: Record) -> bool:
        condition = bind_outer(inner, self.resource.name, row)
        if not can_hold(condition):
            return False
        where = None if condition == Literal(True) else condition
        query = ListQuery(target, where=where, limit=1, fields=("id",))
        page = await self.database.select_page(query)
        return bool(page.rows)


def bind_outer(expr: Expr, outer: str, row: Mapping[str, object]) -> Expr:
    """The condition of an exists() with the outer record's fields (`posts.author`) replaced
    by their values in `row`: a condition on the inner resource alone.

    A comparison with a null value of the record is unknown (never `IS NULL`), as in SQL.
    """
    match expr:
        case And(left, right, pos):
            return And(bind_outer(left, outer, row), bind_outer(right, outer, row), pos)
        case Or(left, right, pos):
            return Or(bind_outer(left, outer, row), bind_outer(right, outer, row), pos)
        case Not(operand, pos):
            return Not(bind_outer(operand, outer, row), pos)
        case Compare(op, left, right, pos) if _is_outer(left, outer) or _is_outer(right, outer):
            inner = [s for s in (left, right) if isinstance(s, Name) and not _is_outer(s, outer)]
            if not inner:  # the record's values and constants only: decided here
                values = {
                    s.dotted: row.get(s.path[1])
                    for s in (left, right)
                    if isinstance(s, Name) and _is_outer(s, outer)
                }
                return Literal(evaluate(expr, values))
            side = right if inner[0] is left else left
            assert isinstance(side, Name)
            value = row.get(side.path[1])
            if value is None:
                return _UNKNOWN
            literal = Literal(cast(Value, value), side.pos)  # typed by typed_record
            if side is right:
                return Compare(op, left, literal, pos)
            return Compare(op, literal, right, pos)
    return expr


def _is_outer(side: Expr, outer: str) -> bool:
    return isinstance(side, Name) and len(side.path) == 2 and side.path[0] == outer


def _exists_unknown(expr: Expr) -> Expr:
    """`expr` with every exists() unknown: what the record alone decides."""
    match expr:
        case And(left, right, pos):
            return And(_exists_unknown(left), _exists_unknown(right), pos)
        case Or(left, right, pos):
            return Or(_exists_unknown(left), _exists_unknown(right), pos)
        case Not(operand, pos):
            return Not(_exists_unknown(operand), pos)
        case Call():
            return _UNKNOWN
    return expr


# --- JSON values → the Python types of their fields ------------------------------------------


def typed_record(resource: Resource, record: Mapping[str, object]) -> Record:
    """`record` (decoded JSON) with each value in its field's Python type, as rules compare
    them; a value that does not fit its field counts as null (rules then hide the record)."""
    typed: Record = {}
    for field in resource.all_fields:
        if field.name not in record:
            continue
        value = record[field.name]
        convert = _CONVERTERS.get(field.kind)
        if value is None or convert is None:
            typed[field.name] = value
            continue
        try:
            typed[field.name] = convert(value)
        except (ValueError, TypeError, ArithmeticError, OverflowError):
            typed[field.name] = None
    return typed


def _text_to(parse: Callable[[str], object]) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if not isinstance(value, str):
            raise TypeError(value)
        return parse(value)

    return convert


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    return float(value)


def _decimal(value: object) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(value)
    return decimal.Decimal(str(value))


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


_CONVERTERS: dict[Kind, Callable[[object], object]] = {
    Kind.DATETIME: _text_to(parse_datetime),
    Kind.DATE: _text_to(parse_date),
    Kind.UUID: _text_to(parse_uuid),
    Kind.REF: _text_to(parse_uuid),
    Kind.INT: _integer,
    Kind.COUNT: _integer,
    Kind.FLOAT: _number,
    Kind.DECIMAL: _decimal,
    Kind.BOOL: _boolean,
}
