"""Change events: what a create, update or delete appends to the history, and the CloudEvent
(1.0, structured JSON mode) that carries it to brokers, webhooks and live subscribers.

An event holds the change as a diff of fields (`changes`: field → new value; for a delete,
nothing) and the record as it stands after the change (`record`; for a delete, as it was).
Writeonly and encrypted fields never leave the database: their values are replaced by
REDACTED in both, so a history reader learns that a password changed, never what it is.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = [
    "ACTIONS",
    "REDACTED",
    "Event",
    "Message",
    "encoded_parts",
    "event_from_cloudevent",
    "event_source",
    "to_cloudevent",
]

ACTIONS = ("created", "updated", "deleted")
REDACTED = "[redacted]"
SPEC_VERSION = "1.0"

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one record, as the history stores it and the bus carries it."""

    id: str  # UUIDv7: time-ordered, the CloudEvent id and the dedup key downstream
    resource: str
    record_id: str
    action: str  # one of ACTIONS
    at: datetime.datetime
    version: int  # the record's version after the change (before it, for a delete)
    changes: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] = field(default_factory=dict)
    actor: str | None = None  # the account that made the change; None for the system
    request_id: str | None = None
    # `changes` and `record` already encoded as JSON (by the recorder), so that the history
    # row and the CloudEvent reuse the same bytes rather than encoding them twice each
    encoded: tuple[bytes, bytes] | None = field(default=None, compare=False, repr=False)
    # The W3C traceparent of the write that made the event (its producer span), when traced:
    # stored with the outbox row, carried as the CloudEvent's `traceparent` extension.
    traceparent: str | None = field(default=None, compare=False, repr=False)

    @property
    def type(self) -> str:
        """`{resource}.{action}`: the CloudEvent type's tail and the broker routing key."""
        return f"{self.resource}.{self.action}"


@dataclass(frozen=True, slots=True)
class Message:
    """What a bus carries: a CloudEvent's bytes, its id (dedup), routing key and ordering key."""

    id: str
    key: str  # `{resource}.{action}`
    subject: str  # the record id: order is kept per subject
    body: bytes  # the CloudEvent, structured JSON mode
    content_type: str = "application/cloudevents+json"
    # The trace context for the transport's headers (the relay's send span once it sends;
    # the write's until then); the CloudEvent's own `traceparent` stays the write's.
    traceparent: str | None = None


def event_source(design_name: str) -> str:
    """The CloudEvent `source` of a backend's events."""
    return f"urn:charpente:{design_name}"


def to_cloudevent(event: Event, source: str) -> Message:
    """The CloudEvents 1.0 structured-mode message for `event`; `source` names the backend."""
    envelope = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": source,
        "type": f"charpente.{event.type}",
        "subject": event.record_id,
        "time": _timestamp(event.at),
        "datacontenttype": "application/json",
        "data": {
            "resource": event.resource,
            "id": event.record_id,
            "action": event.action,
            "version": event.version,
            "actor": event.actor,
            "request_id": event.request_id,
            "changes": _raw(event, 0, event.changes),
            "record": _raw(event, 1, event.record),
        },
    }
    if event.traceparent is not None:  # CloudEvents' distributed tracing extension
        envelope["traceparent"] = event.traceparent
    body = _encoder.encode(envelope)
    return Message(event.id, event.type, event.record_id, body, traceparent=event.traceparent)


def event_from_cloudevent(body: bytes) -> Event:
    """The Event a CloudEvent's bytes carry (the inverse of to_cloudevent).

    Raises ValueError when `body` is not a charpente CloudEvent.
    """
    try:
        envelope = msgspec.json.decode(body)
        data = envelope["data"]
        return Event(
            id=str(envelope["id"]),
            resource=str(data["resource"]),
            record_id=str(data["id"]),
            action=str(data["action"]),
            at=datetime.datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00")),
            version=int(data["version"]),
            changes=dict(data.get("changes") or {}),
            record=dict(data.get("record") or {}),
            actor=data.get("actor"),
            request_id=data.get("request_id"),
        )
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a charpente CloudEvent: {exc}") from exc


def encoded_parts(event: Event) -> tuple[bytes, bytes]:
    """`changes` and `record` as JSON: the ones already encoded, or encoded now."""
    if event.encoded is not None:
        return event.encoded
    return _encoder.encode(dict(event.changes)), _encoder.encode(dict(event.record))


def _raw(event: Event, part: int, value: Mapping[str, Any]) -> object:
    return dict(value) if event.encoded is None else msgspec.Raw(event.encoded[part])


def _timestamp(at: datetime.datetime) -> str:
    """RFC 3339 in UTC with a Z, as CloudEvents asks."""
    return at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
