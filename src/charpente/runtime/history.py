"""The audit history: an Event per create, update and delete, appended in the write's
transaction (and, for resources with `events:`, the CloudEvent put in the outbox beside it);
reading a record's history, and rebuilding its state at a past time from its events.

What an event keeps of a record: its declared fields, minus counters (they move with other
records' writes, not this one's), with writeonly and encrypted fields REDACTED — so time
travel gives those back as null, and the history shows that they changed, never their value.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from charpente.compile.plan import Record
from charpente.design.model import Design, Kind, Resource
from charpente.runtime import tracing
from charpente.runtime.caller import Caller
from charpente.runtime.events import REDACTED, Event, encoded_parts
from charpente.runtime.ids import new_id
from charpente.runtime.ports import Clock, Transaction

__all__ = ["Recorder", "history_entry", "state_at"]

_SYSTEM = frozenset({"id", "created_at", "updated_at", "version"})


@dataclass(frozen=True, slots=True)
class _Kept:
    """What the history keeps of one resource's records."""

    fields: tuple[str, ...]  # declared fields, counters left out
    redacted: frozenset[str]  # writeonly or encrypted: their values never leave the table
    readable: tuple[str, ...]  # what a message's `record` shows (counters included)
    outbox: frozenset[str]  # actions this resource sends to the outbox


class Recorder:
    """Builds each write's Event and appends it (with its outbox message) in the transaction."""

    def __init__(self, design: Design, clock: Clock) -> None:
        self.clock = clock
        self._kept = {name: _kept(r) for name, r in design.resources.items()}

    def outboxed(self, resource: str) -> frozenset[str]:
        """The actions of `resource` that go to the outbox."""
        return self._kept[resource].outbox

    async def created(
        self, tx: Transaction, resource: str, record: Record, caller: Caller, request_id: str | None
    ) -> Event:
        kept = self._kept[resource]
        changes = {name: record.get(name) for name in kept.fields}
        return await self._append(tx, resource, "created", record, changes, caller, request_id)

    async def updated(
        self,
        tx: Transaction,
        resource: str,
        before: Record,
        after: Record,
        caller: Caller,
        request_id: str | None,
    ) -> Event | None:
        """The update's event, or None (and nothing appended) when no kept field changed."""
        kept = self._kept[resource]
        changes = {n: after.get(n) for n in kept.fields if before.get(n) != after.get(n)}
        if not changes:
            return None
        return await self._append(tx, resource, "updated", after, changes, caller, request_id)

    async def deleted(
        self, tx: Transaction, resource: str, record: Record, caller: Caller, request_id: str | None
    ) -> Event:
        return await self._append(tx, resource, "deleted", record, {}, caller, request_id)

    async def _append(
        self,
        tx: Transaction,
        resource: str,
        action: str,
        record: Record,
        changes: Mapping[str, object],
        caller: Caller,
        request_id: str | None,
    ) -> Event:
        kept = self._kept[resource]
        at = record.get("updated_at") if action != "deleted" else None
        event = Event(
            id=new_id(),
            resource=resource,
            record_id=str(record["id"]),
            action=action,
            at=at if isinstance(at, datetime.datetime) else self.clock.now(),
            version=int(record.get("version") or 1),  # type: ignore[call-overload]
            changes=_redacted(changes, kept.redacted),
            record=_redacted({n: record.get(n) for n in kept.readable}, kept.redacted),
            actor=caller.id if caller.signed_in else None,
            request_id=request_id,
        )
        queued = action in kept.outbox
        if queued:  # the record is stored with the event, and encoded once for both
            traced = tracing.producer_context(event.type) if tracing.enabled() else None
            event = dataclasses.replace(event, encoded=encoded_parts(event), traceparent=traced)
        await tx.append_event(event, outbox=queued)
        return event


def state_at(events: Iterable[Event], at: datetime.datetime) -> Record | None:
    """The record as its events leave it at time `at` (events in order, oldest first), or
    None when it did not exist then (not yet created, or deleted)."""
    state: dict[str, object] | None = None
    for event in events:
        if event.at > at:
            break
        if event.action == "created":
            state = {"id": event.record_id, "created_at": event.at}
        if event.action == "deleted" or state is None:
            state = None
            continue
        state.update((k, None if v == REDACTED else v) for k, v in event.changes.items())
        state.update(updated_at=event.at, version=event.version)
    return state


def history_entry(event: Event, hidden: Collection[str] = ()) -> Record:
    """An event as /history shows it; `hidden` fields (field read rules) left out."""
    changes = {k: v for k, v in event.changes.items() if k not in hidden}
    return {
        "id": event.id,
        "action": event.action,
        "at": event.at,
        "version": event.version,
        "actor": event.actor,
        "request_id": event.request_id,
        "changes": changes,
    }


def _kept(resource: Resource) -> _Kept:
    fields = tuple(
        f.name for f in resource.fields if f.kind is not Kind.COUNT and f.name not in _SYSTEM
    )
    redacted = frozenset(f.name for f in resource.fields if f.writeonly or f.encrypted)
    readable = tuple(f.name for f in resource.all_fields if not f.writeonly)
    return _Kept(fields, redacted, readable, frozenset(resource.events))


def _redacted(values: Mapping[str, object], redacted: frozenset[str]) -> dict[str, object]:
    return {k: REDACTED if k in redacted and v is not None else v for k, v in values.items()}
