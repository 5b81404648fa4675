"""The webhook admin API in the OpenAPI document: valid 3.1, and saying what `/v1/webhooks`
really accepts and answers. Bodies are judged by the documented schemas and by the real app
(on every dialect) and both must agree; every answer is checked against its schema, and
every documented error status is produced."""

from __future__ import annotations

import datetime
import importlib.util
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from charpente.compile import openapi_webhooks as documented
from charpente.compile.openapi import openapi_document
from charpente.http import webhooks as http_webhooks
from charpente.http.app import build_app
from charpente.http.webhooks import webhook_routes
from charpente.loader import load_design_text
from charpente.outbound.sender import HttpOutbound
from charpente.runtime import webhook_requests, webhooks
from charpente.runtime.events import Event, to_cloudevent
from charpente.runtime.ids import new_id
from charpente.runtime.signatures import new_secret
from charpente.runtime.webhooks import Webhooks
from charpente.sql.database import SqlDatabase
from charpente.sql.webhookstore import SqlWebhookStore

jsonschema = pytest.importorskip("jsonschema")

DESIGN_TEXT = """
charpente: 1
name: hooks
resources:
  posts:
    access: {read: true, create: true}
    fields:
      body: text
    events: [created, updated, deleted]
  likes:
    access: {read: true, create: true}
    fields:
      post: {ref: posts, required: true}
    events: [created]
  tags:
    access: {read: true}
    fields:
      label: text
webhooks:
  moderation: {url: env:HOOK_URL, events: [posts.created], secret: env:HOOK_SECRET}
outbound:
  allow: [127.0.0.1/32]
"""
URL = "http://127.0.0.1:8080/hook"  # an allowed network: no name to resolve
WEBHOOK_OPERATIONS = {
    ("/v1/webhooks", "get"): "adminListWebhooks",
    ("/v1/webhooks", "post"): "adminCreateWebhook",
    ("/v1/webhooks/{id}", "get"): "adminGetWebhook",
    ("/v1/webhooks/{id}", "patch"): "adminUpdateWebhook",
    ("/v1/webhooks/{id}", "delete"): "adminDeleteWebhook",
    ("/v1/webhooks/{id}/deliveries", "get"): "adminListWebhookDeliveries",
}


def validate_document(document: Any) -> None:
    pytest.importorskip("openapi_spec_validator").validate(document)


def design_document(text: str = DESIGN_TEXT) -> Any:
    return openapi_document(load_design_text(text))


DOCUMENT = design_document()


def operation(path: str, method: str) -> Any:
    return DOCUMENT["paths"][path][method]


def resolve(schema: Any) -> Any:
    """A schema with its `$ref` (to the document's components) followed."""
    while isinstance(schema, dict) and "$ref" in schema:
        _, kind, name = schema["$ref"].removeprefix("#/").split("/")
        schema = DOCUMENT["components"][kind][name]
    return schema


