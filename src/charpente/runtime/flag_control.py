"""Changing flags at run time: stored settings, their history, and every process told at once.

The design gives each flag's defaults; what admins set is stored (the FlagStore port), with
a history entry (who, before, after) in the same transaction. A change is published on the
bus as a `flag.changed` CloudEvent: every `serve` process follows the bus (`FlagSync`),
reloads the stored settings and re-evaluates what depends on them (open live streams). A
process that missed a message (the bus was down) catches up at its next periodic reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeGuard

import msgspec

from charpente.design.model import ADMIN_ROLE, Design, Flag
from charpente.errors import BadRequest, Forbidden, NotFound, Unauthorized
from charpente.runtime.caller import Caller
from charpente.runtime.clock import SystemClock
from charpente.runtime.events import Message, event_source
from charpente.runtime.flags import FlagBoard, FlagSetting, changed_setting
from charpente.runtime.ids import new_id
from charpente.runtime.ports import Bus, Clock, Subscription

__all__ = [
    "FLAG_CHANGED",
    "MAX_HISTORY",
    "FlagChange",
    "FlagControl",
    "FlagStore",
    "FlagSync",
    "StoredFlag",
]

logger = logging.getLogger("charpente.flags")

FLAG_CHANGED = "flag.changed"
MAX_HISTORY = 100
RELOAD_EVERY = 10.0  # seconds: the safety net behind the bus, not the way changes travel
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class StoredFlag:
    """A flag's setting as admins last stored it."""

    name: str
    setting: FlagSetting | None  # None: never set at run time (the design's applies)
    changed_at: datetime.datetime  # when it was set, or first seen
    changed_by: str | None


@dataclass(frozen=True, slots=True)
class FlagChange:
    """One history entry: who changed a flag, when, from what to what."""

    id: str
    name: str
    at: datetime.datetime
    actor: str | None
    before: FlagSetting
    after: FlagSetting

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "flag": self.name,
            "at": _timestamp(self.at),
            "actor": self.actor,
            "before": self.before.as_json(),
            "after": self.after.as_json(),
        }


class FlagStore(Protocol):
    """Stored flag settings and their history (sql.flagstore)."""

    async def stored(self) -> list[StoredFlag]: ...

    async def seen(self, names: Sequence[str], at: datetime.datetime) -> None:
        """Record that these flags exist (the first time only), for hygiene."""
        ...

    async def change(
        self,
        name: str,
        default: FlagSetting,
        change: Callable[[FlagSetting], FlagSetting],
        actor: str | None,
        at: datetime.datetime,
    ) -> FlagChange:
        """Apply `change` to the stored setting (`default` when none is), under a lock, and
        record the history entry in the same transaction."""
        ...

    async def history(self, name: str, limit: int) -> list[FlagChange]:
        """The latest changes of `name`, newest first."""
        ...


Listener = Callable[[Sequence[str]], Awaitable[None]]
"""Told the names of the flags whose settings changed in this process."""


