"""Query parameters → ListQuery: one case per rule, hostile inputs included."""

from __future__ import annotations

import pytest

from charpente.compile.plan import ListQuery, SortKey
from charpente.compile.request import parse_get_params, parse_list_params
from charpente.design.model import Design, Field, Kind, Resource
from charpente.errors import ApiError, BadRequest, FieldError, ValidationFailed

POSTS = Resource(
    "posts",
    (
        Field("title", Kind.STRING, required=True),
        Field("body", Kind.TEXT),
        Field("score", Kind.INT),
        Field("author", Kind.REF, ref="accounts"),
        Field("editor", Kind.REF, ref="accounts"),
        Field("meta", Kind.JSON),
        Field("secret", Kind.STRING, writeonly=True),
        Field("hidden_ref", Kind.REF, ref="accounts", writeonly=True),
        Field("site", Kind.URL),
        Field("a", Kind.STRING),
        Field("b", Kind.STRING),
        Field("c", Kind.INT),
        Field("d", Kind.INT),
        Field("e", Kind.INT),
        Field("f", Kind.INT),
    ),
)
ACCOUNTS = Resource("accounts", (Field("handle", Kind.STRING),))
DESIGN = Design("social", 1, {"posts": POSTS, "accounts": ACCOUNTS})


def parse(*params: tuple[str, str]) -> ListQuery:
    return parse_list_params(POSTS, DESIGN, params)


def refused(*params: tuple[str, str]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(*params)
    return caught.value


def test_no_parameters_give_the_default_plan():
    assert parse() == ListQuery("posts", sort=(SortKey("id"),), limit=20)


@pytest.mark.parametrize(
    ("text", "sort"),
    [
        ("title", (SortKey("title"), SortKey("id"))),
        ("-score", (SortKey("score", True), SortKey("id", True))),
        ("-created_at,title", (SortKey("created_at", True), SortKey("title"), SortKey("id"))),
        ("id", (SortKey("id"),)),
        ("-id", (SortKey("id", True),)),
        ("score,-id", (SortKey("score"), SortKey("id", True))),
        ("author,version", (SortKey("author"), SortKey("version"), SortKey("id"))),
        ("a,score,-c", (SortKey("a"), SortKey("score"), SortKey("c", True), SortKey("id", True))),
        ("c,d,e,f,score", (*(SortKey(n) for n in "cdef"), SortKey("score"), SortKey("id"))),
    ],
)
def test_sort_lists_fields_and_ends_with_id(text, sort):
    assert parse(("sort", text)).sort == sort


@pytest.mark.parametrize(
    "text",
    [
        "nope",
        "meta",
        "body",
        "secret",
        "site",
        "title,title",
        "title,-title",
        "id,title",
        "c,d,e,f,score,title",
        "title,",
        ",title",
        "--title",
        "+title",
        " title",
        "' OR 1=1 --",
        'name"; DROP TABLE posts',
        'tit"le',
        "title;DELETE FROM posts",
        "a,b",
    ],
)
def test_a_bad_sort_is_a_400(text):
    error = refused(("sort", text))
    assert isinstance(error, BadRequest)
    assert type(error).status == 400
    assert error.detail.startswith("sort: ")


@pytest.mark.parametrize(("text", "limit"), [("1", 1), ("20", 20), ("100", 100), ("007", 7)])
def test_limit_takes_an_integer_from_1_to_100(text, limit):
    assert parse(("limit", text)).limit == limit


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("0", "too_small"),
        ("-1", "too_small"),
        ("101", "too_large"),
        ("99999999999999999999", "too_large"),
        ("abc", "type"),
        ("1.5", "type"),
        ("1e2", "type"),
        (" 5", "type"),
        ("\uff15", "type"),  # a full-width digit five
        ("9" * 4000, "type"),
        ("' OR 1=1 --", "type"),
    ],
)
def test_a_bad_limit_is_a_422_naming_limit_never_capped(text, code):
    error = refused(("limit", text))
    assert isinstance(error, ValidationFailed)
    assert type(error).status == 422
    assert [(e.field, e.code) for e in error.errors] == [("limit", code)]


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("id,title", ("id", "title")),
        ("title,id,title", ("title", "id")),
        ("version,created_at,meta", ("version", "created_at", "meta")),
    ],
)
def test_fields_picks_readable_fields_once_each(text, fields):
    assert parse(("fields", text)).fields == fields


