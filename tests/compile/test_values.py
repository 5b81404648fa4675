"""Create bodies, merge patches and declared checks: one case per rule."""

from __future__ import annotations

import datetime
import decimal
import time

import pytest

from charpente.compile.values import check_row, validate_create, validate_patch
from charpente.design.expr import Compare, Literal, Name
from charpente.design.model import Check, CountSource, Default, Field, Kind, Resource
from charpente.errors import FieldError, ValidationFailed

NOW = datetime.datetime(2026, 3, 1, 12, 30, tzinfo=datetime.UTC)
ID = "0190c1d2-7f3a-7c4e-9b1d-5a6e8f00aa01"

THINGS = Resource(
    "things",
    (
        Field("name", Kind.STRING, required=True, min_length=2, max_length=10),
        Field("code", Kind.STRING, pattern="^[a-z]+$"),
        Field("note", Kind.STRING),
        Field("body", Kind.TEXT),
        Field("n", Kind.INT, minimum=0, maximum=10),
        Field("big", Kind.INT),
        Field("ratio", Kind.FLOAT, maximum=1.5),
        Field("price", Kind.DECIMAL, precision=5, scale=2, minimum=0),
        Field("flag", Kind.BOOL),
        Field("day", Kind.DATE),
        Field("at", Kind.DATETIME),
        Field("color", Kind.ENUM, choices=("red", "green")),
        Field("mail", Kind.EMAIL),
        Field("site", Kind.URL),
        Field("token", Kind.UUID),
        Field("owner", Kind.REF, ref="accounts"),
        Field("data", Kind.JSON),
        Field("secret", Kind.STRING, writeonly=True),
        Field("stamp", Kind.STRING, readonly=True),
        Field("likes", Kind.COUNT, count=CountSource("likes", "thing")),
    ),
)


def errors_of(body: object, resource: Resource = THINGS) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        validate_create(resource, body, NOW)
    return [(e.field, e.code) for e in caught.value.errors]


def created(**fields: object) -> dict[str, object]:
    return validate_create(THINGS, {"name": "ok", **fields}, NOW)


@pytest.mark.parametrize(
    ("field", "sent", "stored"),
    [
        ("name", "héllo 🎉", "héllo 🎉"),
        ("name", "ab", "ab"),
        ("code", "abc", "abc"),
        ("note", "x" * 255, "x" * 255),
        ("body", "line\nline", "line\nline"),
        ("n", 0, 0),
        ("n", 10, 10),
        ("big", 2**63 - 1, 2**63 - 1),
        ("big", -(2**63), -(2**63)),
        ("ratio", 1, 1.0),
        ("ratio", -2.5, -2.5),
        ("price", "123.45", decimal.Decimal("123.45")),
        ("price", 1.5, decimal.Decimal("1.5")),
        ("price", 7, decimal.Decimal(7)),
        ("price", "1.500", decimal.Decimal("1.5")),
        ("price", "999.99", decimal.Decimal("999.99")),
        ("price", "0.000", decimal.Decimal(0)),
        ("flag", False, False),
        ("day", "2026-02-28", datetime.date(2026, 2, 28)),
        (
            "at",
            "2026-01-01T10:00:00.123456789+02:00",
            datetime.datetime(2026, 1, 1, 8, 0, 0, 123456, tzinfo=datetime.UTC),
        ),
        ("at", "2026-01-01t10:00:00z", datetime.datetime(2026, 1, 1, 10, tzinfo=datetime.UTC)),
        ("color", "green", "green"),
        ("mail", "ada@example.org", "ada@example.org"),
        ("site", "https://example.org/a?b=c#d", "https://example.org/a?b=c#d"),
        ("site", "http://[::1]:8080/", "http://[::1]:8080/"),
        ("token", ID.upper(), ID),
        ("owner", ID, ID),
        ("data", {"a": [1, "二", None, {"b": True}]}, {"a": [1, "二", None, {"b": True}]}),
        ("data", "just a string", "just a string"),
        ("secret", "hunter2", "hunter2"),
        ("note", None, None),
    ],
)
def test_a_valid_value_is_stored_as_its_python_type(field, sent, stored):
    values = created(**{field: sent})
    assert values[field] == stored
    assert type(values[field]) is type(stored)


