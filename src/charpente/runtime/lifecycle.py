"""The drain: how a server process stops on SIGTERM without dropping a request.

At SIGTERM the process turns not ready at once (/readyz 503: the load balancer stops sending
it new clients), keeps serving `seconds` more — every answer then closes its connection, so
that clients reconnect elsewhere — then ends every live stream with a last event (their
clients resume elsewhere with Last-Event-ID), and lets the ASGI server stop: it accepts no
more connections, lets the requests in flight finish, runs the shutdown, and the process
exits 0. A second SIGTERM stops at once.

`install()` chains onto uvicorn's own SIGTERM handler (its Server's `handle_exit`), in
each server process; anywhere else (tests, another ASGI server) it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

__all__ = ["Drain"]

logger = logging.getLogger("charpente.lifecycle")


class Drain:
    """SIGTERM under uvicorn: `on_start` callbacks at once, `on_end` after `seconds`."""

    def __init__(
        self,
        seconds: float,
        *,
        on_start: Sequence[Callable[[], object]] = (),
        on_end: Sequence[Callable[[], object]] = (),
    ) -> None:
        if not 0 <= seconds <= 3600:
            raise ValueError(f"the drain lasts 0 to 3600 seconds, not {seconds}")
        self.seconds = seconds
        self.draining = False
        self._on_start, self._on_end = tuple(on_start), tuple(on_end)
        self._server: Any = None  # uvicorn's Server, whose should_exit ends serving
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def install(self) -> None:
        """Take SIGTERM over from uvicorn's server in this process (a startup callback)."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        server = getattr(previous, "__self__", None)
        if server is None or not hasattr(server, "should_exit"):
            return  # not uvicorn's handler: leave signals alone
        self._server, self._previous = server, previous
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_signal)

    async def uninstall(self) -> None:
        """Give SIGTERM back (a shutdown callback)."""
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._on_signal:
            signal.signal(signal.SIGTERM, self._previous)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def begin(self) -> None:
        """Start draining now (what SIGTERM does)."""
        if self.draining:
            logger.warning("stopping now: a second SIGTERM during the drain")
            self._stop_serving()
            return
        self.draining = True
        logger.info(
            "stopping: not ready from now on, serving %g s more, then ending live streams "
            "and finishing the requests in flight",
            self.seconds,
        )
        for callback in self._on_start:
            callback()
        self._task = asyncio.get_running_loop().create_task(self._finish())

    async def _finish(self) -> None:
        await asyncio.sleep(self.seconds)
        for callback in self._on_end:
            callback()
        self._stop_serving()

    def _stop_serving(self) -> None:
        if self._server is not None:
            self._server.should_exit = True  # not handle_exit: uvicorn then exits 0

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.begin)
