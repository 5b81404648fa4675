"""Live changes: each server process follows the bus once and hands every change of a
resource to the streams open on it, each showing what its caller's read rules allow.

The relay publishes the CloudEvent of each write of a resource with `events:` to the bus.
`ChangeFeed.start()` opens ONE bus subscription per process and a task that decodes each
message once (an undecodable one is logged and skipped) and offers it to the streams of
its resource, so a change made through any process reaches the streams of every process.
When the subscription fails, every stream ends (it may have missed changes: its client
resumes with Last-Event-ID) and the feed subscribes again, backing off.

Nothing here waits for a reader: a stream holds at most `queue_size` changes, and one that
falls that far behind is ended. Streams are bounded per process (503 beyond) and per
caller (429 beyond), and each lives at most about `max_age` seconds, so an expired token or
a disabled account stops receiving changes at the next reconnection.

Resuming (`last_event_id`): the stream is subscribed first, then replays the history after
that id page by page (Database.events_after, through the same rules), then goes live,
dropping the live changes it replayed already (event ids are time-ordered: those not after
the last one replayed). With more than `replay_limit` events to replay it sends a Reset
(reload, then follow) and goes live from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from dataclasses import dataclass

from charpente.compile.plan import Record
from charpente.compile.policy import DENIED, field_view, row_fields, row_filter
from charpente.compile.request import parse_list_params
from charpente.compile.values import parse_uuid
from charpente.design.model import Design, Resource
from charpente.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from charpente.runtime.caller import Caller
from charpente.runtime.event_view import Change, EventView, typed_record
from charpente.runtime.events import Event, Message, event_from_cloudevent
from charpente.runtime.ids import new_id
from charpente.runtime.ports import Bus, Database, Subscription
from charpente.runtime.resilience import Backoff

__all__ = [
    "Change",
    "ChangeFeed",
    "Reset",
    "Stream",
    "StreamEnded",
]

logger = logging.getLogger("charpente.changes")

QUEUE_SIZE = 1_000  # changes a stream may hold before it is ended
MAX_STREAMS = 1_000  # open streams per process
MAX_PER_CALLER = 10  # open streams per account (or per address, without one)
REPLAY_LIMIT = 10_000  # events replayed after a Last-Event-ID before a Reset
MAX_AGE = 900.0  # seconds a stream lives at most (less up to a fifth, so they spread out)
REPLAY_PAGE = 500  # events read from the history per query
_SEEN = 10_000  # message ids remembered, to drop what a bus delivers twice
_STEADY = 30.0  # seconds a bus subscription must last before backing off starts over
_RETRY_AFTER = {"Retry-After": "5"}


class StreamEnded(Exception):  # noqa: N818 - a signal, like StopAsyncIteration
    """The stream is over; `reason` says why. Its client resumes with Last-Event-ID."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reset:
    """Too many changes to replay: reload what you show, then follow from `id` (an event
    id for the present moment, so a reconnection resumes from here)."""

    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Arrived:
    """A change from the bus: its event, and its record typed (once, for every stream)."""

    event: Event
    row: Record


