"""`/metrics` on the API's own port: the Prometheus scrape, for admins only.

The usual way to scrape is `serve --metrics-port`, a listener of its own bound to
127.0.0.1 (http.metrics_server); on the public port the scrape needs an admin's token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.design.model import ADMIN_ROLE
from charpente.errors import Forbidden, Unauthorized
from charpente.http.rest import caller_of
from charpente.runtime import metrics

__all__ = ["metrics_routes"]

PATH = "/metrics"


def metrics_routes() -> list[BaseRoute]:
    """`GET /metrics` for an admin's token (401 without one, 403 for anyone else)."""

    async def scrape(request: Request) -> Response:
        caller = caller_of(request)
        if not (caller.system or caller.role == ADMIN_ROLE):
            if not caller.signed_in:
                raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": "Bearer"})
            raise Forbidden(detail="only admins read the metrics")
        return Response(
            metrics.exposition(), 200, {"Cache-Control": "no-store"}, metrics.CONTENT_TYPE
        )

    return [Route(PATH, scrape, methods=["GET"])]
