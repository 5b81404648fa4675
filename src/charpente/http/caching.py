"""GETs of cached resources answered from the response cache (runtime.caching).

Translating only: the endpoints of the REST table are wrapped, for the resources whose
design asks for a cache. A hit answers with no SQL (and `If-None-Match` on it with a
304); a miss runs the endpoint and stores its 200. `as_of` reads and `count=exact` pages
always run. `Cache-Control` is `private` when the answer depends on the caller, else
`public, max-age=<ttl>`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping

from charpente.http.rest import Endpoint, Reply, RestCall, RestTable
from charpente.runtime.caching import CacheEntry, CachePlan, ResponseCache

__all__ = ["cached_table"]

_BYPASS = (b"as_of=", b"count=")
_JSON = (b"content-type", b"application/json")


def cached_table(table: RestTable, cache: ResponseCache) -> RestTable:
    """`table` with the GET endpoints of cached resources going through `cache`."""
    collections = dict(table.collections)
    items = dict(table.items)
    for name, plan in cache.plans.items():
        if name not in collections:
            continue
        collections[name] = _wrapped(collections[name], cache, name, plan, "list")
        items[name] = _wrapped(items[name], cache, name, plan, "get")
    return dataclasses.replace(table, collections=collections, items=items)


def _wrapped(
    handlers: Mapping[str, Endpoint], cache: ResponseCache, name: str, plan: CachePlan,
    kind: str,
) -> dict[str, Endpoint]:  # fmt: skip
    found = dict(handlers)
    inner = found["GET"]
    control = b"private" if plan.reads_caller else b"public, max-age=%d" % int(plan.ttl)
    if plan.stale > 0:
        control += b", stale-while-revalidate=%d" % int(plan.stale)

    async def get(call: RestCall) -> Reply:
        if any(part in call.query for part in _BYPASS):
            return await inner(call)
        request = f"{kind}\x00{call.item_id}\x00{call.query.decode('latin-1')}"
        computed: list[Reply] = []

        async def compute() -> CacheEntry | None:
            headers = {k: v for k, v in call.headers.items() if k != b"if-none-match"}
            reply = await inner(dataclasses.replace(call, headers=headers))
            computed.append(reply)
            return _entry(reply) if reply.status == 200 else None

        entry = await cache.answer(name, cache.key(name, request, call.caller), compute)
        if entry is None:
            return computed[0] if computed else await inner(call)
        return _reply(entry, call, control)

    found["GET"] = get
    if "HEAD" in found:
        found["HEAD"] = get
    return found


def _entry(reply: Reply) -> CacheEntry:
    headers = dict(reply.headers)
    etag = headers.get(b"etag")
    if etag is None:  # a list page: a weak tag of its body
        etag = b'W/"%s"' % hashlib.sha256(reply.body).hexdigest()[:20].encode("ascii")
    link = headers.get(b"link", b"")
    return CacheEntry(reply.body, etag.decode("latin-1"), link.decode("latin-1"))


def _reply(entry: CacheEntry, call: RestCall, control: bytes) -> Reply:
    headers = [(b"etag", entry.etag.encode("latin-1")), (b"cache-control", control)]
    if entry.link:
        headers.append((b"link", entry.link.encode("latin-1")))
    match = call.header(b"if-none-match")
    if match is not None and _matches(match, entry.etag):
        return Reply(304, headers)
    headers += [(b"content-length", b"%d" % len(entry.body)), _JSON]
    return Reply(200, headers, entry.body)


def _matches(value: str, etag: str) -> bool:
    """Weak comparison, as If-None-Match asks: `W/"3"` matches `"3"`; `*` matches all."""
    if value.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(part.strip().removeprefix("W/") == bare for part in value.split(","))
