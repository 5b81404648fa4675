"""The ASGI application: the route table and the middleware order, in one place.

Outermost first: middleware added with `add_middleware`, then the REST fast path
(http.dispatch: the generated routes, served in one layer), then for every other path
Starlette's error guard, RequestContextMiddleware (request id, security headers, access log,
500s), BodyLimitMiddleware (413), Starlette's exception handling (problem+json), the routes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from charpente.compile.limits import route_limits
from charpente.design.model import Design
from charpente.http.auth import (
    AuthenticationMiddleware,
    AuthRefusalMiddleware,
    auth_routes,
    form_auth_paths,
)
from charpente.http.caching import cached_table
from charpente.http.changes import changes_routes
from charpente.http.clientip import IPNetwork
from charpente.http.dispatch import RestDispatcher
from charpente.http.flag_routes import flag_routes
from charpente.http.flags import FlagMiddleware
from charpente.http.health import health_routes
from charpente.http.index import index_routes
from charpente.http.metrics import metrics_routes
from charpente.http.middleware import (
    BodyLimitMiddleware,
    EdgeIdentityMiddleware,
    RequestContextMiddleware,
)
from charpente.http.observe import ObservabilityMiddleware, RouteNames
from charpente.http.ofrep import ofrep_routes
from charpente.http.problems import EXCEPTION_HANDLERS
from charpente.http.ratelimit import RateLimitMiddleware
from charpente.http.rest import JSON, RestTable, encode_json, rest_table
from charpente.http.routes import with_route_context
from charpente.runtime import metrics
from charpente.runtime.auth import Accounts
from charpente.runtime.caching import ResponseCache
from charpente.runtime.changes import ChangeFeed
from charpente.runtime.flag_control import FlagControl
from charpente.runtime.health import Health
from charpente.runtime.hooks import Hooks
from charpente.runtime.ratelimit import Limiter
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


def build_app(  # noqa: PLR0913 (keyword-only options of the one app factory)
    service: Service,
    design: Design,
    *,
    accounts: Accounts | None = None,
    limiter: Limiter | None = None,
    trusted_proxies: tuple[IPNetwork, ...] = (),
    max_body_bytes: int = 1_048_576,
    extra_routes: Sequence[BaseRoute] = (),
    on_startup: Sequence[Callback] = (),
    on_shutdown: Sequence[Callback] = (),
    lifespan: Lifespan | None = None,
    readiness: Readiness | None = None,
    changes: ChangeFeed | None = None,
    health: Health | None = None,
    flags: FlagControl | None = None,
    response_cache: ResponseCache | None = None,
) -> CharpenteApp:
    """The whole HTTP API of `design` over `service`.

    Routes: `/` (an index), the design's resources under `/v{api_version}`, `/healthz`, `/readyz`,
    `/openapi.json`, `/docs`, with `accounts` the `/v{n}/auth/*` endpoints and
    `/.well-known/jwks.json`, with `changes` the live changes of each resource
    (`/v{n}/{resource}/changes`, Server-Sent Events), with `flags` the flag admin API
    (`/v{n}/_flags`), OFREP (`/ofrep/v1/…`) for a design with flags, then the hooks
    module's routes and `extra_routes`. With `health`, /readyz reports its components
    (http.health).
    In front (outermost first): CORS (when the design lists origins), the request id,
    authentication (with `accounts`), rate limits (with `limiter`), the answer to a bad
    token (after rate limits, so that bad tokens count too), the REST fast path.
    `app.state.service` and `app.state.design` are there for custom endpoints.
    """
    rest = rest_table(service, design)
    if response_cache is not None:  # GETs of cached resources answered from it
        rest = cached_table(rest, response_cache)
    prefix = f"/v{design.api_version}"
    routes = [
        *(health_routes(health) if health is not None else _health_routes(service, readiness)),
        *_docs_routes(design),
        *(auth_routes(accounts, prefix) if accounts is not None else ()),
        *(changes_routes(changes, design) if changes is not None else ()),
        *(flag_routes(flags, prefix) if flags is not None else ()),
        *(ofrep_routes(service.flags) if service.flags.flags else ()),
        *rest.routes(),
        *_graphql_routes(design, service, limiter, trusted_proxies),
        *hook_routes(service.hooks, service),
        *extra_routes,
        *index_routes(design),  # after the custom routes: a hooks module may own `/`
        *(metrics_routes() if metrics.recording() else ()),
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
    app.state.accounts = accounts
    if service.flags.flags:  # innermost of these: after authentication found the caller
        app.add_middleware(FlagMiddleware, board=service.flags)
    if accounts is not None:
        app.add_middleware(AuthRefusalMiddleware)
    if limiter is not None:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=limiter,
            policies=route_limits(design),
            trusted_proxies=trusted_proxies,
        )
    if accounts is not None:
        app.add_middleware(
            AuthenticationMiddleware,
            accounts=accounts,
            trusted_proxies=trusted_proxies,
            form_auth_paths=form_auth_paths(prefix),
        )
    app.add_middleware(
        ObservabilityMiddleware, routes=RouteNames(app, rest.prefix, rest.collections, rest.items)
    )
    app.add_middleware(EdgeIdentityMiddleware)
    if design.cors.origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(design.cors.origins),
            allow_credentials=design.cors.credentials,
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE"],
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=design.cors.max_age,
        )
    return app


CORS_REQUEST_HEADERS = (
    *("Authorization", "Content-Type", "If-Match", "If-None-Match"),
    *("Idempotency-Key", "X-Request-ID", "Last-Event-ID"),
    "X-Client-ID",
)
CORS_EXPOSED_HEADERS = (
    *("ETag", "Location", "Link", "X-Request-ID", "Retry-After"),
    *("RateLimit", "RateLimit-Policy", "Idempotent-Replayed"),
)


def hook_routes(hooks: Hooks, service: Service | None = None) -> list[BaseRoute]:
    """The custom endpoints a hooks module declared with `@hooks.route`; those declared
    `f(request, ctx)` get a RouteContext (the caller authentication found) as well."""
    return [
        Route(r.path, with_route_context(r.endpoint, service), methods=list(r.methods))
        for r in hooks.routes
    ]


Readiness = Callable[[], Awaitable[Mapping[str, object]]]
"""Details /readyz adds to its answer (the outbox relay's lag); they never make it fail."""


def _health_routes(service: Service, readiness: Readiness | None = None) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        return Response(_OK, 200, {"Cache-Control": "no-store"}, JSON)

    async def readyz(request: Request) -> Response:
        await service.check_ready()  # Unavailable → 503 with Retry-After
        body = _OK
        if readiness is not None:
            body = encode_json({"status": "ok", **(await readiness())})
        return Response(body, 200, {"Cache-Control": "no-store"}, JSON)

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


def _graphql_routes(
    design: Design,
    service: Service,
    limiter: Limiter | None = None,
    trusted_proxies: tuple[IPNetwork, ...] = (),
) -> list[BaseRoute]:
    """/v1/graphql and /graphql when graphql-core is installed (the `graphql` extra)."""
    import importlib.util

    from charpente.compile.graphql_schema import graph_problems

    if importlib.util.find_spec("graphql") is None or graph_problems(design):
        return []  # `charpente check` reports the names GraphQL cannot hold
    from charpente.http.graphql import graphql_routes

    return graphql_routes(design, service, limiter, trusted_proxies)
