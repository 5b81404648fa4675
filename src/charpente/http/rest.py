"""REST translation: HTTP requests → Service calls, results → JSON responses. No decisions here.

Handles the wire format only: query strings, JSON bodies and content types, Accept,
ETag / If-Match / If-None-Match, Location, Link, status codes. The endpoints read a
`RestCall` and answer a `Reply`, so the fast path (http.dispatch) and Starlette serve
them alike.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.compile.plan import Record
from charpente.design.model import Design
from charpente.errors import BadRequest, MethodNotAllowed, NotAcceptable, UnsupportedMediaType
from charpente.http.problems import request_id_of
from charpente.runtime.caller import ANONYMOUS, Caller
from charpente.runtime.service import IdempotencyKey, Precondition, Service

__all__ = [
    "JSON",
    "MAX_JSON_DEPTH",
    "MAX_QUERY_BYTES",
    "REST_HEADERS",
    "Endpoint",
    "Reply",
    "RestCall",
    "RestTable",
    "encode_json",
    "first_headers",
    "parse_if_match",
    "query_pairs",
    "read_json",
    "rest_routes",
    "rest_table",
]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
MAX_QUERY_BYTES = 8192
MAX_QUERY_PARAMS = 64
MAX_JSON_DEPTH = 64

CALLER_KEY = "charpente.caller"  # where authentication puts the Caller in the scope
REST_HEADERS = frozenset(
    {b"accept", b"content-type", b"if-match", b"if-none-match", b"idempotency-key"}
)
"""The request headers the endpoints read."""

encode_json: Callable[[object], bytes] = msgspec.json.Encoder().encode
"""Records → JSON: Decimal as a string (exact), dates ISO, datetimes RFC 3339 with Z."""

_decode_json = msgspec.json.Decoder().decode
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e]*)"\s*')
_ACCEPTABLE = frozenset({JSON, "application/problem+json", "application/*", "*/*"})
_POST_TYPES = frozenset({JSON})
_PATCH_TYPES = frozenset({JSON, MERGE_PATCH})
_JSON_TYPE = (b"content-type", JSON.encode("latin-1"))
_REPLAYED = (b"idempotent-replayed", b"true")
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(slots=True)
class RestCall:
    """One request to a generated route, as the endpoints read it.

    `headers` holds the first value of each of REST_HEADERS that was sent (names lowercase);
    `path` is the URL path (the list's Link repeats it); `item_id` is "" on collections;
    `body()` reads the request body, once.
    """

    path: str
    query: bytes
    headers: Mapping[bytes, bytes]
    item_id: str
    request_id: str | None
    body: Callable[[], Awaitable[bytes]]
    caller: Caller = ANONYMOUS

    def header(self, name: bytes) -> str | None:
        """A header's value as text (Latin-1, as HTTP defines), or None when not sent."""
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


@dataclass(slots=True)
class Reply:
    """A complete answer: status, raw headers (lowercase names, lengths included), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


Endpoint = Callable[[RestCall], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class RestTable:
    """The generated routes: `/v{n}/{resource}` and `/v{n}/{resource}/{id}`, their endpoints
    by resource and method (HEAD included wherever GET is)."""

    prefix: str
    collections: Mapping[str, Mapping[str, Endpoint]]
    items: Mapping[str, Mapping[str, Endpoint]]
    histories: Mapping[str, Mapping[str, Endpoint]] = field(default_factory=dict)

    def routes(self) -> list[BaseRoute]:
        """The same endpoints as Starlette routes (what serves these paths behind a root path,
        and answers 405 with Allow for the methods they lack)."""
        routes: list[BaseRoute] = []
        for name, handlers in self.collections.items():
            routes.append(_route(self.prefix + name, handlers))
            routes.append(_route(self.prefix + name + "/{id}", self.items[name]))
            if name in self.histories:
                routes.append(_route(self.prefix + name + "/{id}/history", self.histories[name]))
        return routes


def rest_table(service: Service, design: Design) -> RestTable:
    """The five endpoints of every resource of `design`, over `service`."""
    prefix = f"/v{design.api_version}/"
    collections: dict[str, Mapping[str, Endpoint]] = {}
    items: dict[str, Mapping[str, Endpoint]] = {}
    histories: dict[str, Mapping[str, Endpoint]] = {}
    for name in design.resources:
        endpoints = _ResourceEndpoints(service, name, prefix + name)
        collections[name] = _with_head({"GET": endpoints.list, "POST": endpoints.create})
        item = {"GET": endpoints.get, "PATCH": endpoints.update, "DELETE": endpoints.delete}
        items[name] = _with_head(item)
        histories[name] = _with_head({"GET": endpoints.history})
    return RestTable(prefix, collections, items, histories)


def rest_routes(service: Service, design: Design) -> list[BaseRoute]:
    """`/v{n}/{resource}` (GET, POST) and `/v{n}/{resource}/{id}` (GET, PATCH, DELETE)."""
    return rest_table(service, design).routes()


def first_headers(
    raw: Iterable[tuple[bytes, bytes]], wanted: frozenset[bytes]
) -> dict[bytes, bytes]:
    """The first value of each `wanted` header in an ASGI header list (one pass)."""
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        if name in wanted and name not in found:
            found[name] = value
    return found


class _ResourceEndpoints:
    """The five endpoints of one resource, with what they need computed once."""

    def __init__(self, service: Service, name: str, base: str) -> None:
        self.service = service
        self.name = name
        self.base = base

    async def list(self, call: RestCall) -> Reply:
        _check_accept(call)
        params = query_pairs(call.query)
        result = await self.service.list(self.name, params, caller=call.caller)
        page: dict[str, object] = {"limit": result.limit, "next_cursor": result.next_cursor}
        if result.total is not None:
            page["total"] = result.total
        headers = []
        if result.next_cursor is not None:
            link = _next_link(call.path, params, result.next_cursor)
            headers.append((b"link", link.encode("latin-1")))
        return _json_reply(encode_json({"data": result.data, "page": page}), 200, headers)

    async def get(self, call: RestCall) -> Reply:
        _check_accept(call)
        params = query_pairs(call.query)
        item = await self.service.get(self.name, call.item_id, params, caller=call.caller)
        if item.past:  # a past state: no entity tag to revalidate or write against
            return _json_reply(encode_json(item.record), 200, [_NO_STORE])
        etag = f'"{item.etag}"'
        etag_header = [(b"etag", etag.encode("latin-1"))]
        if_none_match = call.header(b"if-none-match")
        if if_none_match is not None and _none_match_hits(if_none_match, etag):
            return Reply(304, etag_header)
        return _json_reply(encode_json(item.record), 200, etag_header)

    async def history(self, call: RestCall) -> Reply:
        _check_accept(call)
        params = query_pairs(call.query)
        result = await self.service.history(self.name, call.item_id, params, caller=call.caller)
        page = {"limit": result.limit, "next_cursor": result.next_cursor}
        headers = []
        if result.next_cursor is not None:
            link = _next_link(call.path, params, result.next_cursor)
            headers.append((b"link", link.encode("latin-1")))
        return _json_reply(encode_json({"data": result.data, "page": page}), 200, headers)

    async def create(self, call: RestCall) -> Reply:
        _check_accept(call)
        _refuse_query(call)
        body = await read_json(call, _POST_TYPES)
        key = call.header(b"idempotency-key")
        idempotency = None if key is None else IdempotencyKey(key, self.base, self._rendered)
        created = await self.service.create(
            self.name,
            body,
            request_id=call.request_id,
            idempotency=idempotency,
            caller=call.caller,
        )
        if created.replay is not None:
            replay = created.replay
            headers = [_REPLAYED, (b"etag", b'"1"')]
            if replay.location is not None:
                headers.append((b"location", replay.location.encode("latin-1")))
            return _json_reply(replay.body, replay.status, headers)
        assert created.item is not None
        body_bytes, location = self._rendered(created.item.record)
        headers = [
            (b"location", location.encode("latin-1")),
            (b"etag", f'"{created.item.version}"'.encode("latin-1")),
        ]
        return _json_reply(body_bytes, 201, headers)

    async def update(self, call: RestCall) -> Reply:
        _check_accept(call)
        _refuse_query(call)
        patch = await read_json(call, _PATCH_TYPES)
        item = await self.service.update(
            self.name,
            call.item_id,
            patch,
            if_match=_if_match(call),
            request_id=call.request_id,
            caller=call.caller,
        )
        etag = f'"{item.version}"'.encode("latin-1")
        return _json_reply(encode_json(item.record), 200, [(b"etag", etag)])

    async def delete(self, call: RestCall) -> Reply:
        _check_accept(call)
        _refuse_query(call)
        await self.service.delete(
            self.name,
            call.item_id,
            if_match=_if_match(call),
            request_id=call.request_id,
            caller=call.caller,
        )
        return Reply(204, [])

    def _rendered(self, record: Record) -> tuple[bytes, str]:
        """A created record's body and Location (also what idempotent replays send)."""
        return encode_json(record), f"{self.base}/{record['id']}"


def _json_reply(body: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> Reply:
    """A JSON answer with Content-Length (except where a status forbids a body) and type."""
    if status >= 200 and status not in (204, 304):
        headers.append((b"content-length", b"%d" % len(body)))
    headers.append(_JSON_TYPE)
    return Reply(status, headers, body)


def _refuse_query(call: RestCall) -> None:
    """Writes take no query parameter: the first one sent is named in a 400."""
    for name, _ in query_pairs(call.query):
        shown = name if len(name) <= 64 else name[:64] + "…"
        raise BadRequest(detail=f"unknown query parameter `{shown}`")


def _with_head(handlers: Mapping[str, Endpoint]) -> dict[str, Endpoint]:
    return {**handlers, "HEAD": handlers["GET"]}


def _route(path: str, handlers: Mapping[str, Endpoint]) -> Route:
    """A Starlette route over the endpoints; Starlette adds HEAD where GET is."""
    methods = sorted(m for m in handlers if m != "HEAD")

    async def endpoint(request: Request) -> Response:
        handler = handlers.get(request.method)
        if handler is None:  # Starlette answers 405 before; this guards direct calls
            raise MethodNotAllowed(headers={"Allow": ", ".join(methods)})
        return _response(await handler(_call_of(request)))

    return Route(path, endpoint, methods=methods)


def caller_of(request: Request) -> Caller:
    """Who is calling: what authentication put in the scope, else anonymous."""
    found = request.scope.get(CALLER_KEY, ANONYMOUS)
    return found if isinstance(found, Caller) else ANONYMOUS


def _call_of(request: Request) -> RestCall:
    scope = request.scope
    return RestCall(
        path=request.url.path,
        query=scope["query_string"],
        headers=first_headers(scope["headers"], REST_HEADERS),
        item_id=request.path_params.get("id", ""),
        request_id=request_id_of(scope),
        body=request.body,
        caller=scope.get(CALLER_KEY, ANONYMOUS),
    )


def _response(reply: Reply) -> Response:
    response = Response(reply.body, reply.status)
    response.raw_headers = reply.headers
    return response


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


async def read_json(call: RestCall, media_types: frozenset[str]) -> object:
    """The body as JSON: 415 for another content type, 400 when malformed or too deep."""
    _check_content_type(call.header(b"content-type"), media_types)
    return decode_json_body(await call.body())


def decode_json_body(body: bytes) -> object:
    """A request body as JSON: 400 when malformed or nested too deep."""
    try:
        value = _decode_json(body)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        raise BadRequest(detail=f"the body is not valid JSON: {_reason(exc)}") from None
    if len(body) > 2 * MAX_JSON_DEPTH and _depth_over(value, MAX_JSON_DEPTH):
        raise BadRequest(detail=f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def parse_if_match(value: str) -> Precondition:
    """`*` or a list of entity tags; only strong tags of our versions can ever match (an
    expanded GET's `"<version>-<hash>"` is compared by its version)."""
    if value.strip() == "*":
        return Precondition(None)
    versions: set[int] = set()
    for part in value.split(","):
        match = _ENTITY_TAG.fullmatch(part)
        if match is None:
            raise BadRequest(detail='If-Match must be "*" or entity tags like "3"')
        weak, tag = match.groups()
        version = tag.partition("-")[0]  # an expanded GET's tag: the record's version first
        if not weak and version.isdigit() and len(version) <= 18:
            versions.add(int(version))
    return Precondition(frozenset(versions))


def _if_match(call: RestCall) -> Precondition | None:
    value = call.header(b"if-match")
    return None if value is None else parse_if_match(value)


def _none_match_hits(value: str, etag: str) -> bool:
    """If-None-Match uses weak comparison: `W/"3"` matches `"3"`; `*` matches anything."""
    if value.strip() == "*":
        return True
    return any(part.strip().removeprefix("W/") == etag for part in value.split(","))


def _check_accept(call: RestCall) -> None:
    accept = call.header(b"accept")
    if accept is not None and not _accepts_json(accept):
        raise NotAcceptable(detail="this API answers application/json only")


def _accepts_json(accept: str) -> bool:
    return accepts(accept, _ACCEPTABLE)


@functools.lru_cache(maxsize=256)
def accepts(accept: str, acceptable: frozenset[str]) -> bool:
    """Whether an Accept header takes one of the `acceptable` media ranges (q above 0)."""
    for part in accept.split(","):
        media, _, params = part.partition(";")
        if media.strip().lower() in acceptable and not _q_is_zero(params):
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
