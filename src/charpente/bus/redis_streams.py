"""The Bus on a Redis stream (redis.asyncio): XADD in a pipeline, XREAD to follow it.

Every message becomes one entry of the stream (`charpente:events`) with the fields `id`,
`key`, `subject`, `body` and `content_type`; the stream keeps about `maxlen` entries, the
oldest trimmed first. A publish pipelines the batch's XADDs on one connection (so they
land in order) and checks every reply. A subscription follows the stream from its end
with XREAD BLOCK and picks up where it was after Redis comes back, so it misses nothing
that is still in the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from charpente.bus.names import check_key, check_name, masked_url, without_secrets
from charpente.bus.subscription import DEFAULT_SUBSCRIPTION_LIMIT, QueueSubscription
from charpente.runtime.events import Message
from charpente.runtime.ports import BusError, Subscription

__all__ = ["RedisStreamBus"]

logger = logging.getLogger("charpente.bus")

READ_COUNT: Final = 500  # entries per XREAD: bounded, so a backlog arrives in slices
_ERRORS = (RedisError, OSError, TimeoutError)


class RedisStreamBus:
    """Appends to one Redis stream; each subscription reads it from where it stood."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        stream: str = "charpente:events",
        maxlen: int = 1_000_000,
        timeout: float = 5.0,
        subscription_limit: int = DEFAULT_SUBSCRIPTION_LIMIT,
    ) -> None:
        if not 0 < timeout <= 300:
            raise ValueError(f"timeout must be above 0 and at most 300 seconds, not {timeout}")
        if not 1 <= maxlen <= 10**12:
            raise ValueError(f"maxlen must be between 1 and 10^12, not {maxlen}")
        self._url = url
        self._stream = check_name("stream", stream)
        self._maxlen = maxlen
        self._timeout = timeout
        self._limit = subscription_limit
        self._client: Redis | None = None
        self._subscriptions: set[QueueSubscription] = set()
        self._closed = False

    async def start(self) -> None:
        """Connect and check that the stream's key is free or holds a stream."""
        if self._client is not None:
            return
        if self._closed:
            raise BusError("redis bus: closed")
        client = Redis.from_url(
            self._url,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
            retry=Retry(NoBackoff(), 1),  # one new connection when a pooled one went stale
        )
        try:
            async with asyncio.timeout(self._timeout):
                kind = await client.type(self._stream)
        except _ERRORS as exc:
            await client.aclose()
            raise self._error("cannot start", exc) from exc
        if kind not in (b"none", b"stream", "none", "stream"):
            await client.aclose()
            raise BusError(f"redis bus: key {self._stream!r} holds a {kind!r}, not a stream")
        self._client = client
        logger.info("redis bus: connected to %s, stream %r", masked_url(self._url), self._stream)

    async def publish(self, messages: Sequence[Message]) -> None:
        """XADD every message, in order, in one pipeline; returns once Redis took them all."""
        for message in messages:
            check_key(message.key)
        client = self._ready()
        if not messages:
            return
        try:
            async with asyncio.timeout(self._timeout), client.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.xadd(self._stream, _fields(message), maxlen=self._maxlen, approximate=True)
                replies = await pipe.execute(raise_on_error=False)
        except _ERRORS as exc:
            raise self._error(f"{len(messages)} message(s) not taken", exc) from exc
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        if failed:
            raise BusError(
                f"redis bus: {len(failed)} of {len(messages)} message(s) refused: {failed[0]}"
            )

    async def subscribe(self) -> Subscription:
        """Every entry added to the stream from now on, read by a task of its own."""
        client = self._ready()
        try:
            async with asyncio.timeout(self._timeout):
                start = await self._last_id(client)
        except _ERRORS as exc:
            raise self._error("cannot subscribe", exc) from exc
        subscription = QueueSubscription(self.name, self._limit)
        reader = asyncio.get_running_loop().create_task(self._read(client, subscription, start))

        async def release() -> None:
            self._subscriptions.discard(subscription)
            await _stop(reader)

        subscription.set_release(release)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        """End every subscription and close the connections."""
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, set()
        for subscription in subscriptions:
            await subscription.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _last_id(self, client: Redis) -> bytes | str:
        try:
            info = await client.xinfo_stream(self._stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return "0-0"  # every entry of a stream created later is new
            raise
        last: bytes | str = info["last-generated-id"]
        return last

    async def _read(
        self, client: Redis, subscription: QueueSubscription, last: bytes | str
    ) -> None:
        try:
            await self._follow(client, subscription, last)
        except Exception as exc:  # a reader that dies must not leave its subscriber waiting
            logger.exception("redis bus: a subscription's reader failed")
            subscription.fail(f"its reader failed: {type(exc).__name__}: {exc}")

    async def _follow(
        self, client: Redis, subscription: QueueSubscription, last: bytes | str
    ) -> None:
        block = max(50, int(self._timeout * 500))  # ms: well inside the socket timeout
        failing = False
        while not subscription.closed:
            try:
                reply = await client.xread({self._stream: last}, count=READ_COUNT, block=block)
            except _ERRORS as exc:
                if not failing:
                    logger.warning("redis bus: reading the stream failed, retrying: %s", exc)
                failing = True
                await asyncio.sleep(min(1.0, self._timeout))
                continue
            if failing:
                logger.info("redis bus: reading the stream again")
                failing = False
            for entry_id, fields in _entries(reply):
                last = entry_id
                if not subscription.offer(_message(fields)):
                    return

    def _ready(self) -> Redis:
        if self._closed:
            raise BusError("redis bus: closed")
        if self._client is None:
            raise BusError("redis bus: not started")
        return self._client

    def _error(self, doing: str, exc: BaseException) -> BusError:
        detail = without_secrets(str(exc) or "no answer in time", self._url)
        where = masked_url(self._url)
        return BusError(f"redis bus ({where}): {doing}: {type(exc).__name__}: {detail}")


async def _stop(reader: asyncio.Task[None]) -> None:
    """Cancel `reader` and wait for it to end.

    Python 3.11's asyncio.wait_for, which redis-py wraps around socket writes, can swallow
    a cancellation that lands as the write completes (fixed in 3.12): cancel again until
    the task is done, rather than wait for its XREAD to time out.
    """
    for _ in range(100):
        reader.cancel()
        await asyncio.wait([reader], timeout=0.05)
        if reader.done():
            return
    logger.warning("redis bus: a subscription's reader did not stop")


def _fields(message: Message) -> dict[FieldT, EncodableT]:
    fields: dict[FieldT, EncodableT] = {
        "id": message.id,
        "key": message.key,
        "subject": message.subject,
        "body": message.body,
        "content_type": message.content_type,
    }
    if message.traceparent is not None:  # the trace context of the hop (the relay's send)
        fields["traceparent"] = message.traceparent
    return fields


def _entries(reply: Any) -> list[tuple[bytes | str, Mapping[Any, Any]]]:
    """The (id, fields) entries of an XREAD reply, in RESP2 (a list) or RESP3 (a map) form."""
    if not reply:
        return []
    if isinstance(reply, Mapping):  # RESP3: {stream: [[entry, ...]]}
        streams = [
            value[0] if value and isinstance(value[0], list) else value for value in reply.values()
        ]
    else:  # RESP2: [[stream, [entry, ...]]]
        streams = [pair[1] for pair in reply]
    return [(entry_id, fields) for entries in streams for entry_id, fields in entries]


def _message(fields: Mapping[Any, Any]) -> Message:
    def text(name: str) -> str:
        value = fields.get(name.encode(), fields.get(name, b""))
        return value.decode() if isinstance(value, bytes) else str(value)

    body = fields.get(b"body", fields.get("body", b""))
    return Message(
        id=text("id"),
        key=text("key"),
        subject=text("subject"),
        body=body if isinstance(body, bytes) else str(body).encode(),
        content_type=text("content_type"),
    )
