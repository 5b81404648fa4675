"""Table-driven API scenarios: a request, the status it must get, what its body must show.

URLs, headers and JSON bodies may name seeded records as `{user}`, `{post}`, `{note}`,
and `{missing}` (a well-formed id of no record).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from charpente.runtime.ids import new_id

ABSENT = object()


@dataclass(frozen=True)
class Scenario:
    """One request and what its answer must be."""

    name: str
    method: str
    url: str
    status: int
    json: Any = ABSENT
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # the problem type's slug, for error answers
    error_fields: tuple[str, ...] = ()  # fields the `errors` list must name
    detail_contains: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)  # keys the JSON answer must hold


async def seed(api: Any) -> dict[str, str]:
    """One user, one post of theirs, one note: the ids scenarios refer to."""
    user = await api.create("users", {"handle": "ada"})
    post = await api.create("posts", {"author": user["id"], "title": "first"})
    note = await api.create("notes", {"text": "remember"})
    return {"user": user["id"], "post": post["id"], "note": note["id"], "missing": new_id()}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, id in ids.items():
            value = value.replace("{" + name + "}", id)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


async def run(api: Any, scenario: Scenario, ids: dict[str, str]) -> httpx.Response:
    """Send the scenario's request and check its answer; the response, for more checks."""
    kwargs: dict[str, Any] = {"headers": _fill(scenario.headers, ids)}
    if scenario.json is not ABSENT:
        kwargs["json"] = _fill(scenario.json, ids)
    if scenario.content is not None:
        kwargs["content"] = scenario.content
    url = _fill(scenario.url, ids)
    response = await api.client.request(scenario.method, url, **kwargs)
    assert response.status_code == scenario.status, response.text
    check_answer(response, scenario, ids)
    return response


def check_answer(response: httpx.Response, scenario: Scenario, ids: dict[str, str]) -> None:
    assert response.headers["x-request-id"]
    for name, value in scenario.response_headers.items():
        assert response.headers.get(name) == _fill(value, ids), name
    if scenario.problem is not None:
        _check_problem(response, scenario)
    for key, value in scenario.body.items():
        assert response.json()[key] == _fill(value, ids), key


def _check_problem(response: httpx.Response, scenario: Scenario) -> None:
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"/problems/{scenario.problem}"
    assert problem["status"] == scenario.status
    assert problem["request_id"] == response.headers["x-request-id"]
    assert problem["instance"] == httpx.URL(str(response.request.url)).path
    named = {e["field"] for e in problem.get("errors", [])}
    assert set(scenario.error_fields) <= named, problem
    if scenario.detail_contains is not None:
        assert scenario.detail_contains in problem["detail"], problem
