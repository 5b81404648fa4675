"""The ASGI application: the route table and the middleware order, in one place.

Outermost first: RequestContextMiddleware (request id, security headers, access log, 500s),
BodyLimitMiddleware (413), then Starlette's exception handling (problem+json) and the routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from charpente.design.model import Design
from charpente.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from charpente.http.problems import EXCEPTION_HANDLERS
from charpente.http.rest import JSON, encode_json, rest_routes
from charpente.runtime.hooks import Hooks
from charpente.runtime.service import Service

__all__ = ["build_app"]

Callback = Callable[[], Awaitable[None]]
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[Any]]

_OK = b'{"status":"ok"}'


def build_app(
    service: Service,
    design: Design,
    *,
    max_body_bytes: int = 1_048_576,
    extra_routes: Sequence[BaseRoute] = (),
    on_startup: Sequence[Callback] = (),
    on_shutdown: Sequence[Callback] = (),
    lifespan: Lifespan | None = None,
) -> Starlette:
    """The whole HTTP API of `design` over `service`.

    Routes: the design's resources under `/v{api_version}`, `/healthz`, `/readyz`,
    `/openapi.json`, `/docs`, then the hooks module's routes and `extra_routes`.
    `app.state.service` and `app.state.design` are there for custom endpoints.
    """
    routes = [
        *_health_routes(service),
        *_docs_routes(design),
        *rest_routes(service, design),
        *hook_routes(service.hooks),
        *extra_routes,
    ]
    middleware = [
        Middleware(RequestContextMiddleware),
        Middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=_lifespan(on_startup, on_shutdown, lifespan),
    )
    app.state.service = service
    app.state.design = design
    return app


def hook_routes(hooks: Hooks) -> list[BaseRoute]:
    """The custom endpoints a hooks module declared with `@hooks.route`."""
    return [Route(r.path, r.endpoint, methods=list(r.methods)) for r in hooks.routes]


def _health_routes(service: Service) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        return Response(_OK, 200, {"Cache-Control": "no-store"}, JSON)

    async def readyz(request: Request) -> Response:
        await service.check_ready()  # Unavailable → 503 with Retry-After
        return Response(_OK, 200, {"Cache-Control": "no-store"}, JSON)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]


def _docs_routes(design: Design) -> list[BaseRoute]:
    """`/openapi.json` and `/docs`, when the modules that build them are installed."""
    try:
        from charpente.compile.openapi import openapi_document
        from charpente.http.docs import docs_routes
    except ImportError:  # a trimmed install without the docs: the API still runs
        return []
    document: list[bytes] = []

    async def openapi(request: Request) -> Response:
        if not document:
            document.append(encode_json(openapi_document(design)))
        return Response(document[0], 200, None, JSON)

    return [Route("/openapi.json", openapi, methods=["GET"]), *docs_routes()]


def _lifespan(
    on_startup: Sequence[Callback], on_shutdown: Sequence[Callback], inner: Lifespan | None
) -> Lifespan:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        for callback in on_startup:
            await callback()
        try:
            if inner is None:
                yield None
            else:
                async with inner(app) as state:
                    yield state
        finally:
            for callback in on_shutdown:
                await callback()

    return lifespan
