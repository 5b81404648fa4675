"""Access rules in SQL: exists() as a correlated EXISTS, and bound rules that select exactly the
rows design.evaluate allows, on every dialect."""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from charpente.design.bind import bind_caller
from charpente.design.evaluate import evaluate
from charpente.design.expr import And, Expr, Not, Or
from charpente.design.model import Design
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.loader import load_design_text
from charpente.sql.expr import expr_to_sql
from charpente.sql.pages import where_parameters
from charpente.sql.schema import build_metadata

MOMENT = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
DESIGN_TEXT = """
charpente: 1
name: exists
api_version: 1
auth: {roles: [member, moderator, admin]}
resources:
  posts:
    access: {read: true}
    fields:
      author: {type: uuid}
      visibility: {enum: [public, followers, private]}
  follows:
    access: {read: true}
    fields:
      follower: {type: uuid}
      followee: {type: uuid}
  comments:
    access: {read: true}
    fields:
      post: {type: uuid}
      author: {type: uuid}
  items:
    access: {read: true}
    fields:
      owner: {type: uuid}
      state: {enum: [a, b, c]}
      n: {type: int}
      flag: {type: bool}
"""
DESIGN: Design = load_design_text(DESIGN_TEXT)
METADATA = build_metadata(DESIGN)
TABLES = {name: METADATA.tables[name] for name in DESIGN.resources}

POST_READ = (
    'visibility == "public" or author == auth.id'
    ' or (visibility == "followers"'
    " and exists(follows, follower == auth.id and followee == author))"
)
COMMENT_READ = (
    "author == auth.id"
    ' or exists(posts, id == post and (visibility == "public" or author == auth.id))'
)
PEOPLE = [f"0190a7c4-5b6e-7f00-8a1b-{i:012d}" for i in range(1, 5)]
ROLES = ["member", "moderator", "admin"]


def rule(text: str, resource: str) -> Expr:
    found = DESIGN.resource(resource)
    assert found is not None
    return resolve_expr(parse_expr(text), found, DESIGN, allow_auth=True, allow_exists=True)


def record_id(kind: int, index: int) -> str:
    return f"00000000-0000-4000-8000-{kind:04d}{index:08d}"


def stamped(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "created_at": MOMENT, "updated_at": MOMENT, "version": 1}


# --- the SQL shape ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.asyncpg.dialect()])  # type: ignore[no-untyped-call]
def test_exists_compiles_to_an_exists_correlated_with_the_outer_row(dialect: sa.Dialect) -> None:
    bound = bind_caller(rule(POST_READ, "posts"), {"id": PEOPLE[0], "role": "member"})
    posts = TABLES["posts"]
    sql = str(
        sa.select(posts.c.id).where(expr_to_sql(bound, posts, TABLES)).compile(dialect=dialect)
    )
    assert "EXISTS (SELECT" in sql
    subquery = sql[sql.index("EXISTS (SELECT") :]
    assert "FROM follows AS x_follows" in subquery
    assert "x_follows.followee = posts.author" in subquery
    assert "FROM posts" not in subquery  # correlated: the outer row, not a second scan
    assert PEOPLE[0] not in sql  # the caller's id is a bound parameter
    assert "OFFSET" in subquery  # fenced: probed per outer row, never hashed whole


def test_an_outer_field_inside_exists_names_the_rules_own_row() -> None:
    bound = bind_caller(rule(COMMENT_READ, "comments"), {"id": PEOPLE[0], "role": "member"})
    comments = TABLES["comments"]
    sql = str(sa.select(comments.c.id).where(expr_to_sql(bound, comments, TABLES)))
    subquery = sql[sql.index("EXISTS (SELECT") :]
    assert "x_posts.id = comments.post" in subquery
    assert "x_posts.author = :" in subquery  # `author` inside is the post's, not the comment's
    assert "comments.author = :" in sql[: sql.index("EXISTS")]


# --- the same rows as a Python reference, on every dialect -------------------------------------


