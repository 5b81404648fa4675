"""The design as an OpenAPI 3.1 document: paths, JSON Schema 2020-12 schemas, problem details.

Pure: a dict built from the design, served at /openapi.json and printed by `charpente openapi`.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterable

from charpente.compile.openapi_auth import SECURITY, auth_paths, security_schemes
from charpente.compile.openapi_flags import flag_paths, flag_schemas, flag_tags
from charpente.compile.openapi_webhooks import WEBHOOKS_TAG, webhook_paths, webhook_schemas
from charpente.design.auth import ACCOUNTS
from charpente.design.model import Design, Field, Kind, Resource

__all__ = ["DEFAULT_MAX_LENGTH", "openapi_document", "schema_name"]

DEFAULT_MAX_LENGTH = {Kind.STRING: 255, Kind.TEXT: 65_535, Kind.EMAIL: 254, Kind.URL: 2_048}
"""The engine's ceiling on a text field that declares no max_length."""

MAX_LIMIT = 100
DEFAULT_LIMIT = 20

_FORMATS = {
    Kind.UUID: "uuid",
    Kind.REF: "uuid",
    Kind.DATE: "date",
    Kind.DATETIME: "date-time",
    Kind.EMAIL: "email",
    Kind.URL: "uri",
}
_STRING_KINDS = frozenset(
    {Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.URL, Kind.UUID, Kind.REF, Kind.DATE, Kind.DATETIME}
)

_ERROR_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    406: "NotAcceptable",
    409: "Conflict",
    412: "PreconditionFailed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: "ValidationFailed",
    428: "PreconditionRequired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "Unavailable",
}
_ERROR_TEXT = {
    400: "Malformed JSON, a bad filter or sort, or an unknown query parameter.",
    401: "No credentials where the access rule needs an account, or a token that is not valid.",
    403: "The caller may see the record (or collection) but may not do this.",
    404: "No such record, or not visible to the caller.",
    406: "No acceptable representation for the Accept header.",
    409: "A unique constraint would be violated, or a reference still points here.",
    412: "The If-Match version is stale: nothing was changed.",
    413: "The request body is over the size limit.",
    415: "The Content-Type is not supported.",
    422: "The request is not valid: every bad field is listed in `errors`.",
    428: "This resource requires If-Match on writes.",
    429: "A rate limit is reached; retry after `Retry-After` seconds.",
    500: "A bug: a generic body with the request id, never a stack trace.",
    503: "A dependency is down; retry after `Retry-After` seconds.",
}
_ALWAYS = (400, 401, 406, 429, 500, 503)
_OPERATION_ERRORS = {
    "list": (*_ALWAYS, 403, 422),
    "create": (*_ALWAYS, 403, 409, 413, 415, 422),
    "get": (*_ALWAYS, 404),
    "update": (*_ALWAYS, 403, 404, 409, 412, 413, 415, 422),
    "delete": (*_ALWAYS, 403, 404, 409, 412),
    "changes": (*_ALWAYS, 403, 404),
}

Json = dict[str, object]


def openapi_document(design: Design) -> dict[str, object]:
    """The whole OpenAPI 3.1 description of the API that `design` defines."""
    names = _schema_names(design)
    paths: Json = {}
    schemas: Json = {
        "Problem": _problem_schema(),
        "Page": _page_schema(),
        "HistoryPage": _history_schema(),
    }
    for resource in design.resources.values():
        name = names[resource.name]
        paths.update(_resource_paths(design, resource, name))
        schemas.update(_resource_schemas(design, resource, name, names))
    paths.update(_health_paths())
    if ACCOUNTS in names:
        paths.update(auth_paths(design, names[ACCOUNTS]))
    paths.update(webhook_paths(design))
    schemas.update(webhook_schemas(design))
    paths.update(flag_paths(design))
    schemas.update(flag_schemas(design))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": design.name,
            "version": str(design.api_version),
            "description": f"The REST API of the `{design.name}` design, served by charpente.",
        },
        "servers": [{"url": "/"}],
        "tags": [*_tags(design), dict(WEBHOOKS_TAG), *flag_tags(design)],
        "paths": paths,
        "security": SECURITY,
        "components": {
            "securitySchemes": security_schemes(design),
            "schemas": schemas,
            "responses": _error_responses(),
            "headers": _headers(),
            "parameters": _parameters(),
        },
    }


