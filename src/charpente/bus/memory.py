"""The Bus inside one process: every live subscription gets every message published.

The embedded default when no broker is configured. Nothing is kept: a message published
while nobody listens is gone (the outbox in the database is what keeps events). Each
subscription has a bounded queue; a subscriber that falls behind is dropped with a
warning, so publishing never waits for a reader.
"""

from __future__ import annotations

from collections.abc import Sequence

from charpente.bus.names import check_key
from charpente.bus.subscription import DEFAULT_SUBSCRIPTION_LIMIT, QueueSubscription
from charpente.runtime.events import Message
from charpente.runtime.ports import BusError, Subscription

__all__ = ["MemoryBus"]


class MemoryBus:
    """An in-process fan-out: `publish` hands each message to every open subscription."""

    name = "memory"

    def __init__(self, subscription_limit: int = DEFAULT_SUBSCRIPTION_LIMIT) -> None:
        if subscription_limit < 1:
            raise ValueError(f"subscription_limit must be at least 1, not {subscription_limit}")
        self._limit = subscription_limit
        self._subscriptions: set[QueueSubscription] = set()
        self._closed = False

    async def start(self) -> None:
        """Nothing to connect to."""

    async def publish(self, messages: Sequence[Message]) -> None:
        """Hand every message, in order, to every subscription; never waits for a reader."""
        if self._closed:
            raise BusError("memory bus: closed")
        for message in messages:
            check_key(message.key)  # as a broker would: the same design fails the same way
        for message in messages:
            for subscription in tuple(self._subscriptions):
                if not subscription.offer(message):
                    self._subscriptions.discard(subscription)

    async def subscribe(self) -> Subscription:
        """A subscription to every message published from now on."""
        if self._closed:
            raise BusError("memory bus: closed")
        subscription = QueueSubscription(self.name, self._limit)

        async def release() -> None:
            self._subscriptions.discard(subscription)

        subscription.set_release(release)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        """End every subscription; publishing afterwards raises BusError."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, set()
        for subscription in subscriptions:
            await subscription.close()
