"""design.check: refs, counters, unique constraints, indexes and checks, at their positions."""

from __future__ import annotations

import pytest

from charpente.design.expr import Compare, Literal, Name
from charpente.design.model import Index, IndexColumn, Position
from charpente.errors import DesignError
from charpente.loader import load_design_text

# Lines after HEAD start at line 6; the posts resource starts on line 4.
HEAD = "charpente: 1\nname: t\nresources:\n  posts:\n    fields:\n"


def problems(text: str, severity: str = "error") -> list[str]:
    with pytest.raises(DesignError) as info:
        load_design_text(text, "d.yaml")
    return [
        f"{p.line}:{p.column}: {p.message}" for p in info.value.problems if p.severity == severity
    ]


def posts(*lines: str) -> str:
    return HEAD + "".join(f"{line}\n" for line in lines)


def test_a_ref_to_a_missing_resource_gets_a_suggestion():
    assert problems(posts("      a: {ref: post}")) == [
        "6:16: `ref: post`: there is no resource `post` (did you mean `posts`?)"
    ]


def test_a_count_of_a_missing_resource_is_an_error():
    assert problems(posts("      n: {count: lieks.post}")) == [
        "6:18: `count: lieks.post`: there is no resource `lieks`"
    ]


def test_a_count_of_a_missing_field_gets_a_suggestion():
    text = posts(
        "      n: {count: likes.pots}", "  likes:", "    fields:", "      post: {ref: posts}"
    )
    assert problems(text) == ["6:18: resource `likes` has no field `pots` (did you mean `post`?)"]


def test_a_count_of_a_field_that_is_not_a_ref_is_an_error():
    text = posts("      n: {count: likes.post}", "  likes:", "    fields:", "      post: string")
    assert problems(text) == [
        "6:18: `count: likes.post` needs `likes.post` to be a ref to `posts`: "
        "a counter counts the rows that point at this record"
    ]


def test_a_count_of_a_ref_to_another_resource_is_an_error():
    text = posts(
        "      n: {count: likes.who}", "  likes:", "    fields:", "      who: {ref: likes}"
    )
    assert problems(text) == [
        "6:18: `count: likes.who` needs `likes.who` to be a ref to `posts`: "
        "a counter counts the rows that point at this record"
    ]


def test_a_broken_resource_is_not_reported_again_by_the_refs_to_it():
    text = posts("      a: {ref: likes}", "  likes:", "    fields:", "      x: {type: nope}")
    assert problems(text) == ["9:17: unknown type `nope`"]


def test_unique_and_indexes_are_read():
    text = posts(
        "      a: string",
        "      b: string",
        "    unique: [[a, b]]",
        "    indexes:",
        "      - [a, -created_at]",
        "      - {fields: [b], unique: true}",
    )
    resource = load_design_text(text, "d.yaml").resources["posts"]
    assert resource.unique == (("a", "b"),)
    assert resource.indexes == (
        Index((IndexColumn("a"), IndexColumn("created_at", descending=True))),
        Index((IndexColumn("b"),), unique=True),
    )
    assert resource.indexes[0].pos == Position("d.yaml", 10, 9)


def test_a_unique_constraint_naming_a_missing_field_is_reported_at_the_name():
    assert problems(posts("      a: string", "    unique: [[a, bb]]")) == [
        "7:18: resource `posts` has no field `bb`"
    ]


def test_unique_must_be_a_list_of_lists():
    assert problems(posts("      a: string", "    unique: [a]")) == [
        "7:13: `unique` is a list of field lists: write `unique: [[a, b]]`"
    ]


def test_a_repeated_unique_constraint_is_an_error():
    assert problems(
        posts("      a: string", "      b: string", "    unique: [[a, b], [b, a]]")
    ) == ["8:22: the unique constraint on (b, a) is declared twice"]


def test_an_index_naming_a_missing_field_is_reported_at_the_name():
    assert problems(
        posts("      title: string", "    indexes:", "      - [title, -craeted_at]")
    ) == ["8:17: resource `posts` has no field `craeted_at` (did you mean `created_at`?)"]


