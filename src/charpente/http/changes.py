"""`GET /v{n}/{resource}/changes`: a resource's live changes as Server-Sent Events.

Translating only: which changes a caller sees is runtime.changes' business. The answer is
`text/event-stream`: `retry: 3000` first, then one event per change

    id: <event id>
    event: posts.created
    data: {"id": …, "action": "created", "version": 1, "at": …, "actor": …,
           "changes": {…}, "record": {…}}        (one line)

a `: ping` comment when nothing was sent for HEARTBEAT seconds (so proxies keep the
connection), and `event: reset` when the history to replay was too long. The stream ends
when the client leaves, when the feed ends it (shutdown, falling behind, its maximum age;
then with a last `event: end` whose data gives the reason) or on an error; an EventSource
then reconnects with Last-Event-ID by itself.
"""

from __future__ import annotations

import logging

import anyio
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from charpente.design.model import Design
from charpente.errors import ApiError, BadRequest, NotAcceptable
from charpente.http.auth import client_ip_of
from charpente.http.problems import log_unexpected, request_id_of
from charpente.http.rest import CALLER_KEY, accepts, encode_json, first_headers, query_pairs
from charpente.runtime.caller import ANONYMOUS, Caller
from charpente.runtime.changes import ChangeFeed, Reset, Stream, StreamEnded
from charpente.runtime.event_view import Change

__all__ = ["EVENT_STREAM", "HEARTBEAT", "ChangesEndpoint", "changes_routes"]

logger = logging.getLogger("charpente.changes")

EVENT_STREAM = "text/event-stream"
HEARTBEAT = 15.0  # seconds without a byte sent before a `: ping`
RETRY_MS = 3000  # how long an EventSource waits before it reconnects
_LAST_WORDS = 1.0  # seconds granted to the end of the body of a stream that ended
_HEADERS = frozenset({b"accept", b"last-event-id"})
_PARAMS = ("filter", "last_event_id")
_ACCEPTABLE = frozenset({EVENT_STREAM, "text/*", "*/*"})
_START_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]
_PING = b": ping\n\n"


def changes_routes(
    feed: ChangeFeed, design: Design, *, heartbeat: float = HEARTBEAT
) -> list[BaseRoute]:
    """`/v{n}/{resource}/changes` for every resource (404 for those without events), to
    go before the generated routes (whose `/{id}` would take `changes` for an id)."""
    prefix = f"/v{design.api_version}/"
    return [
        Route(f"{prefix}{name}/changes", ChangesEndpoint(feed, name, heartbeat), methods=["GET"])
        for name in design.resources
    ]


class ChangesEndpoint:
    """The ASGI endpoint of one resource's changes (HEAD answers the headers only)."""

    def __init__(self, feed: ChangeFeed, resource: str, heartbeat: float = HEARTBEAT) -> None:
        if not 0 < heartbeat <= 3600:
            raise ValueError(f"heartbeat must be above 0 and at most 3600 seconds, not {heartbeat}")
        self.feed = feed
        self.resource = resource
        self.heartbeat = heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = first_headers(scope["headers"], _HEADERS)
        accept = headers.get(b"accept")
        if accept is not None and not accepts(accept.decode("latin-1"), _ACCEPTABLE):
            raise NotAcceptable(detail=f"this endpoint answers {EVENT_STREAM} only")
        params = _params(query_pairs(scope["query_string"]))
        last_event_id = headers.get(b"last-event-id")
        found = scope.get(CALLER_KEY, ANONYMOUS)
        stream = self.feed.open(
            self.resource,
            found if isinstance(found, Caller) else ANONYMOUS,
            filter=params.get("filter"),
            last_event_id=(
                last_event_id.decode("latin-1")
                if last_event_id is not None
                else params.get("last_event_id")
            ),
            client=client_ip_of(scope),
        )
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _START_HEADERS})
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            await self._pump(stream, scope, receive, send)
        finally:
            stream.close()

    async def _pump(self, stream: Stream, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream's changes until it ends or the client leaves, then end the body."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_cancel_when_gone, receive, tasks.cancel_scope)
            tasks.start_soon(_cancel_when_ended, stream, tasks.cancel_scope)
            try:
                await _send_body(send, b"retry: %d\n\n" % RETRY_MS)
                while True:
                    item = await stream.next(self.heartbeat)
                    await _send_body(send, _PING if item is None else frame(item))
            except StreamEnded as ended:
                if ended.reason != "closed":  # the client is still there: say why it ends
                    await _send_body(send, final_frame(ended.reason))
            except ApiError as exc:  # a dependency failed mid-stream (the database, say)
                logger.warning("a %s stream ended: %s", self.resource, exc.detail or exc.title)
            except Exception as exc:
                log_unexpected(exc, scope["path"], request_id_of(scope))
            tasks.cancel_scope.cancel()
        # A client that stopped reading has a full buffer: do not wait on it for long.
        with anyio.move_on_after(_LAST_WORDS):
            await send({"type": "http.response.body", "body": b""})


def frame(item: Change | Reset) -> bytes:
    """One Server-Sent Event: its id, its type and its data as one line of JSON."""
    if isinstance(item, Reset):
        data = encode_json({"reason": item.reason})
        return b"id: %s\nevent: reset\ndata: %s\n\n" % (item.id.encode(), data)
    data = encode_json(item.data)
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (item.id.encode(), item.type.encode(), data)


def final_frame(reason: str) -> bytes:
    """The last event of a stream the server ends: `event: end` with the reason (no id, so
    that the client resumes from the last change it got)."""
    return b"event: end\ndata: %s\n\n" % encode_json({"reason": reason})


async def _send_body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _cancel_when_gone(receive: Receive, cancel_scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    cancel_scope.cancel()


async def _cancel_when_ended(stream: Stream, cancel_scope: anyio.CancelScope) -> None:
    """End the response when the feed ends the stream, even while a send waits on a client
    that stopped reading (the very case of a stream that fell behind)."""
    await stream.wait_ended()
    cancel_scope.cancel()


def _params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    given: dict[str, str] = {}
    for name, value in pairs:
        if name not in _PARAMS:
            shown = name if len(name) <= 64 else name[:64] + "…"
            raise BadRequest(detail=f"unknown query parameter `{shown}`")
        if name in given:
            raise BadRequest(detail=f"`{name}` given twice")
        if not value:
            raise BadRequest(detail=f"`{name}` is empty")
        given[name] = value
    return given