@pytest.mark.parametrize(
    "text", ["secret", "nope", "title,", "title,,id", "Title", "' OR 1=1 --", 'id"', "*"]
)
def test_bad_fields_are_a_400(text):
    assert isinstance(refused(("fields", text)), BadRequest)


@pytest.mark.parametrize(
    ("text", "expand"),
    [("author", ("author",)), ("author,editor,author", ("author", "editor"))],
)
def test_expand_takes_reference_fields(text, expand):
    assert parse(("expand", text)).expand == expand


@pytest.mark.parametrize(
    "text", ["title", "nope", "hidden_ref", "author,", "author.handle", ",".join(["x"] * 11)]
)
def test_bad_expand_is_a_400(text):
    assert isinstance(refused(("expand", text)), BadRequest)


def test_more_than_ten_expansions_is_a_400():
    fields = tuple(Field(f"r{i}", Kind.REF, ref="accounts") for i in range(11))
    wide = Resource("wide", fields)
    names = ",".join(f.name for f in fields)
    with pytest.raises(BadRequest, match="at most 10"):
        parse_list_params(wide, DESIGN, [("expand", names)])
    assert parse_list_params(wide, DESIGN, [("expand", names[: names.rindex(",")])]).expand


def test_count_exact_asks_for_a_total():
    assert parse(("count", "exact")).count is True


@pytest.mark.parametrize("text", ["true", "1", "EXACT", "estimated"])
def test_count_takes_only_exact(text):
    assert isinstance(refused(("count", text)), BadRequest)


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ((("page", "2"),), "unknown query parameter `page`"),
        ((("offset", "10"),), "unknown query parameter `offset`"),
        ((("' OR 1=1 --", "x"),), "unknown query parameter `' OR 1=1 --`"),
        ((("sort", "title"), ("sort", "id")), "`sort` given twice"),
        ((("limit", "5"), ("limit", "5")), "`limit` given twice"),
        ((("sort", ""),), "`sort` is empty"),
        ((("filter", ""),), "`filter` is empty"),
        ((("fields", "x" * 4097),), "`fields` is longer than 4096 characters"),
        ((("filter", "x" * 4097),), "`filter` is longer than 4096 characters"),
    ],
)
def test_unknown_repeated_empty_or_oversized_parameters_are_a_400(params, detail):
    error = refused(*params)
    assert isinstance(error, BadRequest)
    assert error.detail == detail


def test_an_oversized_parameter_name_is_not_echoed_whole():
    error = refused(("x" * 10_000, "1"))
    assert isinstance(error, BadRequest)
    assert len(error.detail) < 120


def test_item_gets_take_fields_and_expand_only():
    assert parse_get_params(POSTS, [("fields", "id,title"), ("expand", "author")]) == (
        ("id", "title"),
        ("author",),
    )
    assert parse_get_params(POSTS, []) == (None, ())


@pytest.mark.parametrize(
    "params",
    [
        [("sort", "title")],
        [("limit", "5")],
        [("fields", "secret")],
        [("expand", "title")],
        [("fields", "id"), ("fields", "id")],
        [("fields", "")],
    ],
)
def test_item_gets_refuse_anything_else(params):
    with pytest.raises(BadRequest):
        parse_get_params(POSTS, params)


# --- filter (parsed and resolved by the design's expression language) -------------------------


@pytest.mark.parametrize(
    "text",
    [
        "' OR 1=1 --",
        'title == "x"; DROP TABLE posts',
        'name"; DROP TABLE posts',
        "title ==",
        "(((title == 1",
        "nope == 1",
        "1 +",
        "title == 'x' --",
        "(" * 2000 + 'title == "x"' + ")" * 2000,
        "not " * 1000 + "true",
    ],
)
def test_a_bad_filter_is_a_400_with_its_position(text):
    error = refused(("filter", text))
    assert isinstance(error, BadRequest)
    assert error.detail.startswith("filter: ")
    assert [(e.field, e.code) for e in error.errors] == [("filter", "syntax")]


def test_a_filter_error_names_its_character():
    error = refused(("filter", "title == "))
    assert "at character " in error.detail


def test_a_filter_on_a_write_only_field_is_a_400():
    error = refused(("filter", 'secret == "hunter2"'))
    assert isinstance(error, BadRequest)
    assert error.errors[0] == FieldError("filter", "syntax", error.errors[0].message)


def test_a_good_filter_becomes_the_where_clause():
    query = parse(("filter", 'title == "héllo 🎉" and score > 3'))
    assert query.where is not None
    assert "🎉" in repr(query.where)
