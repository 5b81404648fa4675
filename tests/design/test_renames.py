"""`renamed_from` on fields and resources: read, and refused with its line and column."""

from __future__ import annotations

import pytest

from charpente.design.diff import design_from_json, design_to_json
from charpente.errors import DesignError
from charpente.loader import load_design_text

HEAD = "charpente: 1\nname: t\nresources:\n  posts:\n    fields:\n"


def errors(text: str) -> list[str]:
    with pytest.raises(DesignError) as info:
        load_design_text(text, "d.yaml")
    return [
        f"{p.line}:{p.column}: {p.message}" for p in info.value.problems if p.severity == "error"
    ]


def fields(*lines: str) -> str:
    return HEAD + "".join(f"      {line}\n" for line in lines)


def test_a_field_and_a_resource_say_their_old_names_and_the_snapshot_keeps_them():
    text = fields("title: {type: string, renamed_from: headline}") + "    renamed_from: articles\n"

    design = load_design_text(text)

    posts = design.resources["posts"]
    assert posts.renamed_from == "articles"
    assert posts.fields[0].renamed_from == "headline"
    again = design_from_json(design_to_json(design)).resources["posts"]
    assert again.fields[0].renamed_from == "headline"
    assert again.renamed_from == "articles"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "Headline",
            "6:43: `renamed_from` of field `title` must be a name (lowercase letters, "
            "digits and `_`, starting with a letter), not `Headline`",
        ),
        ("title", "6:43: field `title` cannot be renamed from its own name"),
        ("[a, b]", "6:43: `renamed_from` must be a string, not a list"),
        (
            "charpente_x",
            "6:43: `charpente_x` is a reserved name: charpente's own tables are never renamed",
        ),
    ],
)
def test_a_bad_old_name_is_refused_where_it_is_written(value, message):
    assert errors(fields(f"title: {{type: string, renamed_from: {value}}}")) == [message]


def test_an_old_name_still_in_use_or_claimed_twice_is_refused_at_the_field():
    still = fields("title: {type: string, renamed_from: body}", "body: text")
    twice = fields(
        "title: {type: string, renamed_from: old}", "label: {type: string, renamed_from: old}"
    )

    assert errors(still) == [
        "6:7: `posts.title` is renamed from `body`, but `posts` still has a field `body`: "
        "remove it, or drop `renamed_from`"
    ]
    assert errors(twice) == ["7:7: `posts.old` is renamed to both `title` and `label`"]


def test_a_resource_renamed_from_one_still_in_the_design_is_refused():
    text = (
        fields("title: string")
        + "    renamed_from: notes\n  notes:\n    fields:\n      a: string\n"
    )

    assert errors(text) == [
        "4:3: resource `posts` is renamed from `notes`, but the design still has a resource `notes`"
    ]
