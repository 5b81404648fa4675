"""OFREP, the OpenFeature Remote Evaluation Protocol: any OpenFeature SDK with an OFREP
provider reads the same flag values as the rules do.

`POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag, `POST /ofrep/v1/evaluate/flags`
all of them (with an ETag: `If-None-Match` gets a 304 while nothing changed for this
caller). The caller is who the bearer token says; the context's `targetingKey` is the
client id an anonymous caller (or a `by: client` flag) is bucketed by. Roles come only from
the token, never from the context.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.errors import BadRequest
from charpente.http.rest import JSON, caller_of, decode_json_body, encode_json
from charpente.runtime.caller import Caller
from charpente.runtime.flags import FlagBoard, explained_value, valid_client_id

__all__ = ["MAX_BODY_BYTES", "ofrep_routes"]

MAX_BODY_BYTES = 16_384
_HEADERS = {"Cache-Control": "no-store"}


def ofrep_routes(board: FlagBoard) -> list[BaseRoute]:
    """The OFREP endpoints over `board` (the flags this process evaluates with)."""
    endpoints = _Endpoints(board)
    return [
        Route("/ofrep/v1/evaluate/flags", endpoints.bulk, methods=["POST"]),
        Route("/ofrep/v1/evaluate/flags/{key}", endpoints.one, methods=["POST"]),
    ]


class _Endpoints:
    def __init__(self, board: FlagBoard) -> None:
        self.board = board

    async def one(self, request: Request) -> Response:
        key = request.path_params["key"]
        context = await _context(request)
        if context is None:
            return _error(key, "INVALID_CONTEXT", "the context must be a JSON object", 400)
        if key not in self.board.flags:
            return _error(key, "FLAG_NOT_FOUND", f"no flag {key[:100]!r}", 404)
        return _json(self._evaluated(key, caller_of(request), _targeting(context)), 200)

    async def bulk(self, request: Request) -> Response:
        context = await _context(request)
        if context is None:
            body = {"errorCode": "INVALID_CONTEXT", "errorDetails": "not a JSON object"}
            return _json(body, 400)
        caller, client = caller_of(request), _targeting(context)
        flags = [self._evaluated(name, caller, client) for name in sorted(self.board.flags)]
        payload = encode_json({"flags": flags})
        etag = f'"{hashlib.sha256(payload).hexdigest()[:32]}"'
        headers = {**_HEADERS, "ETag": etag}
        if etag in _tags(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        return Response(payload, 200, headers, JSON)

    def _evaluated(self, name: str, caller: Caller, client: str | None) -> dict[str, object]:
        flag, setting = self.board.flags[name], self.board.settings[name]
        value, reason = explained_value(flag, setting, caller, client)
        found: dict[str, object] = {"key": name, "reason": reason, "metadata": {}}
        if isinstance(value, bool):
            found.update(value=value, variant="on" if value else "off")
        elif value is None:
            found["variant"] = None  # off: the SDK's default value applies
        else:
            found.update(value=value, variant=value)
        return found


async def _context(request: Request) -> dict[str, object] | None:
    """The request's `context` (an empty one without a body); None when it is not an object."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(detail=f"the body is over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    body = decode_json_body(raw)
    if not isinstance(body, dict):
        return None
    context = body.get("context", {})
    return context if isinstance(context, dict) else None


def _targeting(context: dict[str, object]) -> str | None:
    key = context.get("targetingKey")
    return valid_client_id(key) if isinstance(key, str) else None


def _tags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {part.strip().removeprefix("W/") for part in header.split(",")}


def _error(key: str, code: str, details: str, status: int) -> Response:
    return _json({"key": key[:100], "errorCode": code, "errorDetails": details}, status)


def _json(payload: object, status: int) -> Response:
    return Response(encode_json(payload), status, dict(_HEADERS), JSON)