def schema_name(resource_name: str) -> str:
    """`blog_posts` → `BlogPost`: the singular PascalCase name of a resource's record."""
    words = resource_name.split("_")
    words[-1] = _singular(words[-1])
    return "".join(w[:1].upper() + w[1:] for w in words if w)


# -- names -------------------------------------------------------------------------------


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 1:
        return word[:-1]
    return word


def _schema_names(design: Design) -> dict[str, str]:
    """Singular names, falling back to the plural one where two resources would collide,
    and to `…Record` where even that is a schema of the API's own (`page` → PageRecord)."""
    singular = {name: schema_name(name) for name in design.resources}
    taken = list(singular.values())
    reserved = {"Problem", "Page", "HistoryPage"}

    def pick(name: str, value: str) -> str:
        if taken.count(value) > 1 or value in reserved:
            value = _pascal(name)
        return f"{value}Record" if value in reserved else value

    return {name: pick(name, value) for name, value in singular.items()}


def _pascal(name: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in name.split("_") if w)


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


# -- paths -------------------------------------------------------------------------------


def _resource_paths(design: Design, resource: Resource, name: str) -> Json:
    base = f"/v{design.api_version}/{resource.name}"
    return {
        base: {"get": _list_operation(resource, name), "post": _create_operation(resource, name)},
        base + "/{id}": {
            "parameters": [_ref("parameters", "id")],
            "get": _get_operation(resource, name),
            "patch": _update_operation(resource, name),
            "delete": _delete_operation(resource, name),
        },
        base + "/{id}/history": {
            "parameters": [_ref("parameters", "id")],
            "get": _history_operation(resource, name),
        },
        **({base + "/changes": {"get": _changes_operation(resource)}} if resource.events else {}),
    }


def _changes_operation(resource: Resource) -> Json:
    """The live changes of a resource with events: a Server-Sent Events stream."""
    op = _operation(
        resource,
        f"changes{_pascal(resource.name)}",
        f"Follow the changes of {resource.name}",
        "changes",
    )
    op["description"] = (
        "Server-Sent Events, one per change the caller may read: `id` (the event id), "
        f"`event` (`{resource.name}.created`, `.updated`, `.deleted`, or `reset`) and `data` "
        "(JSON: id, action, version, at, actor, changes, record). Resume with Last-Event-ID."
    )
    resume: Json = {"type": "string", "format": "uuid"}
    op["parameters"] = [
        _ref("parameters", "filter"),
        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": resume},
        {"name": "last_event_id", "in": "query", "required": False, "schema": resume},
    ]
    responses = op["responses"]
    assert isinstance(responses, dict)
    responses["200"] = {
        "description": "The stream: it stays open, with a `: ping` comment every 15 seconds.",
        "headers": {"X-Request-ID": _ref("headers", "X-Request-ID")},
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    return op


def _history_operation(resource: Resource, name: str) -> Json:
    op = _operation(
        resource, f"history{name}", f"The history of a record of {resource.name}", "get"
    )
    op["description"] = (
        "The record's events, newest first: who changed what, when. Readable by whoever may "
        "read the record; once it is deleted, by admins."
    )
    op["parameters"] = [_ref("parameters", p) for p in ("limit", "cursor")]
    _success(op, "200", "A page of events.", "HistoryPage", ("Link", "X-Request-ID"))
    return op


def _operation(resource: Resource, op_id: str, summary: str, action: str) -> Json:
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": [resource.name],
        "responses": {
            str(s): _ref("responses", _ERROR_NAMES[s]) for s in _errors(resource, action)
        },
    }


def _errors(resource: Resource, action: str) -> tuple[int, ...]:
    statuses = _OPERATION_ERRORS[action]
    if resource.require_if_match and action in ("update", "delete"):
        statuses = (*statuses, 428)
    return tuple(sorted(statuses))


def _list_operation(resource: Resource, name: str) -> Json:
    op = _operation(resource, f"list{_pascal(resource.name)}", f"List {resource.name}", "list")
    op["description"] = (
        "A page of records in keyset order. Follow `page.next_cursor` (or the `Link` header) "
        "for the next page."
    )
    op["parameters"] = [
        _ref("parameters", p)
        for p in ("filter", "sort", "limit", "cursor", "fields", "expand", "count")
    ]
    _success(op, "200", "A page of records.", f"{name}List", ("Link", "X-Request-ID"))
    return op


