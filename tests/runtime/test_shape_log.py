"""The shape log in memory: shapes carry no values, counts add up, a failed flush keeps them."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import pytest

from charpente.compile.plan import GetQuery, ListQuery, SortKey
from charpente.compile.shapes import (
    describe_shape,
    get_shape,
    ids_shape,
    list_shape,
    shape_id,
    shape_spec,
)
from charpente.design.expr import And, Call, Compare, ListOf, Literal, Name, Or
from charpente.runtime.shapes import (
    BUCKETS_US,
    ShapeCount,
    ShapeFlusher,
    ShapeLog,
    ShapeStats,
    quantile_ms,
)
from charpente.sql.schema import SHAPE_BUCKETS

NEWEST = (SortKey("created_at", True), SortKey("id", True))


def by_author(author: str, visibility: str = "public") -> ListQuery:
    where = And(
        Compare("==", Name(("author",)), Literal(author)),
        Compare("==", Name(("visibility",)), Literal(visibility)),
    )
    return ListQuery("posts", where, NEWEST, 20)


def test_two_queries_that_differ_only_in_values_have_one_shape() -> None:
    assert list_shape(by_author("ada")) == list_shape(by_author("bob", "friends"))
    assert hash(list_shape(by_author("ada"))) == hash(list_shape(by_author("bob")))


def test_the_operator_the_sort_the_cursor_and_null_change_the_shape() -> None:
    base = by_author("ada")
    other_op = ListQuery("posts", Compare("!=", Name(("author",)), Literal("ada")), NEWEST)
    null = ListQuery("posts", Compare("==", Name(("author",)), Literal(None)), NEWEST)
    value = ListQuery("posts", Compare("==", Name(("author",)), Literal("x")), NEWEST)
    after = ListQuery("posts", base.where, NEWEST, 20, after=("2026-01-01", "x"))
    oldest = ListQuery("posts", base.where, (SortKey("created_at"), SortKey("id")), 20)
    shapes = {list_shape(q) for q in (base, other_op, null, value, after, oldest)}
    assert len(shapes) == 6


def test_no_value_reaches_the_stored_spec_or_its_text() -> None:
    rule = Or(
        Compare("==", Name(("visibility",)), Literal("public")),
        Call(
            "exists",
            (
                Name(("follows",)),
                And(
                    Compare("==", Name(("followee",)), Name(("posts", "author"))),
                    Compare("==", Name(("follower",)), Literal("secret-account-id")),
                ),
            ),
        ),
    )
    where = And(Compare("in", Name(("kind",)), ListOf((Literal("top-secret"),))), rule)
    spec = shape_spec(list_shape(ListQuery("posts", where, NEWEST, 20, expand=("author",))))
    text = describe_shape(spec)
    assert "secret" not in repr(spec)
    assert "public" not in text
    assert text == (
        "list posts where kind in [?] and (visibility == ? or exists(follows, "
        "followee == posts.author and follower == ?)) sort -created_at,-id expand author"
    )


def test_reads_by_id_and_expand_batches_have_their_own_shapes() -> None:
    rule = Compare("==", Name(("visibility",)), Literal("public"))
    get = describe_shape(shape_spec(get_shape(GetQuery("posts", "x", where=rule))))
    ids = describe_shape(shape_spec(ids_shape("users", None)))
    assert get == "get posts where visibility == ?"
    assert ids == "ids users"


def test_a_shape_id_is_stable_and_differs_by_shape() -> None:
    one = shape_spec(list_shape(by_author("ada")))
    assert shape_id(one) == shape_id(shape_spec(list_shape(by_author("bob"))))
    assert shape_id(one) != shape_id(shape_spec(ids_shape("users", None)))
    assert len(shape_id(one)) == 32


def test_counts_add_up_per_shape_with_a_latency_histogram() -> None:
    log = ShapeLog()
    shape = list_shape(by_author("ada"))
    log.add(shape, 20, 300_000)  # 0.3 ms
    log.add(list_shape(by_author("bob")), 5, 40_000_000)  # 40 ms
    log.add(ids_shape("users", None), 3, 100_000)
    counts = {c.text: c for c in log.take()}
    assert log.take() == []  # taking empties the log
    page = counts["list posts where author == ? and visibility == ? sort -created_at,-id"]
    assert (page.calls, page.rows, page.total_us, page.max_us) == (2, 25, 40_300, 40_000)
    assert page.histogram[1] == 1  # ≤ 0.5 ms
    assert page.histogram[BUCKETS_US.index(50_000)] == 1
    assert sum(page.histogram) == 2
    assert len(page.histogram) == len(SHAPE_BUCKETS)


def test_shapes_beyond_the_limit_are_dropped_and_counted_as_dropped() -> None:
    log = ShapeLog(max_shapes=2)
    for resource in ("a", "b", "c"):
        log.add(ids_shape(resource, None), 1, 1_000)
    log.add(ids_shape("a", None), 1, 1_000)  # known shapes are still counted
    assert log.dropped == 1
    assert sorted(c.calls for c in log.take()) == [1, 2]


def test_quantiles_come_from_the_histogram_and_never_exceed_the_maximum() -> None:
    histogram = [0] * len(SHAPE_BUCKETS)
    histogram[2] = 98  # ≤ 1 ms
    histogram[6] = 2  # ≤ 25 ms
    assert quantile_ms(histogram, 0.5, 20_000) == 1.0
    assert quantile_ms(histogram, 0.99, 20_000) == 20.0
    assert quantile_ms([0] * len(SHAPE_BUCKETS), 0.5, 0) == 0.0


class _FlakyStore:
    def __init__(self) -> None:
        self.fail = True
        self.merged: list[ShapeCount] = []

    async def merge(self, counts: Sequence[ShapeCount], now: datetime.datetime) -> None:
        if self.fail:
            raise OSError("database down")
        self.merged.extend(counts)

    async def top(self, order: str, limit: int) -> list[ShapeStats]:
        return []


class _Clock:
    def now(self) -> datetime.datetime:
        return datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.anyio
async def test_a_failed_flush_keeps_the_counts_for_the_next_one() -> None:
    log, store = ShapeLog(), _FlakyStore()
    flusher = ShapeFlusher(log, store, 60, _Clock())
    log.add(ids_shape("users", None), 1, 1_000)
    with pytest.raises(OSError, match="down"):
        await flusher.flush()
    log.add(ids_shape("users", None), 2, 3_000)
    store.fail = False
    assert await flusher.flush() == 1
    [merged] = store.merged
    assert (merged.calls, merged.rows, merged.total_us) == (2, 3, 4)
    assert await flusher.flush() == 0


@pytest.mark.anyio
async def test_stopping_stores_what_was_counted_since_the_last_flush() -> None:
    log, store = ShapeLog(), _FlakyStore()
    store.fail = False
    flusher = ShapeFlusher(log, store, 3600, _Clock())
    await flusher.start()
    log.add(ids_shape("users", None), 1, 1_000)
    await flusher.stop()
    assert [c.calls for c in store.merged] == [1]
