"""The Bus on RabbitMQ (aio-pika): a durable topic exchange, publisher confirms.

Messages are persistent and routed by their key (`posts.created`); consumers bind their
own queues with patterns (`posts.*`, `#`). A publish returns once RabbitMQ has confirmed
every message of the batch, which were all sent before the first confirmation is awaited;
a refusal, a lost connection or no confirmation within the timeout raises BusError. The
connection is robust: it reconnects in the background, and the next publish goes through.

RabbitMQ drops a message that no queue is bound to: name a `queue` to have one declared
(durable, bound with `#`) so that nothing published is lost before its consumer starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from charpente.bus.names import check_key, check_name, masked_url, without_secrets
from charpente.bus.subscription import DEFAULT_SUBSCRIPTION_LIMIT, QueueSubscription
from charpente.runtime.events import Message
from charpente.runtime.ports import BusError, Subscription

__all__ = ["RabbitBus"]

logger = logging.getLogger("charpente.bus")

SUBJECT_HEADER = "ce-subject"
TRACEPARENT_HEADER = "traceparent"
_ERRORS = (*CONNECTION_EXCEPTIONS, TimeoutError)


class RabbitBus:
    """Publishes to a durable topic exchange with confirms; subscribes with a private queue."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "charpente",
        queue: str | None = None,
        timeout: float = 5.0,
        connection_name: str = "charpente",
        subscription_limit: int = DEFAULT_SUBSCRIPTION_LIMIT,
    ) -> None:
        if not 0 < timeout <= 300:
            raise ValueError(f"timeout must be above 0 and at most 300 seconds, not {timeout}")
        self._url = url
        self._exchange_name = check_name("exchange", exchange)
        self._queue_name = None if queue is None else check_name("queue", queue)
        self._timeout = timeout
        self._connection_name = connection_name
        self._limit = subscription_limit
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._publishing = asyncio.Lock()
        self._subscriptions: set[QueueSubscription] = set()
        self._closed = False

    async def start(self) -> None:
        """Connect, open a confirming channel, declare the exchange (and the queue, if named)."""
        if self._exchange is not None:
            return
        if self._closed:
            raise BusError("rabbitmq bus: closed")
        try:
            async with asyncio.timeout(self._timeout):
                self._connection = await aio_pika.connect_robust(
                    self._url,
                    timeout=self._timeout,
                    reconnect_interval=1,
                    client_properties={"connection_name": self._connection_name},
                )
                channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await self._declare(channel)
        except _ERRORS as exc:
            await self._disconnect()
            raise self._error("cannot start", exc) from exc
        logger.info(
            "rabbitmq bus: connected to %s, exchange %r",
            masked_url(self._url),
            self._exchange_name,
        )

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order; returns once RabbitMQ has confirmed every message."""
        for message in messages:
            check_key(message.key)
        exchange = self._ready_exchange()
        if not messages:
            return
        async with self._publishing:  # two batches never interleave on the channel
            # Tasks start in the order they were created and take the channel's lock in that
            # order, so the frames leave in order while every confirmation is awaited at once.
            sends = [asyncio.ensure_future(self._send(exchange, m)) for m in messages]
            try:
                async with asyncio.timeout(self._timeout):
                    confirmations = await asyncio.gather(*sends)
            except _ERRORS as exc:
                for send in sends:
                    send.cancel()
                await asyncio.gather(*sends, return_exceptions=True)
                raise self._error(f"{len(messages)} message(s) not confirmed", exc) from exc
        refused = sum(not isinstance(c, aiormq.spec.Basic.Ack) for c in confirmations)
        if refused:
            raise BusError(f"rabbitmq bus: {refused} of {len(messages)} message(s) not confirmed")

    async def subscribe(self) -> Subscription:
        """A private queue (exclusive, deleted with its channel) bound to everything.

        RabbitMQ keeps no history for it: if the connection drops, the subscription fails
        with BusError (messages published meanwhile are not in it) and can be renewed.
        """
        connection = self._ready_connection()
        subscription = QueueSubscription(self.name, self._limit)
        channel: AbstractChannel | None = None

        def lost(_sender: object, _exc: BaseException | None = None) -> None:
            subscription.fail("the connection to RabbitMQ was lost")

        async def release() -> None:
            connection.close_callbacks.discard(lost)
            self._subscriptions.discard(subscription)
            if channel is not None:  # even when the connection is down: or it would be restored
                with contextlib.suppress(*_ERRORS):
                    async with asyncio.timeout(self._timeout):
                        await channel.close()

        subscription.set_release(release)
        try:
            async with asyncio.timeout(self._timeout):
                channel = await connection.channel(publisher_confirms=False)
                await self._consume(channel, subscription)
        except _ERRORS as exc:
            await subscription.close()
            raise self._error("cannot subscribe", exc) from exc
        connection.close_callbacks.add(lost)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        """End every subscription and close the connection."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, set()
        for subscription in subscriptions:
            await subscription.close()
        await self._disconnect()

    async def _declare(self, channel: AbstractChannel) -> AbstractExchange:
        exchange = await channel.declare_exchange(
            self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        if self._queue_name is not None:
            queue = await channel.declare_queue(self._queue_name, durable=True)
            await queue.bind(exchange, "#")
        return exchange

    async def _consume(self, channel: AbstractChannel, subscription: QueueSubscription) -> None:
        queue = await channel.declare_queue(
            f"{self._exchange_name}.live.{uuid.uuid4().hex}", exclusive=True, auto_delete=True
        )
        await queue.bind(self._exchange_name, "#")

        async def deliver(incoming: AbstractIncomingMessage) -> None:
            subscription.offer(_message_from(incoming))

        await queue.consume(deliver, no_ack=True)

    async def _send(self, exchange: AbstractExchange, message: Message) -> object:
        amqp = aio_pika.Message(
            message.body,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.id,
            type=message.key,
            headers=_headers(message),
        )
        return await exchange.publish(amqp, message.key, mandatory=False)

    def _ready_connection(self) -> AbstractRobustConnection:
        if self._closed:
            raise BusError("rabbitmq bus: closed")
        if self._connection is None:
            raise BusError("rabbitmq bus: not started")
        return self._connection

    def _ready_exchange(self) -> AbstractExchange:
        self._ready_connection()
        assert self._exchange is not None
        return self._exchange

    async def _disconnect(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    await connection.close()
            except _ERRORS as exc:
                logger.warning("rabbitmq bus: closing the connection failed: %s", exc)

    def _error(self, doing: str, exc: BaseException) -> BusError:
        detail = without_secrets(str(exc) or "no answer in time", self._url)
        where = masked_url(self._url)
        return BusError(f"rabbitmq bus ({where}): {doing}: {type(exc).__name__}: {detail}")


def _headers(message: Message) -> dict[str, Any]:
    """The subject, and the trace context (W3C `traceparent`) when the message has one."""
    if message.traceparent is None:
        return {SUBJECT_HEADER: message.subject}
    return {SUBJECT_HEADER: message.subject, TRACEPARENT_HEADER: message.traceparent}


def _message_from(incoming: AbstractIncomingMessage) -> Message:
    headers: dict[str, Any] = dict(incoming.headers or {})
    subject = headers.get(SUBJECT_HEADER, "")
    return Message(
        id=incoming.message_id or "",
        key=incoming.routing_key or "",
        subject=subject.decode() if isinstance(subject, bytes) else str(subject),
        body=incoming.body,
        content_type=incoming.content_type or "application/octet-stream",
    )
