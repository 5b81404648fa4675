"""`GET /`: a small JSON index of the API (its name, version and where to go next), or,
for a browser (an Accept that asks for HTML), a redirect to the docs page. `GET /v1/`
answers the same index."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from charpente.design.model import Design
from charpente.http.rest import JSON, encode_json

__all__ = ["index_document", "index_routes"]


def index_document(design: Design) -> dict[str, object]:
    """What `GET /` answers: the design's name, the engine's version and the links."""
    prefix = f"/v{design.api_version}"
    links: dict[str, object] = {
        "docs": "/docs",
        "openapi": "/openapi.json",
        "api": f"{prefix}/",
        "resources": {name: f"{prefix}/{name}" for name in sorted(design.resources)},
        "health": "/healthz",
        "ready": "/readyz",
    }
    return {
        "name": design.name,
        "version": _engine_version(),
        "api_version": design.api_version,
        "links": links,
    }


def index_routes(design: Design) -> list[BaseRoute]:
    """`GET /` (and HEAD)."""
    body = encode_json(index_document(design))

    async def index(request: Request) -> Response:
        if _wants_html(request.headers.get("accept", "")):
            return RedirectResponse("/docs", status_code=303, headers={"Vary": "Accept"})
        return Response(body, 200, {"Cache-Control": "no-cache", "Vary": "Accept"}, JSON)

    async def api_index(request: Request) -> Response:
        return Response(body, 200, {"Cache-Control": "no-cache"}, JSON)

    prefix = f"/v{design.api_version}/"
    return [
        Route("/", index, methods=["GET", "HEAD"]),
        Route(prefix, api_index, methods=["GET", "HEAD"]),
    ]


def _wants_html(accept: str) -> bool:
    """Whether the Accept header names text/html (what browsers send for a page)."""
    return any(part.split(";")[0].strip().lower() == "text/html" for part in accept.split(","))


def _engine_version() -> str:
    try:
        return version("charpente")
    except PackageNotFoundError:
        return "unknown"