class FlagControl:
    """Flags as admins see and change them, over the board this process evaluates with."""

    def __init__(
        self,
        design: Design,
        board: FlagBoard,
        store: FlagStore,
        *,
        bus: Bus | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.design = design
        self.board = board
        self.store = store
        self.bus = bus
        self.clock: Clock = clock or SystemClock()
        self.listeners: list[Listener] = []
        self._changed_at: dict[str, StoredFlag] = {}

    async def reload(self) -> list[str]:
        """Take the stored settings; the names that changed here (listeners are told)."""
        stored = await self.store.stored()
        self._changed_at = {s.name: s for s in stored}
        unseen = [name for name in self.design.flags if name not in self._changed_at]
        if unseen:
            await self.store.seen(unseen, self.clock.now())
        wanted = {name: FlagSetting.of(flag) for name, flag in self.design.flags.items()}
        wanted.update((s.name, s.setting) for s in stored if s.name in wanted and s.setting)
        changed = [n for n, s in wanted.items() if self.board.settings.get(n) != s]
        if changed:
            self.board.apply(wanted.items())
            for listener in self.listeners:
                await listener(changed)
        return changed

    @property
    def stored(self) -> Mapping[str, StoredFlag]:
        """What the store held at the last reload, by flag name."""
        return self._changed_at

    def describe(self, caller: Caller) -> list[dict[str, object]]:
        """Every flag with its current setting (admins only)."""
        _require_admin(caller)
        return [self._described(name) for name in sorted(self.design.flags)]

    def get(self, caller: Caller, name: str) -> dict[str, object]:
        _require_admin(caller)
        return self._described(self._flag(name).name)

    async def set(
        self, caller: Caller, name: str, body: object, *, actor: str | None = None
    ) -> dict[str, object]:
        """Change flag `name` with the keys of `body` (default, rollout, allow, variants)."""
        _require_admin(caller)
        flag = self._flag(name)
        if not isinstance(body, Mapping):
            raise BadRequest(detail="the body must be a JSON object")
        roles = self.design.auth.roles

        def change(current: FlagSetting) -> FlagSetting:
            return changed_setting(flag, current, body, roles)

        who = actor if actor is not None else caller.id
        done = await self.store.change(name, FlagSetting.of(flag), change, who, self.clock.now())
        await self.reload()
        await self._announce(done)
        return self._described(name)

    async def history(self, caller: Caller, name: str, limit: int = MAX_HISTORY) -> list[object]:
        _require_admin(caller)
        self._flag(name)
        return [c.as_json() for c in await self.store.history(name, limit)]

    def _flag(self, name: str) -> Flag:
        flag = self.design.flags.get(name)
        if flag is None:
            raise NotFound(detail=f"no flag {name[:100]!r} in the design")
        return flag

    def _described(self, name: str) -> dict[str, object]:
        flag = self.design.flags[name]
        stored = self._changed_at.get(name)
        return {
            "name": name,
            **self.board.settings[name].as_json(),
            "by": flag.by,
            "group": flag.bucket_group,
            "expires": None if flag.expires is None else flag.expires.isoformat(),
            "owner": flag.owner,
            "description": flag.description,
            "design": FlagSetting.of(flag).as_json(),
            "changed_at": None if not _was_set(stored) else _timestamp(stored.changed_at),
            "changed_by": None if stored is None else stored.changed_by,
        }

    async def _announce(self, change: FlagChange) -> None:
        """Publish `flag.changed`; when the bus fails, the others catch up at their reload."""
        if self.bus is None:
            return
        try:
            await self.bus.publish([flag_changed_message(self.design, change)])
        except Exception as exc:  # a broker's own errors too: the change is stored anyway
            logger.warning(
                "flag %s changed, but the bus did not take the news: %s", change.name, exc
            )


def flag_changed_message(design: Design, change: FlagChange) -> Message:
    """The `flag.changed` CloudEvent of a change."""
    envelope = {
        "specversion": "1.0",
        "id": change.id,
        "source": event_source(design.name),
        "type": f"charpente.{FLAG_CHANGED}",
        "subject": change.name,
        "time": _timestamp(change.at),
        "datacontenttype": "application/json",
        "data": change.as_json(),
    }
    return Message(change.id, FLAG_CHANGED, change.name, _encoder.encode(envelope))


class FlagSync:
    """Keeps a process's board in step: reloads on every `flag.changed` from the bus, and
    every RELOAD_EVERY seconds whatever happens (a message lost while the bus was down)."""

    def __init__(self, control: FlagControl, every: float = RELOAD_EVERY) -> None:
        self.control = control
        self.every = every
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        with contextlib.suppress(Exception):  # the database may still be starting
            await self.control.reload()
        self._tasks = [asyncio.create_task(self._periodic(), name="charpente-flags-reload")]
        if self.control.bus is not None:
            first = None
            try:  # subscribed before start returns: no change made from now on is missed
                first = await self.control.bus.subscribe()
            except Exception as exc:  # a broker's own errors too: _follow keeps trying
                logger.info("flags: cannot follow the bus yet (%s)", exc)
            follow = self._follow(first)
            self._tasks.append(asyncio.create_task(follow, name="charpente-flags-bus"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._reload()

    async def _follow(self, subscription: Subscription | None) -> None:
        bus = self.control.bus
        assert bus is not None
        while True:
            try:
                if subscription is None:
                    subscription = await bus.subscribe()
                    await self._reload()  # what changed while we were not subscribed
                try:
                    async for message in subscription:
                        if message.key == FLAG_CHANGED:
                            await self._reload()
                finally:
                    await subscription.close()
                    subscription = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus went away: follow it again in a moment
                logger.info("flags: the bus subscription ended (%s): subscribing again", exc)
                await asyncio.sleep(1.0)

    async def _reload(self) -> None:
        try:
            await self.control.reload()
        except Exception as exc:  # the database is away for a moment: next time
            logger.warning("flags: cannot reload the settings: %s", exc)


def _was_set(stored: StoredFlag | None) -> TypeGuard[StoredFlag]:
    return stored is not None and stored.setting is not None


def _require_admin(caller: Caller) -> None:
    if caller.system or caller.role == ADMIN_ROLE:
        return
    if not caller.signed_in:
        raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": "Bearer"})
    raise Forbidden(detail="only admins manage flags")


def _timestamp(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def history_id() -> str:
    """The id of a new history entry (time-ordered)."""
    return new_id()
