"""The one exception tree of charpente.

    CharpenteError
    ├── DesignError            a design file is not valid (every Problem listed, with positions)
    ├── ExprError              an expression does not parse or does not type-check (with offset)
    ├── MigrationError         the database is behind the design, or a step was refused
    ├── ConfigError            settings from the environment are not usable
    └── ApiError               an answer to a client; carries its HTTP status (problem+json)
        ├── BadRequest           400  malformed JSON, bad filter/sort, unknown parameter
        ├── Unauthorized         401
        ├── Forbidden            403
        ├── NotFound             404  no such record, or not visible to the caller
        ├── MethodNotAllowed     405
        ├── NotAcceptable        406
        ├── Conflict             409  a unique constraint would be violated
        ├── PreconditionFailed   412  stale If-Match
        ├── PayloadTooLarge      413
        ├── UnsupportedMediaType 415
        ├── ValidationFailed     422  every bad field listed
        ├── PreconditionRequired 428  If-Match missing where the design requires it
        ├── TooManyRequests      429
        └── Unavailable          503  a dependency is down
            └── DesignMismatch   503  the database lacks a table or column the design uses

Pure: no imports outside the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "ApiError",
    "BadRequest",
    "CharpenteError",
    "ConfigError",
    "Conflict",
    "DesignError",
    "DesignMismatch",
    "ExprError",
    "FieldError",
    "Forbidden",
    "MethodNotAllowed",
    "MigrationError",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "PreconditionFailed",
    "PreconditionRequired",
    "Problem",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationFailed",
]


class CharpenteError(Exception):
    """Base of every error charpente raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a design file, where it is, and what to do about it."""

    message: str
    file: str = "<design>"
    line: int = 0
    column: int = 0
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"


class DesignError(CharpenteError):
    """A design file is not valid; `problems` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__("\n".join(str(p) for p in errors) or "the design is not valid")


class ExprError(CharpenteError):
    """An expression is not valid: `offset` is the 0-based character where it goes wrong."""

    def __init__(self, message: str, offset: int = 0, source: str = "") -> None:
        self.message = message
        self.offset = offset
        self.source = source
        super().__init__(f"{message} (at character {offset + 1})")


class MigrationError(CharpenteError):
    """The database does not match the design, or a migration step was refused."""


class ConfigError(CharpenteError):
    """A setting read from the environment cannot be used."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field of a request body or query: `code` is stable, `message` is for people."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass(eq=False)
class ApiError(CharpenteError):
    """An error answered to the client as RFC 9457 problem details."""

    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal server error"

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail or self.title)


class BadRequest(ApiError):
    status, slug, title = 400, "bad-request", "The request is malformed"


class Unauthorized(ApiError):
    status, slug, title = 401, "unauthorized", "Authentication is required"


class Forbidden(ApiError):
    status, slug, title = 403, "forbidden", "This action is not allowed"


class NotFound(ApiError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(ApiError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class NotAcceptable(ApiError):
    status, slug, title = 406, "not-acceptable", "No acceptable representation"


class Conflict(ApiError):
    status, slug, title = 409, "conflict", "The request conflicts with existing data"


class PreconditionFailed(ApiError):
    status, slug, title = 412, "precondition-failed", "The record has changed"


class PayloadTooLarge(ApiError):
    status, slug, title = 413, "payload-too-large", "The request body is too large"


class UnsupportedMediaType(ApiError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported content type"


class ValidationFailed(ApiError):
    status, slug, title = 422, "validation", "The request is not valid"


class PreconditionRequired(ApiError):
    status, slug, title = 428, "precondition-required", "If-Match is required"


class TooManyRequests(ApiError):
    status, slug, title = 429, "rate-limited", "Too many requests"


class Unavailable(ApiError):
    status, slug, title = 503, "unavailable", "A dependency is unavailable"


class DesignMismatch(Unavailable):
    """The database no longer has a table or column the design uses (a migration from
    elsewhere dropped it): answered 503 until the database matches again."""

    slug, title = "design-mismatch", "The database does not match the design"
