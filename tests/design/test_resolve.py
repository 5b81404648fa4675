"""Names and types of expressions checked against a resource, literals coerced to field types."""

from __future__ import annotations

import datetime
import decimal

import pytest

from charpente.design.expr import And, Compare, Expr, ListOf, Literal, Name, Not, Or
from charpente.design.model import Design, Field, Kind, Resource
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.errors import ExprError

UTC = datetime.UTC
UUID = "0190a7c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"

POSTS = Resource(
    "posts",
    (
        Field("title", Kind.STRING, required=True),
        Field("body", Kind.TEXT),
        Field("email", Kind.EMAIL),
        Field("site", Kind.URL),
        Field("status", Kind.ENUM, choices=("draft", "published")),
        Field("author", Kind.REF, ref="users"),
        Field("token", Kind.UUID),
        Field("score", Kind.INT),
        Field("likes", Kind.COUNT),
        Field("ratio", Kind.FLOAT),
        Field("price", Kind.DECIMAL),
        Field("pinned", Kind.BOOL),
        Field("day", Kind.DATE),
        Field("at", Kind.DATETIME),
        Field("meta", Kind.JSON),
        Field("secret", Kind.STRING, writeonly=True),
    ),
)
USERS = Resource("users", (Field("name", Kind.STRING),))
DESIGN = Design("blog", 1, {"posts": POSTS, "users": USERS})


def resolve(text: str, *, allow_auth: bool = False) -> Expr:
    return resolve_expr(parse_expr(text), POSTS, DESIGN, allow_auth=allow_auth)


def right_value(text: str) -> object:
    tree = resolve(text)
    assert isinstance(tree, Compare)
    assert isinstance(tree.right, Literal)
    return tree.right.value


# --- accepted, with coercion -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('title == "x"', "x"),
        ('body ~ "needle"', "needle"),
        ('email >= "a@b"', "a@b"),
        ('site != ""', ""),
        ('status == "draft"', "draft"),
        ('status ~ "dra"', "dra"),
        (f'author == "{UUID.upper()}"', UUID),
        (f'token != "{UUID.replace("-", "")}"', UUID),
        (f'id == "{UUID}"', UUID),
        ("score < 10", 10),
        ("score == -9223372036854775808", -(2**63)),
        ("likes >= 0", 0),
        ("ratio > 1", 1.0),
        ("ratio > 1.5", 1.5),
        ("version == 3", 3),
        ("price <= 10", decimal.Decimal(10)),
        ("pinned == true", True),
        ("pinned != false", False),
        ('day == "2026-02-28"', datetime.date(2026, 2, 28)),
        ('at > "2026-01-01T10:00:00Z"', datetime.datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ('at > "2026-01-01t10:00:00.5z"', datetime.datetime(2026, 1, 1, 10, 0, 0, 500000, UTC)),
        ('at > "2026-01-01 12:30:00+02:30"', datetime.datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ('at > "2026-01-01T00:00:00-01:00"', datetime.datetime(2026, 1, 1, 1, tzinfo=UTC)),
        ('created_at < "2026-01-01"', datetime.datetime(2026, 1, 1, tzinfo=UTC)),
        (
            'at == "2026-01-01T10:00:00.1234567Z"',
            datetime.datetime(2026, 1, 1, 10, 0, 0, 123456, UTC),
        ),
        ("meta == null", None),
        ("meta != null", None),
        ("title == null", None),
        ("id != null", None),
    ],
)
def test_a_literal_is_coerced_to_the_type_of_its_field(text: str, value: object) -> None:
    got = right_value(text)
    assert got == value
    assert type(got) is type(value)


def test_a_decimal_literal_keeps_its_written_digits() -> None:
    assert right_value("price == 0.1") == decimal.Decimal("0.1")
    assert right_value("price == 1e2") == decimal.Decimal("100")


def test_a_datetime_literal_becomes_aware_utc() -> None:
    value = right_value('at == "2026-06-01T23:30:00-05:00"')
    assert isinstance(value, datetime.datetime)
    assert value.utcoffset() == datetime.timedelta(0)
    assert value == datetime.datetime(2026, 6, 2, 4, 30, tzinfo=UTC)


def test_a_list_is_coerced_item_by_item() -> None:
    tree = resolve(f'author in ["{UUID.upper()}"] and ratio not in [1, 2.5]')
    assert tree == And(
        Compare("in", Name(("author",)), ListOf((Literal(UUID),))),
        Compare("not in", Name(("ratio",)), ListOf((Literal(1.0), Literal(2.5)))),
    )
    assert isinstance(tree, And)
    assert isinstance(tree.right, Compare)
    assert isinstance(tree.right.right, ListOf)
    assert type(tree.right.right.items[0].value) is float


def test_an_empty_list_is_accepted() -> None:
    assert resolve("score in []") == Compare("in", Name(("score",)), ListOf(()))


def test_a_literal_on_the_left_is_coerced_too() -> None:
    tree = resolve('"2026-01-01" <= day')
    assert tree == Compare("<=", Literal(datetime.date(2026, 1, 1)), Name(("day",)))
    assert resolve("null == body") == Compare("==", Literal(None), Name(("body",)))


