"""Feature flags at the edge: each request's caller gets its flag values once, up front.

Translating only: the values come from runtime.flags. An anonymous caller is bucketed by
the client id it sends in `X-Client-ID` (a stable, random id the client keeps), and without
one is outside every partial rollout.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from charpente.http.rest import CALLER_KEY, first_headers
from charpente.runtime.caller import ANONYMOUS, Caller
from charpente.runtime.flags import FlagBoard, valid_client_id

__all__ = ["CLIENT_ID_HEADER", "FlagMiddleware", "client_id_of"]

CLIENT_ID_HEADER = "X-Client-ID"
_CLIENT_ID = frozenset({CLIENT_ID_HEADER.lower().encode()})


def client_id_of(scope: Scope) -> str | None:
    """The client id a request sends (None when absent or unusable)."""
    raw = first_headers(scope["headers"], _CLIENT_ID).get(next(iter(_CLIENT_ID)))
    return None if raw is None else valid_client_id(raw.decode("latin-1"))


class FlagMiddleware:
    """Replaces the scope's Caller by the same caller carrying its flag values."""

    def __init__(self, app: ASGIApp, board: FlagBoard) -> None:
        self.app = app
        self.board = board

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            caller = scope.get(CALLER_KEY, ANONYMOUS)
            if isinstance(caller, Caller):
                scope[CALLER_KEY] = self.board.with_flags(caller, client_id_of(scope))
        await self.app(scope, receive, send)
