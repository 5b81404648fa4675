"""Rate limits at the edge: a pure-ASGI middleware that charges each request to its rules.

Every named rule that applies to a request is charged to its own bucket,
`<name>:<client IP>` (per ip), `<name>:<account id>` (per account; anonymous callers
count by IP) or `<name>:` (per route). If one refuses, the answer is a 429 problem with
`Retry-After` and the RateLimit headers of the refusing rule; otherwise the request goes
on and its response carries the RateLimit headers of the rule closest to refusing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Sequence

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charpente.design.limits import LimitRule
from charpente.errors import TooManyRequests
from charpente.http.clientip import IPNetwork, client_ip
from charpente.http.problems import problem_response, request_id_of
from charpente.runtime import metrics
from charpente.runtime.caller import Caller
from charpente.runtime.ratelimit import Decision, Limiter, limit_headers

__all__ = ["CALLER_KEY", "Policies", "RateLimitMiddleware", "rate_key_ip"]

CALLER_KEY = "charpente.caller"
"""Where authentication leaves the request's Caller in the ASGI scope."""

Policies = Callable[[str, str], Sequence[tuple[str, LimitRule]]]
"""`(method, path) -> [(name, rule), ...]`: the named rules a request is charged to."""

_Checked = tuple[str, LimitRule, Decision]
_MAX_ADDRESS = 64  # longer text is no address; and the prefix cache keeps only short keys


class RateLimitMiddleware:
    """Charges every HTTP request to the rules `policies` names for it, through `limiter`.

    Client addresses come from X-Forwarded-For only through `trusted_proxies`; the
    caller (for per-account rules) from `scope["charpente.caller"]`, so authentication
    must run before this middleware for per-account limits to see accounts.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        policies: Policies,
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.policies = policies
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rules = self.policies(scope["method"], scope["path"])
        if not rules:
            await self.app(scope, receive, send)
            return
        checked = await self._charge(scope, rules)
        refused = [c for c in checked if not c[2].allowed]
        if refused:
            worst = max(refused, key=lambda c: c[2].retry_after)
            await _too_many(scope, worst)(scope, receive, send)
            return
        closest = checked[0] if len(checked) == 1 else min(checked, key=_closeness)
        headers = _raw(limit_headers(*closest))

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_limits)

    async def _charge(self, scope: Scope, rules: Sequence[tuple[str, LimitRule]]) -> list[_Checked]:
        ip: str | None = None  # read once, and only if a rule needs it
        checked: list[_Checked] = []
        for name, rule in rules:
            value = _account(scope) if rule.per == "account" else None
            if rule.per == "route":
                value = ""
            elif value is None:
                ip = ip if ip is not None else rate_key_ip(client_ip(scope, self.trusted_proxies))
                value = ip
            checked.append((name, rule, await self.limiter.hit(f"{name}:{value}", rule)))
        return checked


def rate_key_ip(ip: str) -> str:
    """The part of a client address that a per-IP bucket is keyed by: an IPv4 address
    whole, an IPv6 address by its /64 (one subscriber's network: its 2^64 addresses
    would otherwise be 2^64 buckets)."""
    if ":" not in ip or len(ip) > _MAX_ADDRESS:
        return ip
    return _ipv6_prefix(ip)


@functools.lru_cache(maxsize=4096)
def _ipv6_prefix(ip: str) -> str:
    try:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    except ValueError:
        return ip


def _account(scope: Scope) -> str | None:
    caller = scope.get(CALLER_KEY)
    return caller.id if isinstance(caller, Caller) else None


def _closeness(checked: _Checked) -> tuple[int, float]:
    """Sort key: fewest requests left first, then the longest wait for a full bucket."""
    return checked[2].remaining, -checked[2].reset_after


def _too_many(scope: Scope, refused: _Checked) -> Response:
    name, rule, decision = refused
    metrics.RATE_LIMIT_REFUSALS.labels(name).inc()
    headers = dict(limit_headers(name, rule, decision))
    detail = f"The rate limit {name!r} ({rule}) is reached; retry after {headers['Retry-After']} s."
    error = TooManyRequests(detail=detail, headers=headers)
    return problem_response(error, scope["path"], request_id_of(scope))


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
