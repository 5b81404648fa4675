"""The /docs page: Swagger UI, served from the package (no CDN), rendering /openapi.json.

The renderer is swagger-ui-dist's bundle, kept unmodified in static/ with its licence.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["DOCS_CSP", "STATIC_DIR", "docs_routes"]

STATIC_DIR = Path(__file__).parent / "static"

DOCS_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""Self only: the page runs no inline script and loads nothing from elsewhere."""


def docs_routes() -> list[BaseRoute]:
    """`/docs` (the page) and `/docs/static/...` (its scripts and styles)."""
    page = (STATIC_DIR / "docs.html").read_bytes()

    async def docs_page(request: Request) -> Response:
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={
                "Content-Security-Policy": DOCS_CSP,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    return [
        Route("/docs", docs_page, methods=["GET", "HEAD"], name="docs"),
        Mount("/docs/static", app=StaticFiles(directory=STATIC_DIR), name="docs-static"),
    ]
