"""The rate limit middleware: 429 problems, RateLimit headers, and which bucket a request uses."""

from __future__ import annotations

import re
from collections.abc import Sequence

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from charpente.design.limits import LimitRule, parse_limit
from charpente.http.clientip import parse_trusted_proxies
from charpente.http.ratelimit import CALLER_KEY, RateLimitMiddleware, rate_key_ip
from charpente.runtime.caller import Caller
from charpente.runtime.ratelimit import MemoryLimiter

# RFC 8941 items as the draft uses them: a String, then integer parameters.
POLICY_ITEM = re.compile(r'"[\x20-\x21\x23-\x5b\x5d-\x7e]*";q=\d+;w=[1-9]\d*')
LIMIT_ITEM = re.compile(r'"[\x20-\x21\x23-\x5b\x5d-\x7e]*";r=\d+;t=\d+')

RULES: dict[str, list[tuple[str, LimitRule]]] = {
    "/ip": [("by-ip", parse_limit("2/minute per ip"))],
    "/account": [("by-account", parse_limit("2/minute per account"))],
    "/route": [("by-route", parse_limit("2/minute per route"))],
    "/two": [
        ("loose", parse_limit("100/minute per ip")),
        ("tight", parse_limit("3/minute per ip")),
    ],
}


def policies(method: str, path: str) -> Sequence[tuple[str, LimitRule]]:
    return RULES.get(path, [])


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello", headers={"x-app": "yes"})