def test_an_index_may_name_system_fields():
    text = posts("      a: string", "    indexes: [[-updated_at, id]]")
    assert len(load_design_text(text).resources["posts"].indexes) == 1


def test_a_repeated_index_is_an_error():
    text = posts(
        "      a: string",
        "    indexes:",
        "      - [a, -created_at]",
        "      - {fields: [a, -created_at]}",
    )
    assert problems(text) == ["9:9: the index on (a, -created_at) is declared twice"]


def test_an_index_mapping_needs_fields():
    assert problems(posts("      a: string", "    indexes: [{unique: true}]")) == [
        "7:15: an index needs `fields`"
    ]


def test_an_index_that_repeats_a_unique_constraint_is_a_warning_only():
    text = posts("      a: {type: string, unique: true}", "    indexes: [[a]]")
    design = load_design_text(text, "d.yaml")
    assert design.warnings == (
        "d.yaml:7:15: warning: this index repeats the unique constraint on (a), "
        "which is indexed already",
    )


def test_a_check_is_parsed_and_resolved_against_its_resource():
    text = posts(
        "      a: int",
        "      b: int",
        "    checks:",
        "      - a < b",
        "      - {check: a > 0, message: positive}",
    )
    checks = load_design_text(text, "d.yaml").resources["posts"].checks
    assert [c.expr for c in checks] == [
        Compare("<", Name(("a",)), Name(("b",))),
        Compare(">", Name(("a",)), Literal(0)),
    ]
    assert (checks[1].source, checks[1].message, checks[1].pos) == (
        "a > 0",
        "positive",
        Position("d.yaml", 10, 17),
    )


@pytest.mark.parametrize(
    ("check", "column"),
    [
        ("a == 1 and bb", 20),  # plain: the offset added to the scalar's column
        ('"a == 1 and bb"', 21),  # double quoted: one more for the quote
        ("'a == 1 and bb'", 21),
        ("'s == ''x'' and bb'", 25),  # an escaped quote is two characters in the file
        (r'"s == \"x\" and bb"', 25),
    ],
)
def test_a_check_error_points_inside_the_expression(check, column):
    text = posts("      a: int", "      s: string", "    checks:", f"      - {check}")
    (problem,) = problems(text)
    assert (
        problem == f"9:{column}: a field alone is not a condition: compare it, e.g. with == or !="
    )


def test_a_check_error_in_a_block_scalar_points_at_the_scalar():
    text = posts("      a: int", "    checks:", "      - >-", "        a == 1 and bb")
    (problem,) = problems(text)
    assert problem.startswith("8:9: ")


def test_a_check_syntax_error_is_reported_at_its_offset():
    (problem,) = problems(posts("      a: int", "    checks: [a ==]"))
    assert problem.startswith("7:18: ")


def test_a_check_must_be_an_expression():
    assert problems(posts("      a: int", "    checks: [3]")) == [
        "7:14: a check is an expression or {check: ..., message: ...}, not a number"
    ]


def test_a_check_mapping_with_a_misspelled_key_gets_a_suggestion():
    assert problems(posts("      a: int", "    checks: [{check: a > 0, mesage: x}]")) == [
        "7:29: unknown key `mesage` in a check (did you mean `message`?)"
    ]


def test_every_problem_of_a_design_is_reported_at_once_in_order():
    text = (
        "charpente: 1\n"
        "name: Bad\n"  # 2
        "flags: {x: {rollout: 5}, Y: {}}\n"  # 3
        "resources:\n"
        "  posts:\n"
        "    fields:\n"
        "      id: string\n"  # 7
        "      author: {ref: acounts}\n"  # 8
        "      body: {type: txt, max_length: -1}\n"  # 9
        "      n: {count: likes.post}\n"  # 10
        "    indexes: [[nope]]\n"  # 11
        "    checks: [body ==]\n"  # 12
        "  users:\n"
        "    fields: {handle: {type: string, min: 1}}\n"  # 14
    )
    found = problems(text)
    assert [p.split(":")[0] for p in found] == ["2", "3", "7", "8", "9", "10", "11", "12", "14"]
    assert (
        found[3]
        == "8:21: `ref: acounts`: there is no resource `acounts` (did you mean `accounts`?)"
    )