@pytest.mark.parametrize(
    ("field", "sent", "code"),
    [
        ("name", "a", "too_short"),
        ("name", "x" * 11, "too_long"),
        ("name", 12, "type"),
        ("name", None, "required"),
        ("name", "a\x00b", "invalid_character"),
        ("code", "ABC", "pattern"),
        ("note", "x" * 256, "too_long"),
        ("body", "x" * 65_536, "too_long"),
        ("n", -1, "too_small"),
        ("n", 11, "too_large"),
        ("n", 1.0, "type"),
        ("n", True, "type"),
        ("n", "3", "type"),
        ("big", 2**63, "out_of_range"),
        ("big", -(2**63) - 1, "out_of_range"),
        ("big", 10**400, "out_of_range"),
        ("ratio", 1.6, "too_large"),
        ("ratio", "1", "type"),
        ("ratio", float("inf"), "out_of_range"),
        ("ratio", float("nan"), "out_of_range"),
        ("ratio", 10**400, "out_of_range"),
        ("price", "1.234", "too_precise"),
        ("price", "1.0000000000000000000000000000001", "too_precise"),
        ("price", 1234.5, "out_of_range"),
        ("price", "-1", "too_small"),
        ("price", "NaN", "type"),
        ("price", "Infinity", "type"),
        ("price", "1_000", "type"),
        ("price", " 1", "type"),
        ("price", "1e999999", "type"),
        ("price", "9" * 200, "type"),
        ("price", True, "type"),
        ("price", float("inf"), "out_of_range"),
        ("flag", 1, "type"),
        ("flag", "true", "type"),
        ("day", "2026-02-30", "type"),
        ("day", "2026-2-3", "type"),
        ("day", 20260203, "type"),
        ("at", "2026-01-01T10:00:00", "type"),
        ("at", "2026-01-01", "type"),
        ("at", "yesterday", "type"),
        ("at", "0001-01-01T00:00:00+01:00", "type"),
        ("color", "blue", "choice"),
        ("color", 1, "type"),
        ("mail", "ada.example.org", "format"),
        ("mail", "@example.org", "format"),
        ("mail", "ada@localhost", "format"),
        ("mail", "ada@example..org", "format"),
        ("mail", "a da@example.org", "format"),
        ("mail", "a@b@example.org", "format"),
        ("mail", "a" * 250 + "@x.org", "too_long"),
        ("site", "javascript:alert(1)", "format"),
        ("site", "ftp://example.org", "format"),
        ("site", "https://", "format"),
        ("site", "https://example.org:port/", "format"),
        ("site", "https://exa mple.org/", "format"),
        ("token", "not-a-uuid", "format"),
        ("token", "{" + ID + "}", "format"),
        ("token", ID.replace("-", ""), "format"),
        ("owner", 42, "format"),
        ("data", {"a": "\x00"}, "invalid_character"),
        ("data", float("nan"), "type"),
        ("data", {"a": {1, 2}}, "type"),
    ],
)
def test_a_value_breaking_a_rule_is_named_with_its_code(field, sent, code):
    assert errors_of({"name": "ok", field: sent} if field != "name" else {field: sent}) == [
        (field, code)
    ]


