"""The Bus on NATS JetStream (nats-py): a stream keeps what is published, acks confirm it.

Messages go to `<prefix>.<key>` (`charpente.posts.created`), where a stream (created if
missing, `<prefix>.>`, at most `max_messages` kept, the oldest dropped first) stores them.
Each carries its id as `Nats-Msg-Id`, so JetStream drops a copy published again within its
dedup window. A publish sends the whole batch, then awaits every PubAck in order; no ack
within the timeout raises BusError. The client reconnects forever in the background.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from charpente.bus.names import (
    KEY,
    STREAM,
    check_key,
    check_name,
    masked_url,
    without_secrets,
)
from charpente.bus.subscription import DEFAULT_SUBSCRIPTION_LIMIT, QueueSubscription
from charpente.runtime.events import Message
from charpente.runtime.ports import BusError, Subscription

__all__ = ["NatsBus"]

logger = logging.getLogger("charpente.bus")

ID_HEADER: Final = "Nats-Msg-Id"
SUBJECT_HEADER: Final = "Ce-Subject"
TYPE_HEADER: Final = "Content-Type"
DUPLICATE_WINDOW: Final = 120.0  # seconds: JetStream's default, stated so it is visible
_ERRORS = (nats.errors.Error, OSError, TimeoutError)


class NatsBus:
    """Publishes to a JetStream stream with acks; subscribes with a core NATS subscription."""

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "charpente",
        stream: str | None = None,
        timeout: float = 5.0,
        max_messages: int = 1_000_000,
        client_name: str = "charpente",
        subscription_limit: int = DEFAULT_SUBSCRIPTION_LIMIT,
    ) -> None:
        if not 0 < timeout <= 300:
            raise ValueError(f"timeout must be above 0 and at most 300 seconds, not {timeout}")
        if not 1 <= max_messages <= 10**12:
            raise ValueError(f"max_messages must be between 1 and 10^12, not {max_messages}")
        self._url = url
        self._prefix = check_name("subject prefix", prefix, KEY)
        default_stream = self._prefix.upper().replace(".", "_")
        self._stream = check_name("stream", stream or default_stream, STREAM)
        self._timeout = timeout
        self._max_messages = max_messages
        self._client_name = client_name
        self._limit = subscription_limit
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._subscriptions: set[QueueSubscription] = set()
        self._reported = False  # an error was logged since the last (re)connection
        self._last_error: str | None = None  # what the client last reported, for BusError
        self._closed = False

    @property
    def stream(self) -> str:
        """The JetStream stream that keeps what this bus publishes."""
        return self._stream

    async def start(self) -> None:
        """Connect and make sure the stream exists and takes `<prefix>.>`."""
        if self._js is not None:
            return
        if self._closed:
            raise BusError("nats bus: closed")
        try:
            async with asyncio.timeout(self._timeout):
                self._client = await nats.connect(
                    self._url,
                    name=self._client_name,
                    connect_timeout=max(1, math.ceil(self._timeout)),
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                js = self._client.jetstream(timeout=self._timeout)
                await self._ensure_stream(js)
        except (*_ERRORS, BusError) as exc:
            await self._disconnect()
            if isinstance(exc, BusError):
                raise
            raise self._error("cannot start", exc) from exc
        self._js = js
        logger.info("nats bus: connected to %s, stream %r", masked_url(self._url), self._stream)

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order; returns once JetStream has acknowledged every message."""
        subjects = [f"{self._prefix}.{check_key(m.key)}" for m in messages]
        js = self._ready()
        acks: list[asyncio.Future[api.PubAck]] = []
        try:
            async with asyncio.timeout(self._timeout):
                for subject, message in zip(subjects, messages, strict=True):
                    ack = await js.publish_async(
                        subject,
                        message.body,
                        headers=_headers(message),
                        stream=self._stream,
                        wait_stall=self._timeout,
                    )
                    acks.append(ack)
                for pending in acks:
                    self._check(await pending)
        except _ERRORS as exc:
            for ack in acks:
                ack.cancel()  # frees its place among the client's pending publishes
            raise self._error(f"{len(messages)} message(s) not acknowledged", exc) from exc

    async def subscribe(self) -> Subscription:
        """Every message published on `<prefix>.>` from now on (core NATS, no replay).

        If the connection drops, the subscription fails with BusError: messages published
        meanwhile are not in it (they are in the stream, for a JetStream consumer).
        """
        client = self._ready_client()
        subscription = QueueSubscription(self.name, self._limit)

        async def deliver(msg: Msg) -> None:
            subscription.offer(self._message_from(msg))

        try:
            async with asyncio.timeout(self._timeout):
                sub = await client.subscribe(f"{self._prefix}.>", cb=deliver)
                await client.flush(timeout=max(1, math.ceil(self._timeout)))
        except _ERRORS as exc:
            raise self._error("cannot subscribe", exc) from exc

        async def release() -> None:
            self._subscriptions.discard(subscription)
            if not client.is_closed:
                await sub.unsubscribe()

        subscription.set_release(release)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        """End every subscription and close the connection."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, set()
        for subscription in subscriptions:
            await subscription.close()
        await self._disconnect()

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        subjects = f"{self._prefix}.>"
        try:
            info = await js.stream_info(self._stream)
        except nats.js.errors.NotFoundError:
            config = api.StreamConfig(
                name=self._stream,
                subjects=[subjects],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                max_msgs=self._max_messages,
                discard=api.DiscardPolicy.OLD,
                duplicate_window=DUPLICATE_WINDOW,
            )
            await js.add_stream(config)
            return
        taken = info.config.subjects or []
        if subjects not in taken:
            raise BusError(
                f"nats bus: stream {self._stream!r} exists but does not take {subjects!r} "
                f"(it takes {taken}): name another stream or prefix"
            )

    def _check(self, ack: api.PubAck) -> None:
        if ack.stream != self._stream:
            raise BusError(
                f"nats bus: stream {ack.stream!r} took a message meant for {self._stream!r}"
            )

    def _message_from(self, msg: Msg) -> Message:
        headers = msg.headers or {}
        return Message(
            id=headers.get(ID_HEADER, ""),
            key=msg.subject[len(self._prefix) + 1 :],
            subject=headers.get(SUBJECT_HEADER, ""),
            body=msg.data,
            content_type=headers.get(TYPE_HEADER, "application/octet-stream"),
        )

    def _ready_client(self) -> Client:
        if self._closed:
            raise BusError("nats bus: closed")
        if self._client is None:
            raise BusError("nats bus: not started")
        return self._client

    def _ready(self) -> JetStreamContext:
        self._ready_client()
        assert self._js is not None
        return self._js

    async def _disconnect(self) -> None:
        client, self._client, self._js = self._client, None, None
        if client is not None and not client.is_closed:
            try:
                async with asyncio.timeout(self._timeout):
                    await client.close()
            except _ERRORS as exc:
                logger.warning("nats bus: closing the connection failed: %s", exc)

    async def _on_error(self, exc: Exception) -> None:
        # While the server is away the client reports every failed attempt: log the first.
        level = logging.DEBUG if self._reported else logging.WARNING
        self._reported = True
        self._last_error = without_secrets(f"{type(exc).__name__}: {exc}", self._url)
        logger.log(level, "nats bus: %s", self._last_error)

    async def _on_disconnected(self) -> None:
        if self._closed:
            return
        logger.warning("nats bus: disconnected from %s, reconnecting", masked_url(self._url))
        for subscription in tuple(self._subscriptions):
            subscription.fail("the connection to NATS was lost")

    async def _on_reconnected(self) -> None:
        self._reported = False
        self._last_error = None
        logger.info("nats bus: reconnected to %s", masked_url(self._url))

    def _error(self, doing: str, exc: BaseException) -> BusError:
        detail = without_secrets(str(exc) or "no answer in time", self._url)
        if self._last_error is not None:
            detail = f"{detail} (last error: {self._last_error})"
        where = masked_url(self._url)
        return BusError(f"nats bus ({where}): {doing}: {type(exc).__name__}: {detail}")


def _headers(message: Message) -> dict[str, str]:
    headers = {
        ID_HEADER: message.id,
        SUBJECT_HEADER: message.subject,
        TYPE_HEADER: message.content_type,
    }
    if message.traceparent is not None:
        headers["traceparent"] = message.traceparent
    return headers
