"""`/v{n}/_flags`: the admin API of feature flags (list, one flag, change it, its history).

Translating only: who may call (admins) and what a change may hold are decided by
runtime.flag_control.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from charpente.http.rest import JSON, MERGE_PATCH, caller_of, decode_json_body, encode_json
from charpente.runtime.flag_control import MAX_HISTORY, FlagControl

__all__ = ["MAX_BODY_BYTES", "flag_routes"]

MAX_BODY_BYTES = 16_384
_NO_STORE = {"Cache-Control": "no-store"}


def flag_routes(control: FlagControl, prefix: str) -> list[BaseRoute]:
    """The flag admin endpoints under `prefix` (`/v1`)."""
    endpoints = _Endpoints(control)
    return [
        Route(f"{prefix}/_flags", endpoints.collection, methods=["GET"]),
        Route(f"{prefix}/_flags/{{name}}", endpoints.item, methods=["GET", "PATCH"]),
        Route(f"{prefix}/_flags/{{name}}/history", endpoints.history, methods=["GET"]),
    ]


class _Endpoints:
    def __init__(self, control: FlagControl) -> None:
        self.control = control

    async def collection(self, request: Request) -> Response:
        _no_query(request)
        found = self.control.describe(caller_of(request))
        return _json({"data": found}, 200)

    async def item(self, request: Request) -> Response:
        caller, name = caller_of(request), request.path_params["name"]
        _no_query(request)
        if request.method == "GET":
            return _json(self.control.get(caller, name), 200)
        self.control.get(caller, name)  # 401/403/404 before reading the body
        body = await _body(request)
        return _json(await self.control.set(caller, name, body), 200)

    async def history(self, request: Request) -> Response:
        caller, name = caller_of(request), request.path_params["name"]
        _no_query(request)
        found = await self.control.history(caller, name, MAX_HISTORY)
        return _json({"data": found}, 200)


def _no_query(request: Request) -> None:
    if request.scope.get("query_string"):
        raise BadRequest(detail="this endpoint reads no query parameter")


async def _body(request: Request) -> object:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media not in (JSON, MERGE_PATCH):
        raise UnsupportedMediaType(detail=f"send {JSON} or {MERGE_PATCH}")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(detail=f"the body is over {MAX_BODY_BYTES} bytes")
    return decode_json_body(raw)


def _json(payload: object, status: int, headers: Mapping[str, str] = _NO_STORE) -> Response:
    return Response(encode_json(payload), status, dict(headers), JSON)
