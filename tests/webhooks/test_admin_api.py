"""/v1/webhooks: admins only, bodies checked field by field, the secret shown once (and
stored sealed), targets refused at creation when they are not public, deliveries paged."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from webhook_support import DESIGN_TEXT, Receiver, message, run_until

from charpente.http.app import build_app
from charpente.http.webhooks import webhook_routes
from charpente.outbound.sender import HttpOutbound
from charpente.runtime.secrets import Sealer
from charpente.runtime.signatures import new_secret, verify
from charpente.runtime.webhooks import Webhooks
from charpente.sql.database import SqlDatabase
from charpente.sql.webhookstore import SqlWebhookStore

pytestmark = pytest.mark.anyio

SEALER = Sealer({"k1": b"k" * 32}, "k1")
HOOK = {"name": "audit", "url": "https://hooks.example.com/in", "events": ["posts.*"]}


@dataclass
class Admin:
    """An app with the webhook routes, its Webhooks, and callers' headers."""

    client: httpx.AsyncClient
    webhooks: Webhooks
    database: SqlDatabase
    admin: dict[str, str]
    member: dict[str, str]
    api: Any

    async def create(self, **body: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/webhooks", json={**HOOK, **body}, headers=self.admin)
        assert response.status_code == 201, response.text
        found: dict[str, Any] = response.json()
        return found


@pytest.fixture
async def admin(make_api: Any) -> AsyncIterator[Admin]:
    api = await make_api(DESIGN_TEXT)
    database = SqlDatabase(api.engine, api.design)
    outbound = HttpOutbound(api.design.outbound_allow, total_timeout=2.0)
    environment = {"HOOK_URL": "http://127.0.0.1:9/x", "HOOK_SECRET": new_secret()}
    webhooks = Webhooks(
        api.design,
        SqlWebhookStore(database),
        outbound,
        environment=environment.get,
        sealer=SEALER,
    )
    app = build_app(
        api.service, api.design, accounts=api.accounts, extra_routes=webhook_routes(webhooks, "/v1")
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    admin_headers = await api.sign_in("root@example.com", role="admin")
    member_headers = await api.sign_in("ada@example.com", role="member")
    try:
        yield Admin(client, webhooks, database, admin_headers, member_headers, api)
    finally:
        await client.aclose()
        await outbound.close()


async def test_anonymous_callers_get_401_and_members_403_on_every_route(admin: Admin) -> None:
    created = await admin.create()
    routes = [
        ("GET", "/v1/webhooks"),
        ("POST", "/v1/webhooks"),
        ("GET", f"/v1/webhooks/{created['id']}"),
        ("PATCH", f"/v1/webhooks/{created['id']}"),
        ("DELETE", f"/v1/webhooks/{created['id']}"),
        ("GET", f"/v1/webhooks/{created['id']}/deliveries"),
    ]
    for method, url in routes:
        body = {"json": HOOK} if method in ("POST", "PATCH") else {}
        anonymous = await admin.client.request(method, url, **body)
        member = await admin.client.request(method, url, headers=admin.member, **body)
        assert anonymous.status_code == 401, (method, url)
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert member.status_code == 403, (method, url)
    assert (await admin.client.get(f"/v1/webhooks/{created['id']}", headers=admin.admin)).is_success


async def test_the_secret_is_shown_once_and_stored_sealed(admin: Admin) -> None:
    response = await admin.client.post("/v1/webhooks", json=HOOK, headers=admin.admin)

    created = response.json()
    assert response.status_code == 201
    assert response.headers["location"] == f"/v1/webhooks/{created['id']}"
    assert response.headers["cache-control"] == "no-store"
    secret = created.pop("secret")
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert created == {
        "id": created["id"],
        "name": "audit",
        "source": "api",
        "url": "https://hooks.example.com/in",
        "events": ["posts.*"],
        "enabled": True,
        "description": None,
        "created_at": created["created_at"],
        "created_by": admin.api.ids["root@example.com"],
        "updated_at": None,
    }
    shown = await admin.client.get(f"/v1/webhooks/{created['id']}", headers=admin.admin)
    listed = await admin.client.get("/v1/webhooks", headers=admin.admin)
    assert "secret" not in shown.json()
    assert secret not in listed.text
    async with admin.api.engine.connect() as conn:
        stored = (await conn.execute(sa.text("SELECT secret FROM charpente_webhooks"))).scalar_one()
    assert stored.startswith("v1.k1.")
    assert secret not in stored


async def test_the_list_shows_the_design_webhooks_then_those_added(admin: Admin) -> None:
    created = await admin.create(description="Audit trail", enabled=False)

    response = await admin.client.get("/v1/webhooks", headers=admin.admin)

    body = response.json()
    assert body["page"] == {"limit": 100, "next_cursor": None}
    design, added = body["data"]
    assert (design["name"], design["source"], design["id"]) == ("moderation", "design", None)
    assert design["url"] == "env:HOOK_URL"
    assert (added["id"], added["description"], added["enabled"]) == (
        created["id"],
        "Audit trail",
        False,
    )
    by_name = await admin.client.get("/v1/webhooks/moderation", headers=admin.admin)
    assert by_name.json() == design


BAD_BODIES = [
    ({**HOOK, "secret": "whsec_mine"}, "secret", "unknown"),
    ({"url": HOOK["url"], "events": HOOK["events"]}, "name", "required"),
    ({**HOOK, "name": "Audit Log"}, "name", "invalid"),
    ({**HOOK, "url": "https://x.example/" + "a" * 2000}, "url", "too_long"),
    ({**HOOK, "url": "ftp://x.example/in"}, "url", "invalid"),
    ({**HOOK, "url": "https://user:pw@x.example/in"}, "url", "invalid"),
    ({**HOOK, "events": []}, "events", "invalid"),
    ({**HOOK, "events": ["posts.liked"]}, "events", "invalid"),
    ({**HOOK, "events": ["posts"]}, "events", "invalid"),
    ({**HOOK, "events": ["likes.deleted"]}, "events", "not_sent"),
    ({**HOOK, "events": ["comments.*"]}, "events", "not_sent"),
    ({**HOOK, "enabled": "yes"}, "enabled", "invalid"),
    ({**HOOK, "description": "x" * 501}, "description", "invalid"),
]


async def test_a_bad_body_is_a_422_naming_the_field(admin: Admin) -> None:
    for body, field, code in BAD_BODIES:
        response = await admin.client.post("/v1/webhooks", json=body, headers=admin.admin)

        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [(field, code)]


async def test_every_bad_field_is_listed_at_once(admin: Admin) -> None:
    body = {"name": 5, "url": None, "events": "posts.*", "colour": "red"}
    response = await admin.client.post("/v1/webhooks", json=body, headers=admin.admin)

    assert response.status_code == 422
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == ["colour", "events", "name", "url"]


REFUSED_TARGETS = [
    ("http://10.0.0.5/hook", "refused: 10.0.0.5 is a private address"),
    ("http://169.254.169.254/latest", "refused: 169.254.169.254 is a link-local address"),
    ("http://[::1]:8080/hook", "refused: ::1 is a loopback address"),
    ("http://192.168.0.10/hook", "refused: 192.168.0.10 is a private address"),
]


async def test_a_target_that_is_not_public_is_refused_at_creation(admin: Admin) -> None:
    for url, reason in REFUSED_TARGETS:
        body = {**HOOK, "url": url}
        response = await admin.client.post("/v1/webhooks", json=body, headers=admin.admin)

        assert response.status_code == 422
        assert response.json()["detail"] == reason
        assert response.json()["errors"] == [{"field": "url", "code": "refused", "message": reason}]
    assert len((await admin.client.get("/v1/webhooks", headers=admin.admin)).json()["data"]) == 1


async def test_a_network_the_design_allows_is_accepted(admin: Admin) -> None:
    created = await admin.create(url="http://127.0.0.1:8080/hook")  # outbound: allow
    assert created["url"] == "http://127.0.0.1:8080/hook"


async def test_names_are_unique_across_the_design_and_the_api(admin: Admin) -> None:
    await admin.create()
    again = await admin.client.post("/v1/webhooks", json=HOOK, headers=admin.admin)
    design = await admin.client.post(
        "/v1/webhooks", json={**HOOK, "name": "moderation"}, headers=admin.admin
    )
    assert again.status_code == 409
    assert again.json()["detail"] == "a webhook named 'audit' exists already"
    assert design.status_code == 409
    assert design.json()["detail"] == "the design declares a webhook named 'moderation'"


async def test_patch_changes_what_it_names_and_refuses_the_rest(admin: Admin) -> None:
    created = await admin.create()
    url = f"/v1/webhooks/{created['id']}"
    patch = {"events": ["posts.created", "likes.created"], "enabled": False}

    changed = await admin.client.patch(url, json=patch, headers=admin.admin)
    renamed = await admin.client.patch(url, json={"name": "other"}, headers=admin.admin)
    refused = await admin.client.patch(url, json={"url": "http://10.1.1.1/x"}, headers=admin.admin)
    design = await admin.client.patch(
        "/v1/webhooks/moderation", json={"enabled": False}, headers=admin.admin
    )
    merge = await admin.client.patch(
        "/v1/webhooks/audit",
        content=b'{"description": "by name"}',
        headers={**admin.admin, "Content-Type": "application/merge-patch+json"},
    )

    assert changed.status_code == 200
    assert (changed.json()["events"], changed.json()["enabled"]) == (patch["events"], False)
    assert changed.json()["updated_at"] is not None
    assert renamed.status_code == 422
    assert renamed.json()["errors"][0]["code"] == "immutable"
    assert refused.status_code == 422
    assert design.status_code == 409
    assert merge.json()["description"] == "by name"


async def test_delete_removes_the_endpoint_and_what_was_owed_to_it(admin: Admin) -> None:
    created = await admin.create()
    await _fan_out(admin, 2)
    url = f"/v1/webhooks/{created['id']}"

    deleted = await admin.client.delete(url, headers=admin.admin)

    assert deleted.status_code == 204
    assert (await admin.client.get(url, headers=admin.admin)).status_code == 404
    assert (await admin.client.delete(url, headers=admin.admin)).status_code == 404
    left = await admin.webhooks.store.deliveries(None, None, 10)
    assert {d.webhook for d in left} == {"moderation"}
    design = await admin.client.delete("/v1/webhooks/moderation", headers=admin.admin)
    assert design.status_code == 409


async def test_deliveries_are_paged_newest_first_and_filtered_by_state(admin: Admin) -> None:
    created = await admin.create()
    await _fan_out(admin, 3)
    url = f"/v1/webhooks/{created['id']}/deliveries"

    first = (await admin.client.get(url, params={"limit": 2}, headers=admin.admin)).json()
    cursor = first["page"]["next_cursor"]
    rest = await admin.client.get(url, params={"limit": 2, "cursor": cursor}, headers=admin.admin)
    dead = await admin.client.get(url, params={"state": "dead"}, headers=admin.admin)

    assert len(first["data"]) == 2
    assert first["page"]["limit"] == 2
    assert rest.json()["page"]["next_cursor"] is None
    ids = [d["id"] for d in first["data"] + rest.json()["data"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 3
    item = first["data"][0]
    assert set(item) == {
        *("id", "webhook", "message_id", "type", "state", "attempts", "next_attempt_at"),
        *("last_status", "last_error", "created_at", "delivered_at"),
    }
    assert (item["webhook"], item["type"], item["state"], item["attempts"]) == (
        "audit",
        "posts.created",
        "pending",
        0,
    )
    assert dead.json()["data"] == []


BAD_QUERIES = [
    ("state=lost", 400),
    ("limit=0", 422),
    ("limit=101", 422),
    ("cursor=not-ours", 400),
    ("sort=id", 400),
    ("state=dead&state=pending", 400),
]


async def test_bad_deliveries_queries_are_refused(admin: Admin) -> None:
    for query, status in BAD_QUERIES:
        url = f"/v1/webhooks/moderation/deliveries?{query}"
        response = await admin.client.get(url, headers=admin.admin)
        assert response.status_code == status, (query, response.text)


async def test_bodies_must_be_small_json(admin: Admin) -> None:
    big = {**HOOK, "description": "x" * 20_000}
    too_large = await admin.client.post("/v1/webhooks", json=big, headers=admin.admin)
    form = await admin.client.post("/v1/webhooks", data={"name": "x"}, headers=admin.admin)
    broken = await admin.client.post(
        "/v1/webhooks",
        content=b"{",
        headers={**admin.admin, "Content-Type": "application/json"},
    )
    assert (too_large.status_code, form.status_code, broken.status_code) == (413, 415, 400)


async def test_a_created_endpoint_receives_deliveries_signed_with_its_secret(
    admin: Admin, receiver: Receiver
) -> None:
    created = await admin.create(url=receiver.url, events=["likes.created"])
    sent = message("likes")
    async with admin.database.transaction() as tx:
        await admin.webhooks.fan_out(tx, [sent])

    async def delivered() -> bool:
        found = await admin.webhooks.store.deliveries("audit", "delivered", 10)
        return len(found) == 1

    await run_until(admin.webhooks, delivered, limit=10)

    (request,) = receiver.received
    verify(created["secret"], request.headers, request.body)
    assert request.body == sent.body
    assert request.headers["content-type"] == "application/json"


async def _fan_out(admin: Admin, count: int) -> None:
    async with admin.database.transaction() as tx:
        await admin.webhooks.fan_out(tx, [message() for _ in range(count)])


async def test_a_body_nested_too_deep_is_refused_like_a_records(admin: Admin) -> None:
    deep = b'{"name": "deep", "description": ' + b"[" * 100 + b"]" * 100 + b"}"
    response = await admin.client.post(
        "/v1/webhooks", content=deep, headers={**admin.admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "nests deeper" in response.json()["detail"]