@pytest.fixture
def engine(db_target: Any) -> Iterator[tuple[asyncio.Runner, AsyncEngine]]:
    connect_args: dict[str, Any] = {}
    if db_target.dialect == "postgres":
        connect_args = {"server_settings": {"search_path": db_target.schema}}
    runner = asyncio.Runner()
    created = create_async_engine(db_target.url, connect_args=connect_args)

    async def create() -> None:
        async with created.begin() as conn:
            await conn.run_sync(METADATA.create_all)

    runner.run(create())
    try:
        yield runner, created
    finally:
        runner.run(created.dispose())
        runner.close()


def social_rows() -> dict[str, list[dict[str, Any]]]:
    """Posts of every visibility by every person, some follows, comments on some posts."""
    posts = [
        {"id": record_id(1, i), "author": author, "visibility": visibility}
        for i, (author, visibility) in enumerate(
            itertools.product([*PEOPLE[:3], None], ["public", "followers", "private", None])
        )
    ]
    pairs = [(0, 1), (1, 0), (2, 1), (3, 2), (3, 0)]
    follows = [
        {"id": record_id(2, i), "follower": PEOPLE[a], "followee": PEOPLE[b]}
        for i, (a, b) in enumerate(pairs)
    ]
    comments = [
        {"id": record_id(3, i), "post": post["id"], "author": PEOPLE[i % 4]}
        for i, post in enumerate(posts)
    ]
    comments.append({"id": record_id(3, 99), "post": record_id(1, 9999), "author": PEOPLE[1]})
    return {"posts": posts, "follows": follows, "comments": comments}


def reference_post_read(
    post: dict[str, Any], me: str | None, follows: set[tuple[str, str]]
) -> bool:
    if post["visibility"] == "public":
        return True
    if me is not None and post["author"] == me:
        return True
    return post["visibility"] == "followers" and (me, post["author"]) in follows


def reference_comment_read(
    comment: dict[str, Any], me: str | None, posts: dict[str, dict[str, Any]]
) -> bool:
    if me is not None and comment["author"] == me:
        return True
    post = posts.get(comment["post"])
    if post is None:
        return False
    return post["visibility"] == "public" or (me is not None and post["author"] == me)


CALLERS = [{"id": None, "role": None}, *({"id": p, "role": "member"} for p in PEOPLE)]


async def select_ids(
    engine: AsyncEngine, rows: dict[str, list[dict[str, Any]]], resource: str, bound: Expr
) -> tuple[set[str], set[str]]:
    """Ids where the bound rule is true, and where its negation is, through the statement
    shape the engine uses (named parameters)."""
    table = TABLES[resource]
    names = (f"w{i}" for i in itertools.count())
    condition = expr_to_sql(bound, table, TABLES, names=names)
    params = where_parameters(bound)
    async with engine.begin() as conn:
        for name in ("comments", "follows", "posts"):
            await conn.execute(TABLES[name].delete())
        for name, values in rows.items():
            await conn.execute(TABLES[name].insert(), [stamped(r) for r in values])
        true = await conn.execute(sa.select(table.c.id).where(condition), params)
        false = await conn.execute(sa.select(table.c.id).where(sa.not_(condition)), params)
        return {str(r[0]) for r in true}, {str(r[0]) for r in false}


def test_the_post_and_comment_rules_pick_the_rows_a_python_reference_picks(
    engine: tuple[asyncio.Runner, AsyncEngine],
) -> None:
    runner, db = engine
    rows = social_rows()
    follows = {(f["follower"], f["followee"]) for f in rows["follows"]}
    posts_by_id = {p["id"]: p for p in rows["posts"]}
    for caller in CALLERS:
        me = caller["id"]
        bound = bind_caller(rule(POST_READ, "posts"), caller)
        true_ids, false_ids = runner.run(select_ids(db, rows, "posts", bound))
        expected = {p["id"] for p in rows["posts"] if reference_post_read(p, me, follows)}
        assert true_ids == expected, caller
        assert expected  # public posts at least
        assert true_ids.isdisjoint(false_ids)

        bound = bind_caller(rule(COMMENT_READ, "comments"), caller)
        true_ids, _ = runner.run(select_ids(db, rows, "comments", bound))
        expected = {c["id"] for c in rows["comments"] if reference_comment_read(c, me, posts_by_id)}
        assert true_ids == expected, caller


