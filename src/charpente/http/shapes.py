"""`GET /v{n}/_admin/shapes`: the shape log, slowest or most expensive first (admins).

Translating only: who may read it and what the parameters may be are decided by
runtime.shapes.ShapeReport.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.errors import BadRequest
from charpente.http.rest import JSON, caller_of, encode_json, query_pairs
from charpente.runtime.shapes import ShapeReport

__all__ = ["shape_routes"]

_KNOWN = frozenset({"order", "limit"})


def shape_routes(report: ShapeReport, prefix: str) -> list[BaseRoute]:
    """The shape log's admin endpoint under `prefix` (`/v1`)."""

    async def shapes(request: Request) -> Response:
        caller = caller_of(request)
        found: dict[str, str] = {}
        for name, value in query_pairs(request.scope.get("query_string", b"")):
            if name not in _KNOWN:
                raise BadRequest(detail=f"unknown query parameter {name[:100]!r}")
            if name in found:
                raise BadRequest(detail=f"{name} is given twice")
            found[name] = value
        limit = found.get("limit", "20")
        if not limit.isdigit() or len(limit) > 4:
            raise BadRequest(detail="limit must be a whole number")
        stats = await report.top(caller, found.get("order", "total"), int(limit))
        body = {"data": [s.summary() for s in stats]}
        return Response(encode_json(body), 200, {"Cache-Control": "no-store"}, JSON)

    return [Route(f"{prefix}/_admin/shapes", shapes, methods=["GET"])]
