"""Feature flags in the OpenAPI document: valid 3.1, every operation tagged, and the real
app's answers (admin API and OFREP) each valid for the schema documented for it, key for key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from charpente.bus.memory import MemoryBus
from charpente.compile.openapi import openapi_document
from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime.flag_control import FlagControl
from charpente.sql.flagstore import SqlFlagStore

jsonschema = pytest.importorskip("jsonschema")

DESIGN_TEXT = """
charpente: 1
name: feed
auth: {roles: [member, admin]}
flags:
  reposts: {rollout: 10%, owner: feed team, expires: 2027-03-01}
  layout: {default: true, variants: {a: 50%, b: 50%}}
  beta: {variants: {x: 50%, y: 50%}}
resources:
  posts:
    fields: {body: text}
    access: {read: flag("reposts")}
"""
DOCUMENT: Any = openapi_document(load_design_text(DESIGN_TEXT))
OPERATIONS = {
    ("/v1/_flags", "get"): "adminListFlags",
    ("/v1/_flags/{name}", "get"): "adminGetFlag",
    ("/v1/_flags/{name}", "patch"): "adminUpdateFlag",
    ("/v1/_flags/{name}/history", "get"): "adminFlagHistory",
    ("/ofrep/v1/evaluate/flags/{key}", "post"): "ofrepEvaluateFlag",
    ("/ofrep/v1/evaluate/flags", "post"): "ofrepEvaluateFlags",
}


def schema_of(path: str, method: str, status: int) -> Any:
    found = DOCUMENT["paths"][path][method]["responses"][str(status)]
    return found["content"]["application/json"]["schema"]


def resolve(schema: Any) -> Any:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def assert_answers(schema: Any, value: Any) -> None:
    """`value` is valid for `schema`; each object holds the keys its schema requires, and
    only keys it names (unless it allows others)."""
    root = {**schema, "components": DOCUMENT["components"]}
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(root, format_checker=checker).validate(value)
    schema = resolve(schema)
    if isinstance(value, dict) and "properties" in schema:
        assert set(schema.get("required", ())) <= set(value), (sorted(value), schema)
        for key, item in value.items():
            if key in schema["properties"]:
                assert_answers(schema["properties"][key], item)
            else:
                assert schema.get("additionalProperties") is not False, key
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            assert_answers(schema["items"], item)


def test_the_document_with_flags_is_valid_openapi_31() -> None:
    pytest.importorskip("openapi_spec_validator").validate(DOCUMENT)
    without = openapi_document(load_design_text(DESIGN_TEXT.split("flags:")[0] + "resources:\n"
                                                "  posts: {fields: {body: text}}\n"))  # fmt: skip
    assert not any(p.startswith(("/v1/_flags", "/ofrep")) for p in without["paths"])


def test_every_flag_operation_has_its_id_and_tag() -> None:
    found = {
        (path, method): op
        for path, item in DOCUMENT["paths"].items()
        if path.startswith(("/v1/_flags", "/ofrep"))
        for method, op in item.items()
        if method != "parameters"
    }
    assert {key: op["operationId"] for key, op in found.items()} == OPERATIONS
    for (path, _), op in found.items():
        assert op["tags"] == (["ofrep"] if path.startswith("/ofrep") else ["flags"])
    names = DOCUMENT["paths"]["/v1/_flags/{name}"]["parameters"][0]["schema"]["enum"]
    assert names == ["beta", "layout", "reposts"]


@pytest.mark.anyio
async def test_every_answer_matches_its_schema(make_api) -> None:
    api = await make_api(DESIGN_TEXT)
    admin = await api.sign_in("root@example.com", "admin")
    store = SqlFlagStore(api.service.database)
    control = FlagControl(api.design, api.service.flags, store, bus=MemoryBus())
    app = build_app(api.service, api.design, accounts=api.accounts, flags=control)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        changed = await client.patch("/v1/_flags/reposts", json={"rollout": 50}, headers=admin)
        assert_answers(schema_of("/v1/_flags/{name}", "patch", 200), changed.json())
        listed = await client.get("/v1/_flags", headers=admin)
        assert_answers(schema_of("/v1/_flags", "get", 200), listed.json())
        history = await client.get("/v1/_flags/reposts/history", headers=admin)
        assert_answers(schema_of("/v1/_flags/{name}/history", "get", 200), history.json())
        context = {"context": {"targetingKey": "device-1"}}
        for key in ("reposts", "layout", "beta"):
            one = await client.post(f"/ofrep/v1/evaluate/flags/{key}", json=context)
            assert_answers(schema_of("/ofrep/v1/evaluate/flags/{key}", "post", 200), one.json())
        bulk = await client.post("/ofrep/v1/evaluate/flags", json=context)
        assert_answers(schema_of("/ofrep/v1/evaluate/flags", "post", 200), bulk.json())
        missing = await client.post("/ofrep/v1/evaluate/flags/nope", json=context)
        assert_answers(schema_of("/ofrep/v1/evaluate/flags/{key}", "post", 404), missing.json())