class Stream:
    """One subscriber's changes, in order: call `next` until it raises StreamEnded, and
    `close` when done (closing twice is harmless)."""

    def __init__(
        self,
        feed: ChangeFeed,
        resource: Resource,
        view: EventView,
        key: str,
        after: str | None,
        expires_at: float,
    ) -> None:
        self.resource = resource
        self.key = key
        self.reason: str | None = None  # why it ended; None while open
        self._feed = feed
        self._view = view
        self._queue: deque[_Arrived] = deque()
        self._wake = asyncio.Event()
        self._over = asyncio.Event()
        self._floor = after  # live changes up to this id were replayed (or reset past)
        self._cursor = after  # where the replay goes on; None once it is done
        self._page: deque[Event] = deque()
        self._replayed = 0
        self._expires_at = expires_at

    async def next(self, wait: float) -> Change | Reset | None:
        """The next change the caller may see; None when none came within `wait` seconds
        (time for a heartbeat, however many changes it was not shown meanwhile). Raises
        StreamEnded once the stream is over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            now = loop.time()
            if now >= self._expires_at:
                self.end("the stream reached its maximum age")
            if self.reason is not None:
                raise StreamEnded(self.reason)
            if now >= deadline:
                return None
            if self._cursor is not None or self._page:
                item = await self._from_history()
            elif self._queue:
                item = await self._from_live(self._queue.popleft())
            else:
                await self._sleep(min(deadline, self._expires_at) - now)
                continue
            if item is not None:
                return item

    async def wait_ended(self) -> str:
        """Wait until the stream is over (by the feed: shutdown, falling behind); why."""
        await self._over.wait()
        assert self.reason is not None
        return self.reason

    def offer(self, arrived: _Arrived) -> None:
        """Queue a live change without waiting; a stream QUEUE_SIZE changes behind ends."""
        if self.reason is not None:
            return
        if len(self._queue) >= self._feed.queue_size:
            logger.info(
                "a %s stream fell %d changes behind: ended", self.resource.name, len(self._queue)
            )
            self.end(f"the stream fell {len(self._queue)} changes behind")
            return
        self._queue.append(arrived)
        self._wake.set()

    def end(self, reason: str) -> None:
        """End the stream: `next` raises StreamEnded from now on, its place is free."""
        if self.reason is not None:
            return
        self.reason = reason
        self._queue.clear()
        self._page.clear()
        self._wake.set()
        self._over.set()
        self._feed.forget(self)

    def close(self) -> None:
        self.end("closed")

    async def _from_live(self, arrived: _Arrived) -> Change | None:
        if self._floor is not None and arrived.event.id <= self._floor:
            return None  # replayed from the history already
        return await self._view.show(arrived.event, arrived.row)

    async def _from_history(self) -> Change | Reset | None:
        """One replayed event the caller may see (None: not this one), or the next page."""
        if self._page:
            event = self._page.popleft()
            self._floor = event.id
            return await self._view.show(event, typed_record(self.resource, event.record))
        assert self._cursor is not None
        database, name = self._feed.database, self.resource.name
        room = self._feed.replay_limit - self._replayed
        if room <= 0:
            beyond = await database.events_after(name, self._cursor, 1)
            self._cursor = None
            if not beyond:
                return None
            mark = new_id()  # time-ordered: later than every event replayed or skipped
            self._floor = mark
            limit = self._feed.replay_limit
            return Reset(mark, f"more than {limit} changes to replay: reload, then follow")
        asked = min(REPLAY_PAGE, room)
        events = await database.events_after(name, self._cursor, asked)
        self._replayed += len(events)
        self._cursor = events[-1].id if len(events) == asked else None
        self._page.extend(events)
        return None

    async def _sleep(self, seconds: float) -> None:
        """Wait for a change or the end, at most `seconds`."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()


