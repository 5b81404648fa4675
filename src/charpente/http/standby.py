"""What `serve --reload` answers while the edited design cannot be served (errors in it,
or a migration that needs `charpente migrate apply`): 503 with the reason, on every path,
until the next save reloads the server — never a hang, never a dead port."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from charpente.errors import Unavailable
from charpente.http.problems import problem_response

__all__ = ["standby_app"]


def standby_app(reason: str) -> Starlette:
    """An app that answers every request `503` with `reason` (and `/healthz` `200`: the
    process runs)."""

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', 200, {"Cache-Control": "no-store"}, "application/json")

    async def unavailable(request: Request) -> Response:
        error = Unavailable(
            detail=f"the server cannot serve this design: {reason} (fix it and save: it reloads)",
            headers={"Retry-After": "1"},
        )
        return problem_response(error, request.url.path, None)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/{path:path}", unavailable, methods=methods),
        ]
    )
