"""The worker's loops — the outbox relay, webhook delivery, jobs — run side by side until
stopped: by `charpente worker`, or inside `serve` when no separate worker is configured.

A loop is `async def run(stop)`: it handles its own failures and returns once `stop` is set.
One that raises anyway is logged and started again after a pause, so one broken part never
stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

__all__ = ["Loop", "Loops"]

logger = logging.getLogger("charpente.worker")

Loop = Callable[[asyncio.Event], Awaitable[None]]
RESTART_PAUSE = 1.0  # seconds before a loop that raised starts again
STOP_GRACE = 10.0  # seconds the loops get to finish their round when stopping


class Loops:
    """Named loops run as tasks: `start()`, then `stop()` (waits for them to finish)."""

    def __init__(self, loops: Mapping[str, Loop]) -> None:
        self.loops = dict(loops)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._keep(name, loop), name=f"charpente-{name}")
            for name, loop in self.loops.items()
        ]

    async def stop(self) -> None:
        self._stop.set()
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks = []

    async def wait(self) -> None:
        """Until every loop has ended (after stop())."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep(self, name: str, loop: Loop) -> None:
        while not self._stop.is_set():
            try:
                await loop(self._stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the %s loop failed; starting it again", name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), RESTART_PAUSE)