def _create_operation(resource: Resource, name: str) -> Json:
    op = _operation(resource, f"create{name}", f"Create a record in {resource.name}", "create")
    op["parameters"] = [_ref("parameters", "Idempotency-Key")]
    op["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": _ref("schemas", f"{name}Create")}},
    }
    _success(op, "201", "The created record.", name, ("Location", "ETag", "X-Request-ID"))
    return op


def _get_operation(resource: Resource, name: str) -> Json:
    op = _operation(resource, f"get{name}", f"Read a record of {resource.name}", "get")
    op["parameters"] = [
        _ref("parameters", p) for p in ("If-None-Match", "fields", "expand", "as_of")
    ]
    _success(op, "200", "The record.", name, ("ETag", "X-Request-ID"))
    responses = op["responses"]
    assert isinstance(responses, dict)
    responses["304"] = {
        "description": "Not modified: the If-None-Match version is current.",
        "headers": {h: _ref("headers", h) for h in ("ETag", "X-Request-ID")},
    }
    return op


def _update_operation(resource: Resource, name: str) -> Json:
    op = _operation(resource, f"update{name}", f"Change a record of {resource.name}", "update")
    op["description"] = "A JSON Merge Patch (RFC 7396): `null` clears an optional field."
    op["parameters"] = [_if_match(resource)]
    body = {"schema": _ref("schemas", f"{name}Patch")}
    op["requestBody"] = {
        "required": True,
        "content": {"application/merge-patch+json": body, "application/json": body},
    }
    _success(op, "200", "The changed record.", name, ("ETag", "X-Request-ID"))
    return op


def _delete_operation(resource: Resource, name: str) -> Json:
    op = _operation(resource, f"delete{name}", f"Delete a record of {resource.name}", "delete")
    op["parameters"] = [_if_match(resource)]
    responses = op["responses"]
    assert isinstance(responses, dict)
    responses["204"] = {
        "description": "Deleted.",
        "headers": {"X-Request-ID": _ref("headers", "X-Request-ID")},
    }
    return op


def _success(op: Json, status: str, text: str, schema: str, headers: Iterable[str]) -> None:
    responses = op["responses"]
    assert isinstance(responses, dict)
    responses[status] = {
        "description": text,
        "headers": {h: _ref("headers", h) for h in headers},
        "content": {"application/json": {"schema": _ref("schemas", schema)}},
    }


def _if_match(resource: Resource) -> Json:
    return {
        "name": "If-Match",
        "in": "header",
        "required": resource.require_if_match,
        "description": 'The version you last read, as its ETag (`"3"`): a stale one answers 412.',
        "schema": {"type": "string", "maxLength": 64},
    }


