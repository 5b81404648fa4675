"""The fast path: a pure-ASGI dispatcher that serves the generated REST routes itself.

It finds `/v{n}/{resource}[/{id}]` with one dict lookup, reads the few headers it needs
in one pass and does in one layer what the middleware stack does for every other path
(request id, body limit, problem+json, security headers, access log, generic 500).
Every path or method it does not own goes, untouched, to the Starlette app behind it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from charpente.http.middleware import (
    CLIENT_GONE,
    RawHeaders,
    declared_length_error,
    log_access,
    response_headers,
    sane_request_id,
    too_large,
    with_edge_headers,
)
from charpente.http.problems import (
    REQUEST_ID_KEY,
    internal_error_response,
    log_unexpected,
    problem_response,
)
from charpente.http.rest import (
    CALLER_KEY,
    REST_HEADERS,
    Endpoint,
    Reply,
    RestCall,
    RestTable,
    first_headers,
)
from charpente.runtime.caller import ANONYMOUS
from charpente.runtime.ids import new_id

__all__ = ["RestDispatcher"]

_EDGE_HEADERS = REST_HEADERS | {b"x-request-id", b"content-length"}
_NO_ROUTES: Mapping[str, Endpoint] = {}


class RestDispatcher:
    """Serves `table`'s routes directly; hands any other request to `fallback`.

    `exception_handlers` are the app's (`{exception class or status: handler}`): an error
    an endpoint raises is rendered by the same handler Starlette would have used.
    """

    def __init__(
        self,
        fallback: ASGIApp,
        table: RestTable,
        *,
        max_body_bytes: int,
        exception_handlers: Mapping[Any, Any],
    ) -> None:
        self.fallback = fallback
        self.max_body_bytes = max_body_bytes
        self._prefix = table.prefix
        self._collections = table.collections
        self._items = table.items
        self._by_status = {k: v for k, v in exception_handlers.items() if isinstance(k, int)}
        self._by_class = {k: v for k, v in exception_handlers.items() if isinstance(k, type)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            found = self._find(scope["path"], scope["method"])
            if found is not None:
                await self._serve(scope, receive, send, *found)
                return
        await self.fallback(scope, receive, send)

    def _find(self, path: str, method: str) -> tuple[Endpoint, str] | None:
        """The endpoint and id for a path and method this dispatcher owns, else None.

        Anything unusual (an empty id, more segments, a method the route lacks) is left to
        Starlette, which answers it exactly as before (404, 405 with Allow, redirects), and
        so is `/{resource}/changes`, the live changes' own route (http.changes)."""
        if not path.startswith(self._prefix):
            return None
        resource, slash, item_id = path[len(self._prefix) :].partition("/")
        if not slash:
            endpoint = self._collections.get(resource, _NO_ROUTES).get(method)
        elif item_id and "/" not in item_id and item_id != "changes":
            endpoint = self._items.get(resource, _NO_ROUTES).get(method)
        else:
            return None
        return None if endpoint is None else (endpoint, item_id)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, endpoint: Endpoint, item_id: str
    ) -> None:
        """One request, start to end: what RequestContextMiddleware does, inlined."""
        started_at = time.perf_counter()
        headers = first_headers(scope["headers"], _EDGE_HEADERS)
        request_id = scope.get(REQUEST_ID_KEY) or sane_request_id(headers.get(b"x-request-id"))
        request_id = request_id or new_id()
        scope[REQUEST_ID_KEY] = request_id
        extra = response_headers(request_id, scope.get("scheme") == "https")
        status, started = 500, False
        try:
            reply = await self._answer(scope, receive, endpoint, item_id, headers, request_id)
            status, started = reply.status, True
            await _send_reply(send, reply, extra)
        except ClientDisconnect:
            status = CLIENT_GONE  # the client left while sending its body: nobody to answer
        except Exception as exc:
            log_unexpected(exc, scope["path"], request_id)
            if started:
                raise  # too late for a clean answer: let the server drop the connection
            status, started = 500, True
            await _send_reply(
                send, _reply_of(internal_error_response(scope["path"], request_id)), extra
            )
        finally:
            log_access(scope, status, started_at, request_id)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        endpoint: Endpoint,
        item_id: str,
        headers: dict[bytes, bytes],
        request_id: str,
    ) -> Reply:
        """The endpoint's reply, or the problem an error calls for; other errors propagate."""
        declared = headers.get(b"content-length")
        if declared is not None:
            error = declared_length_error(declared, self.max_body_bytes)
            if error is not None:
                return _reply_of(problem_response(error, scope["path"], request_id))
        limit = self.max_body_bytes if declared is None else None
        body = _BodyReader(receive, limit)
        call = RestCall(
            scope["path"],
            scope["query_string"],
            headers,
            item_id,
            request_id,
            body.read,
            scope.get(CALLER_KEY, ANONYMOUS),
        )
        try:
            return await endpoint(call)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            reply = await _handled(handler, Request(scope, receive), exc)
            exc.__traceback__ = None  # a reused exception instance would keep growing it
            return reply

    def _handler_for(self, exc: Exception) -> Any:
        """The app's handler for `exc`, looked up the way Starlette does (status, then MRO)."""
        if isinstance(exc, HTTPException) and exc.status_code in self._by_status:
            return self._by_status[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self._by_class:
                return self._by_class[cls]
        return None


class _BodyReader:
    """Reads a request body; over `limit` bytes (when the length was not declared) is a 413."""

    __slots__ = ("limit", "receive")

    def __init__(self, receive: Receive, limit: int | None) -> None:
        self.receive = receive
        self.limit = limit

    async def read(self) -> bytes:
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            received += len(chunk)
            if self.limit is not None and received > self.limit:
                raise too_large(self.limit)
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def _handled(handler: Any, request: Request, exc: Exception) -> Reply:
    """What an exception handler answers (a sync one runs in a thread, as in Starlette)."""
    if inspect.iscoroutinefunction(handler):
        response = await handler(request, exc)
    else:
        response = await run_in_threadpool(handler, request, exc)
        if inspect.isawaitable(response):
            response = await response
    return _reply_of(response)


def _reply_of(response: Response) -> Reply:
    return Reply(response.status_code, response.raw_headers, bytes(response.body))


async def _send_reply(send: Send, reply: Reply, extra: RawHeaders) -> None:
    headers = with_edge_headers(reply.headers, extra)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
