"""What one caller sees of an event, decided without a server: typed records, exists()
conditions bound to a record, and the queries a rule with exists() needs (or not)."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest
from tests.changes.support import DESIGN

from charpente.compile.plan import ListQuery, Page
from charpente.compile.policy import field_view, row_filter
from charpente.design.expr import Compare, Literal, Name
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.loader import load_design_text
from charpente.runtime.event_view import EventView, bind_outer, typed_record
from charpente.runtime.events import Event

pytestmark = pytest.mark.anyio

DESIGN_MODEL = load_design_text(DESIGN)
POSTS = DESIGN_MODEL.resources["posts"]
ADA = "0190a000-0000-7000-8000-00000000000a"
BOB = "0190a000-0000-7000-8000-00000000000b"


class CountingDatabase:
    """Answers exists() queries from a set of (follower, followee) pairs, and counts them."""

    def __init__(self, follows: set[tuple[str, str]]) -> None:
        self.follows = follows
        self.queries: list[ListQuery] = []

    async def select_page(self, query: ListQuery) -> Page:
        self.queries.append(query)
        assert query.resource == "follows"
        assert query.limit == 1
        from charpente.design.evaluate import evaluate

        rows = [
            {"id": "x", "follower": f, "followee": e}
            for f, e in self.follows
            if query.where is None or evaluate(query.where, {"follower": f, "followee": e})
        ]
        return Page(rows[:1], len(rows) > 1)


def _view(caller: str | None, database: Any) -> EventView:
    auth = {"id": caller, "role": "member" if caller else None}
    return EventView(
        POSTS,
        database,
        rule=row_filter(POSTS, "list", auth),
        where=None,
        view=field_view(POSTS, auth),
        auth=auth,
    )


def _event(visibility: str, action: str = "created") -> tuple[Event, dict[str, Any]]:
    record = {
        "id": "0190a000-0000-7000-8000-0000000000f0",
        "author": ADA,
        "body": "hi",
        "visibility": visibility,
        "note": "ada's",
        "created_at": "2026-01-02T03:04:05.000006Z",
        "version": 1,
    }
    at = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    event = Event("e1", "posts", str(record["id"]), action, at, 1, dict(record), record)
    return event, typed_record(POSTS, record)


async def test_what_the_record_alone_decides_needs_no_query() -> None:
    database = CountingDatabase({(BOB, ADA)})
    public, public_row = _event("public")
    private, private_row = _event("private")
    assert await _view(BOB, database).show(public, public_row) is not None
    assert await _view(BOB, database).show(private, private_row) is None
    assert await _view(ADA, database).show(private, private_row) is not None
    assert database.queries == []


async def test_a_followers_only_record_asks_whether_the_caller_follows_its_author() -> None:
    database = CountingDatabase({(BOB, ADA)})
    event, row = _event("followers", "deleted")
    shown = await _view(BOB, database).show(event, row)
    assert shown is not None
    assert "note" not in shown.data["record"]  # the author's field, hidden from bob
    [query] = database.queries
    assert query.where == bind_outer(_inner_condition(BOB), "posts", row)
    stranger = "0190a000-0000-7000-8000-00000000000c"
    assert await _view(stranger, database).show(event, row) is None
    assert await _view(None, database).show(event, row) is None  # unknown caller: no query
    assert len(database.queries) == 2


def test_bind_outer_puts_the_record_s_values_in_place_of_its_fields() -> None:
    inner = _inner_condition(BOB)
    bound = bind_outer(inner, "posts", {"author": ADA})
    assert bound == resolve_expr(
        parse_expr(f'follower == "{BOB}" and followee == "{ADA}"'),
        DESIGN_MODEL.resources["follows"],
        DESIGN_MODEL,
    )
    unknown = bind_outer(inner, "posts", {"author": None})
    assert Literal(None) in (unknown.left, unknown.right)  # type: ignore[union-attr]
    constant = Compare("==", Name(("posts", "visibility")), Literal("public"))
    assert bind_outer(constant, "posts", {"visibility": "public"}) == Literal(True)
    assert bind_outer(constant, "posts", {"visibility": "private"}) == Literal(False)


def test_typed_record_gives_values_their_field_s_type() -> None:
    shop = load_design_text(
        "charpente: 1\nname: shop\nresources:\n  orders:\n    fields:\n"
        "      total: {type: decimal}\n      day: {type: date}\n      paid: {type: bool}\n"
        "      count: {type: int}\n      rate: {type: float}\n"
    ).resources["orders"]
    record = {
        "id": "0190A000-0000-7000-8000-0000000000F0",
        "total": "12.50",
        "day": "2026-01-02",
        "paid": True,
        "count": 3,
        "rate": 2,
        "created_at": "2026-01-02T03:04:05Z",
        "unknown": "kept out",
    }
    assert typed_record(shop, record) == {
        "id": "0190a000-0000-7000-8000-0000000000f0",
        "total": decimal.Decimal("12.50"),
        "day": datetime.date(2026, 1, 2),
        "paid": True,
        "count": 3,
        "rate": 2.0,
        "created_at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    }
    bad = {"total": "lots", "day": 5, "paid": "yes", "count": True, "created_at": "today"}
    assert typed_record(shop, bad) == dict.fromkeys(bad)


def _inner_condition(caller: str) -> Any:
    """The exists() condition of the posts read rule, bound to `caller`."""
    rule = row_filter(POSTS, "list", {"id": caller, "role": "member"})

    def find(expr: Any) -> Any:
        if getattr(expr, "name", None) == "exists":
            return expr.args[1]
        for child in ("left", "right", "operand"):
            found = find(getattr(expr, child, None)) if hasattr(expr, child) else None
            if found is not None:
                return found
        return None

    return find(rule)