def _health_paths() -> Json:
    status = {
        "type": "object",
        "properties": {"status": {"type": "string"}},
        "additionalProperties": True,
    }
    content = {"application/json": {"schema": status}}
    return {
        "/healthz": {
            "get": {
                "operationId": "getHealth",
                "summary": "Liveness: the process answers",
                "tags": ["health"],
                "responses": {"200": {"description": "Alive.", "content": content}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "getReadiness",
                "summary": "Readiness: the database answers",
                "tags": ["health"],
                "responses": {
                    "200": {"description": "Ready to serve.", "content": content},
                    "503": _ref("responses", "Unavailable"),
                },
            }
        },
    }


def _tags(design: Design) -> list[Json]:
    tags: list[Json] = []
    for resource in design.resources.values():
        tag: Json = {"name": resource.name}
        if resource.description:
            tag["description"] = resource.description
        tags.append(tag)
    tags.append({"name": "health", "description": "Liveness and readiness probes."})
    return tags


# -- schemas -----------------------------------------------------------------------------


def _resource_schemas(design: Design, resource: Resource, name: str, names: dict[str, str]) -> Json:
    record = _record_schema(design, resource, names)
    return {
        name: record,
        f"{name}Create": _body_schema(resource, patch=False),
        f"{name}Patch": _body_schema(resource, patch=True),
        f"{name}List": {
            "type": "object",
            "properties": {
                "data": {"type": "array", "items": _ref("schemas", name)},
                "page": _ref("schemas", "Page"),
            },
            "required": ["data", "page"],
        },
    }


def _record_schema(design: Design, resource: Resource, names: dict[str, str]) -> Json:
    """What the API answers: every field but the writeonly ones (all present, by default)."""
    shown = [f for f in resource.all_fields if not f.writeonly]
    properties: Json = {}
    for f in shown:
        schema = _field_schema(f, nullable=not (f.required or f.system or f.kind is Kind.COUNT))
        if not f.is_client_writable:
            schema["readOnly"] = True
        if f.ref is not None and f.ref in design.resources:
            schema = _expandable(schema, names[f.ref])
        properties[f.name] = schema
    about = "Every field is present unless the request's `fields` picks fewer."
    return {
        "type": "object",
        "description": f"{resource.description} {about}" if resource.description else about,
        "properties": properties,
        "required": [f.name for f in shown],
    }


def _expandable(schema: Json, target: str) -> Json:
    """A reference is an id, or the referenced record itself when `expand` names it."""
    described: Json = {k: schema.pop(k) for k in ("description", "readOnly") if k in schema}
    return {"anyOf": [schema, _ref("schemas", target)], **described}


def _body_schema(resource: Resource, *, patch: bool) -> Json:
    """A create body (required fields listed) or a merge patch (immutable fields left out)."""
    fields = [f for f in resource.fields if f.is_client_writable and not (patch and f.immutable)]
    body: Json = {
        "type": "object",
        "properties": {f.name: _body_field(f, patch=patch) for f in fields},
        "additionalProperties": False,
    }
    required = [f.name for f in fields if f.required and f.default is None]
    if required and not patch:
        body["required"] = required
    return body


def _body_field(field: Field, *, patch: bool) -> Json:
    schema = _field_schema(field, nullable=not field.required)
    if field.writeonly:
        schema["writeOnly"] = True
    if not patch and field.default is not None and not (field.default.now or field.default.expr):
        value = _json_value(field.default.value)
        if value is not None:
            schema["default"] = value
    return schema


def _field_schema(field: Field, *, nullable: bool) -> Json:
    """JSON Schema 2020-12 for the values of one field."""
    schema = _kind_schema(field)
    if nullable and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    elif nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    if field.description:
        schema["description"] = field.description
    elif field.kind is Kind.REF:
        schema["description"] = f"The id of a record of `{field.ref}`."
    return schema


def _kind_schema(field: Field) -> Json:
    kind = field.kind
    if kind is Kind.JSON:
        return {}  # any JSON value
    if kind is Kind.ENUM:
        return {"type": "string", "enum": list(field.choices)}
    if kind is Kind.BOOL:
        return {"type": "boolean"}
    if kind in (Kind.INT, Kind.COUNT):
        return _number_bounds({"type": "integer", "format": "int64"}, field)
    if kind is Kind.FLOAT:
        return _number_bounds({"type": "number", "format": "double"}, field)
    if kind is Kind.DECIMAL:
        return {"type": "string", "format": "decimal", "pattern": _decimal_pattern(field)}
    assert kind in _STRING_KINDS
    return _string_schema(field)


def _string_schema(field: Field) -> Json:
    schema: Json = {"type": "string"}
    if field.kind in _FORMATS:
        schema["format"] = _FORMATS[field.kind]
    if field.min_length is not None:
        schema["minLength"] = field.min_length
    ceiling = field.max_length or DEFAULT_MAX_LENGTH.get(field.kind)
    if ceiling is not None:
        schema["maxLength"] = ceiling
    if field.pattern is not None:
        schema["pattern"] = field.pattern
    return schema


def _number_bounds(schema: Json, field: Field) -> Json:
    if field.kind is Kind.COUNT:
        schema["minimum"] = 0
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    return schema


def _decimal_pattern(field: Field) -> str:
    whole = max(field.precision - field.scale, 1)
    if field.scale <= 0:
        return f"^-?[0-9]{{1,{whole}}}$"
    return f"^-?[0-9]{{1,{whole}}}(\\.[0-9]{{1,{field.scale}}})?$"


def _json_value(value: object) -> object:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def _page_schema() -> Json:
    return {
        "type": "object",
        "description": "Where a page stands: pass `next_cursor` as `cursor` for the next one.",
        "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            "next_cursor": {"type": ["string", "null"]},
            "total": {"type": "integer", "minimum": 0, "description": "With `count=exact`."},
        },
        "required": ["limit", "next_cursor"],
    }


