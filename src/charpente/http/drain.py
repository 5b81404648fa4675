"""While the process drains (runtime.lifecycle), every answer closes its connection, so
that a client's next request opens a new one, to a process that is not stopping."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charpente.runtime.lifecycle import Drain

__all__ = ["ClosingMiddleware"]

_CLOSE = (b"connection", b"close")


class ClosingMiddleware:
    """Adds `Connection: close` to the answers of requests that arrive during the drain."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.drain.draining:
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*kept, _CLOSE]}
            await send(message)

        await self.app(scope, receive, closing)
