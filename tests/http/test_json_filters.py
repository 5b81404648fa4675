"""Values inside json fields through the API: filters (`meta.lang == "fr"`, `"x" in tags`,
`tags.length`), access rules (`auth.id in readers`), field read rules, and checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.anyio

DESIGN = """
charpente: 1
name: notes
auth: {roles: [member, admin]}
resources:
  notes:
    fields:
      title: {type: string, required: true}
      tags: json
      meta: json
      readers: json
      secret: json
    checks: ['"draft" not in tags or meta.lang != null']
    access:
      read: '"public" in tags or auth.id in readers'
      create: true
      fields: {secret: {read: 'auth.role == "admin"'}}
"""


async def _notes(make_api):
    api = await make_api(DESIGN)
    reader = await api.sign_in("reader@example.com")
    notes = [
        {"title": "a", "tags": ["public", "x"], "meta": {"lang": "fr", "stars": 4}},
        {"title": "b", "tags": ["public"], "meta": {"lang": "en", "stars": 2.5}},
        {"title": "c", "tags": [], "readers": [api.ids["reader@example.com"]]},
        {"title": "d", "tags": {"public": True}, "meta": ["fr"]},
    ]
    for note in notes:
        await api.create("notes", note)
    return api, reader


async def _titles(api, expression: str, headers: dict[str, str] | None = None) -> list[str]:
    response = await api.client.get(
        "/v1/notes", params={"filter": expression, "sort": "title"}, headers=headers or {}
    )
    assert response.status_code == 200, response.text
    return [note["title"] for note in response.json()["data"]]


@pytest.mark.parametrize(
    ("expression", "titles"),
    [
        ('meta.lang == "fr"', ["a"]),
        ('meta.lang in ["fr", "en"]', ["a", "b"]),
        ("meta.stars > 3", ["a"]),
        ("meta.stars == 2.5", ["b"]),
        ('"x" in tags', ["a"]),
        ('"x" not in tags', ["b"]),
        ("tags.length == 1", ["b"]),
        ("meta.lang == null", []),
    ],
)
async def test_filters_read_values_inside_json(make_api, expression, titles) -> None:
    api, _ = await _notes(make_api)
    assert await _titles(api, expression) == titles


async def test_a_rule_can_look_for_the_caller_in_a_json_array(make_api) -> None:
    api, reader = await _notes(make_api)
    assert await _titles(api, "title != null") == ["a", "b"]
    assert await _titles(api, "title != null", reader) == ["a", "b", "c"]


async def test_a_hidden_json_field_cannot_be_probed_by_a_filter(make_api) -> None:
    api, reader = await _notes(make_api)
    for expression in ['secret.pin == "1234"', "secret.length > 0", '"1234" in secret']:
        response = await api.client.get("/v1/notes", params={"filter": expression}, headers=reader)
        assert response.status_code == 400, expression
        assert "secret" in response.json()["detail"]


async def test_a_check_reads_inside_json_and_a_refused_write_keeps_nothing(make_api) -> None:
    api, _ = await _notes(make_api)
    refused = await api.client.post("/v1/notes", json={"title": "e", "tags": ["draft", "public"]})
    assert refused.status_code == 422, refused.text
    accepted = await api.client.post(
        "/v1/notes", json={"title": "e", "tags": ["draft", "public"], "meta": {"lang": "de"}}
    )
    assert accepted.status_code == 201, accepted.text
    assert await _titles(api, '"draft" in tags') == ["e"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ('meta == "fr"', "can only be compared with null"),
        ("meta.lang > true", "does not apply"),
        ('"x" in title', "must be followed by a list"),
        ("title.length > 1", "applies to a json field"),
    ],
)
async def test_a_bad_json_filter_is_a_400_that_says_why(make_api, expression, message) -> None:
    api, _ = await _notes(make_api)
    response = await api.client.get("/v1/notes", params={"filter": expression})
    assert response.status_code == 400
    assert message in response.json()["detail"]


def _doc_section() -> tuple[str, list[str]]:
    """The design and the expressions of docs/expressions.md's "Inside json fields"."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "expressions.md").read_text()
    section = text.split("### Inside json fields", 1)[1].split("\n### ", 1)[0]
    design = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    return design[0], [e.strip() for e in re.findall(r"```expr\n(.*?)```", section, re.DOTALL)]


async def test_the_documented_json_examples_run_as_filters(make_api) -> None:
    design, examples = _doc_section()
    assert len(examples) >= 4
    api = await make_api(design)
    writer = await api.sign_in("writer@example.com")
    note = {"title": "t", "tags": ["public", "urgent"], "meta": {"lang": "fr"}}
    assert (await api.client.post("/v1/notes", json=note, headers=writer)).status_code == 201
    for example in examples:
        response = await api.client.get("/v1/notes", params={"filter": example})
        assert response.status_code == 200, (example, response.text)
    assert (
        len((await api.client.get("/v1/notes", params={"filter": examples[0]})).json()["data"]) == 1
    )
