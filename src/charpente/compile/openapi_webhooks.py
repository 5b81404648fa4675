"""The OpenAPI description of the webhook admin API: `/v{n}/webhooks`, one webhook (by id or
name), and its deliveries.

Pure; compile.openapi adds it to the design's document. The limits below are those that
runtime.webhook_requests and http.webhooks enforce (tests hold them equal). Names start with
`Charpente` (schemas) or `admin` (operations): no resource of a design can take them.
"""

from __future__ import annotations

from collections.abc import Iterable

from charpente.compile.openapi_auth import SIGNED_IN
from charpente.compile.openapi_parts import error_response
from charpente.design.events import ACTIONS, webhook_problems
from charpente.design.model import Design, Webhook

__all__ = [
    "CREATE_KEYS",
    "DEFAULT_PAGE",
    "MAX_BODY_BYTES",
    "MAX_DESCRIPTION",
    "MAX_ENDPOINTS",
    "MAX_ERROR",
    "MAX_EVENTS",
    "MAX_PAGE",
    "MAX_URL",
    "STATES",
    "UPDATE_KEYS",
    "WEBHOOKS_TAG",
    "listenable_events",
    "webhook_paths",
    "webhook_schemas",
]

Json = dict[str, object]

CREATE_KEYS = ("name", "url", "events", "description", "enabled")
UPDATE_KEYS = ("url", "events", "description", "enabled")
STATES = ("pending", "delivered", "dead")
MAX_BODY_BYTES = 16_384
MAX_EVENTS = 50
MAX_DESCRIPTION = 500
MAX_URL = 2000
MAX_ERROR = 200
MAX_ENDPOINTS = 100
MAX_PAGE = 100
DEFAULT_PAGE = 20
NAME_PATTERN = "^[a-z][a-z0-9_-]{0,62}$"
URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]+([/?#]|$)"
"""`http` or `https`, a host, no user name or password (the server also refuses a bad port
and, once resolved, a host that is not public)."""

WEBHOOKS_TAG: Json = {
    "name": "webhooks",
    "description": "The webhooks that receive the events of resources, and their deliveries: "
    "admins only (accounts with the role `admin`).",
}

_SCHEMA = "#/components/schemas/"
_ENDPOINT = "CharpenteWebhook"
_CREATED = "CharpenteWebhookCreated"
_CREATE = "CharpenteWebhookCreate"
_PATCH = "CharpenteWebhookPatch"
_LIST = "CharpenteWebhookList"
_DELIVERY = "CharpenteWebhookDelivery"
_DELIVERIES = "CharpenteWebhookDeliveryList"

_ERRORS = {
    400: "A query parameter the operation does not read, or one given twice.",
    403: "The caller is signed in but is not an admin.",
    404: "No webhook has this id or name.",
    413: f"The body is over {MAX_BODY_BYTES} bytes.",
    415: "The Content-Type is not one the operation reads.",
}


def listenable_events(design: Design) -> list[str]:
    """Every event pattern a webhook of `design` may listen to: `posts.created` and `posts.*`
    for a resource whose `events` lists them, then `*.created`, ..., `*.*` when any resource
    has events."""
    candidates = [f"{name}.{action}" for name in design.resources for action in ("*", *ACTIONS)]
    candidates += [f"*.{action}" for action in (*ACTIONS, "*")]
    resources = design.resources
    return [p for p in candidates if not webhook_problems(Webhook("api", (p,), ""), resources)]


def webhook_schemas(design: Design) -> Json:
    """The bodies the webhook admin API reads and answers."""
    endpoint = _endpoint_schema()
    return {
        _ENDPOINT: endpoint,
        _CREATED: _created_schema(endpoint),
        _CREATE: _body_schema(design, creating=True),
        _PATCH: _body_schema(design, creating=False),
        _LIST: _page_of(_ENDPOINT, "Every webhook, the design's first: one page, never more."),
        _DELIVERY: _delivery_schema(),
        _DELIVERIES: _page_of(_DELIVERY, "A page of deliveries, newest first."),
    }


def webhook_paths(design: Design) -> Json:
    """The admin endpoints of webhooks and of their deliveries."""
    base = f"/v{design.api_version}/webhooks"
    always = (500, 503, *((429,) if design.limits.get("all") is not None else ()))
    ref: Json = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The webhook's id, or its name (a design's webhook has only a name).",
        "schema": {"type": "string", "minLength": 1},
    }
    return {
        base: {
            "get": _operation(
                "adminListWebhooks",
                "List the webhooks: the design's, then those added through the API",
                {"200": _json("Every webhook (never its secret).", _LIST)},
                (400, 401, 403, *always),
            ),
            "post": _operation(
                "adminCreateWebhook",
                "Add a webhook; the answer holds its secret, shown this once",
                {"201": _json("The new webhook and its secret.", _CREATED, location=True)},
                (400, 401, 403, 409, 413, 415, 422, *always),
                body=_body(_CREATE, ("application/json",)),
                conflict="The name is taken (by the design or another webhook), or there are "
                f"{MAX_ENDPOINTS} webhooks already.",
                invalid="A field is missing, unknown, or not valid (every one is listed), "
                "or the URL's host is not a public address the server may call.",
            ),
        },
        base + "/{id}": {
            "parameters": [ref],
            "get": _operation(
                "adminGetWebhook",
                "Read a webhook, by id or by name",
                {"200": _json("The webhook (never its secret).", _ENDPOINT)},
                (400, 401, 403, 404, *always),
            ),
            "patch": _operation(
                "adminUpdateWebhook",
                "Change a webhook added through the API (a JSON merge patch)",
                {"200": _json("The changed webhook.", _ENDPOINT)},
                (400, 401, 403, 404, 409, 413, 415, 422, *always),
                body=_body(_PATCH, ("application/merge-patch+json", "application/json")),
                conflict="The webhook is declared in the design: change it there.",
                invalid="A field is unknown (`name` cannot change) or not valid (every one is "
                "listed), or the URL's host is not a public address the server may call.",
            ),
            "delete": _operation(
                "adminDeleteWebhook",
                "Delete a webhook added through the API, and every delivery still owed to it",
                {"204": {"description": "Deleted.", "headers": _headers()}},
                (400, 401, 403, 404, 409, *always),
                conflict="The webhook is declared in the design: remove it there.",
            ),
        },
        base + "/{id}/deliveries": {
            "parameters": [ref],
            "get": _deliveries_operation((400, 401, 403, 404, 422, *always)),
        },
    }


