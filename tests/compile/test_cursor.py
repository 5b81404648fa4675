"""Keyset cursors: every sortable kind round-trips; anything not made by us is a 400."""

from __future__ import annotations

import base64
import datetime
import decimal
import json

import pytest
from hypothesis import given, settings, strategies as st

from charpente.compile.plan import ListQuery
from charpente.compile.request import encode_cursor, parse_list_params
from charpente.design.model import Design, Field, Kind, Resource
from charpente.errors import BadRequest

ID = "0190c1d2-7f3a-7c4e-9b1d-5a6e8f00aa01"

ITEMS = Resource(
    "items",
    (
        Field("s", Kind.STRING),
        Field("name", Kind.STRING, required=True),
        Field("short", Kind.STRING, max_length=40),
        Field("mail", Kind.EMAIL, max_length=100),
        Field("link", Kind.URL, max_length=200),
        Field("color", Kind.ENUM, choices=("red", "green", "bleu ciel")),
        Field("n", Kind.INT),
        Field("hits", Kind.COUNT),
        Field("x", Kind.FLOAT),
        Field("price", Kind.DECIMAL, precision=12, scale=4),
        Field("ok", Kind.BOOL),
        Field("day", Kind.DATE),
        Field("at", Kind.DATETIME),
        Field("token", Kind.UUID),
        Field("owner", Kind.REF, ref="items"),
    ),
)
DESIGN = Design("shop", 1, {"items": ITEMS})

utc_datetimes = st.datetimes(
    min_value=datetime.datetime(1, 1, 2),
    max_value=datetime.datetime(9999, 12, 30),
    timezones=st.just(datetime.UTC),
)
uuids = st.uuids().map(str)
no_nul = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))

KIND_VALUES = {
    "s": st.text(no_nul, max_size=255),
    "short": st.text(no_nul, max_size=40),
    "mail": st.text(no_nul, max_size=100),
    "link": st.text(no_nul, max_size=200),
    "color": st.sampled_from(("red", "green", "bleu ciel")),
    "n": st.integers(-(2**63), 2**63 - 1),
    "hits": st.integers(0, 2**63 - 1),
    "x": st.floats(allow_nan=False, allow_infinity=False),
    "price": st.decimals(places=4, min_value=-(10**8) + 1, max_value=10**8 - 1),
    "ok": st.booleans(),
    "day": st.dates(),
    "at": utc_datetimes,
    "token": uuids,
    "owner": uuids,
}


def page_after(sort: str, cursor: str) -> tuple[object, ...] | None:
    query = parse_list_params(ITEMS, DESIGN, [("sort", sort), ("cursor", cursor)])
    return query.after


def query_for(sort: str) -> ListQuery:
    return parse_list_params(ITEMS, DESIGN, [("sort", sort)])


