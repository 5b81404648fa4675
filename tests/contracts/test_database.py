"""The Database port's contract, run on every SQL dialect (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, cast

import anyio
import pytest
import sqlalchemy as sa

from charpente.compile.plan import Delete, GetQuery, Insert, ListQuery, SortKey, Update
from charpente.design.expr import Compare, ListOf, Literal, Name, Or, Value
from charpente.design.model import CountSource, Design, Field, Kind, OnDelete, Resource
from charpente.errors import ConfigError, Conflict, ValidationFailed
from charpente.runtime.ports import IdempotentResponse
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.postgres import PgCompiler
from charpente.sql.schema import IDEMPOTENCY_TABLE, build_metadata

UTC = datetime.UTC

USERS = Resource(
    "users",
    (
        Field("email", Kind.EMAIL, required=True, unique=True),
        Field("name", Kind.STRING, required=True),
        Field("nickname", Kind.STRING),
        Field("age", Kind.INT),
        Field("score", Kind.FLOAT),
        Field("balance", Kind.DECIMAL, precision=18, scale=2),
        Field("birthday", Kind.DATE),
        Field("seen_at", Kind.DATETIME),
        Field("settings", Kind.JSON),
        Field("active", Kind.BOOL),
        Field("posts_count", Kind.COUNT, count=CountSource("posts", "author")),
    ),
)
POSTS = Resource(
    "posts",
    (
        Field("author", Kind.REF, required=True, ref="users", on_delete=OnDelete.RESTRICT),
        Field("title", Kind.STRING, required=True),
    ),
)
COMMENTS = Resource(
    "comments",
    (
        Field("post", Kind.REF, required=True, ref="posts", on_delete=OnDelete.CASCADE),
        Field("body", Kind.TEXT, required=True),
    ),
)
TAGS = Resource(
    "tags",
    (
        Field("post", Kind.REF, ref="posts", on_delete=OnDelete.SET_NULL),
        Field("label", Kind.STRING, required=True),
    ),
)
SEATS = Resource(
    "seats",
    (Field("room", Kind.STRING, required=True), Field("seat", Kind.STRING, required=True)),
    unique=(("room", "seat"),),
)
ITEMS = Resource(
    "items",
    (
        Field("grp", Kind.STRING),
        Field("n", Kind.INT),
        Field("label", Kind.STRING, required=True),
    ),
)
DESIGN = Design("toy", 1, {r.name: r for r in (USERS, POSTS, COMMENTS, TAGS, SEATS, ITEMS)})


@pytest.fixture
async def db(db_target: Any) -> AsyncIterator[SqlDatabase]:
    engine = create_engine(db_target.url, schema=db_target.schema)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    database = SqlDatabase(engine, DESIGN)
    yield database
    await database.close()


def new(resource: str, **fields: object) -> Insert:
    now = datetime.datetime.now(UTC)
    values = {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "version": 1}
    return Insert(resource, {**values, **fields})


def user(email: str = "ada@example.com", /, **fields: object) -> Insert:
    return new("users", email=email, name=fields.pop("name", "Ada"), **fields)


async def insert(db: SqlDatabase, *plans: Insert) -> list[dict[str, object]]:
    async with db.transaction() as tx:
        return [await tx.insert(plan) for plan in plans]


# --- records -------------------------------------------------------------------------------


EVERY_KIND: dict[str, object] = {
    "name": "Zoë 名前 🚀 \u00a0'\"; --",
    "nickname": None,
    "age": 2**63 - 1,
    "score": -1.5e300,
    "balance": decimal.Decimal("-1234567890123.45"),
    "birthday": datetime.date(1999, 12, 31),
    "seen_at": datetime.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    "settings": {"a": [1, 2.5, None, True, {"b": "é🚀"}], "n": -(2**53)},
    "active": False,
}


@pytest.mark.anyio
async def test_a_record_reads_back_exactly_as_written(db: SqlDatabase) -> None:
    plan = user(**EVERY_KIND)
    (stored,) = await insert(db, plan)
    got = await db.select_one(GetQuery("users", str(plan.values["id"])))
    expected = {**plan.values, "posts_count": 0}
    assert stored == expected
    assert got == expected


@pytest.mark.anyio
async def test_values_keep_their_python_types(db: SqlDatabase) -> None:
    plan = user(**{**EVERY_KIND, "age": -(2**63)})
    await insert(db, plan)
    got = await db.select_one(GetQuery("users", str(plan.values["id"])))
    assert got is not None
    assert got["age"] == -(2**63)
    assert isinstance(got["balance"], decimal.Decimal)
    assert type(got["birthday"]) is datetime.date
    assert isinstance(got["created_at"], datetime.datetime)
    assert got["created_at"].utcoffset() == datetime.timedelta(0)
    assert got["id"] == str(uuid.UUID(str(got["id"])))


@pytest.mark.anyio
async def test_an_aware_datetime_in_another_zone_reads_back_as_the_same_utc_instant(
    db: SqlDatabase,
) -> None:
    paris = datetime.timezone(datetime.timedelta(hours=2))
    local = datetime.datetime(2024, 6, 1, 12, 30, tzinfo=paris)
    plan = user(seen_at=local)
    (stored,) = await insert(db, plan)
    assert stored["seen_at"] == local
    assert stored["seen_at"].tzinfo == UTC  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_select_one_finds_ids_spelled_in_uppercase_and_ignores_malformed_ones(
    db: SqlDatabase,
) -> None:
    (stored,) = await insert(db, user())
    upper = str(stored["id"]).upper()
    assert (await db.select_one(GetQuery("users", upper))) == stored
    assert await db.select_one(GetQuery("users", "not-a-uuid")) is None
    assert await db.select_one(GetQuery("users", str(uuid.uuid4()))) is None


@pytest.mark.anyio
async def test_select_one_returns_at_least_the_fields_asked_for(db: SqlDatabase) -> None:
    (stored,) = await insert(db, user(age=7))
    got = await db.select_one(GetQuery("users", str(stored["id"]), fields=("age",)))
    assert got is not None
    assert got["age"] == 7
    assert got["id"] == stored["id"]


@pytest.mark.anyio
async def test_select_by_ids_returns_the_existing_records_among_the_ids(db: SqlDatabase) -> None:
    a, b, _ = await insert(db, user("a@x.io"), user("b@x.io"), user("c@x.io"))
    ids = [str(a["id"]), str(b["id"]), str(uuid.uuid4()), "junk", str(a["id"])]
    got = await db.select_by_ids("users", ids)
    assert sorted(got, key=lambda r: str(r["id"])) == sorted([a, b], key=lambda r: str(r["id"]))
    narrow = await db.select_by_ids("users", ids, fields=("email",))
    assert {r["email"] for r in narrow} == {"a@x.io", "b@x.io"}
    assert await db.select_by_ids("users", []) == []


@pytest.mark.anyio
async def test_a_transaction_reads_its_own_writes_and_a_failed_one_leaves_nothing(
    db: SqlDatabase,
) -> None:
    plan = user()
    id = str(plan.values["id"])
    seen: list[dict[str, object] | None] = []

    async def insert_then_fail() -> None:
        async with db.transaction() as tx:
            await tx.insert(plan)
            seen.append(await tx.get("users", id, for_update=True))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    assert [r and r["email"] for r in seen] == ["ada@example.com"]
    assert await db.select_one(GetQuery("users", id)) is None


@pytest.mark.anyio
async def test_a_transaction_inside_a_transaction_fails_fast_on_sqlite(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    db = SqlDatabase(engine, DESIGN)

    async def nest() -> None:
        async with db.transaction(), db.transaction():
            pass

    try:
        with pytest.raises(RuntimeError, match="already open"):
            await nest()
    finally:
        await db.close()


# --- updates and deletes -------------------------------------------------------------------


@pytest.mark.anyio
async def test_update_bumps_version_and_updated_at(db: SqlDatabase) -> None:
    (stored,) = await insert(db, user(age=1))
    async with db.transaction() as tx:
        changed = await tx.update(Update("users", str(stored["id"]), {"age": 2}))
    assert changed is not None
    assert changed["age"] == 2
    assert changed["version"] == 2
    assert changed["updated_at"] > stored["updated_at"]  # type: ignore[operator]
    assert changed["created_at"] == stored["created_at"]


@pytest.mark.anyio
async def test_update_uses_the_updated_at_the_service_chose(db: SqlDatabase) -> None:
    (stored,) = await insert(db, user())
    when = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    async with db.transaction() as tx:
        changed = await tx.update(Update("users", str(stored["id"]), {"updated_at": when}))
    assert changed is not None
    assert changed["updated_at"] == when


@pytest.mark.anyio
async def test_a_stale_expected_version_updates_nothing(db: SqlDatabase) -> None:
    (stored,) = await insert(db, user(age=1))
    id = str(stored["id"])
    async with db.transaction() as tx:
        assert await tx.update(Update("users", id, {"age": 5}, expected_version=2)) is None
        assert await tx.update(Update("users", str(uuid.uuid4()), {"age": 5})) is None
        fresh = await tx.update(Update("users", id, {"age": 6}, expected_version=1))
    assert fresh is not None
    assert fresh["version"] == 2
    got = await db.select_one(GetQuery("users", id))
    assert got is not None
    assert got["age"] == 6


@pytest.mark.anyio
async def test_delete_honours_the_expected_version(db: SqlDatabase) -> None:
    (stored,) = await insert(db, user())
    id = str(stored["id"])
    async with db.transaction() as tx:
        assert await tx.delete(Delete("users", id, expected_version=9)) is False
        assert await tx.delete(Delete("users", id, expected_version=1)) is True
        assert await tx.delete(Delete("users", id)) is False
    assert await db.select_one(GetQuery("users", id)) is None


@pytest.mark.anyio
async def test_counters_move_without_bumping_the_version(db: SqlDatabase) -> None:
    (stored,) = await insert(db, user())
    id = str(stored["id"])
    async with db.transaction() as tx:
        for delta in (1, 1, 5, -2):
            await tx.add_to_counter("users", id, "posts_count", delta)
    got = await db.select_one(GetQuery("users", id))
    assert got is not None
    assert (got["posts_count"], got["version"]) == (5, 1)


# --- integrity -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_taken_unique_value_is_a_conflict_naming_the_field(db: SqlDatabase) -> None:
    await insert(db, user("same@x.io"))
    with pytest.raises(Conflict) as caught:
        await insert(db, user("same@x.io", name="Other"))
    assert [(e.field, e.code) for e in caught.value.errors] == [("email", "unique")]


@pytest.mark.anyio
async def test_an_update_onto_a_taken_value_is_a_conflict(db: SqlDatabase) -> None:
    _, b = await insert(db, user("a@x.io"), user("b@x.io"))
    with pytest.raises(Conflict) as caught:
        async with db.transaction() as tx:
            await tx.update(Update("users", str(b["id"]), {"email": "a@x.io"}))
    assert [e.field for e in caught.value.errors] == ["email"]


@pytest.mark.anyio
async def test_a_composite_unique_conflict_names_every_field(db: SqlDatabase) -> None:
    await insert(db, new("seats", room="A", seat="1"), new("seats", room="A", seat="2"))
    with pytest.raises(Conflict) as caught:
        await insert(db, new("seats", room="A", seat="1"))
    assert {(e.field, e.code) for e in caught.value.errors} == {
        ("room", "unique"),
        ("seat", "unique"),
    }


@pytest.mark.anyio
async def test_a_reference_to_no_record_is_a_validation_error(db: SqlDatabase) -> None:
    (author,) = await insert(db, user())
    with pytest.raises(ValidationFailed) as caught:
        await insert(db, new("posts", author=str(uuid.uuid4()), title="t"))
    assert [e.as_dict() for e in caught.value.errors] == [
        {"field": "author", "code": "not_found", "message": "no users with this id"}
    ]
    (post,) = await insert(db, new("posts", author=author["id"], title="t"))
    with pytest.raises(ValidationFailed) as caught:
        async with db.transaction() as tx:
            await tx.update(Update("posts", str(post["id"]), {"author": str(uuid.uuid4())}))
    assert [e.field for e in caught.value.errors] == ["author"]


@pytest.mark.anyio
async def test_a_missing_required_value_is_a_validation_error(db: SqlDatabase) -> None:
    (author,) = await insert(db, user())
    with pytest.raises(ValidationFailed) as caught:
        await insert(db, new("posts", author=author["id"], title=None))
    assert [(e.field, e.code) for e in caught.value.errors] == [("title", "required")]


@pytest.mark.anyio
async def test_deleting_a_record_a_restrict_reference_points_at_is_a_conflict(
    db: SqlDatabase,
) -> None:
    (author,) = await insert(db, user())
    await insert(db, new("posts", author=author["id"], title="t"))
    with pytest.raises(Conflict) as caught:
        async with db.transaction() as tx:
            await tx.delete(Delete("users", str(author["id"])))
    assert caught.value.detail == "posts records still refer to it"
    assert await db.select_one(GetQuery("users", str(author["id"]))) is not None


@pytest.mark.anyio
async def test_deleting_a_record_cascades_and_sets_null_as_declared(db: SqlDatabase) -> None:
    (author,) = await insert(db, user())
    (post,) = await insert(db, new("posts", author=author["id"], title="t"))
    comment, tag = await insert(
        db,
        new("comments", post=post["id"], body="hi"),
        new("tags", post=post["id"], label="x"),
    )
    async with db.transaction() as tx:
        assert await tx.delete(Delete("posts", str(post["id"]))) is True
    assert await db.select_one(GetQuery("comments", str(comment["id"]))) is None
    kept = await db.select_one(GetQuery("tags", str(tag["id"])))
    assert kept is not None
    assert kept["post"] is None


# --- idempotency ---------------------------------------------------------------------------

ANSWER = IdempotentResponse("fp-1", 201, b'{"id":"1"}', "/v1/users/1")


@pytest.mark.anyio
async def test_a_claimed_key_replays_the_saved_response(db: SqlDatabase) -> None:
    async with db.transaction() as tx:
        assert await tx.claim_idempotency_key("k1", "fp-1") is None
        await tx.save_idempotent_response("k1", ANSWER)
    async with db.transaction() as tx:
        assert await tx.claim_idempotency_key("k1", "fp-2") == ANSWER


@pytest.mark.anyio
async def test_a_claim_rolled_back_with_its_write_leaves_the_key_free(db: SqlDatabase) -> None:
    async def claim_then_fail() -> None:
        async with db.transaction() as tx:
            assert await tx.claim_idempotency_key("k1", "fp-1") is None
            raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        await claim_then_fail()
    async with db.transaction() as tx:
        assert await tx.claim_idempotency_key("k1", "fp-1") is None


@pytest.mark.anyio
async def test_a_key_older_than_a_day_is_free_again(db: SqlDatabase) -> None:
    async with db.transaction() as tx:
        await tx.claim_idempotency_key("k1", "fp-1")
        await tx.save_idempotent_response("k1", ANSWER)
    table = build_metadata(DESIGN).tables[IDEMPOTENCY_TABLE]
    old = datetime.datetime.now(UTC) - datetime.timedelta(hours=24, minutes=1)
    async with db._engine.begin() as conn:
        await conn.execute(sa.update(table).values(created_at=old))
    async with db.transaction() as tx:
        assert await tx.claim_idempotency_key("k1", "fp-2") is None
        fresh = IdempotentResponse("fp-2", 200, b"{}", None)
        await tx.save_idempotent_response("k1", fresh)
    async with db.transaction() as tx:
        assert await tx.claim_idempotency_key("k1", "fp-3") == fresh


# --- pages ---------------------------------------------------------------------------------

GROUPS = ["b", None, "a", "c", None, "a"]


async def seed_items(db: SqlDatabase, count: int = 23) -> list[dict[str, object]]:
    plans = [
        new(
            "items",
            grp=GROUPS[i % len(GROUPS)],
            n=None if i % 5 == 0 else i % 4,
            label=f"l{i % 3}",
        )
        for i in range(count)
    ]
    return await insert(db, *plans)


def sorted_rows(rows: list[dict[str, object]], sort: tuple[SortKey, ...]) -> list[object]:
    """The expected order: NULL is the greatest value, as in the database."""
    ordered = list(rows)
    for key in reversed(sort):
        ordered.sort(key=partial(_null_last, key.field), reverse=key.descending)
    return [r["id"] for r in ordered]


def _null_last(field: str, row: dict[str, Any]) -> tuple[bool, Any]:
    value = row[field]
    return (value is None, 0 if value is None else value)


async def walk(db: SqlDatabase, query: ListQuery) -> tuple[list[object], int]:
    seen: list[object] = []
    pages = 0
    after: tuple[Value, ...] | None = None
    while True:
        page = await db.select_page(
            ListQuery(query.resource, sort=query.sort, limit=query.limit, after=after)
        )
        pages += 1
        seen += [r["id"] for r in page.rows]
        if not page.has_more:
            return seen, pages
        last = page.rows[-1]
        after = tuple(cast(Value, last[k.field]) for k in query.sort)


SORTS = {
    "asc nullable": (SortKey("n"), SortKey("id")),
    "desc nullable": (SortKey("n", descending=True), SortKey("id", descending=True)),
    "mixed nullable": (SortKey("grp"), SortKey("n", descending=True), SortKey("id")),
    "mixed with id desc": (SortKey("label"), SortKey("grp"), SortKey("id", descending=True)),
    "row value asc": (SortKey("label"), SortKey("id")),
    "row value desc": (SortKey("label", descending=True), SortKey("id", descending=True)),
    "id only": (SortKey("id"),),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(SORTS))
async def test_keyset_pages_return_every_row_once_in_order(db: SqlDatabase, name: str) -> None:
    rows = await seed_items(db)
    sort = SORTS[name]
    expected = sorted_rows(rows, sort)
    full = await db.select_page(ListQuery("items", sort=sort, limit=100))
    assert [r["id"] for r in full.rows] == expected
    assert full.has_more is False
    seen, pages = await walk(db, ListQuery("items", sort=sort, limit=4))
    assert seen == expected
    assert pages == 6


@pytest.mark.anyio
async def test_a_page_has_the_asked_fields_plus_sort_fields_and_id(db: SqlDatabase) -> None:
    await seed_items(db, 3)
    page = await db.select_page(
        ListQuery("items", sort=(SortKey("n"), SortKey("id")), fields=("label",), limit=2)
    )
    assert page.has_more is True
    assert all(set(r) == {"id", "label", "n"} for r in page.rows)


@pytest.mark.anyio
async def test_count_gives_the_total_whatever_the_page(db: SqlDatabase) -> None:
    rows = await seed_items(db, 9)
    first = await db.select_page(ListQuery("items", limit=2, count=True))
    assert (len(first.rows), first.has_more, first.total) == (2, True, 9)
    after = (sorted(str(r["id"]) for r in rows)[6],)
    last = await db.select_page(ListQuery("items", limit=5, after=after, count=True))
    assert (len(last.rows), last.has_more, last.total) == (2, False, 9)
    assert (await db.select_page(ListQuery("items"))).total is None


@pytest.mark.anyio
async def test_where_filters_both_the_rows_and_the_count(db: SqlDatabase) -> None:
    rows = await seed_items(db, 20)
    where = Or(
        Compare("==", Name(("label",)), Literal("l1")),
        Compare("==", Name(("n",)), Literal(None)),
    )
    sort = (SortKey("n", descending=True), SortKey("id"))
    expected = sorted_rows([r for r in rows if r["label"] == "l1" or r["n"] is None], sort)
    first = await db.select_page(ListQuery("items", where=where, sort=sort, limit=5, count=True))
    last = first.rows[-1]
    after = (cast(Value, last["n"]), cast(Value, last["id"]))
    rest = await db.select_page(ListQuery("items", where=where, sort=sort, limit=50, after=after))
    assert [r["id"] for r in first.rows + rest.rows] == expected
    assert first.total == len(expected)


# --- concurrency ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_of_concurrent_updates_with_one_expected_version_exactly_one_wins(
    db: SqlDatabase,
) -> None:
    (stored,) = await insert(db, user(age=0))
    results: list[object] = []

    async def attempt(i: int) -> None:
        async with db.transaction() as tx:
            plan = Update("users", str(stored["id"]), {"age": i}, expected_version=1)
            results.append(await tx.update(plan))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(attempt, i)
    winners = [r for r in results if r is not None]
    assert len(results) == 20
    assert len(winners) == 1


@pytest.mark.anyio
async def test_concurrent_claims_of_one_key_have_one_owner_and_replay_its_answer(
    pg_target: Any,
) -> None:
    engine = create_engine(pg_target.url, schema=pg_target.schema)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    db = SqlDatabase(engine, DESIGN)
    results: list[IdempotentResponse | None] = []

    async def claim() -> None:
        async with db.transaction() as tx:
            got = await tx.claim_idempotency_key("k", "fp-1")
            if got is None:
                await anyio.sleep(0.2)  # the others are waiting on our row meanwhile
                await tx.save_idempotent_response("k", ANSWER)
            results.append(got)

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(claim)
    finally:
        await db.close()
    assert results.count(None) == 1
    assert results.count(ANSWER) == 9


# --- engine --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "not a url", "postgresql+psycopg2://u@h/db", "sqlite+pysqlite://"]
)
def test_an_unsupported_or_malformed_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        create_engine(url)


@pytest.mark.parametrize("url", ["postgres://u@h/db", "postgresql://u@h/db"])
def test_plain_postgres_urls_use_asyncpg(url: str) -> None:
    assert create_engine(url).url.drivername == "postgresql+asyncpg"


@pytest.mark.anyio
async def test_sqlite_connections_enforce_foreign_keys_in_wal_mode(tmp_path: Any) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as conn:
            keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await engine.dispose()
    assert (keys, journal, busy) == (1, "wal", 5000)


@pytest.mark.anyio
async def test_an_in_memory_sqlite_database_serves_reads_inside_a_transaction() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    db = SqlDatabase(engine, DESIGN)
    try:
        plan = user()
        async with db.transaction() as tx:
            await tx.insert(plan)
            got = await db.select_one(GetQuery("users", str(plan.values["id"])))
        await db.ping()
    finally:
        await db.close()
    assert got is not None


# --- PostgreSQL through asyncpg ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["text", [1, "two", None], 0, True, {"k": {"n": None}}])
async def test_every_json_value_reads_back_as_written(db: SqlDatabase, value: object) -> None:
    (stored,) = await insert(db, user(settings=value))
    got = await db.select_one(GetQuery("users", str(stored["id"])))
    assert got is not None
    assert (stored["settings"], got["settings"]) == (value, value)


@pytest.mark.anyio
async def test_an_in_list_filter_works_whatever_its_length(db: SqlDatabase) -> None:
    rows = await seed_items(db, 12)
    for wanted in ([1], [1, 2], [0, 2, 3], [1]):
        where = Compare("in", Name(("n",)), ListOf(tuple(Literal(v) for v in wanted)))
        page = await db.select_page(ListQuery("items", where=where, limit=50, count=True))
        expected = {r["id"] for r in rows if r["n"] in wanted}
        assert {r["id"] for r in page.rows} == expected
        assert page.total == len(expected)


def test_one_statement_shape_compiles_to_one_sql_text_with_its_own_values() -> None:
    table = build_metadata(DESIGN).tables["items"]
    compiler = PgCompiler(create_engine("postgresql://u@h/db").dialect)

    def shape(label: str, limit: int) -> sa.Select[Any]:
        return sa.select(table.c.id).where(table.c.label == label).limit(limit)

    first_sql, first_args = compiler.bind(shape("a", 3), None)
    second_sql, second_args = compiler.bind(shape("b", 7), None)
    assert first_sql == second_sql
    assert "'a'" not in first_sql
    assert (first_args, second_args) == (["a", 3], ["b", 7])


@pytest.mark.anyio
async def test_on_postgresql_the_engine_keeps_one_connection_and_the_adapter_the_rest(
    pg_target: Any,
) -> None:
    engine = create_engine(pg_target.url, schema=pg_target.schema, pool_size=4)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(DESIGN).create_all)
    db = SqlDatabase(engine, DESIGN)
    try:
        (stored,) = await insert(db, user())
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(db.select_one, GetQuery("users", str(stored["id"])))
        assert engine.pool.checkedin() <= 1  # type: ignore[attr-defined]
        await db.close()
        await db.ping()  # a closed adapter opens its connections again when used
    finally:
        await db.close()


@pytest.mark.anyio
async def test_a_database_error_never_shows_the_bound_values(db_target) -> None:
    engine = create_engine(db_target.url, schema=db_target.schema)
    statement = sa.text("INSERT INTO no_such_table (secret) VALUES (:secret)")
    try:
        async with engine.connect() as conn:
            with pytest.raises(sa.exc.DBAPIError) as raised:
                await conn.execute(statement, {"secret": "hunter2-s3cret"})
    finally:
        await engine.dispose()
    assert "hunter2-s3cret" not in str(raised.value)
    assert "hidden" in str(raised.value)
