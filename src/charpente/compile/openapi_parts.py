"""Pieces of the OpenAPI document that the admin APIs (webhooks, flags) share."""

from __future__ import annotations

__all__ = ["SCHEMA", "error_response"]

Json = dict[str, object]

SCHEMA = "#/components/schemas/"
_SHARED = {401: "Unauthorized", 429: "TooManyRequests", 500: "InternalError", 503: "Unavailable"}


def error_response(status: int, text: str) -> Json:
    """A problem answer: the shared one for 401 (with its WWW-Authenticate) and the server's
    own statuses when `text` is empty, otherwise what it means here."""
    if not text:
        return {"$ref": f"#/components/responses/{_SHARED[status]}"}
    return {
        "description": text,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
        "content": {"application/problem+json": {"schema": {"$ref": SCHEMA + "Problem"}}},
    }
