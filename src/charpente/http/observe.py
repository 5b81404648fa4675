"""What the HTTP edge reports of each request: metrics, a server span, the log context.

`ObservabilityMiddleware` sits just inside the request id (EdgeIdentityMiddleware), so it
sees every request that authentication, rate limits and the routes answer. It names the
request by its route template (`/v1/posts/{id}`; a path no route serves is `unmatched`),
times it into http_server_request_duration_seconds, counts it in
http_server_active_requests, and — for a live change stream (a `text/event-stream`
answer) — moves it to charpente_live_streams_open and times it into
charpente_live_stream_duration_seconds instead. With tracing on, it opens the server
span, continuing the caller's `traceparent`. It also puts the request id and the route
in the log context (charpente.runtime.logcontext), so that every log line written while
the request runs carries them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from opentelemetry import context as otel_context, trace
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charpente.http.problems import REQUEST_ID_KEY
from charpente.runtime import logcontext, metrics, tracing

__all__ = ["UNMATCHED", "ObservabilityMiddleware", "RouteNames"]

UNMATCHED = "unmatched"
"""The route label of every path that no route serves (so unknown paths share one series)."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
_OTHER_METHOD = "_OTHER"  # OpenTelemetry's value for a method outside the known ones
_EVENT_STREAM = b"text/event-stream"


class _Routed(Protocol):
    """What route names are found in: the app (its REST table and its Starlette routes)."""

    @property
    def routes(self) -> list[BaseRoute]: ...


class RouteNames:
    """Finds the route template of a request: the REST table's first (one dict lookup),
    then the app's Starlette routes in order."""

    def __init__(
        self, app: _Routed, prefix: str, collections: Mapping[str, Any], items: Mapping[str, Any]
    ) -> None:
        self._app = app
        self._prefix = prefix
        self._collections = {name: prefix + name for name in collections}
        self._items = {name: f"{prefix}{name}/{{id}}" for name in items}

    def __call__(self, scope: Scope) -> str:
        path: str = scope["path"]
        if path.startswith(self._prefix) and not scope.get("root_path"):
            resource, slash, rest = path[len(self._prefix) :].partition("/")
            if not slash and resource in self._collections:
                return self._collections[resource]
            if rest and "/" not in rest and rest != "changes" and resource in self._items:
                return self._items[resource]
        for route in self._app.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", UNMATCHED) or UNMATCHED)
        return UNMATCHED


class ObservabilityMiddleware:
    """Metrics, the server span and the log context of every HTTP request."""

    def __init__(self, app: ASGIApp, *, routes: RouteNames) -> None:
        self.app = app
        self.routes = routes
        self.recording = metrics.recording()  # CHARPENTE_METRICS, set before the app is built

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in _METHODS else _OTHER_METHOD
        route = self.routes(scope)
        request_id = scope.get(REQUEST_ID_KEY)
        token = logcontext.enter(request_id, route)
        active = _active(method) if self.recording else _NOT_COUNTED
        active.inc()
        state = {"status": 500, "stream": False}
        span = _server_span(scope, method, route) if tracing.enabled() else None
        span_token = None if span is None else otel_context.attach(trace.set_span_in_context(span))

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                if _is_stream(message):
                    state["stream"] = True
                    active.dec()
                    if self.recording:
                        metrics.LIVE_STREAMS.inc()
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            status = int(state["status"])
            elapsed = time.perf_counter() - started
            if state["stream"] and self.recording:
                metrics.LIVE_STREAMS.dec()
                metrics.LIVE_STREAM_DURATION.observe(elapsed)
            elif self.recording:
                active.dec()
                _duration(method, route, status).observe(elapsed)
            if span is not None:
                _end_server_span(span, status)
            if span_token is not None:
                otel_context.detach(span_token)
            logcontext.leave(token)


class _NotCounted:
    """The gauge of a process that records no metrics."""

    def inc(self) -> None:
        pass

    def dec(self) -> None:
        pass


_NOT_COUNTED = _NotCounted()
_durations: dict[tuple[str, str, int], Any] = {}
_actives: dict[str, Any] = {}


def _duration(method: str, route: str, status: int) -> Any:
    """The histogram child of a method, route and status (bounded: templates, not paths)."""
    found = _durations.get((method, route, status))
    if found is None:
        error = str(status) if status >= 500 else ""
        found = metrics.REQUEST_DURATION.labels(method, route, str(status), error)
        _durations[method, route, status] = found
    return found


def _active(method: str) -> Any:
    found = _actives.get(method)
    if found is None:
        found = _actives[method] = metrics.ACTIVE_REQUESTS.labels(method)
    return found


def _is_stream(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).startswith(_EVENT_STREAM)
    return False


def _server_span(scope: Scope, method: str, route: str) -> trace.Span:
    carrier = {}
    for name, value in scope["headers"]:
        if name in (b"traceparent", b"tracestate"):
            carrier[name.decode("latin-1")] = value.decode("latin-1")
    parent = tracing.extract(carrier) if carrier else None
    attributes = {
        "http.request.method": method,
        "http.route": route,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    return tracing.tracer.start_span(
        f"{method} {route}", context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
    )


def _end_server_span(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(trace.Status(trace.StatusCode.ERROR))
    span.end()