def deep(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def test_json_may_nest_32_levels_but_not_33():
    assert created(data=deep(32))["data"] == deep(32)
    assert errors_of({"name": "ok", "data": deep(33)}) == [("data", "too_deep")]


def test_hostile_json_nesting_is_refused_without_recursing():
    assert errors_of({"name": "ok", "data": deep(100_000)}) == [("data", "too_deep")]


def test_a_default_ceiling_is_explained_in_the_message():
    with pytest.raises(ValidationFailed) as caught:
        validate_create(THINGS, {"name": "ok", "note": "x" * 256}, NOW)
    assert "default" in caught.value.errors[0].message
    assert "255" in caught.value.errors[0].message


def test_the_enum_error_lists_the_choices():
    with pytest.raises(ValidationFailed) as caught:
        validate_create(THINGS, {"name": "ok", "color": "blue"}, NOW)
    assert "red, green" in caught.value.errors[0].message


@pytest.mark.parametrize("body", [[], "text", 3, None, True])
def test_a_body_that_is_not_an_object_is_a_type_error_on_the_body(body):
    assert errors_of(body) == [("", "type")]


def test_every_error_is_listed_together():
    with pytest.raises(ValidationFailed) as caught:
        validate_create(THINGS, {"nmae": "x", "n": "1", "id": ID}, NOW)
    assert type(caught.value).status == 422
    assert caught.value.detail == "4 fields are invalid"
    assert {(e.field, e.code) for e in caught.value.errors} == {
        ("nmae", "unknown_field"),
        ("id", "read_only"),
        ("name", "required"),
        ("n", "type"),
    }


def test_an_unknown_field_suggests_the_closest_name():
    with pytest.raises(ValidationFailed) as caught:
        validate_create(THINGS, {"name": "ok", "colour": "red"}, NOW)
    assert caught.value.errors == [
        FieldError("colour", "unknown_field", "is not a field of things; did you mean `color`?")
    ]
    assert caught.value.detail == "1 field is invalid"


@pytest.mark.parametrize("key", ["id", "created_at", "updated_at", "version", "stamp", "likes"])
def test_a_server_managed_field_in_a_body_is_refused_not_dropped(key):
    with pytest.raises(ValidationFailed) as caught:
        validate_create(THINGS, {"name": "ok", key: 1}, NOW)
    assert caught.value.errors == [FieldError(key, "read_only", "is set by the server")]


@pytest.mark.parametrize(
    "key", ['name"; DROP TABLE things; --', "' OR 1=1 --", "x" * 10_000, "名前", ""]
)
def test_hostile_keys_are_unknown_fields(key):
    errors = errors_of({"name": "ok", key: 1})
    assert len(errors) == 1
    assert errors[0][1] == "unknown_field"
    assert len(errors[0][0]) <= 65


def test_a_flood_of_unknown_keys_lists_at_most_a_hundred_errors():
    body = {f"k{i}": 1 for i in range(1000)}
    with pytest.raises(ValidationFailed) as caught:
        validate_create(THINGS, body, NOW)
    assert len(caught.value.errors) == 100
    assert caught.value.detail == "1001 fields are invalid"


def test_absent_optional_fields_are_none_and_counters_are_left_to_the_database():
    values = created()
    assert values["note"] is None
    assert values["data"] is None
    assert "likes" not in values
    assert "id" not in values


def test_defaults_fill_absent_fields():
    resource = Resource(
        "events",
        (
            Field("kind", Kind.ENUM, choices=("a", "b"), default=Default(value="b")),
            Field("at", Kind.DATETIME, default=Default(now=True)),
            Field("day", Kind.DATE, default=Default(now=True)),
            Field(
                "by",
                Kind.REF,
                ref="accounts",
                required=True,
                default=Default(expr=Name(("auth", "id"))),
            ),
            Field("off", Kind.BOOL, default=Default(value=False)),
        ),
    )
    values = validate_create(resource, {}, NOW)
    assert values == {"kind": "b", "at": NOW, "day": NOW.date(), "off": False}


def test_a_sent_value_wins_over_the_default():
    resource = Resource("r", (Field("kind", Kind.STRING, default=Default(value="b")),))
    assert validate_create(resource, {"kind": "c"}, NOW) == {"kind": "c"}


# --- merge patch ---------------------------------------------------------------------------------

CURRENT = {
    "id": ID,
    "name": "old",
    "code": "abc",
    "n": 3,
    "flag": True,
    "data": {"a": 1, "b": {"c": 2, "d": 3}},
    "price": decimal.Decimal("5.00"),
    "note": "kept",
    "owner": ID,
    "likes": 4,
    "version": 2,
}
LOCKED = Resource(
    "locked",
    (Field("owner", Kind.REF, ref="accounts", immutable=True), Field("name", Kind.STRING)),
)


def patched(patch: object, resource: Resource = THINGS) -> dict[str, object]:
    return validate_patch(resource, patch, CURRENT)


def patch_errors(patch: object, resource: Resource = THINGS) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        validate_patch(resource, patch, CURRENT)
    return [(e.field, e.code) for e in caught.value.errors]


@pytest.mark.parametrize(
    ("patch", "changes"),
    [
        ({}, {}),
        ({"name": "old"}, {}),
        ({"name": "new"}, {"name": "new"}),
        ({"note": None}, {"note": None}),
        ({"n": 3, "flag": True}, {}),
        ({"flag": False}, {"flag": False}),
        ({"price": "5"}, {}),
        ({"price": "5.5"}, {"price": decimal.Decimal("5.5")}),
        ({"data": {"a": 1}}, {}),
        ({"data": {"b": {"c": None}}}, {"data": {"a": 1, "b": {"d": 3}}}),
        ({"data": {"e": [1, None]}}, {"data": {"a": 1, "b": {"c": 2, "d": 3}, "e": [1, None]}}),
        ({"data": [1]}, {"data": [1]}),
        ({"data": None}, {"data": None}),
        ({"data": {"a": True}}, {"data": {"a": True, "b": {"c": 2, "d": 3}}}),
        ({"owner": ID.upper()}, {}),
        ({"mail": "ada@example.org"}, {"mail": "ada@example.org"}),
    ],
)
def test_a_merge_patch_returns_only_what_changes(patch, changes):
    assert patched(patch) == changes


@pytest.mark.parametrize(
    ("patch", "errors"),
    [
        ([], [("", "type")]),
        ({"name": None}, [("name", "required")]),
        ({"name": "x" * 11}, [("name", "too_long")]),
        ({"n": "4"}, [("n", "type")]),
        ({"id": ID}, [("id", "read_only")]),
        ({"version": 3}, [("version", "read_only")]),
        ({"likes": 5}, [("likes", "read_only")]),
        ({"stamp": "x"}, [("stamp", "read_only")]),
        ({"nmae": "x"}, [("nmae", "unknown_field")]),
        ({"data": {"x": deep(40)}}, [("data", "too_deep")]),
        ({"name": "a", "n": 99}, [("name", "too_short"), ("n", "too_large")]),
    ],
)
def test_a_bad_merge_patch_lists_every_error(patch, errors):
    assert patch_errors(patch) == errors


def test_an_immutable_field_may_be_sent_with_its_current_value_only():
    assert validate_patch(LOCKED, {"owner": ID, "name": "n"}, CURRENT) == {"name": "n"}
    other = "0190c1d2-7f3a-7c4e-9b1d-5a6e8f00aa02"
    assert patch_errors({"owner": other}, LOCKED) == [("owner", "immutable")]


def test_a_json_merge_patch_starts_from_an_empty_object_when_the_current_value_is_not_one():
    assert validate_patch(THINGS, {"data": {"a": 1, "b": None}}, {"data": [1, 2]}) == {
        "data": {"a": 1}
    }


# --- checks ----------------------------------------------------------------------------------

PAIRS = Resource(
    "pairs",
    (Field("low", Kind.INT), Field("high", Kind.INT)),
    checks=(
        Check("low <= high", Compare("<=", Name(("low",)), Name(("high",)))),
        Check("high < 100", Compare("<", Name(("high",)), Literal(100)), message="too high"),
        Check("1 < low", Compare("<", Literal(1), Name(("low",)))),
    ),
)


@pytest.mark.parametrize(
    ("row", "errors"),
    [
        ({"low": 2, "high": 3}, []),
        ({"low": None, "high": None}, []),
        (
            {"low": 5, "high": 3},
            [FieldError("low", "check", "must satisfy: low <= high")],
        ),
        ({"low": 2, "high": 300}, [FieldError("high", "check", "too high")]),
        ({"low": 1, "high": 3}, [FieldError("low", "check", "must satisfy: 1 < low")]),
    ],
)
def test_declared_checks_fail_only_when_false(row, errors):
    assert check_row(PAIRS, row) == errors


HANDLES = Resource("users", (Field("handle", Kind.STRING, pattern="^[a-z0-9_]{3,30}$"),))


def test_a_trailing_newline_does_not_pass_a_pattern_ending_in_dollar_on_create():
    assert validate_create(HANDLES, {"handle": "ada"}, NOW) == {"handle": "ada"}
    assert errors_of({"handle": "ada\n"}, HANDLES) == [("handle", "pattern")]


def test_a_trailing_newline_does_not_pass_a_pattern_ending_in_dollar_on_patch():
    assert patch_errors({"handle": "ada\n"}, HANDLES) == [("handle", "pattern")]


def test_a_flood_of_unknown_keys_is_cheap_and_still_counted():
    body = {f"name{i}": 1 for i in range(60_000)}  # each one close to `name`
    started = time.perf_counter()
    with pytest.raises(ValidationFailed) as caught:
        validate_create(THINGS, body, NOW)
    assert time.perf_counter() - started < 0.25
    assert caught.value.detail == "60001 fields are invalid"
    assert len(caught.value.errors) == 100
    hints = [e for e in caught.value.errors if "did you mean" in e.message]
    assert 0 < len(hints) <= 10
