"""REST translation: HTTP requests → Service calls, results → JSON responses. No decisions here.

Handles the wire format only: query strings, JSON bodies and content types, Accept,
ETag / If-Match / If-None-Match, Location, Link, status codes.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.compile.plan import Record
from charpente.design.model import Design
from charpente.errors import BadRequest, MethodNotAllowed, NotAcceptable, UnsupportedMediaType
from charpente.http.problems import request_id_of
from charpente.runtime.service import IdempotencyKey, Precondition, Service

__all__ = [
    "JSON",
    "MAX_JSON_DEPTH",
    "MAX_QUERY_BYTES",
    "encode_json",
    "parse_if_match",
    "query_pairs",
    "read_json",
    "rest_routes",
]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
MAX_QUERY_BYTES = 8192
MAX_QUERY_PARAMS = 64
MAX_JSON_DEPTH = 64

encode_json: Callable[[object], bytes] = msgspec.json.Encoder().encode
"""Records → JSON: Decimal as a string (exact), dates ISO, datetimes RFC 3339 with Z."""

_decode_json = msgspec.json.Decoder().decode
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e]*)"\s*')
_ACCEPTABLE = frozenset({JSON, "application/problem+json", "application/*", "*/*"})
_POST_TYPES = frozenset({JSON})
_PATCH_TYPES = frozenset({JSON, MERGE_PATCH})

Handler = Callable[[Request], Awaitable[Response]]


def rest_routes(service: Service, design: Design) -> list[BaseRoute]:
    """`/v{n}/{resource}` (GET, POST) and `/v{n}/{resource}/{id}` (GET, PATCH, DELETE)."""
    routes: list[BaseRoute] = []
    for name in design.resources:
        endpoints = _ResourceEndpoints(service, name, f"/v{design.api_version}/{name}")
        routes.append(_route(endpoints.base, {"GET": endpoints.list, "POST": endpoints.create}))
        item = {"GET": endpoints.get, "PATCH": endpoints.update, "DELETE": endpoints.delete}
        routes.append(_route(endpoints.base + "/{id}", item))
    return routes


class _ResourceEndpoints:
    """The five endpoints of one resource, with what they need computed once."""

    def __init__(self, service: Service, name: str, base: str) -> None:
        self.service = service
        self.name = name
        self.base = base

    async def list(self, request: Request) -> Response:
        _check_accept(request)
        params = query_pairs(request.scope["query_string"])
        result = await self.service.list(self.name, params)
        page: dict[str, object] = {"limit": result.limit, "next_cursor": result.next_cursor}
        if result.total is not None:
            page["total"] = result.total
        headers = None
        if result.next_cursor is not None:
            headers = {"Link": _next_link(request.url.path, params, result.next_cursor)}
        return Response(encode_json({"data": result.data, "page": page}), 200, headers, JSON)

    async def get(self, request: Request) -> Response:
        _check_accept(request)
        params = query_pairs(request.scope["query_string"])
        item = await self.service.get(self.name, request.path_params["id"], params)
        etag = f'"{item.version}"'
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and _none_match_hits(if_none_match, etag):
            return Response(status_code=304, headers={"ETag": etag})
        return Response(encode_json(item.record), 200, {"ETag": etag}, JSON)

    async def create(self, request: Request) -> Response:
        _check_accept(request)
        body = await read_json(request, _POST_TYPES)
        key = request.headers.get("idempotency-key")
        idempotency = None if key is None else IdempotencyKey(key, self.base, self._rendered)
        request_id = request_id_of(request.scope)
        created = await self.service.create(
            self.name, body, request_id=request_id, idempotency=idempotency
        )
        if created.replay is not None:
            replay = created.replay
            headers = {"Idempotent-Replayed": "true", "ETag": '"1"'}
            if replay.location is not None:
                headers["Location"] = replay.location
            return Response(replay.body, replay.status, headers, JSON)
        assert created.item is not None
        body_bytes, location = self._rendered(created.item.record)
        headers = {"Location": location, "ETag": f'"{created.item.version}"'}
        return Response(body_bytes, 201, headers, JSON)

    async def update(self, request: Request) -> Response:
        _check_accept(request)
        patch = await read_json(request, _PATCH_TYPES)
        item = await self.service.update(
            self.name,
            request.path_params["id"],
            patch,
            if_match=_if_match(request),
            request_id=request_id_of(request.scope),
        )
        return Response(encode_json(item.record), 200, {"ETag": f'"{item.version}"'}, JSON)

    async def delete(self, request: Request) -> Response:
        _check_accept(request)
        await self.service.delete(
            self.name,
            request.path_params["id"],
            if_match=_if_match(request),
            request_id=request_id_of(request.scope),
        )
        return Response(status_code=204)

    def _rendered(self, record: Record) -> tuple[bytes, str]:
        """A created record's body and Location (also what idempotent replays send)."""
        return encode_json(record), f"{self.base}/{record['id']}"


