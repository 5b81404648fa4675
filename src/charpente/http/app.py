"""The ASGI application: the route table and the middleware order, in one place.

Outermost first: middleware added with `add_middleware`, then the REST fast path
(http.dispatch: the generated routes, served in one layer), then for every other path
Starlette's error guard, RequestContextMiddleware (request id, security headers, access log,
500s), BodyLimitMiddleware (413), Starlette's exception handling (problem+json), the routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from charpente.design.model import Design
from charpente.http.dispatch import RestDispatcher
from charpente.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from charpente.http.problems import EXCEPTION_HANDLERS
from charpente.http.rest import JSON, RestTable, encode_json, rest_table
from charpente.runtime.hooks import Hooks
from charpente.runtime.service import Service

__all__ = ["CharpenteApp", "build_app"]

Callback = Callable[[], Awaitable[None]]
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[Any]]

_OK = b'{"status":"ok"}'


class CharpenteApp(Starlette):
    """A Starlette app with the REST fast path in front of its routes.

    `rest` is served by a RestDispatcher; Starlette serves every other path (and the REST
    paths' odd cases) behind it, with our middleware. `add_middleware` wraps both.
    """

    def __init__(self, *, rest: RestTable, max_body_bytes: int, **options: Any) -> None:
        super().__init__(**options)
        self.rest = rest
        self.max_body_bytes = max_body_bytes

    def build_middleware_stack(self) -> ASGIApp:
        """Added middleware (outermost first), the fast path, then the Starlette stack."""
        handlers = {k: v for k, v in self.exception_handlers.items() if k not in (500, Exception)}
        app: ASGIApp = RestDispatcher(
            self._starlette_stack(handlers),
            self.rest,
            max_body_bytes=self.max_body_bytes,
            exception_handlers=handlers,
        )
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    def _starlette_stack(self, handlers: dict[Any, Any]) -> ASGIApp:
        """What serves every path the fast path leaves: our middleware around the router."""
        app: ASGIApp = ExceptionMiddleware(self.router, handlers=handlers, debug=self.debug)
        app = BodyLimitMiddleware(app, max_body_bytes=self.max_body_bytes)
        app = RequestContextMiddleware(app)
        error_handler = self.exception_handlers.get(500) or self.exception_handlers.get(Exception)
        return ServerErrorMiddleware(app, handler=error_handler, debug=self.debug)


def build_app(
    service: Service,
    design: Design,
    *,
    max_body_bytes: int = 1_048_576,
    extra_routes: Sequence[BaseRoute] = (),
    on_startup: Sequence[Callback] = (),
    on_shutdown: Sequence[Callback] = (),
    lifespan: Lifespan | None = None,
) -> CharpenteApp:
    """The whole HTTP API of `design` over `service`.

    Routes: the design's resources under `/v{api_version}`, `/healthz`, `/readyz`,
    `/openapi.json`, `/docs`, then the hooks module's routes and `extra_routes`.
    `app.state.service` and `app.state.design` are there for custom endpoints.
    """
    rest = rest_table(service, design)
    routes = [
        *_health_routes(service),
        *_docs_routes(design),
        *rest.routes(),
        *hook_routes(service.hooks),
        *extra_routes,
    ]
    app = CharpenteApp(
        rest=rest,
        max_body_bytes=max_body_bytes,
        routes=routes,
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
