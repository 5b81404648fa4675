"""Page statements: one per shape, reused with each query's own values."""

from __future__ import annotations

import datetime

from charpente.compile.plan import ListQuery, SortKey
from charpente.design.model import Design, Field, Kind, Resource
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.sql.pages import PageStatements, keyset_condition
from charpente.sql.schema import build_metadata

POSTS = Resource(
    "posts",
    (Field("title", Kind.STRING, required=True), Field("score", Kind.INT)),
)
DESIGN = Design("blog", 1, {"posts": POSTS})
TABLES = {"posts": build_metadata(DESIGN).tables["posts"]}
SORT = (SortKey("created_at", True), SortKey("id", True))


def _query(filter_text: str | None = None, after: tuple[object, ...] | None = None) -> ListQuery:
    where = None
    if filter_text is not None:
        where = resolve_expr(parse_expr(filter_text), POSTS, DESIGN)
    return ListQuery("posts", where=where, sort=SORT, limit=20, after=after)  # type: ignore[arg-type]


def _pages(kept: list[object] | None = None) -> PageStatements:
    return PageStatements(
        TABLES, lambda table, query: list(table.c), keep=None if kept is None else kept.append
    )


def test_queries_that_differ_only_in_values_share_one_statement() -> None:
    kept: list[object] = []
    pages = _pages(kept)
    first, first_params = pages.of(_query('title == "a" and score in [1, 2]'))
    second, second_params = pages.of(_query('title == "b" and score in [3]'))
    assert first is second
    assert first_params == {"w0": "a", "w1": [1, 2]}
    assert second_params == {"w0": "b", "w1": [3]}
    assert len(kept) == 2  # the rows and the count statement, compiled once


def test_a_null_literal_or_another_operator_is_another_shape() -> None:
    pages = _pages()
    plain, _ = pages.of(_query('title == "a"'))
    assert pages.of(_query("title == null"))[0] is not plain
    assert pages.of(_query('title != "a"'))[0] is not plain


def test_cursor_values_are_parameters_and_the_sql_names_no_value() -> None:
    pages = _pages()
    stamp = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    ident = "01940000-0000-7000-8000-000000000000"
    statement, params = pages.of(_query('title == "secret"', after=(stamp, ident)))
    assert params == {"w0": "secret", "k0": stamp, "k1": ident}
    sql = str(statement.rows)
    assert "secret" not in sql
    assert "2026" not in sql


def test_a_null_cursor_value_never_goes_into_a_row_value_comparison() -> None:
    ident = "01940000-0000-7000-8000-000000000000"
    table = TABLES["posts"]
    sql = str(keyset_condition(table, SORT, (None, ident)).compile())
    assert "(posts.created_at, posts.id) <" not in sql
    assert "posts.created_at IS NOT NULL" in sql
    row_value = str(keyset_condition(table, SORT, (datetime.datetime.now(datetime.UTC), ident)))
    assert "(posts.created_at, posts.id) <" in row_value


def test_statements_a_page_cache_drops_are_dropped_by_the_compiler_too() -> None:
    from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

    from charpente.sql.postgres import PgCompiler

    compiler = PgCompiler(pg_asyncpg.dialect())
    pages = PageStatements(
        TABLES, lambda table, query: list(table.c), keep=compiler.keep, forget=compiler.forget
    )
    statement, params = pages.of(_query('title == "a"'))
    sql, args = compiler.bind(statement.rows, params)
    assert "$1" in sql
    assert args[0] == "a"
    pages._drop_all()
    assert compiler._kept == {}
    again, params = pages.of(_query('title == "b"'))
    assert compiler.bind(again.rows, params)[1][0] == "b"
