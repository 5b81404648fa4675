"""Request ids, security headers, the access log and the body size limit, as pure ASGI middleware.

Every response, errors included, leaves through RequestContextMiddleware (or the REST fast path,
which applies the same functions), so every response carries X-Request-ID and the security
headers, and a bug still answers a problem+json 500.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charpente.errors import BadRequest, PayloadTooLarge
from charpente.http.problems import (
    REQUEST_ID_KEY,
    internal_error_response,
    log_unexpected,
    problem_response,
    request_id_of,
)
from charpente.runtime.ids import new_id

__all__ = [
    "CLIENT_GONE",
    "BodyLimitMiddleware",
    "RawHeaders",
    "RequestContextMiddleware",
    "declared_length_error",
    "log_access",
    "response_headers",
    "sane_request_id",
    "too_large",
    "with_edge_headers",
]

RawHeaders = list[tuple[bytes, bytes]]

CLIENT_GONE = 499
"""The status the access log shows when the client left before its request was answered."""

access_logger = logging.getLogger("charpente.access")

_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_EDGE_NAMES = frozenset(
    {_CSP[0], _HSTS[0], b"x-request-id", *(name for name, _ in _SECURITY_HEADERS)}
)
_encode = msgspec.json.Encoder().encode


class EdgeIdentityMiddleware:
    """Gives a request its id before anything else runs, so that what answers early
    (authentication, rate limits) answers with the id and the security headers too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = sane_request_id(_first(scope, b"x-request-id")) or new_id()
        scope[REQUEST_ID_KEY] = request_id
        extra = response_headers(request_id, scope.get("scheme") == "https")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = with_edge_headers(message.get("headers", ()), extra)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContextMiddleware:
    """Gives each request an id, adds the security headers, logs one line, catches bugs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        request_id = request_id_of(scope) or sane_request_id(_first(scope, b"x-request-id"))
        request_id = request_id or new_id()
        scope[REQUEST_ID_KEY] = request_id
        extra = response_headers(request_id, scope.get("scheme") == "https")
        state = {"status": 500, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                message = {
                    **message,
                    "headers": with_edge_headers(message.get("headers", ()), extra),
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            # The client left while sending its body: the request ends, nobody to answer.
            if not state["started"]:
                state["status"] = CLIENT_GONE
        except Exception as exc:
            log_unexpected(exc, scope["path"], request_id)
            if state["started"]:
                raise  # too late for a clean answer: let the server drop the connection
            response = internal_error_response(scope["path"], request_id)
            await response(scope, receive, send_with_headers)
        finally:
            log_access(scope, state["status"], started_at, request_id)


class BodyLimitMiddleware:
    """Refuses bodies over `max_body_bytes` with a 413: by Content-Length before reading, or
    as soon as a chunked body grows past the limit (reading stops there)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = 1_048_576) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _first(scope, b"content-length")
        if declared is None:
            await self.app(scope, self._limited(receive), send)
            return
        error = declared_length_error(declared, self.max_body_bytes)
        if error is not None:
            await problem_response(error, scope["path"], scope.get(REQUEST_ID_KEY))(
                scope, receive, send
            )
            return
        await self.app(scope, receive, send)  # the server reads no more than Content-Length

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise too_large(self.max_body_bytes)
            return message

        return limited_receive


def declared_length_error(declared: bytes, limit: int) -> BadRequest | PayloadTooLarge | None:
    """What a Content-Length header calls for: a 400 when malformed, a 413 when over `limit`."""
    declared = bytes(declared).strip()
    if not declared.isdigit() or len(declared) > 18:
        return BadRequest(detail="Content-Length is not a valid length")
    if int(declared) > limit:
        return too_large(limit)
    return None


def too_large(limit: int) -> PayloadTooLarge:
    """The 413 for a body over `limit` bytes."""
    return PayloadTooLarge(detail=f"the body is over {limit} bytes")


def sane_request_id(value: bytes | None) -> str | None:
    """A client's X-Request-ID when it is short and plain enough to echo and log, else None."""
    if value is None or not _SANE_REQUEST_ID.fullmatch(value):
        return None
    return value.decode("ascii")


def response_headers(request_id: str, https: bool) -> RawHeaders:
    """X-Request-ID and the security headers every response carries (HSTS over HTTPS)."""
    headers = [(b"x-request-id", request_id.encode("ascii")), *_SECURITY_HEADERS]
    if https:
        headers.append(_HSTS)
    return headers


def with_edge_headers(headers: Iterable[tuple[bytes, bytes]], extra: RawHeaders) -> RawHeaders:
    """A response's headers with the CSP and `extra` added, unless the endpoint set its own."""
    merged = list(headers)
    present = {name.lower() for name, _ in merged}
    if present.isdisjoint(_EDGE_NAMES):  # the usual case: nothing of ours to keep
        merged.append(_CSP)
        merged.extend(extra)
        return merged
    if _CSP[0] not in present:
        merged.append(_CSP)  # pages that need more (the docs) set their own
    merged.extend(h for h in extra if h[0] not in present)
    return merged


def log_access(scope: Scope, status: int, started_at: float, request_id: str) -> None:
    """One JSON line per request on `charpente.access`, when that logger is enabled for INFO."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    elapsed = time.perf_counter() - started_at
    line: MutableMapping[str, Any] = {
        "method": scope["method"],
        "path": scope["path"],  # never the query string: its values may be personal data
        "status": status,
        "duration_ms": round(elapsed * 1000, 3),
        "request_id": request_id,
    }
    # The same fields for the json log format (runtime.logcontext.JsonFormatter).
    fields = {"http.request.method": scope["method"], "url.path": scope["path"]}
    fields |= {"status": status, "duration_s": round(elapsed, 6), "request_id": request_id}
    access_logger.info(_encode(line).decode(), extra={"access": fields})


def _first(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
