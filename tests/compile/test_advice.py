"""Index candidates from a shape: equality, then the sort with its directions and `id`;
nothing an existing index already starts with; notes for what no btree serves."""

from __future__ import annotations

from typing import Any

from charpente.compile.advice import IndexCandidate, candidates_for, design_columns, is_served
from charpente.design.model import IndexColumn as C

FIELDS = {
    "posts": ["id", "author", "visibility", "title", "score", "created_at"],
    "follows": ["id", "follower", "followee"],
}
EXISTING = {"posts": [(C("id"),)], "follows": [(C("id"),)]}


def value(op: str, name: str) -> list[Any]:
    return ["cmp", op, ["name", name], ["value"]]


def spec(where: Any = None, sort: Any = (("id", False),), kind: str = "list") -> dict[str, Any]:
    return {"kind": kind, "resource": "posts", "where": where, "sort": [list(s) for s in sort]}


def labels(found: Any) -> list[str]:
    return [c.label for c in found.candidates]


def test_equality_columns_come_first_then_the_sort_with_its_directions() -> None:
    where = ["and", value("==", "author"), value("==", "visibility")]
    found = candidates_for(spec(where, (("created_at", True), ("id", True))), EXISTING, FIELDS)
    assert labels(found) == ["posts (author, visibility, created_at DESC, id DESC)"]


def test_a_range_column_gets_its_own_candidate_when_the_sort_does_not_start_with_it() -> None:
    where = ["and", value("==", "author"), value(">", "score")]
    found = candidates_for(spec(where, (("created_at", True), ("id", True))), EXISTING, FIELDS)
    assert labels(found) == [
        "posts (author, created_at DESC, id DESC)",
        "posts (author, score)",
    ]


def test_what_an_existing_index_starts_with_is_left_out() -> None:
    existing = {"posts": [(C("author"), C("created_at", True), C("id", True), C("title"))]}
    found = candidates_for(
        spec(value("==", "author"), (("created_at", True), ("id", True))), existing, FIELDS
    )
    assert found.candidates == ()
    reversed_walk = (C("author"), C("created_at"), C("id"))
    newest = (C("author"), C("created_at", True), C("id", True))
    assert is_served(newest, [reversed_walk], equal=1)
    assert not is_served((C("author"), C("created_at", True), C("id")), [reversed_walk], equal=1)
    assert is_served((C("author", True),), [reversed_walk], equal=1)


def test_the_rules_exists_probe_gets_a_candidate_on_the_table_it_reads() -> None:
    inner = ["and", ["cmp", "==", ["name", "followee"], ["name", "posts.author"]],
             value("==", "follower")]  # fmt: skip
    found = candidates_for(spec(["exists", "follows", inner]), EXISTING, FIELDS)
    assert labels(found) == ["follows (followee, follower)"]


def test_contains_and_or_are_notes_not_indexes() -> None:
    found = candidates_for(spec(value("~", "title")), EXISTING, FIELDS)
    assert found.candidates == ()
    assert "pg_trgm" in found.notes[0]
    either = ["or", value("==", "author"), value("==", "visibility")]
    assert "`or`" in candidates_for(spec(either), EXISTING, FIELDS).notes[0]


def test_reads_by_id_need_no_index_but_the_primary_key() -> None:
    assert (
        candidates_for(spec(value("==", "author"), kind="get"), EXISTING, FIELDS).candidates == ()
    )


def test_the_design_entry_leaves_out_the_tie_breaker_charpente_adds() -> None:
    newest = IndexCandidate("posts", (C("author"), C("created_at", True), C("id", True)), "")
    mixed = IndexCandidate("posts", (C("score", True), C("title"), C("id")), "")
    by_author = IndexCandidate("posts", (C("author"), C("id")), "")
    assert design_columns(newest) == ["author", "-created_at"]
    assert design_columns(mixed) == ["-score", "title"]
    assert design_columns(by_author) == ["author"]