def _route(path: str, handlers: Mapping[str, Handler]) -> Route:
    methods = sorted(handlers)
    if "GET" in handlers:
        handlers = {**handlers, "HEAD": handlers["GET"]}

    async def endpoint(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None:  # Starlette answers 405 before; this guards direct calls
            raise MethodNotAllowed(headers={"Allow": ", ".join(methods)})
        return await handler(request)

    return Route(path, endpoint, methods=methods)


def query_pairs(raw: bytes) -> list[tuple[str, str]]:
    """A query string as (name, value) pairs; BadRequest when it is not cleanly encoded."""
    if not raw:
        return []
    if len(raw) > MAX_QUERY_BYTES:
        raise BadRequest(detail=f"the query string is over {MAX_QUERY_BYTES} bytes")
    try:
        text = raw.decode("ascii")
        if _BAD_PERCENT.search(text):
            raise ValueError("a % not followed by two hex digits")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_PARAMS
        )
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadRequest(detail="the query string is not valid percent-encoded UTF-8") from exc
    if any("\x00" in name or "\x00" in value for name, value in pairs):
        raise BadRequest(detail="the query string contains a NUL character")
    return pairs


async def read_json(request: Request, media_types: frozenset[str]) -> object:
    """The body as JSON: 415 for another content type, 400 when malformed or too deep."""
    _check_content_type(request.headers.get("content-type"), media_types)
    body = await request.body()
    try:
        value = _decode_json(body)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(detail=f"the body is not valid JSON: {_reason(exc)}") from None
    if len(body) > 2 * MAX_JSON_DEPTH and _depth_over(value, MAX_JSON_DEPTH):
        raise BadRequest(detail=f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def parse_if_match(value: str) -> Precondition:
    """`*` or a list of entity tags; only strong tags of our versions can ever match."""
    if value.strip() == "*":
        return Precondition(None)
    versions: set[int] = set()
    for part in value.split(","):
        match = _ENTITY_TAG.fullmatch(part)
        if match is None:
            raise BadRequest(detail='If-Match must be "*" or entity tags like "3"')
        weak, tag = match.groups()
        if not weak and tag.isdigit() and len(tag) <= 18:
            versions.add(int(tag))
    return Precondition(frozenset(versions))


def _if_match(request: Request) -> Precondition | None:
    value = request.headers.get("if-match")
    return None if value is None else parse_if_match(value)


def _none_match_hits(value: str, etag: str) -> bool:
    """If-None-Match uses weak comparison: `W/"3"` matches `"3"`; `*` matches anything."""
    if value.strip() == "*":
        return True
    return any(part.strip().removeprefix("W/") == etag for part in value.split(","))


def _check_accept(request: Request) -> None:
    accept = request.headers.get("accept")
    if accept is not None and not _accepts_json(accept):
        raise NotAcceptable(detail="this API answers application/json only")


@functools.lru_cache(maxsize=256)
def _accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media, _, params = part.partition(";")
        if media.strip().lower() in _ACCEPTABLE and not _q_is_zero(params):
            return True
    return False


def _q_is_zero(params: str) -> bool:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip()) == 0
            except ValueError:
                return False
    return False


def _check_content_type(header: str | None, allowed: frozenset[str]) -> None:
    media, _, params = (header or "").partition(";")
    charset = params.strip().lower().removeprefix("charset=").strip('"')
    if media.strip().lower() not in allowed or (params.strip() and charset != "utf-8"):
        wanted = " or ".join(sorted(allowed))
        raise UnsupportedMediaType(detail=f"send the body as {wanted} (UTF-8)")


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "it nests too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8"
    return str(exc)[:200]


def _depth_over(value: object, limit: int) -> bool:
    """Whether arrays and objects nest deeper than `limit` (iterative: no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Sequence[object]
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _next_link(path: str, params: Sequence[tuple[str, str]], cursor: str) -> str:
    kept = [(k, v) for k, v in params if k != "cursor"]
    query = urllib.parse.urlencode([*kept, ("cursor", cursor)], quote_via=urllib.parse.quote)
    return f'<{path}?{query}>; rel="next"'
