"""Errors as RFC 9457 problem details: every ApiError, Starlette's 404/405 and any bug (500).

A bug answers a generic body with the request id; its traceback goes to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from charpente.errors import (
    ApiError,
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)

__all__ = [
    "EXCEPTION_HANDLERS",
    "PROBLEM_JSON",
    "REQUEST_ID_KEY",
    "internal_error_response",
    "log_unexpected",
    "problem_response",
    "request_id_of",
]

logger = logging.getLogger("charpente.errors")

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_KEY = "charpente.request_id"  # where the middleware puts the request id in the scope

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    406: NotAcceptable,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}
_encode = msgspec.json.Encoder(enc_hook=str).encode  # str-like values (names) as text


def request_id_of(scope: Scope) -> str | None:
    """The request id the middleware gave this request, if it ran."""
    value = scope.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None


def problem_response(error: ApiError, path: str, request_id: str | None) -> Response:
    """The problem+json answer for `error`, with the error's own headers."""
    return _problem(error, type(error).status, path, request_id)


def _problem(error: ApiError, status: int, path: str, request_id: str | None) -> Response:
    # status, slug and title are read from the class: they are what the class declares.
    cls = type(error)
    body: dict[str, Any] = {
        "type": f"/problems/{cls.slug}",
        "title": cls.title,
        "status": status,
        "detail": error.detail or cls.title,
        "instance": path,
        "request_id": request_id,
    }
    if error.errors:
        body["errors"] = [e.as_dict() for e in error.errors]
    return Response(_encode(body), status, error.headers or None, PROBLEM_JSON)


def internal_error_response(path: str, request_id: str | None) -> Response:
    """The generic 500: no detail beyond the request id to quote."""
    error = ApiError(detail="An unexpected error occurred; quote the request id to report it.")
    return problem_response(error, path, request_id)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return problem_response(exc, request.url.path, request_id_of(request.scope))


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) in the same shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 304:
        return Response(status_code=304, headers=exc.headers)
    error_type = _BY_STATUS.get(exc.status_code, ApiError)
    headers = dict(exc.headers or {})
    if "Allow" in headers:  # Starlette keeps methods in a set: answer them in a stable order
        headers["Allow"] = ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))
    error = error_type(headers=headers)
    return _problem(error, exc.status_code, request.url.path, request_id_of(request.scope))


def log_unexpected(exc: BaseException, path: str, request_id: str | None) -> None:
    """Log a bug with its traceback and the request id that the client was given; the path
    is logged escaped (repr), so that a decoded `%0A` cannot forge a log line."""
    logger.error("unhandled error on %r (request %s)", path, request_id, exc_info=exc)


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    ApiError: _api_error,
    HTTPException: _http_exception,
}
