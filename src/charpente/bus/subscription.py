"""A subscription fed by a bus: a bounded queue between the broker and the reader.

Every adapter hands messages to `QueueSubscription.offer`, which never waits: a reader
that falls `limit` messages behind is dropped (a warning is logged, its broker resources
released) rather than slowing the publisher or growing without bound. Iteration then
raises BusError, so the reader knows it missed messages and can subscribe again; after
`close()` it simply ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from charpente.runtime.events import Message
from charpente.runtime.ports import BusError

__all__ = ["DEFAULT_SUBSCRIPTION_LIMIT", "QueueSubscription"]

DEFAULT_SUBSCRIPTION_LIMIT: Final = 10_000

logger = logging.getLogger("charpente.bus")

_END: Final = object()  # put in the queue to wake a waiting reader when the subscription ends


class QueueSubscription:
    """Messages from one bus subscription, in the order the bus delivered them (one reader).

    `release` (if given) frees what the broker holds for this subscription (a queue, a
    consumer, a reader task); it runs once, when the subscription closes for any reason.
    """

    def __init__(
        self,
        bus: str,
        limit: int = DEFAULT_SUBSCRIPTION_LIMIT,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"a subscription holds at least one message, not {limit}")
        self._bus = bus
        self._limit = limit
        self._queue: asyncio.Queue[Message | object] = asyncio.Queue()
        self._release = release
        self._released: asyncio.Task[None] | None = None
        self._closed = False
        self._failure: str | None = None

    @property
    def closed(self) -> bool:
        """Whether the subscription takes no more messages (closed, dropped or failed)."""
        return self._closed

    def set_release(self, release: Callable[[], Awaitable[None]]) -> None:
        """Set what frees the broker's side (when it is only known once the subscription exists)."""
        self._release = release
        if self._closed and self._released is None:
            self._released = asyncio.get_running_loop().create_task(self._run_release())

    def offer(self, message: Message) -> bool:
        """Queue `message` for the reader without waiting; False once the subscription is closed.

        A reader `limit` messages behind is dropped: the subscription fails and stops taking
        messages, so a slow reader never holds up the bus or grows memory without bound.
        """
        if self._closed:
            return False
        if self._queue.qsize() >= self._limit:
            logger.warning(
                "%s bus: a subscriber fell %d messages behind and was dropped",
                self._bus,
                self._limit,
            )
            self.fail(f"the subscriber fell {self._limit} messages behind and was dropped")
            return False
        self._queue.put_nowait(message)
        return True

    def fail(self, reason: str) -> None:
        """End the subscription because of `reason`: the reader gets BusError after what it has."""
        if not self._closed:
            self._failure = reason
            self._end()

    async def close(self) -> None:
        """Stop taking messages and release the broker's side; iteration then ends."""
        self._end()
        if self._released is not None:
            await asyncio.shield(self._released)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        while True:
            if self._closed and (self._failure is None or self._queue.empty()):
                break  # closed: stop now; failed: hand over what came first, then raise
            item = await self._queue.get()
            if item is _END:
                continue  # the loop's check decides: end, or drain what is still queued
            assert isinstance(item, Message)
            yield item
        if self._failure is not None:
            raise BusError(f"{self._bus} bus: subscription ended: {self._failure}")

    def _end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(_END)
        if self._release is not None:
            self._released = asyncio.get_running_loop().create_task(self._run_release())

    async def _run_release(self) -> None:
        assert self._release is not None
        try:
            await self._release()
        except Exception as exc:  # the broker's side goes away with the connection anyway
            logger.warning(
                "%s bus: releasing a subscription failed: %s: %s",
                self._bus,
                type(exc).__name__,
                exc,
            )
