"""charpente: a backend engine — one design file becomes a production-grade REST backend.

The public API: load a design, write hooks, raise the errors a hook may answer with.
"""

from importlib.metadata import PackageNotFoundError, version

from charpente.errors import (
    ApiError,
    BadRequest,
    CharpenteError,
    Conflict,
    DesignError,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from charpente.loader import load_design
from charpente.runtime.hooks import Hooks

__all__ = [
    "ApiError",
    "BadRequest",
    "CharpenteError",
    "Conflict",
    "DesignError",
    "FieldError",
    "Forbidden",
    "Hooks",
    "NotFound",
    "ValidationFailed",
    "__version__",
    "load_design",
]

try:
    __version__ = version("charpente")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