@pytest.mark.parametrize("name", sorted(KIND_VALUES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_cursor_round_trips_every_sortable_kind(name, data):
    nullable = name != "hits"  # counters are never null
    value = data.draw(st.one_of(st.none(), KIND_VALUES[name]) if nullable else KIND_VALUES[name])
    row_id = data.draw(uuids)
    sort = f"-{name}"
    cursor = encode_cursor(query_for(sort), {name: value, "id": row_id}, ITEMS)
    after = page_after(sort, cursor)
    assert after == (value, row_id)
    assert after is not None
    assert type(after[0]) is type(value)


@settings(max_examples=40, deadline=None)
@given(values=st.tuples(*(KIND_VALUES[n] for n in ("short", "n", "at", "price", "owner"))))
def test_a_cursor_round_trips_five_keys(values):
    sort = "short,-n,at,-price,owner"
    row = dict(zip(("short", "n", "at", "price", "owner"), values, strict=True)) | {"id": ID}
    assert page_after(sort, encode_cursor(query_for(sort), row, ITEMS)) == (*values, ID)


@settings(max_examples=25, deadline=None)
@given(text=st.text(st.sampled_from('\x01\x1f"\\\u2028é🎉'), min_size=255, max_size=255))
def test_the_longest_strings_still_make_cursors_that_are_accepted(text):
    cursor = encode_cursor(query_for("s"), {"s": text, "id": ID}, ITEMS)
    assert page_after("s", cursor) == (text, ID)


def test_a_cursor_is_base64url_without_padding_and_keeps_unicode_exactly():
    cursor = encode_cursor(query_for("s"), {"s": "naïve 🎉", "id": ID}, ITEMS)
    assert "=" not in cursor
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert page_after("s", cursor) == ("naïve 🎉", ID)


def test_a_datetime_travels_as_rfc3339_utc_with_microseconds():
    at = datetime.datetime(2026, 1, 1, 10, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    cursor = encode_cursor(query_for("at"), {"at": at, "id": ID}, ITEMS)
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert raw[1] == ["2026-01-01T08:00:00.000000Z", ID]
    assert page_after("at", cursor) == (at, ID)


def test_a_decimal_travels_as_a_string():
    cursor = encode_cursor(query_for("price"), {"price": decimal.Decimal("1.10"), "id": ID}, ITEMS)
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert raw[1][0] == "1.10"


def forge(signature_of: str, values: list[object]) -> str:
    real = encode_cursor(query_for(signature_of), {"id": ID}, ITEMS)
    raw = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
    text = json.dumps([raw[0], values])
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("n", "not a cursor!"),
        ("n", "%%%"),
        ("n", "abc="),
        ("n", "a"),
        ("n", "A" * 2049),
        ("n", encoded("[")),
        ("n", encoded("{}")),
        ("n", encoded('"x"')),
        ("n", encoded("[1, 2, 3]")),
        ("n", base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("=")),
        ("n", forge("n", [1])),
        ("n", forge("n", [1, ID, 3])),
        ("n", forge("n", ["1", ID])),
        ("n", forge("n", [1.5, ID])),
        ("n", forge("n", [True, ID])),
        ("n", forge("n", [2**63, ID])),
        ("n", forge("n", [1, "' OR 1=1 --"])),
        ("n", forge("n", [1, 5])),
        ("x", forge("x", ["NaN", ID])),
        ("x", encoded(json.dumps([json.loads(json.dumps("x")), [1, ID]]))),
        ("price", forge("price", ["1e5x", ID])),
        ("price", forge("price", ["Infinity", ID])),
        ("price", forge("price", ["9" * 500, ID])),
        ("ok", forge("ok", [1, ID])),
        ("day", forge("day", ["2026-02-30", ID])),
        ("at", forge("at", ["2026-01-01T00:00:00", ID])),
        ("at", forge("at", [12, ID])),
        ("token", forge("token", ["not-a-uuid", ID])),
        ("s", forge("s", [["nested"], ID])),
        ("s", forge("s", ["a\x00b", ID])),
        ("s", forge("s", ["a", ID[:8] + "\x00" + ID[9:]])),
        ("price", forge("price", ["1\x00", ID])),
        ("n", forge("n", [1, None])),
        ("-created_at", forge("-created_at", [None, ID])),
        ("version", forge("version", [None, ID])),
        ("hits", forge("hits", [None, ID])),
        ("name", forge("name", [None, ID])),
        ("s", forge("s", ['name"; DROP TABLE items', ID])[:-2] + "!!"),
    ],
)
def test_a_cursor_we_did_not_make_is_a_400(sort, cursor):
    with pytest.raises(BadRequest, match=r"^cursor: "):
        page_after(sort, cursor)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_are_not_numbers_in_a_cursor(constant):
    real = encode_cursor(query_for("x"), {"x": 1.0, "id": ID}, ITEMS)
    raw = base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)).decode()
    hostile = encoded(raw.replace("1.0", constant))
    with pytest.raises(BadRequest, match=r"^cursor: "):
        page_after("x", hostile)


def test_a_huge_float_literal_is_refused():
    real = encode_cursor(query_for("x"), {"x": 1.0, "id": ID}, ITEMS)
    raw = base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)).decode()
    with pytest.raises(BadRequest, match=r"^cursor: "):
        page_after("x", encoded(raw.replace("1.0", "1e999")))


@pytest.mark.parametrize(("made_for", "used_with"), [("n", "-n"), ("n", "x"), ("n,s", "n")])
def test_a_cursor_made_for_another_sort_is_a_400(made_for, used_with):
    cursor = encode_cursor(query_for(made_for), {"n": 1, "s": "a", "x": 1.0, "id": ID}, ITEMS)
    with pytest.raises(BadRequest, match="another sort"):
        page_after(used_with, cursor)


def test_the_default_sort_has_cursors_too():
    query = parse_list_params(ITEMS, DESIGN, [])
    cursor = encode_cursor(query, {"id": ID}, ITEMS)
    assert parse_list_params(ITEMS, DESIGN, [("cursor", cursor)]).after == (ID,)


def test_a_null_is_accepted_for_a_field_that_may_be_null():
    assert page_after("n", forge("n", [None, ID])) == (None, ID)