class ChangeFeed:
    """Every process's one bus subscription, fanned out to the streams open on it.

    `start()` subscribes (retrying in the background while the bus is down), `open(...)`
    checks a request and opens a stream (raising ApiError: 400, 401, 403, 404, 429, 503),
    `stop()` ends every stream and the subscription.
    """

    def __init__(  # noqa: PLR0913 (keyword-only limits, each with its default)
        self,
        design: Design,
        database: Database,
        bus: Bus,
        *,
        queue_size: int = QUEUE_SIZE,
        max_streams: int = MAX_STREAMS,
        max_per_caller: int = MAX_PER_CALLER,
        replay_limit: int = REPLAY_LIMIT,
        max_age: float = MAX_AGE,
    ) -> None:
        for name, value in (
            ("queue_size", queue_size),
            ("max_streams", max_streams),
            ("max_per_caller", max_per_caller),
            ("replay_limit", replay_limit),
        ):
            if not 1 <= value <= 10_000_000:
                raise ValueError(f"{name} must be between 1 and 10,000,000, not {value}")
        if not 0 < max_age <= 86_400:
            raise ValueError(f"max_age must be above 0 and at most a day, not {max_age}")
        self.design, self.database, self.bus = design, database, bus
        self.queue_size, self.max_streams = queue_size, max_streams
        self.max_per_caller, self.replay_limit, self.max_age = max_per_caller, replay_limit, max_age
        self._resources = {n: r for n, r in design.resources.items() if r.events}
        self._streams: dict[str, set[Stream]] = {name: set() for name in self._resources}
        self._per_key: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def streams(self, resource: str) -> bool:
        """Whether `resource` has live changes (its design lists `events:`)."""
        return resource in self._resources

    @property
    def live(self) -> bool:
        """Whether the feed is subscribed to the bus right now."""
        return self._subscription is not None

    @property
    def open_streams(self) -> int:
        return sum(len(streams) for streams in self._streams.values())

    async def start(self) -> None:
        """Subscribe to the bus and follow it; when the bus is down, say so and keep trying
        in the background (streams are refused with a 503 meanwhile)."""
        if self._task is not None:
            return
        first = None
        try:
            first = await self.bus.subscribe()
        except Exception as exc:  # a broker's own errors too: the feed retries
            logger.warning("live changes wait for the %s bus: %s", self.bus.name, _said(exc))
        self._subscription = first
        self._task = asyncio.create_task(self._follow(first), name="charpente-changes")

    async def stop(self) -> None:
        """End every stream and the bus subscription."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end_all("the server is shutting down")

    def open(
        self,
        resource: str,
        caller: Caller,
        *,
        filter: str | None = None,
        last_event_id: str | None = None,
        client: str | None = None,
    ) -> Stream:
        """A stream of `resource`'s changes that `caller` may read, matching `filter` (the
        list filter language), after the event `last_event_id` if given. `client` (the
        caller's address) counts streams of callers without an account."""
        spec = self._resources.get(resource)
        if spec is None:
            raise NotFound(detail=f"{resource} has no live changes")
        auth = None if caller.system else {"id": caller.id, "role": caller.role, "mfa": caller.mfa}
        rule = row_filter(spec, "list", auth)
        if rule is DENIED:
            raise _refused(caller, resource)
        view = field_view(spec, auth)
        where = None
        if filter is not None:
            where = parse_list_params(spec, self.design, [("filter", filter)]).where
            hidden = sorted({n for n in row_fields(where) if not view.visible(n)} if where else ())
            if hidden:
                raise BadRequest(detail=f"you may not filter on: {', '.join(hidden)}")
        after = None if last_event_id is None else _event_id(last_event_id)
        key = f"account:{caller.id}" if caller.signed_in else f"client:{client or '?'}"
        self._check_room(key)
        event_view = EventView(spec, self.database, rule=rule, where=where, view=view, auth=auth)
        age = self.max_age * (1 - 0.2 * random.random())  # noqa: S311 (spread, not secrecy)
        expires_at = asyncio.get_running_loop().time() + age
        stream = Stream(self, spec, event_view, key, after, expires_at)
        self._streams[resource].add(stream)
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return stream

    def _check_room(self, key: str) -> None:
        if self._subscription is None:
            raise Unavailable(
                detail="live changes are not available right now", headers=_RETRY_AFTER
            )
        if self.open_streams >= self.max_streams:
            raise Unavailable(
                detail="this server has no room for another live stream", headers=_RETRY_AFTER
            )
        if self._per_key.get(key, 0) >= self.max_per_caller:
            detail = f"at most {self.max_per_caller} live streams at once per caller"
            raise TooManyRequests(detail=detail, headers=_RETRY_AFTER)

    def forget(self, stream: Stream) -> None:
        """Free an ended stream's place (Stream.end calls it)."""
        streams = self._streams.get(stream.resource.name)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        left = self._per_key.get(stream.key, 0) - 1
        if left > 0:
            self._per_key[stream.key] = left
        else:
            self._per_key.pop(stream.key, None)

    def _end_all(self, reason: str) -> None:
        for streams in self._streams.values():
            for stream in tuple(streams):
                stream.end(reason)

    async def _follow(self, subscription: Subscription | None) -> None:
        """Follow the bus until stopped, subscribing again after every failure."""
        backoff = Backoff(base=0.5, cap=30.0)
        loop = asyncio.get_running_loop()
        while True:
            if subscription is None:
                try:
                    subscription = await self.bus.subscribe()
                except Exception as exc:
                    logger.warning(
                        "live changes: cannot subscribe to the %s bus: %s",
                        self.bus.name,
                        _said(exc),
                    )
                    await asyncio.sleep(backoff.next())
                    continue
            self._subscription, since = subscription, loop.time()
            reason = "the bus subscription ended"
            try:
                async for message in subscription:
                    self._dispatch(message)
            except Exception as exc:  # BusError, or a broker's own error
                reason = f"the bus subscription failed: {_said(exc)}"
            finally:
                self._subscription = None
                with contextlib.suppress(Exception):
                    await subscription.close()
            logger.warning("live changes: %s; open streams end and resume", reason)
            self._end_all("the server lost the bus: resume with Last-Event-ID")
            subscription = None
            if loop.time() - since >= _STEADY:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    def _dispatch(self, message: Message) -> None:
        """Offer a bus message to the streams of its resource (decoded once, if any)."""
        streams = self._streams.get(message.key.rpartition(".")[0])
        if not streams or self._already_seen(message.id):
            return
        try:
            event = event_from_cloudevent(message.body)
        except ValueError as exc:
            logger.warning("live changes: skipped message %.64r: %s", message.id, _said(exc))
            return
        spec = self._resources.get(event.resource)
        if spec is None:
            return
        arrived = _Arrived(event, typed_record(spec, event.record))
        for stream in tuple(self._streams[event.resource]):
            stream.offer(arrived)

    def _already_seen(self, message_id: str) -> bool:
        """Whether this message came already (a bus may deliver one twice); remembers it."""
        if message_id in self._seen:
            return True
        self._seen[message_id] = None
        if len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        return False


def _refused(caller: Caller, resource: str) -> ApiError:
    """As for a list: 401 for a caller without an account, else 403."""
    if not caller.signed_in:
        return Unauthorized(
            detail="sign in to do this", headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    return Forbidden(detail=f"you may not read {resource}")


def _event_id(text: str) -> str:
    """A Last-Event-ID: the id of an event (a UUID), else a 400."""
    try:
        if len(text) > 64:
            raise ValueError(text)
        return parse_uuid(text.strip())
    except ValueError:
        raise BadRequest(detail="Last-Event-ID is not the id of an event") from None


def _said(exc: BaseException) -> str:
    """An error in a log line: its type and at most 200 characters of its message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
