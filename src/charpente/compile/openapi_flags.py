"""The OpenAPI description of feature flags: the admin API (`/v{n}/_flags`) and OFREP
(`/ofrep/v1/evaluate/flags`), for a design that declares flags.

Pure; compile.openapi adds it to the design's document. Names start with `Charpente`
(schemas) or `admin`/`ofrep` (operations): no resource of a design can take them.
"""

from __future__ import annotations

from collections.abc import Iterable

from charpente.compile.openapi_parts import error_response
from charpente.design.model import Design

__all__ = ["FLAGS_TAG", "OFREP_TAG", "flag_paths", "flag_schemas", "flag_tags"]

Json = dict[str, object]

FLAGS_TAG: Json = {
    "name": "flags",
    "description": "Feature flags: their settings, changed at run time, and their history: "
    "admins only (accounts with the role `admin`).",
}
OFREP_TAG: Json = {
    "name": "ofrep",
    "description": "The OpenFeature Remote Evaluation Protocol: each flag's value for the "
    "caller (the bearer token's account, else the context's `targetingKey`).",
}

_SCHEMA = "#/components/schemas/"
_FLAG = "CharpenteFlag"
_SETTING = "CharpenteFlagSetting"
_PATCH = "CharpenteFlagPatch"
_LIST = "CharpenteFlagList"
_HISTORY = "CharpenteFlagHistory"
_CHANGE = "CharpenteFlagChange"
_REQUEST = "CharpenteOfrepRequest"
_EVALUATION = "CharpenteOfrepEvaluation"
_BULK = "CharpenteOfrepBulk"
_OFREP_ERROR = "CharpenteOfrepError"
_REASONS = ("TARGETING_MATCH", "SPLIT", "DEFAULT", "STATIC", "DISABLED")
_ERRORS = {
    400: "A query parameter (none is read), a body that is not JSON, or a wrong change: "
    "each wrong key is named.",
    403: "The caller is signed in but is not an admin.",
    404: "The design declares no flag of this name.",
    413: "The body is over 16384 bytes.",
    415: "The Content-Type is not JSON.",
}


def flag_paths(design: Design) -> Json:
    """The flag admin endpoints and the OFREP ones (nothing for a design without flags)."""
    if not design.flags:
        return {}
    base = f"/v{design.api_version}/_flags"
    always = (500, 503, *((429,) if design.limits.get("all") is not None else ()))
    name: Json = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The flag's name, as the design declares it.",
        "schema": {"enum": sorted(design.flags)},
    }
    media = ("application/json", "application/merge-patch+json")
    return {
        base: {
            "get": _admin(
                "adminListFlags",
                "List every flag with its current setting",
                {"200": _json("Every flag, by name.", _LIST)},
                (400, 401, 403, *always),
            )
        },
        base + "/{name}": {
            "parameters": [name],
            "get": _admin(
                "adminGetFlag",
                "Read a flag's current setting",
                {"200": _json("The flag.", _FLAG)},
                (400, 401, 403, 404, *always),
            ),
            "patch": {
                **_admin(
                    "adminUpdateFlag",
                    "Change a flag at run time (stored with a history entry, announced to "
                    "every server)",
                    {"200": _json("The flag as changed.", _FLAG)},
                    (400, 401, 403, 404, 413, 415, *always),
                ),
                "requestBody": {
                    "required": True,
                    "content": {m: {"schema": {"$ref": _SCHEMA + _PATCH}} for m in media},
                },
            },
        },
        base + "/{name}/history": {
            "parameters": [name],
            "get": _admin(
                "adminFlagHistory",
                "The flag's changes, newest first (at most 100)",
                {"200": _json("Who changed the flag, when, from what to what.", _HISTORY)},
                (400, 401, 403, 404, *always),
            ),
        },
        **_ofrep_paths(design),
    }


def flag_tags(design: Design) -> list[Json]:
    """The tags of the flag operations (none for a design without flags)."""
    return [dict(FLAGS_TAG), dict(OFREP_TAG)] if design.flags else []


def flag_schemas(design: Design) -> Json:
    """The bodies the flag admin API and OFREP read and answer."""
    if not design.flags:
        return {}
    return {
        _SETTING: _setting_schema(),
        _FLAG: _flag_schema(),
        _PATCH: _patch_schema(design),
        _LIST: _list_of(_FLAG, "Every flag, by name."),
        _CHANGE: _change_schema(),
        _HISTORY: _list_of(_CHANGE, "The flag's changes, newest first."),
        _REQUEST: _ofrep_request_schema(),
        _EVALUATION: _evaluation_schema(),
        _BULK: _bulk_schema(),
        _OFREP_ERROR: _ofrep_error_schema(),
    }


# --- operations ------------------------------------------------------------------------------


def _admin(op_id: str, summary: str, responses: Json, errors: Iterable[int]) -> Json:
    for status in sorted(errors):
        responses[str(status)] = error_response(status, _ERRORS.get(status, ""))
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": [FLAGS_TAG["name"]],
        "security": [{"bearer": []}],
        "responses": responses,
    }