def _history_schema() -> Json:
    event = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid", "description": "The event's id."},
            "action": {"type": "string", "enum": ["created", "updated", "deleted"]},
            "at": {"type": "string", "format": "date-time"},
            "version": {"type": "integer", "minimum": 1},
            "actor": {"type": ["string", "null"], "format": "uuid"},
            "request_id": {"type": ["string", "null"]},
            "changes": {
                "type": "object",
                "description": "Changed fields and their new values; writeonly and encrypted "
                "ones show `[redacted]`.",
            },
        },
        "required": ["id", "action", "at", "version", "actor", "request_id", "changes"],
    }
    return {
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": event},
            "page": _ref("schemas", "Page"),
        },
        "required": ["data", "page"],
    }


def _problem_schema() -> Json:
    field_error = {
        "type": "object",
        "properties": {
            "field": {"type": "string"},
            "code": {"type": "string"},
            "message": {"type": "string"},
        },
        "required": ["field", "code", "message"],
    }
    return {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string", "format": "uri-reference"},
            "request_id": {"type": "string"},
            "errors": {"type": "array", "items": field_error},
        },
        "required": ["type", "title", "status"],
    }


# -- components --------------------------------------------------------------------------


def _error_responses() -> Json:
    responses: Json = {}
    for status, name in _ERROR_NAMES.items():
        headers = {"X-Request-ID": _ref("headers", "X-Request-ID")}
        if status in (429, 503):
            headers["Retry-After"] = _ref("headers", "Retry-After")
        if status == 401:
            headers["WWW-Authenticate"] = {
                "description": '`Bearer`, with `error="invalid_token"` for a bad token.',
                "schema": {"type": "string"},
            }
        responses[name] = {
            "description": _ERROR_TEXT[status],
            "headers": headers,
            "content": {"application/problem+json": {"schema": _ref("schemas", "Problem")}},
        }
    return responses


def _headers() -> Json:
    def header(text: str, schema: Json | None = None) -> Json:
        return {"description": text, "schema": schema or {"type": "string"}}

    return {
        "ETag": header('The record\'s version, strong: `"3"`. Send it back in If-Match.'),
        "Location": header(
            "The URL of the created record.", {"type": "string", "format": "uri-reference"}
        ),
        "Link": header('`<…>; rel="next"` when there is a next page.'),
        "X-Request-ID": header("The request's id (echoed when the client sent a sane one)."),
        "Retry-After": header("Seconds to wait before retrying.", {"type": "integer"}),
    }


def _parameters() -> Json:
    def query(name: str, text: str, schema: Json) -> Json:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": schema,
        }

    text: Json = {"type": "string", "maxLength": 4096}
    return {
        "id": {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        },
        "filter": query(
            "filter",
            "An expression over the resource's fields, e.g. "
            '`created_at > "2026-01-01" and id != "…"` (the expression language).',
            text,
        ),
        "sort": query(
            "sort", "Comma-separated fields, `-` for descending (`-created_at,id`).", text
        ),
        "limit": query(
            "limit",
            f"Records per page (default {DEFAULT_LIMIT}, at most {MAX_LIMIT}).",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        ),
        "cursor": query("cursor", "The `next_cursor` of the previous page.", text),
        "fields": query(
            "fields", "Comma-separated fields of the resource to return (`id,created_at`).", text
        ),
        "expand": query(
            "expand", "Comma-separated reference (`ref`) fields whose records to inline.", text
        ),
        "count": query(
            "count", "`exact` adds `page.total`.", {"type": "string", "enum": ["exact"]}
        ),
        "as_of": query(
            "as_of",
            "The record as it was at this time (RFC 3339 with an offset), rebuilt from its "
            "history; not with `expand`, and without an ETag.",
            {"type": "string", "format": "date-time"},
        ),
        "Idempotency-Key": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "A retry with the same key and body replays the first answer (24 h).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        "If-None-Match": {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "The ETag you hold: 304 when the record has not changed.",
            "schema": {"type": "string", "maxLength": 64},
        },
    }
