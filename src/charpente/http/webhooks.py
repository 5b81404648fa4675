"""`/v{n}/webhooks`: the admin API of webhook endpoints and of their deliveries.

Translating only: who may call (admins), what a body may hold and which URLs are refused
are decided by runtime.webhooks. `{ref}` is an endpoint's id, or its name (the design's
webhooks have only a name).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from charpente.http.rest import (
    JSON,
    MERGE_PATCH,
    caller_of,
    decode_json_body,
    encode_json,
    query_pairs,
)
from charpente.runtime.webhook_requests import MAX_PAGE, read_cursor, read_limit, read_state
from charpente.runtime.webhooks import Webhooks

__all__ = ["MAX_BODY_BYTES", "webhook_routes"]

MAX_BODY_BYTES = 16_384
_NO_STORE = {"Cache-Control": "no-store"}
_DELIVERY_PARAMETERS = frozenset({"state", "limit", "cursor"})


def webhook_routes(webhooks: Webhooks, prefix: str) -> list[BaseRoute]:
    """The webhook admin endpoints under `prefix` (`/v1`)."""
    endpoints = _Endpoints(webhooks, prefix)
    return [
        Route(f"{prefix}/webhooks", endpoints.collection, methods=["GET", "POST"]),
        Route(f"{prefix}/webhooks/{{ref}}", endpoints.item, methods=["GET", "PATCH", "DELETE"]),
        Route(f"{prefix}/webhooks/{{ref}}/deliveries", endpoints.deliveries, methods=["GET"]),
    ]


class _Endpoints:
    def __init__(self, webhooks: Webhooks, prefix: str) -> None:
        self.webhooks = webhooks
        self.prefix = prefix

    async def collection(self, request: Request) -> Response:
        caller = caller_of(request)
        _parameters(request, frozenset())
        if request.method == "GET":
            found = await self.webhooks.list_endpoints(caller)
            page = {"limit": MAX_PAGE, "next_cursor": None}
            return _json({"data": found, "page": page}, 200, _NO_STORE)
        body = await _body(request, frozenset({JSON}))
        created = await self.webhooks.create_endpoint(caller, body)
        location = f"{self.prefix}/webhooks/{created['id']}"
        return _json(created, 201, {**_NO_STORE, "Location": location})  # the secret, once

    async def item(self, request: Request) -> Response:
        caller, ref = caller_of(request), request.path_params["ref"]
        _parameters(request, frozenset())
        if request.method == "GET":
            return _json(await self.webhooks.get_endpoint(caller, ref), 200, _NO_STORE)
        if request.method == "PATCH":
            body = await _body(request, frozenset({JSON, MERGE_PATCH}))
            return _json(await self.webhooks.update_endpoint(caller, ref, body), 200, _NO_STORE)
        await self.webhooks.delete_endpoint(caller, ref)
        return Response(status_code=204)

    async def deliveries(self, request: Request) -> Response:
        caller, ref = caller_of(request), request.path_params["ref"]
        query = _parameters(request, _DELIVERY_PARAMETERS)
        limit = read_limit(query.get("limit"))
        found, cursor = await self.webhooks.list_deliveries(
            caller,
            ref,
            state=read_state(query.get("state")),
            limit=limit,
            after=read_cursor(query.get("cursor")),
        )
        page = {"limit": limit, "next_cursor": cursor}
        return _json({"data": found, "page": page}, 200, _NO_STORE)


def _parameters(request: Request, known: frozenset[str]) -> Mapping[str, str]:
    """The query parameters, each at most once; 400 for one the endpoint does not read."""
    found: dict[str, str] = {}
    for name, value in query_pairs(request.scope.get("query_string", b"")):
        if name not in known:
            raise BadRequest(detail=f"unknown query parameter {name[:100]!r}")
        if name in found:
            raise BadRequest(detail=f"{name} is given twice")
        found[name] = value
    return found


async def _body(request: Request, media_types: frozenset[str]) -> object:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in media_types:
        raise UnsupportedMediaType(detail=f"send {' or '.join(sorted(media_types))}")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(detail=f"the body is over {MAX_BODY_BYTES} bytes")
    return decode_json_body(raw)


def _json(payload: object, status: int, headers: Mapping[str, str]) -> Response:
    return Response(encode_json(payload), status, dict(headers), JSON)