def _ofrep_paths(design: Design) -> Json:
    body: Json = {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": _SCHEMA + _REQUEST}}},
    }
    security: list[Json] = [{}, {"bearer": []}]
    key: Json = {
        "name": "key",
        "in": "path",
        "required": True,
        "description": "The flag's name.",
        "schema": {"type": "string", "minLength": 1},
    }
    ofrep_error = {"application/json": {"schema": {"$ref": _SCHEMA + _OFREP_ERROR}}}
    etag = {"ETag": {"description": "Of this answer.", "schema": {"type": "string"}}}
    return {
        "/ofrep/v1/evaluate/flags/{key}": {
            "parameters": [key],
            "post": {
                "operationId": "ofrepEvaluateFlag",
                "summary": "One flag's value for the caller",
                "tags": [OFREP_TAG["name"]],
                "security": security,
                "requestBody": body,
                "responses": {
                    "200": _json("The flag's value and why.", _EVALUATION),
                    "400": {"description": "The context is not an object.", "content": ofrep_error},
                    "404": {"description": "No flag of this name.", "content": ofrep_error},
                    "401": error_response(401, ""),
                    "500": error_response(500, ""),
                },
            },
        },
        "/ofrep/v1/evaluate/flags": {
            "post": {
                "operationId": "ofrepEvaluateFlags",
                "summary": "Every flag's value for the caller",
                "tags": [OFREP_TAG["name"]],
                "security": security,
                "parameters": [
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "description": "The ETag of an earlier answer: 304 while it holds.",
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": body,
                "responses": {
                    "200": {**_json("Every flag's value and why.", _BULK), "headers": etag},
                    "304": {"description": "Nothing changed for this caller.", "headers": etag},
                    "400": {"description": "The context is not an object.", "content": ofrep_error},
                    "401": error_response(401, ""),
                    "500": error_response(500, ""),
                },
            },
        },
    }


def _json(text: str, schema: str) -> Json:
    return {
        "description": text,
        "headers": {
            "Cache-Control": {"description": "`no-store`.", "schema": {"type": "string"}},
            "X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"},
        },
        "content": {"application/json": {"schema": {"$ref": _SCHEMA + schema}}},
    }


# --- schemas ---------------------------------------------------------------------------------


def _object(properties: Json, required: Iterable[str] | None = None, **extra: object) -> Json:
    names = list(properties) if required is None else list(required)
    return {
        "type": "object",
        "properties": properties,
        "required": names,
        "additionalProperties": False,
        **extra,
    }


_PERCENT: Json = {"type": "integer", "minimum": 0, "maximum": 100}
_NULLABLE_TEXT: Json = {"type": ["string", "null"]}


def _setting_schema() -> Json:
    return _object(
        {
            "default": {"type": "boolean"},
            "rollout": {**_PERCENT, "type": ["integer", "null"]},
            "allow": {"type": "array", "items": {"type": "string"}},
            "variants": {"type": "object", "additionalProperties": _PERCENT},
        },
        description="What can change at run time.",
    )


def _flag_schema() -> Json:
    setting = _setting_schema()["properties"]
    assert isinstance(setting, dict)
    return _object(
        {
            "name": {"type": "string"},
            **setting,
            "by": {"enum": ["account", "client"]},
            "group": {"type": "string"},
            "expires": {"type": ["string", "null"], "format": "date"},
            "owner": _NULLABLE_TEXT,
            "description": _NULLABLE_TEXT,
            "design": {"$ref": _SCHEMA + _SETTING},
            "changed_at": {"type": ["string", "null"], "format": "date-time"},
            "changed_by": _NULLABLE_TEXT,
        }
    )


def _patch_schema(design: Design) -> Json:
    roles: Json = {"enum": list(design.auth.roles)}
    percent: Json = {"oneOf": [_PERCENT, {"type": "string", "pattern": "^[0-9]{1,3}\\s*%?$"}]}
    return _object(
        {
            "default": {"type": "boolean"},
            "rollout": {"oneOf": [percent, {"type": "null"}]},
            "allow": {"type": "array", "items": roles},
            "variants": {
                "type": "object",
                "additionalProperties": percent,
                "description": "Every variant's share, adding up to 100.",
            },
        },
        required=(),
        minProperties=1,
    )


def _change_schema() -> Json:
    setting: Json = {"$ref": _SCHEMA + _SETTING}
    return _object(
        {
            "id": {"type": "string", "format": "uuid"},
            "flag": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "actor": _NULLABLE_TEXT,
            "before": setting,
            "after": setting,
        }
    )


def _list_of(schema: str, text: str) -> Json:
    items: Json = {"type": "array", "items": {"$ref": _SCHEMA + schema}}
    return _object({"data": items}, description=text)


def _ofrep_request_schema() -> Json:
    context: Json = {
        "type": "object",
        "properties": {"targetingKey": {"type": "string", "maxLength": 200}},
        "description": "`targetingKey` buckets a caller without an account; other keys are "
        "ignored (roles come only from the token).",
    }
    return {"type": "object", "properties": {"context": context}}


def _evaluation_schema() -> Json:
    return _object(
        {
            "key": {"type": "string"},
            "value": {"type": ["boolean", "string"]},
            "variant": _NULLABLE_TEXT,
            "reason": {"enum": list(_REASONS)},
            "metadata": {"type": "object"},
        },
        required=("key", "variant", "reason", "metadata"),
        description="`value` is left out for a multivariate flag that is off (DISABLED).",
    )


def _bulk_schema() -> Json:
    flags: Json = {"type": "array", "items": {"$ref": _SCHEMA + _EVALUATION}}
    return _object({"flags": flags})


def _ofrep_error_schema() -> Json:
    return _object(
        {
            "key": {"type": "string"},
            "errorCode": {"enum": ["FLAG_NOT_FOUND", "INVALID_CONTEXT", "PARSE_ERROR"]},
            "errorDetails": {"type": "string"},
        },
        required=("errorCode", "errorDetails"),
    )