def validator(schema: Any, *, formats: bool = False) -> Any:
    """A JSON Schema 2020-12 validator of `schema`, whose `$ref`s reach the document's
    components."""
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER if formats else None
    root = {**schema, "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=checker)


def request_schema(path: str, method: str, media: str = "application/json") -> Any:
    return operation(path, method)["requestBody"]["content"][media]["schema"]


def response_schema(path: str, method: str, status: int) -> Any:
    return operation(path, method)["responses"][str(status)]["content"]["application/json"][
        "schema"
    ]


def assert_answers(schema: Any, value: Any) -> None:
    """`value` is valid for `schema`, and each object in it holds every property its schema
    requires and none it does not name."""
    validator(schema, formats=True).validate(value)
    schema = resolve(schema)
    if isinstance(value, dict):
        assert set(schema["required"]) <= set(value) <= set(schema["properties"]), (
            sorted(value),
            sorted(schema["properties"]),
        )
        for key, item in value.items():
            assert_answers(schema["properties"][key], item)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            assert_answers(schema["items"], item)


# --- the document ----------------------------------------------------------------------------


def test_the_document_with_the_webhooks_api_is_valid_openapi_31() -> None:
    without_events = DESIGN_TEXT.split("webhooks:")[0].replace("    events: [created]\n", "")
    without_events = without_events.replace("    events: [created, updated, deleted]\n", "")
    nothing_to_hear = design_document(without_events)

    validate_document(DOCUMENT)
    validate_document(nothing_to_hear)
    events = nothing_to_hear["components"]["schemas"]["CharpenteWebhookCreate"]["properties"]
    assert events["events"]["items"]["not"] == {}  # no event can be listened to
    assert events["events"]["minItems"] == 1


def test_every_webhooks_operation_is_tagged_admin_only_and_has_its_id() -> None:
    found = {
        (path, method): op
        for path, item in DOCUMENT["paths"].items()
        if path.startswith("/v1/webhooks")
        for method, op in item.items()
        if method != "parameters"
    }
    assert {key: op["operationId"] for key, op in found.items()} == WEBHOOK_OPERATIONS
    for op in found.values():
        assert op["tags"] == ["webhooks"]
        assert op["security"] == [{"bearer": []}, {"password": []}]  # no anonymous caller
    assert {"name": "webhooks", "description": documented.WEBHOOKS_TAG["description"]} in (
        DOCUMENT["tags"]
    )


def test_resources_with_webhook_like_names_do_not_collide_with_the_webhooks_api() -> None:
    text = DESIGN_TEXT.replace(
        "  tags:\n",
        "  webhook:\n    fields: {x: text}\n  webhook_deliveries:\n    fields: {x: text}\n"
        "  charpente:\n    fields: {x: text}\n  tags:\n",
    )
    document = design_document(text + "limits:\n  all: 100/minute per ip\n")

    ids = [
        op["operationId"]
        for item in document["paths"].values()
        for method, op in item.items()
        if method != "parameters"
    ]
    assert len(ids) == len(set(ids))
    schemas = document["components"]["schemas"]
    assert {"Webhook", "WebhookDelivery", "Charpente", "CharpenteWebhook"} <= set(schemas)
    assert "secret" in schemas["CharpenteWebhookCreated"]["properties"]
    validate_document(document)
    assert "429" in document["paths"]["/v1/webhooks"]["get"]["responses"]  # limits.all
    assert "429" not in operation("/v1/webhooks", "get")["responses"]


def test_the_limits_are_the_ones_the_api_enforces() -> None:
    assert documented.CREATE_KEYS == webhook_requests.CREATE_KEYS
    assert documented.UPDATE_KEYS == webhook_requests.UPDATE_KEYS
    assert documented.STATES == webhook_requests.STATES
    assert documented.MAX_EVENTS == webhook_requests.MAX_EVENTS
    assert documented.MAX_PAGE == webhook_requests.MAX_PAGE
    assert documented.DEFAULT_PAGE == webhook_requests.DEFAULT_PAGE
    assert documented.MAX_DESCRIPTION == webhook_requests.MAX_DESCRIPTION
    assert documented.MAX_BODY_BYTES == http_webhooks.MAX_BODY_BYTES
    assert documented.MAX_ERROR == webhooks.MAX_ERROR_CHARS
    assert documented.MAX_ENDPOINTS == webhooks.MAX_ENDPOINTS


def test_only_the_answer_to_a_create_holds_the_secret() -> None:
    created = resolve(response_schema("/v1/webhooks", "post", 201))
    assert "secret" in created["required"]
    for path, method in (("/v1/webhooks/{id}", "get"), ("/v1/webhooks/{id}", "patch")):
        assert "secret" not in resolve(response_schema(path, method, 200))["properties"]
    listed = resolve(response_schema("/v1/webhooks", "get", 200))
    assert "secret" not in resolve(listed["properties"]["data"]["items"])["properties"]


# --- against the app -------------------------------------------------------------------------


def _load_api_fixtures() -> Any:
    """tests/http/conftest.py (which pytest applies to tests/http only), under its own name,
    for its `make_api`: apps with accounts on every dialect."""
    path = Path(__file__).parent.parent / "http" / "conftest.py"
    spec = importlib.util.spec_from_file_location("charpente_openapi_api_fixtures", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


make_api = _load_api_fixtures().make_api


@dataclass
class Admin:
    """An app serving the webhook routes, and the headers of an admin and of a member."""

    client: httpx.AsyncClient
    webhooks: Webhooks
    database: SqlDatabase
    admin: dict[str, str]
    member: dict[str, str]

    async def post(self, body: object) -> httpx.Response:
        return await self.client.post("/v1/webhooks", json=body, headers=self.admin)


@pytest.fixture
async def app(make_api: Any) -> AsyncIterator[Admin]:
    api = await make_api(DESIGN_TEXT)
    database = SqlDatabase(api.engine, api.design)
    outbound = HttpOutbound(api.design.outbound_allow, total_timeout=2.0)
    environment = {"HOOK_URL": "http://127.0.0.1:9/x", "HOOK_SECRET": new_secret()}
    service = Webhooks(api.design, SqlWebhookStore(database), outbound, environment=environment.get)
    routes = webhook_routes(service, "/v1")
    served = build_app(api.service, api.design, accounts=api.accounts, extra_routes=routes)
    transport = httpx.ASGITransport(app=served, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    admin = await api.sign_in("root@example.com", role="admin")
    member = await api.sign_in("ada@example.com", role="member")
    try:
        yield Admin(client, service, database, admin, member)
    finally:
        await client.aclose()
        await outbound.close()


SAMPLES: dict[str, Any] = {
    "name": "search",
    "url": URL,
    "events": ["posts.created"],
    "description": "Keeps the search index fresh.",
    "enabled": False,
}
"""A valid value of each property of the bodies."""


@pytest.mark.anyio
async def test_a_body_of_the_schemas_required_properties_is_created(app: Admin) -> None:
    schema = resolve(request_schema("/v1/webhooks", "post"))
    required = schema["required"]
    optional = [key for key in schema["properties"] if key not in required]

    minimal = {key: SAMPLES[key] for key in required}
    created = await app.post(minimal)

    assert validator(schema).is_valid(minimal)
    assert created.status_code == 201, created.text
    assert_answers(response_schema("/v1/webhooks", "post", 201), created.json())
    assert set(created.json()) == set(
        resolve(response_schema("/v1/webhooks", "post", 201))["required"]
    )
    for key in optional:  # each optional property is read
        body = {**minimal, "name": f"with-{key}", key: SAMPLES[key]}
        response = await app.post(body)
        assert response.status_code == 201, response.text
        assert response.json()[key] == SAMPLES[key]
    for key in required:  # and each required one is required
        body = {k: v for k, v in minimal.items() if k != key}
        response = await app.post(body)
        assert not validator(schema).is_valid(body)
        assert response.status_code == 422
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(key, "required")]


def create_cases() -> Iterator[object]:
    """Bodies on both sides of every rule the create schema states."""
    base = {"url": URL, "events": ["posts.created"]}
    long_url = URL + "/" + "a" * (documented.MAX_URL - len(URL) - 1)
    for name in ("a", "a" * 63, "a-b_c9", "a" * 64, "Audit", "1abc", "", "a b", 5, None):
        yield {**base, "name": name}
    for url in (
        long_url,
        long_url + "a",
        "HTTPS://127.0.0.1/in",
        "http://127.0.0.1",
        "http://127.0.0.1:8080?x=1",
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
        "http:///x",
        "127.0.0.1/x",
        "",
        5,
        None,
    ):
        yield {**base, "url": url}
    for events in (
        ["posts.*"],
        ["*.*"],
        ["likes.*", "*.created", "posts.deleted"],
        ["posts.created"] * documented.MAX_EVENTS,
        ["posts.created"] * (documented.MAX_EVENTS + 1),
        [],
        ["tags.*"],
        ["tags.created"],
        ["likes.deleted"],
        ["comments.*"],
        ["posts.liked"],
        ["posts"],
        ["POSTS.created"],
        [5],
        "posts.*",
        None,
    ):
        yield {**base, "events": events}
    for description in ("", "x" * 500, None, "x" * 501, 5, ["x"]):
        yield {**base, "description": description}
    for enabled in (True, False, "yes", 0, None):
        yield {**base, "enabled": enabled}
    for extra in ("secret", "id", "source", "created_at", "colour"):
        yield {**base, extra: "x"}
    yield []
    yield "search"


@pytest.mark.anyio
async def test_the_create_schema_accepts_exactly_what_the_api_creates(app: Admin) -> None:
    schema = validator(request_schema("/v1/webhooks", "post"))
    answer = response_schema("/v1/webhooks", "post", 201)
    for index, case in enumerate(create_cases()):
        body = case
        if isinstance(case, dict) and "name" not in case:
            body = {"name": f"case-{index}", **case}

        response = await app.post(body)

        assert response.status_code in (201, 422), (body, response.text)
        assert (response.status_code == 201) == schema.is_valid(body), (body, response.text)
        if response.status_code == 201:
            assert_answers(answer, response.json())


PATCHES: list[object] = [
    {},
    {"url": URL + "/2"},
    {"url": "https://127.0.0.1/" + "a" * 2000},
    {"url": None},
    {"url": "ftp://127.0.0.1/x"},
    {"events": ["likes.created", "posts.*"]},
    {"events": []},
    {"events": ["tags.updated"]},
    {"description": "x" * 500},
    {"description": None},
    {"description": "x" * 501},
    {"enabled": False},
    {"enabled": "no"},
    {"enabled": None},
    {"name": "other"},
    {"secret": new_secret()},
    {"colour": "red"},
    ["url"],
]


@pytest.mark.anyio
async def test_the_patch_schema_accepts_exactly_what_the_api_changes(app: Admin) -> None:
    created = (await app.post({"name": "audit", "url": URL, "events": ["posts.*"]})).json()
    answer = response_schema("/v1/webhooks/{id}", "patch", 200)
    for media in ("application/json", "application/merge-patch+json"):
        schema = validator(request_schema("/v1/webhooks/{id}", "patch", media))
        for body in PATCHES:
            headers = {**app.admin, "Content-Type": media}
            url = f"/v1/webhooks/{created['id']}"

            response = await app.client.patch(url, json=body, headers=headers)

            assert response.status_code in (200, 422), (body, response.text)
            assert (response.status_code == 200) == schema.is_valid(body), (body, response.text)
            if response.status_code == 200:
                assert_answers(answer, response.json())


@pytest.mark.anyio
async def test_every_answer_matches_its_schema_key_for_key(app: Admin) -> None:
    created = (await app.post({**SAMPLES, "enabled": True, "description": None})).json()
    async with app.database.transaction() as tx:
        await app.webhooks.fan_out(tx, [_message() for _ in range(3)])
    item = f"/v1/webhooks/{created['id']}"
    answers: list[tuple[str, str, str, dict[str, Any]]] = [
        ("/v1/webhooks", "get", "/v1/webhooks", {}),
        ("/v1/webhooks/{id}", "get", item, {}),
        ("/v1/webhooks/{id}", "get", "/v1/webhooks/moderation", {}),
        ("/v1/webhooks/{id}", "patch", item, {"json": {"enabled": True}}),
        ("/v1/webhooks/{id}/deliveries", "get", item + "/deliveries", {}),
        ("/v1/webhooks/{id}/deliveries", "get", item + "/deliveries?limit=2&state=pending", {}),
    ]
    for path, method, url, options in answers:
        response = await app.client.request(method, url, headers=app.admin, **options)

        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert_answers(response_schema(path, method, 200), response.json())
    listed = (await app.client.get("/v1/webhooks", headers=app.admin)).json()["data"]
    assert [(w["name"], w["source"]) for w in listed] == [
        ("moderation", "design"),
        ("search", "api"),
    ]
    deliveries = (await app.client.get(item + "/deliveries", headers=app.admin)).json()
    assert len(deliveries["data"]) == 3
    deleted = await app.client.delete(item, headers=app.admin)
    assert deleted.status_code == 204
    assert "204" in operation("/v1/webhooks/{id}", "delete")["responses"]


def error_cases(app: Admin) -> list[tuple[str, str, str, int, dict[str, Any]]]:
    """(path, method, url, expected status, request options) for each error each operation
    documents."""
    admin, member = app.admin, app.member
    hook, design = "/v1/webhooks/audit", "/v1/webhooks/moderation"
    body = {"name": "other", "url": URL, "events": ["posts.created"]}
    big = {"json": {**body, "description": "x" * documented.MAX_BODY_BYTES}, "headers": admin}
    form = {"data": {"name": "x"}, "headers": admin}
    broken = {"content": b"{", "headers": {**admin, "Content-Type": "application/json"}}
    cases: list[tuple[str, str, str, int, dict[str, Any]]] = []
    for path, url in (
        ("/v1/webhooks", "/v1/webhooks"),
        ("/v1/webhooks/{id}", hook),
        ("/v1/webhooks/{id}/deliveries", hook + "/deliveries"),
    ):
        methods = [m for m in DOCUMENT["paths"][path] if m != "parameters"]
        for method in methods:
            payload = {"json": body} if method in ("post", "patch") else {}
            cases += [
                (path, method, url + "?colour=red", 400, {"headers": admin, **payload}),
                (path, method, url, 401, payload),
                (path, method, url, 403, {"headers": member, **payload}),
            ]
    for path in ("/v1/webhooks/{id}", "/v1/webhooks/{id}/deliveries"):
        for method in [m for m in DOCUMENT["paths"][path] if m != "parameters"]:
            url = "/v1/webhooks/nothing" + path.removeprefix("/v1/webhooks/{id}")
            payload = {"json": {}} if method == "patch" else {}
            cases.append((path, method, url, 404, {"headers": admin, **payload}))
    return [
        *cases,
        ("/v1/webhooks", "post", "/v1/webhooks", 400, broken),
        (
            "/v1/webhooks",
            "post",
            "/v1/webhooks",
            409,
            {"json": {**body, "name": "moderation"}, "headers": admin},
        ),
        ("/v1/webhooks", "post", "/v1/webhooks", 413, big),
        ("/v1/webhooks", "post", "/v1/webhooks", 415, form),
        ("/v1/webhooks", "post", "/v1/webhooks", 422, {"json": {}, "headers": admin}),
        ("/v1/webhooks/{id}", "patch", design, 409, {"json": {}, "headers": admin}),
        ("/v1/webhooks/{id}", "patch", hook, 413, big),
        ("/v1/webhooks/{id}", "patch", hook, 415, form),
        ("/v1/webhooks/{id}", "patch", hook, 422, {"json": {"name": "x"}, "headers": admin}),
        ("/v1/webhooks/{id}", "delete", design, 409, {"headers": admin}),
        (
            "/v1/webhooks/{id}/deliveries",
            "get",
            hook + "/deliveries?limit=0",
            422,
            {"headers": admin},
        ),
        (
            "/v1/webhooks/{id}/deliveries",
            "get",
            hook + "/deliveries?state=lost",
            400,
            {"headers": admin},
        ),
    ]


@pytest.mark.anyio
async def test_every_documented_error_status_is_one_the_api_answers(app: Admin) -> None:
    await app.post({"name": "audit", "url": URL, "events": ["posts.*"]})
    produced: dict[tuple[str, str], set[str]] = {key: set() for key in WEBHOOK_OPERATIONS}
    for path, method, url, status, options in error_cases(app):
        response = await app.client.request(method.upper(), url, **options)

        assert response.status_code == status, (method, url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        produced[(path, method)].add(str(status))
    for (path, method), statuses in produced.items():
        responses = operation(path, method)["responses"]
        documented_errors = {s for s in responses if "400" <= s < "500"}
        assert documented_errors == statuses, (path, method)  # no more, no fewer


def _message() -> Any:
    """A `posts.created` event as the relay hands it over."""
    record_id = new_id()
    event = Event(
        id=new_id(),
        resource="posts",
        record_id=record_id,
        action="created",
        at=datetime.datetime.now(datetime.UTC),
        version=1,
        changes={"body": "Hello"},
        record={"id": record_id, "body": "Hello"},
    )
    return to_cloudevent(event, "charpente/hooks")