class FakeAuth:
    """Stands in for authentication: the `X-Account` header becomes the caller."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            account = dict(scope["headers"]).get(b"x-account")
            scope[CALLER_KEY] = Caller(account.decode() if account else None)
        await self.app(scope, receive, send)


def make_app(trusted: str = "") -> ASGIApp:
    app = Starlette(routes=[Route(path, hello) for path in [*RULES, "/free"]])
    limited = RateLimitMiddleware(app, MemoryLimiter(), policies, parse_trusted_proxies(trusted))
    return FakeAuth(limited)


def client(app: ASGIApp, peer: str = "203.0.113.7") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40_000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.mark.anyio
async def test_allowed_responses_carry_the_policy_and_what_is_left(anyio_backend):
    async with client(make_app()) as http:
        first = await http.get("/ip")
        second = await http.get("/ip")
    assert first.status_code == second.status_code == 200
    assert first.text == "hello"
    assert first.headers["x-app"] == "yes"
    assert first.headers["ratelimit-policy"] == '"by-ip";q=2;w=60'
    assert first.headers["ratelimit"] == '"by-ip";r=1;t=30'
    assert second.headers["ratelimit"] == '"by-ip";r=0;t=60'
    assert "retry-after" not in second.headers


@pytest.mark.anyio
async def test_a_refused_request_is_a_429_problem_with_retry_after(anyio_backend):
    async with client(make_app()) as http:
        await http.get("/ip")
        await http.get("/ip")
        refused = await http.get("/ip")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["ratelimit-policy"] == '"by-ip";q=2;w=60'
    assert refused.headers["ratelimit"] == '"by-ip";r=0;t=30'
    assert "x-app" not in refused.headers  # the app never ran
    body = refused.json()
    assert body["type"] == "/problems/rate-limited"
    assert body["title"] == "Too many requests"
    assert body["status"] == 429
    assert body["instance"] == "/ip"
    assert "'by-ip' (2/minute per ip)" in body["detail"]


@pytest.mark.anyio
async def test_header_values_are_structured_field_items(anyio_backend):
    async with client(make_app()) as http:
        responses = [await http.get("/two") for _ in range(4)]
    for response in responses:
        assert POLICY_ITEM.fullmatch(response.headers["ratelimit-policy"])
        assert LIMIT_ITEM.fullmatch(response.headers["ratelimit"])
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert int(responses[-1].headers["retry-after"]) >= 1


@pytest.mark.anyio
async def test_the_rule_closest_to_refusing_speaks_for_the_response(anyio_backend):
    async with client(make_app()) as http:
        response = await http.get("/two")
    assert response.headers["ratelimit-policy"] == '"tight";q=3;w=60'
    assert response.headers["ratelimit"] == '"tight";r=2;t=20'


@pytest.mark.anyio
async def test_unlimited_paths_pass_untouched(anyio_backend):
    async with client(make_app()) as http:
        responses = [await http.get("/free") for _ in range(5)]
    assert all(r.status_code == 200 for r in responses)
    assert all("ratelimit" not in r.headers for r in responses)


@pytest.mark.anyio
async def test_per_ip_rules_count_each_address_apart(anyio_backend):
    app = make_app()
    async with client(app, "203.0.113.1") as one, client(app, "203.0.113.2") as two:
        assert [(await one.get("/ip")).status_code for _ in range(3)] == [200, 200, 429]
        assert (await two.get("/ip")).status_code == 200


@pytest.mark.anyio
async def test_per_account_rules_follow_the_account_across_addresses(anyio_backend):
    app = make_app()
    ada = {"X-Account": "ada"}
    async with client(app, "203.0.113.1") as one, client(app, "203.0.113.2") as two:
        assert (await one.get("/account", headers=ada)).status_code == 200
        assert (await two.get("/account", headers=ada)).status_code == 200
        assert (await two.get("/account", headers=ada)).status_code == 429
        assert (await two.get("/account", headers={"X-Account": "bob"})).status_code == 200


@pytest.mark.anyio
async def test_anonymous_callers_of_per_account_rules_count_by_address(anyio_backend):
    app = make_app()
    async with client(app, "203.0.113.1") as one, client(app, "203.0.113.2") as two:
        assert [(await one.get("/account")).status_code for _ in range(3)] == [200, 200, 429]
        assert (await two.get("/account")).status_code == 200


@pytest.mark.anyio
async def test_per_route_rules_are_shared_by_everyone(anyio_backend):
    app = make_app()
    async with client(app, "203.0.113.1") as one, client(app, "203.0.113.2") as two:
        assert (await one.get("/route")).status_code == 200
        assert (await two.get("/route", headers={"X-Account": "ada"})).status_code == 200
        assert (await one.get("/route")).status_code == 429


@pytest.mark.anyio
async def test_an_untrusted_peer_cannot_pick_its_bucket_with_x_forwarded_for(anyio_backend):
    async with client(make_app(trusted="10.0.0.0/8"), "203.0.113.1") as http:
        statuses = [
            (await http.get("/ip", headers={"X-Forwarded-For": f"198.51.100.{i}"})).status_code
            for i in range(3)
        ]
    assert statuses == [200, 200, 429]


@pytest.mark.anyio
async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_bucket(anyio_backend):
    async with client(make_app(trusted="10.0.0.0/8"), "10.0.0.5") as proxy:
        for _ in range(2):
            await proxy.get("/ip", headers={"X-Forwarded-For": "198.51.100.1"})
        spoofed = {"X-Forwarded-For": "198.51.100.9, 198.51.100.1"}  # a forged first entry
        assert (await proxy.get("/ip", headers=spoofed)).status_code == 429
        other = {"X-Forwarded-For": "198.51.100.2"}
        assert (await proxy.get("/ip", headers=other)).status_code == 200


@pytest.mark.anyio
async def test_ipv6_clients_share_a_bucket_per_64_network(anyio_backend):
    app = make_app()
    async with client(app, "2001:db8:1:2::1") as one, client(app, "2001:db8:1:2::ffff") as two:
        assert (await one.get("/ip")).status_code == 200
        assert (await two.get("/ip")).status_code == 200
        assert (await one.get("/ip")).status_code == 429
    async with client(app, "2001:db8:1:3::1") as elsewhere:
        assert (await elsewhere.get("/ip")).status_code == 200


def test_rate_keys_keep_ipv4_whole_and_ipv6_by_its_64():
    assert rate_key_ip("198.51.100.1") == "198.51.100.1"
    assert rate_key_ip("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert rate_key_ip("unknown") == "unknown"
    assert rate_key_ip("not:an:address") == "not:an:address"


@pytest.mark.anyio
async def test_lifespan_passes_through(anyio_backend):
    messages = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        messages.append(scope["type"])

    middleware = RateLimitMiddleware(app, MemoryLimiter(), policies)

    async def receive() -> dict[str, object]:
        return {}

    async def send(message: object) -> None:
        return None

    await middleware({"type": "lifespan"}, receive, send)
    assert messages == ["lifespan"]
