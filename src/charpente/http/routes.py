"""Custom routes of a hooks module: `f(request)`, or `f(request, ctx)` with a RouteContext
that carries the caller authentication found (and the service, acting as that caller)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from charpente.http.problems import request_id_of
from charpente.http.rest import caller_of
from charpente.runtime.hooks import RouteContext
from charpente.runtime.service import Service

__all__ = ["route_context", "takes_context", "with_route_context"]


def route_context(request: Request, service: Service) -> RouteContext:
    """The context of a custom route's request: who calls, the request id, the service."""
    return RouteContext(caller_of(request), request_id_of(request.scope), service)


def takes_context(endpoint: Callable[..., Any]) -> bool:
    """Whether `endpoint` is declared with a second positional parameter (`ctx`)."""
    try:
        parameters = list(inspect.signature(endpoint).parameters.values())
    except (TypeError, ValueError):  # a callable object without a signature: plain endpoint
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


def with_route_context(endpoint: Callable[..., Any], service: Service | None) -> Callable[..., Any]:
    """`endpoint` as Starlette calls it: given a RouteContext when it asks for one."""
    if service is None or not takes_context(endpoint):
        return endpoint

    async def with_context(request: Request) -> Response:
        response = endpoint(request, route_context(request, service))
        if inspect.isawaitable(response):  # async def (recommended); a plain def runs inline
            response = await response
        if not isinstance(response, Response):
            raise TypeError(f"the custom route {request.url.path} returned no Response")
        return response

    with_context.__name__ = getattr(endpoint, "__name__", "custom_route")
    with_context.__doc__ = endpoint.__doc__
    return with_context