def test_not_exists_is_true_exactly_where_exists_is_false(
    engine: tuple[asyncio.Runner, AsyncEngine],
) -> None:
    runner, db = engine
    rows = social_rows()
    text = "exists(follows, follower == auth.id and followee == author)"
    for caller in CALLERS:
        exists = bind_caller(rule(text, "posts"), caller)
        negated = bind_caller(rule(f"not {text}", "posts"), caller)
        with_it, without_it = runner.run(select_ids(db, rows, "posts", exists))
        assert runner.run(select_ids(db, rows, "posts", negated))[0] == without_it
        assert with_it | without_it == {p["id"] for p in rows["posts"]}  # never unknown
        followed = {f["followee"] for f in rows["follows"] if f["follower"] == caller["id"]}
        assert with_it == {p["id"] for p in rows["posts"] if p["author"] in followed}


# --- property: a bound rule's SQL filter agrees with evaluate on the unbound rule ---------------

ATOMS = [
    "owner == auth.id",
    "auth.id == owner",
    "owner != auth.id",
    "owner == auth",
    'state == "a"',
    'state in ["a", "b"]',
    'state not in ["c"]',
    "n > 2",
    "n == null",
    "flag == true",
    "owner == null",
    "auth != null",
    "auth.id == null",
    'auth.role == "admin"',
    'auth.role in ["member", "moderator"]',
    'auth.role != "member"',
    'auth.role not in ["admin"]',
]
ATOM_TREES = [rule(text, "items") for text in ATOMS]
RULES = st.recursive(
    st.sampled_from(ATOM_TREES),
    lambda inner: st.one_of(
        st.builds(And, inner, inner), st.builds(Or, inner, inner), st.builds(Not, inner)
    ),
    max_leaves=6,
)
CALLER = st.one_of(
    st.just({"id": None, "role": None}),
    st.builds(
        lambda id, role: {"id": id, "role": role}, st.sampled_from(PEOPLE), st.sampled_from(ROLES)
    ),
)


@st.composite
def items(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [
        {
            "id": record_id(4, index),
            "owner": draw(st.sampled_from([*PEOPLE, None])),
            "state": draw(st.sampled_from(["a", "b", "c", None])),
            "n": draw(st.sampled_from([0, 2, 3, None])),
            "flag": draw(st.sampled_from([True, False, None])),
        }
        for index in range(draw(st.integers(min_value=12, max_value=24)))
    ]


async def filtered(
    engine: AsyncEngine, rows: list[dict[str, Any]], cases: list[tuple[Expr, dict[str, Any]]]
) -> list[tuple[set[str], set[str]]]:
    table = TABLES["items"]
    answers = []
    async with engine.begin() as conn:
        await conn.execute(table.delete())
        await conn.execute(table.insert(), [stamped(r) for r in rows])
        for tree, caller in cases:
            bound = bind_caller(tree, caller)
            names = (f"w{i}" for i in itertools.count())
            condition = expr_to_sql(bound, table, TABLES, names=names)
            params = where_parameters(bound)
            true = await conn.execute(sa.select(table.c.id).where(condition), params)
            false = await conn.execute(sa.select(table.c.id).where(sa.not_(condition)), params)
            answers.append(({str(r[0]) for r in true}, {str(r[0]) for r in false}))
    return answers


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes of queries
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(rows=items(), cases=st.lists(st.tuples(RULES, CALLER), min_size=6, max_size=8))
def test_a_bound_rule_selects_exactly_the_rows_evaluate_allows(
    engine: tuple[asyncio.Runner, AsyncEngine],
    rows: list[dict[str, Any]],
    cases: list[tuple[Expr, dict[str, Any]]],
) -> None:
    runner, db = engine
    answers = runner.run(filtered(db, rows, cases))
    for (tree, caller), (true_ids, false_ids) in zip(cases, answers, strict=True):
        verdicts = {row["id"]: evaluate(tree, row, caller) for row in rows}
        assert true_ids == {i for i, v in verdicts.items() if v is True}, (tree, caller)
        assert false_ids == {i for i, v in verdicts.items() if v is False}, (tree, caller)