# --- operations ------------------------------------------------------------------------------


def _operation(
    op_id: str,
    summary: str,
    responses: Json,
    errors: Iterable[int],
    *,
    body: Json | None = None,
    conflict: str = "",
    invalid: str = "",
) -> Json:
    texts = {**_ERRORS, 409: conflict, 422: invalid}
    if body is not None:
        texts[400] = _ERRORS[400] + " Or a body that is not JSON."
    for status in sorted(errors):
        responses[str(status)] = error_response(status, texts.get(status, ""))
    op: Json = {
        "operationId": op_id,
        "summary": summary,
        "tags": [WEBHOOKS_TAG["name"]],
        "security": SIGNED_IN,
    }
    if body is not None:
        op["requestBody"] = body
    op["responses"] = responses
    return op


def _deliveries_operation(errors: Iterable[int]) -> Json:
    def query(name: str, text: str, schema: Json) -> Json:
        return {"name": name, "in": "query", "required": False, "description": text,
                "schema": schema}  # fmt: skip

    op = _operation(
        "adminListWebhookDeliveries",
        "List a webhook's deliveries, newest first",
        {"200": _json("A page of deliveries.", _DELIVERIES)},
        errors,
        invalid=f"`limit` is not a whole number from 1 to {MAX_PAGE}.",
    )
    responses = op["responses"]
    assert isinstance(responses, dict)
    responses["400"] = error_response(
        400, _ERRORS[400] + " Or an unknown `state`, or a bad `cursor`."
    )
    op["parameters"] = [
        query("state", "Only the deliveries in this state.", {"enum": list(STATES)}),
        query(
            "limit",
            f"Deliveries per page (default {DEFAULT_PAGE}, at most {MAX_PAGE}).",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
        ),
        query("cursor", "The `next_cursor` of the previous page.", {"type": "string"}),
    ]
    return op


def _body(schema: str, media_types: Iterable[str]) -> Json:
    content = {media: {"schema": {"$ref": _SCHEMA + schema}} for media in media_types}
    return {
        "required": True,
        "description": f"A JSON object of at most {MAX_BODY_BYTES} bytes.",
        "content": content,
    }


def _json(text: str, schema: str, *, location: bool = False) -> Json:
    headers = _headers()
    if location:
        headers["Location"] = {"$ref": "#/components/headers/Location"}
    return {
        "description": text,
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": _SCHEMA + schema}}},
    }


def _headers() -> Json:
    return {
        "Cache-Control": {"description": "`no-store`.", "schema": {"type": "string"}},
        "X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"},
    }


# --- schemas ---------------------------------------------------------------------------------