@pytest.mark.parametrize(
    "text",
    [
        "title != body",
        "email < status",
        "author != id",
        "token == author",
        "score < ratio",
        "likes == price",
        "day <= day",
        "at > created_at",
        "pinned == pinned",
    ],
)
def test_fields_of_the_same_family_compare_with_each_other(text: str) -> None:
    assert resolve(text) == parse_expr(text)


def test_and_or_not_keep_their_shape_and_positions() -> None:
    tree = resolve("not (score > 1 or ratio < 2) and pinned == true")
    assert isinstance(tree, And)
    assert isinstance(tree.left, Not)
    assert isinstance(tree.left.operand, Or)
    assert tree.pos == 29
    assert isinstance(tree.right, Compare)
    assert tree.right.right == Literal(True)
    assert tree.right.right.pos == 43


def test_auth_names_are_accepted_only_when_allowed() -> None:
    tree = resolve(
        f'author == auth.id or auth.role == "admin" or auth.id == "{UUID}"', allow_auth=True
    )
    assert isinstance(tree, Or)
    assert tree.left == Or(
        Compare("==", Name(("author",)), Name(("auth", "id"))),
        Compare("==", Name(("auth", "role")), Literal("admin")),
    )
    with pytest.raises(ExprError, match="not available here") as caught:
        resolve("author == auth.id")
    assert caught.value.offset == 10


# --- refused, with the offending node's position -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("titel == 'x'", 0, "did you mean 'title'"),
        ("zzz == 1", 0, "unknown field 'zzz' in 'posts'"),
        ("secret == 'x'", 0, "write-only"),
        ("score == 1 and secrte == 'x'", 15, "unknown field"),
        ("a.b == 1", 0, "dotted names"),
        ("auth.name == 'x'", 0, "not available here"),
        ("title", 0, "a field alone is not a condition"),
        ("true", 0, "a value alone is not a condition"),
        ("score == 1 and 5", 15, "not a condition"),
        ("not title", 4, "not a condition"),
        ("exists(users, name == 'x')", 0, "exists() is only for access rules"),
        ("length(title) > 1", 0, "each side"),
        ("nope(title)", 0, "unknown function"),
        ("(score == 1) == true", 7, "each side"),
        ("1 == 1", 2, "field on at least one side"),
        ("title == 1", 9, "expected a string"),
        ("title == true", 9, "expected a string"),
        ("title == 'a\\u0000b'", 9, "NUL"),
        ("status == 'gone'", 10, "not one of draft, published"),
        ("status in ['draft', 'gone']", 20, "not one of"),
        ("author == 'not-a-uuid'", 10, "not a valid UUID"),
        ("author == 5", 10, "expected a UUID"),
        ("author < 'x'", 7, "'<' does not apply to field 'author' (ref)"),
        ("id ~ 'x'", 3, "'~' does not apply"),
        ("score == 1.5", 9, "expected an integer"),
        ("score == '1'", 9, "expected an integer"),
        ("score == true", 9, "expected an integer"),
        ("score == 9223372036854775808", 9, "out of range"),
        ("score ~ '1'", 6, "'~' does not apply"),
        ("ratio == 'x'", 9, "expected a number"),
        ("ratio == 1" + "0" * 400, 9, "out of range"),
        ("price == false", 9, "expected a number"),
        ("pinned == 1", 10, "expected true or false"),
        ("pinned < true", 7, "'<' does not apply"),
        ("day == '2026-02-30'", 7, "day is out of range"),
        ("day == '2026-1-1'", 7, "YYYY-MM-DD"),
        ("day == 20260101", 7, "YYYY-MM-DD"),
        ("at == '2026-01-01T10:00:00'", 6, "expected a time"),
        ("at == '2026-01-01T25:00:00Z'", 6, "hour must be in"),
        ("at == '2026-01-01T10:00:00+24:00'", 6, "field 'at'"),
        ("meta == 'x'", 8, "only be compared with null"),
        ("meta == meta", 5, "cannot be compared"),
        ("score < null", 6, "null can only be compared with == or !="),
        ("score in [1, null]", 13, "null cannot be in a list"),
        ("score in 1", 9, "must be followed by a list"),
        ("1 in [1]", 0, "left side of 'in' must be a field"),
        ("score == [1]", 9, "a list can only follow"),
        ("title ~ body", 8, "right side of '~'"),
        ("'x' ~ title", 0, "left side of '~'"),
        ("title == score", 6, "cannot be compared with each other"),
        ("day < at", 4, "cannot be compared"),
        ("author == title", 7, "cannot be compared"),
    ],
)
def test_a_bad_expression_is_refused_at_the_offending_node(
    text: str, offset: int, message: str
) -> None:
    with pytest.raises(ExprError) as caught:
        resolve(text)
    assert message in caught.value.message
    assert caught.value.offset == offset, caught.value.message


def test_a_field_named_like_a_system_field_is_found() -> None:
    for name in ("id", "created_at", "updated_at", "version"):
        assert resolve(f"{name} != null") == Compare("!=", Name((name,)), Literal(None))


def test_the_input_tree_is_left_untouched() -> None:
    tree = parse_expr("score == 1 and ratio > 2")
    before = repr(tree)
    resolve_expr(tree, POSTS, DESIGN)
    assert repr(tree) == before
