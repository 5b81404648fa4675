"""What the webhook admin API accepts and answers: bodies checked field by field (every bad
field listed, unknown ones refused), and endpoints and deliveries as JSON objects.

Pure: the service (runtime.webhooks) does the I/O around these.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from charpente.design.events import ACTIONS, url_problem, webhook_problems
from charpente.design.model import Design, Webhook
from charpente.errors import BadRequest, FieldError, ValidationFailed
from charpente.runtime.ports import Delivery, WebhookEndpoint

__all__ = [
    "CREATE_KEYS",
    "MAX_EVENTS",
    "MAX_PAGE",
    "STATES",
    "UPDATE_KEYS",
    "Changes",
    "cursor_of",
    "delivery_view",
    "design_endpoint_view",
    "endpoint_view",
    "matches",
    "read_changes",
    "read_cursor",
    "read_limit",
    "read_state",
]

CREATE_KEYS = ("name", "url", "events", "description", "enabled")
UPDATE_KEYS = ("url", "events", "description", "enabled")
STATES = ("pending", "delivered", "dead")
MAX_EVENTS = 50
MAX_PAGE = 100
DEFAULT_PAGE = 20
MAX_DESCRIPTION = 500
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")  # as the design's webhook names
_PATTERN = re.compile(r"([a-z][a-z0-9_]{0,62}|\*)\.([a-z]+|\*)")  # as the design's `events`


@dataclass(frozen=True, slots=True)
class Changes:
    """A checked body: the values it sets (`name` only when creating)."""

    values: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def read_changes(design: Design, body: object, *, creating: bool) -> Changes:
    """The values of a create (POST) or update (PATCH) body. Raises ValidationFailed listing
    every bad field: unknown keys, a missing required one, a wrong type or shape."""
    if not isinstance(body, dict):
        raise ValidationFailed(detail="send a JSON object")
    allowed = CREATE_KEYS if creating else UPDATE_KEYS
    errors = [_unknown(key, creating) for key in body if key not in allowed]
    if creating:
        missing = [k for k in ("name", "url", "events") if k not in body]
        errors += [FieldError(k, "required", "is required") for k in missing]
    values: dict[str, Any] = {}
    for key in allowed:
        if key in body:
            value, problem = _READERS[key](design, body[key])
            if problem is None:
                values[key] = value
            else:
                errors.append(problem)
    if errors:
        count = len(errors)
        raise ValidationFailed(detail=f"{count} field{'s are' if count > 1 else ' is'} invalid",
                               errors=errors)  # fmt: skip
    return Changes(values)


def matches(patterns: tuple[str, ...], key: str) -> bool:
    """Whether an event key (`posts.created`) is one the patterns (`posts.*`, `*.*`) name."""
    resource, _, action = key.partition(".")
    for pattern in patterns:
        want_resource, _, want_action = pattern.partition(".")
        if want_resource in ("*", resource) and want_action in ("*", action):
            return True
    return False


def read_state(value: str | None) -> str | None:
    """The `state` filter of a deliveries list. Raises BadRequest."""
    if value is None or value in STATES:
        return value
    raise BadRequest(detail=f"state is one of {', '.join(STATES)}")


def read_limit(value: str | None) -> int:
    """The `limit` of a deliveries list: 1 to MAX_PAGE, DEFAULT_PAGE when absent."""
    if value is None:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        message = f"a whole number from 1 to {MAX_PAGE}"
        error = FieldError("limit", "out_of_range", message)
        raise ValidationFailed(detail=f"limit is {message}", errors=[error])
    return int(value)


def cursor_of(delivery: Delivery) -> str:
    """The opaque cursor that continues a list after `delivery`."""
    return base64.urlsafe_b64encode(delivery.id.encode()).rstrip(b"=").decode("ascii")


def read_cursor(value: str | None) -> str | None:
    """The delivery id a cursor stands for. Raises BadRequest when it is not one of ours."""
    if value is None:
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
        return str(uuid.UUID(text))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest(detail="the cursor is not valid: use next_cursor as given") from None


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """A run-time endpoint as the API shows it (never its secret)."""
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "source": "api",
        "url": endpoint.url,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "description": endpoint.description,
        "created_at": _time(endpoint.created_at),
        "created_by": endpoint.created_by,
        "updated_at": _time(endpoint.updated_at),
    }


def design_endpoint_view(hook: Webhook, configured: bool) -> dict[str, Any]:
    """A design's webhook as the API shows it: its URL as the design writes it (a URL from
    the environment stays `env:NAME`), enabled when its variables are set."""
    return {
        "id": None,
        "name": hook.name,
        "source": "design",
        "url": hook.url if hook.url is not None else f"env:{hook.url_env}",
        "events": list(hook.events),
        "enabled": configured,
        "description": hook.description,
        "created_at": None,
        "created_by": None,
        "updated_at": None,
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    pending = delivery.state == "pending"
    return {
        "id": delivery.id,
        "webhook": delivery.webhook,
        "message_id": delivery.message_id,
        "type": delivery.key,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": _time(delivery.next_attempt_at) if pending else None,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": _time(delivery.created_at),
        "delivered_at": _time(delivery.delivered_at),
    }


# --- fields ----------------------------------------------------------------------------------


Read = tuple[Any, FieldError | None]


def _unknown(key: object, creating: bool) -> FieldError:
    name = str(key)[:100]
    if name == "name" and not creating:
        return FieldError("name", "immutable", "cannot change: delete the webhook and create one")
    return FieldError(name, "unknown", "is not a field of a webhook")


def _name(design: Design, value: object) -> Read:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        message = "lowercase letters, digits, _ and -, starting with a letter, at most 63"
        return None, FieldError("name", "invalid", message)
    return value, None


def _url(design: Design, value: object) -> Read:
    if not isinstance(value, str):
        return None, FieldError("url", "invalid", "is an http(s) URL")
    problem = url_problem(value)
    if problem is not None:
        code = "too_long" if len(value) > 2000 else "invalid"
        return None, FieldError("url", code, problem)
    return value, None


def _events(design: Design, value: object) -> Read:
    if not isinstance(value, list) or not value or len(value) > MAX_EVENTS:
        message = f'a list of 1 to {MAX_EVENTS} events, e.g. ["posts.created", "posts.*"]'
        return None, FieldError("events", "invalid", message)
    patterns: list[str] = []
    for item in value:
        match = _PATTERN.fullmatch(item) if isinstance(item, str) else None
        if match is None or (match[2] != "*" and match[2] not in ACTIONS):
            shown = str(item)[:100]
            message = f"`{shown}` is not an event: write resource.action ({', '.join(ACTIONS)}), "
            return None, FieldError("events", "invalid", message + "resource.* or *.*")
        if item not in patterns:
            patterns.append(item)
    problems = webhook_problems(Webhook("endpoint", tuple(patterns), ""), design.resources)
    if problems:
        text = "; ".join(p.replace("webhook `endpoint` ", "it ") for p in problems)
        return None, FieldError("events", "not_sent", text.replace("webhook `endpoint`: ", ""))
    return tuple(patterns), None


def _description(design: Design, value: object) -> Read:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_DESCRIPTION):
        return None, FieldError("description", "invalid", f"at most {MAX_DESCRIPTION} characters")
    return value, None


def _enabled(design: Design, value: object) -> Read:
    if not isinstance(value, bool):
        return None, FieldError("enabled", "invalid", "is true or false")
    return value, None


_READERS = {
    "name": _name,
    "url": _url,
    "events": _events,
    "description": _description,
    "enabled": _enabled,
}


def _time(at: datetime.datetime | None) -> str | None:
    if at is None:
        return None
    return at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