def _body_schema(design: Design, *, creating: bool) -> Json:
    """What POST (creating) or PATCH reads: unknown fields are refused (`name` cannot change)."""
    events = listenable_events(design)
    event: Json = {"enum": events}
    if not events:
        event = {"not": {}, "description": "No resource declares `events`: nothing to hear."}
    properties: Json = {
        "name": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "Lowercase letters, digits, `_` and `-`, starting with a letter, "
            "at most 63 characters; unique among the design's webhooks and those added.",
        },
        "url": {
            "type": "string",
            "format": "uri",
            "maxLength": MAX_URL,
            "pattern": URL_PATTERN,
            "description": "Where to POST: an http(s) URL without a user name or password, "
            "whose host resolves to public addresses (or to a network of the design's "
            "`outbound.allow`).",
        },
        "events": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_EVENTS,
            "items": event,
            "description": "What to send: `resource.action`, `resource.*`, `*.action` or "
            "`*.*`, for what resources send (their `events`); repeats count once.",
        },
        "description": {
            "type": ["string", "null"],
            "maxLength": MAX_DESCRIPTION,
            "description": "A sentence for people.",
        },
        "enabled": {
            "type": "boolean",
            "description": "Whether it receives deliveries.",
            **({"default": True} if creating else {}),
        },
    }
    keys = CREATE_KEYS if creating else UPDATE_KEYS
    schema: Json = {
        "type": "object",
        "properties": {key: properties[key] for key in keys},
        "additionalProperties": False,
    }
    if creating:
        schema["required"] = ["name", "url", "events"]
    else:
        schema["description"] = "Only the fields to change; `null` clears the description."
    return schema


def _endpoint_schema() -> Json:
    properties: Json = {
        "id": {
            "type": ["string", "null"],
            "format": "uuid",
            "description": "null for a webhook of the design.",
        },
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "source": {
            "enum": ["design", "api"],
            "description": "Declared in the design (read-only here) or added through this API.",
        },
        "url": {
            "type": "string",
            "description": "A design's URL read from the environment shows as `env:NAME`.",
        },
        "events": {"type": "array", "items": {"type": "string"}},
        "enabled": {
            "type": "boolean",
            "description": "A design's webhook is enabled when its variables are set.",
        },
        "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION},
        "created_at": _time(nullable=True),
        "created_by": {
            "type": ["string", "null"],
            "format": "uuid",
            "description": "The id of the admin who added it.",
        },
        "updated_at": _time(nullable=True),
    }
    return {
        "type": "object",
        "description": "A webhook, as every admin may see it: never its secret.",
        "properties": properties,
        "required": list(properties),
    }


def _created_schema(endpoint: Json) -> Json:
    properties = endpoint["properties"]
    assert isinstance(properties, dict)
    secret: Json = {
        "type": "string",
        "pattern": "^whsec_[A-Za-z0-9+/]{43}=$",
        "description": "The signing secret (`whsec_` and 32 random bytes in base64). It is "
        "shown here only, once: give it to the receiver.",
    }
    changed = {
        **properties,
        "id": {"type": "string", "format": "uuid"},
        "source": {"const": "api"},
        "created_at": _time(nullable=False),
        "secret": secret,
    }
    return {
        "type": "object",
        "description": "A webhook just added, with its secret.",
        "properties": changed,
        "required": list(changed),
    }


def _delivery_schema() -> Json:
    properties: Json = {
        "id": {"type": "string", "format": "uuid"},
        "webhook": {"type": "string", "description": "The webhook's name."},
        "message_id": {
            "type": "string",
            "format": "uuid",
            "description": "The event's id: the `webhook-id` header of every attempt.",
        },
        "type": {"type": "string", "description": "The event: `posts.created`."},
        "state": {"enum": list(STATES)},
        "attempts": {"type": "integer", "minimum": 0},
        "next_attempt_at": {**_time(nullable=True), "description": "When pending."},
        "last_status": {
            "type": ["integer", "null"],
            "description": "The status of the last answer (null when none came).",
        },
        "last_error": {
            "type": ["string", "null"],
            "maxLength": MAX_ERROR,
            "description": "Why the last attempt failed: `503: down for maintenance`.",
        },
        "created_at": _time(nullable=False),
        "delivered_at": _time(nullable=True),
    }
    return {
        "type": "object",
        "description": "One event owed to one webhook, and how its attempts went.",
        "properties": properties,
        "required": list(properties),
    }


def _page_of(item: str, text: str) -> Json:
    return {
        "type": "object",
        "description": text,
        "properties": {
            "data": {"type": "array", "items": {"$ref": _SCHEMA + item}},
            "page": {"$ref": _SCHEMA + "Page"},
        },
        "required": ["data", "page"],
    }


def _time(*, nullable: bool) -> Json:
    return {"type": ["string", "null"] if nullable else "string", "format": "date-time"}
