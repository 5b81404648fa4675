"""Request bodies → validated values: create bodies, JSON Merge Patches, declared checks.

Pure. Every rule a field's kind and options impose on a client value lives here; every bad
field becomes one FieldError, and all of them are answered together in one 422.
"""

from __future__ import annotations

import datetime
import decimal
import difflib
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping

from charpente.design.evaluate import evaluate
from charpente.design.expr import And, Call, Compare, Expr, Name, Not, Or
from charpente.design.model import Field, Kind, Resource
from charpente.design.patterns import compile_pattern
from charpente.errors import FieldError, ValidationFailed

__all__ = [
    "DEFAULT_MAX_LENGTHS",
    "MAX_JSON_DEPTH",
    "check_row",
    "parse_date",
    "parse_datetime",
    "parse_uuid",
    "validate_create",
    "validate_patch",
]

DEFAULT_MAX_LENGTHS = {Kind.STRING: 255, Kind.TEXT: 65_535, Kind.EMAIL: 254, Kind.URL: 2_048}
"""The ceiling of a string-like field that declares no max_length, in code points."""

MAX_JSON_DEPTH = 32
"""How deeply arrays and objects may nest in a json field."""

_MAX_ERRORS = 100  # a hostile body cannot make the answer larger than this many errors
_MAX_NAME_ECHO = 64  # unknown keys are echoed back at most this long
_MAX_SUGGESTIONS = 10  # "did you mean" is looked for on this many unknown keys only
_INT64 = (-(2**63), 2**63 - 1)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
_MAX_DECIMAL_TEXT = 100
_EXACT = decimal.Context(prec=2 * _MAX_DECIMAL_TEXT)  # normalizing never rounds


class _Invalid(Exception):  # noqa: N818 - an internal signal, never leaves this module
    """A value breaks one rule: the FieldError code and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- public entry points -------------------------------------------------------------------


def validate_create(resource: Resource, body: object, now: datetime.datetime) -> dict[str, object]:
    """Validate a create body into the declared fields' values (defaults applied).

    Absent optional fields with no default are None; counters are left out (the database
    starts them at 0), and so are absent fields whose default is computed from the caller
    (`Default.expr`), for the service to fill. Raises ValidationFailed listing every error.
    """
    fields = _body_object(body)
    errors = _key_errors(resource, fields)
    values: dict[str, object] = {}
    for f in resource.fields:
        if f.kind is Kind.COUNT or (f.name in fields and not f.is_client_writable):
            continue  # counters start at 0; a read-only key was reported above
        try:
            if f.name in fields:
                values[f.name] = _validate_nullable(f, fields[f.name])
            else:
                _apply_default(f, now, values)
        except _Invalid as problem:
            errors.append(FieldError(f.name, problem.code, problem.message))
    _raise_if_any(errors)
    return values


def validate_patch(
    resource: Resource, patch: object, current: Mapping[str, object]
) -> dict[str, object]:
    """Validate a JSON Merge Patch (RFC 7396) against the current record.

    Returns only the fields whose value changes, so a patch that changes nothing returns
    {}. Raises ValidationFailed listing every error.
    """
    fields = _body_object(patch)
    errors = _key_errors(resource, fields)
    changes: dict[str, object] = {}
    for f in resource.fields:
        if f.name not in fields or not f.is_client_writable:
            continue
        try:
            new = _patched_value(f, fields[f.name], current.get(f.name))
        except _Invalid as problem:
            errors.append(FieldError(f.name, problem.code, problem.message))
            continue
        if _same(new, current.get(f.name)):
            continue
        if f.immutable:
            errors.append(FieldError(f.name, "immutable", "cannot change once set"))
        else:
            changes[f.name] = new
    _raise_if_any(errors)
    return changes


def check_row(resource: Resource, row: Mapping[str, object]) -> list[FieldError]:
    """Evaluate the resource's declared checks on `row`: one FieldError per failed check.

    Like SQL CHECK, a check whose result is unknown (None) is satisfied.
    """
    errors = []
    for check in resource.checks:
        if evaluate(check.expr, row) is False:
            message = check.message or f"must satisfy: {check.source}"
            errors.append(FieldError(_first_field(check.expr, resource), "check", message))
    return errors


# --- values of one field ---------------------------------------------------------------------


def parse_date(text: str) -> datetime.date:
    """`YYYY-MM-DD` → date; ValueError otherwise."""
    if not _DATE.fullmatch(text):
        raise ValueError(text)
    return datetime.date.fromisoformat(text)


def parse_datetime(text: str) -> datetime.datetime:
    """An RFC 3339 timestamp with a zone → aware UTC datetime; ValueError otherwise.

    Digits past microseconds are dropped; a timestamp without a zone is a ValueError.
    """
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise ValueError(text)
    day, clock, fraction, zone = match.groups()
    if zone is None:
        raise ValueError("no time zone")
    micro = (fraction or "").ljust(6, "0")[:6]
    offset = "+00:00" if zone in "Zz" else zone
    parsed = datetime.datetime.fromisoformat(f"{day}T{clock}.{micro}{offset}")
    return parsed.astimezone(datetime.UTC)  # may raise OverflowError near year 1 or 9999


def parse_uuid(text: str) -> str:
    """A dashed UUID in any case → its canonical lowercase form; ValueError otherwise."""
    if not _UUID.fullmatch(text):
        raise ValueError(text)
    return text.lower()


def _validate_nullable(f: Field, value: object) -> object:
    if value is None:
        if f.required:
            raise _Invalid("required", "is required and cannot be null")
        return None
    return _validate_value(f, value)


def _validate_value(f: Field, value: object) -> object:
    """One non-null client value of field `f` → its Python value; raises _Invalid."""
    validator = _VALIDATORS.get(f.kind)
    if validator is None:  # counters are never written by clients
        raise _Invalid("read_only", "is set by the server")
    result = validator(f, value)
    if f.kind in _BOUNDED_NUMBERS:
        _check_bounds(f, result)
    return result


def _string(f: Field, value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid("type", "must be a string")
    if "\x00" in value:
        raise _Invalid("invalid_character", "must not contain the NUL character (U+0000)")
    _check_length(f, value)
    if f.pattern is not None and not compile_pattern(f.pattern).search(value):
        raise _Invalid("pattern", f"must match the pattern {f.pattern}")
    return value


def _check_length(f: Field, value: str) -> None:
    if f.min_length is not None and len(value) < f.min_length:
        raise _Invalid("too_short", f"at least {f.min_length} characters")
    ceiling = f.max_length or DEFAULT_MAX_LENGTHS.get(f.kind)
    if ceiling is not None and len(value) > ceiling:
        note = "" if f.max_length else f" (the default ceiling of {f.kind} fields)"
        raise _Invalid("too_long", f"at most {ceiling} characters{note}")


def _email(f: Field, value: object) -> str:
    text = _string(f, value)
    local, at, domain = text.partition("@")
    labels = domain.split(".")
    well_formed = (
        bool(at and local)
        and "@" not in domain
        and len(labels) >= 2
        and all(labels)
        and not any(c.isspace() for c in text)
    )
    if not well_formed:
        raise _Invalid("format", "must be an email address like name@example.com")
    return text


def _url(f: Field, value: object) -> str:
    text = _string(f, value)
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        parts = None
    usable = (
        parts is not None
        and parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not any(c.isspace() or ord(c) < 32 for c in text)
    )
    if not usable:
        raise _Invalid("format", "must be an http or https URL with a host")
    return text


def _enum(f: Field, value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid("type", "must be a string")
    if value not in f.choices:
        raise _Invalid("choice", f"must be one of: {', '.join(f.choices)}")
    return value


def _int(f: Field, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("type", "must be an integer")
    if not _INT64[0] <= value <= _INT64[1]:
        raise _Invalid("out_of_range", "must fit in a signed 64-bit integer")
    return value


def _float(f: Field, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("type", "must be a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Invalid("out_of_range", "must be a finite number")
    return number


def _decimal(f: Field, value: object) -> decimal.Decimal:
    number = _to_decimal(value)
    if not number.is_finite():
        raise _Invalid("out_of_range", "must be a finite number")
    _sign, digits, exponent = number.normalize(_EXACT).as_tuple()
    assert isinstance(exponent, int)  # finite numbers have an integer exponent
    after_point = max(0, -exponent)
    before_point = max(0, len(digits) + exponent) if any(digits) else 0
    if after_point > f.scale:
        raise _Invalid("too_precise", f"at most {f.scale} digits after the decimal point")
    if before_point > f.precision - f.scale:
        limit = f.precision - f.scale
        raise _Invalid("out_of_range", f"at most {limit} digits before the decimal point")
    return number


def _to_decimal(value: object) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid("type", "must be a number or a numeric string")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid("out_of_range", "must be a finite number")
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_DECIMAL_TEXT or not _DECIMAL.fullmatch(text):
        raise _Invalid("type", "must be a number or a numeric string")
    return decimal.Decimal(text)


def _bool(f: Field, value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("type", "must be true or false")
    return value


def _date(f: Field, value: object) -> datetime.date:
    try:
        return parse_date(_text(value))
    except ValueError:
        raise _Invalid("type", "must be a date like 2026-01-31") from None


def _datetime(f: Field, value: object) -> datetime.datetime:
    text = _text(value)
    match = _DATETIME.fullmatch(text)
    if match is not None and match.group(4) is None:
        raise _Invalid("type", "must say its time zone (Z or an offset like +02:00)")
    try:
        return parse_datetime(text)
    except (ValueError, OverflowError):
        raise _Invalid("type", "must be an RFC 3339 timestamp like 2026-01-31T12:00:00Z") from None


def _uuid(f: Field, value: object) -> str:
    try:
        return parse_uuid(_text(value))
    except ValueError:
        raise _Invalid(
            "format", "must be a UUID like 0190c1d2-7f3a-7c4e-9b1d-5a6e8f00aa01"
        ) from None


def _text(value: object) -> str:
    """The value when it is a string; otherwise a string no parser accepts."""
    return value if isinstance(value, str) else ""


def _json(f: Field, value: object) -> object:
    for node, depth in _walk_json(value):
        if depth > MAX_JSON_DEPTH:
            raise _Invalid("too_deep", f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, float) and not math.isfinite(node):
            raise _Invalid("type", "must be a JSON value (finite numbers only)")
        if isinstance(node, str) and "\x00" in node:
            raise _Invalid("invalid_character", "must not contain the NUL character (U+0000)")
        if not isinstance(node, _JSON_TYPES):
            raise _Invalid("type", "must be a JSON value")
    return value


_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


def _walk_json(value: object) -> Iterator[tuple[object, int]]:
    """Every node of a JSON value with its depth, without recursion (keys are nodes too)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            depth += 1
        yield node, depth
        if depth > MAX_JSON_DEPTH:
            return
        if isinstance(node, dict):
            stack.extend((k, depth) for k in node)
            stack.extend((v, depth) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth) for v in node)


_VALIDATORS: dict[Kind, Callable[[Field, object], object]] = {
    Kind.STRING: _string,
    Kind.TEXT: _string,
    Kind.EMAIL: _email,
    Kind.URL: _url,
    Kind.ENUM: _enum,
    Kind.INT: _int,
    Kind.FLOAT: _float,
    Kind.DECIMAL: _decimal,
    Kind.BOOL: _bool,
    Kind.DATE: _date,
    Kind.DATETIME: _datetime,
    Kind.UUID: _uuid,
    Kind.REF: _uuid,
    Kind.JSON: _json,
}
_BOUNDED_NUMBERS = frozenset({Kind.INT, Kind.FLOAT, Kind.DECIMAL})


def _check_bounds(f: Field, value: object) -> None:
    assert isinstance(value, int | float | decimal.Decimal)
    if f.minimum is not None and value < _comparable(f.minimum, value):
        raise _Invalid("too_small", f"must be at least {f.minimum}")
    if f.maximum is not None and value > _comparable(f.maximum, value):
        raise _Invalid("too_large", f"must be at most {f.maximum}")


def _comparable(bound: float, value: object) -> float | decimal.Decimal:
    """Decimals compare exactly with a bound written as a float (0.1 means 0.1)."""
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(repr(bound))
    return bound


# --- bodies ------------------------------------------------------------------------------------


def _body_object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        error = FieldError("", "type", "the body must be a JSON object")
        raise ValidationFailed(detail="the body must be a JSON object", errors=[error])
    return body


def _key_errors(resource: Resource, body: Mapping[str, object]) -> list[FieldError]:
    """Errors for keys a client may not send: unknown fields, server-managed fields.

    Past _MAX_ERRORS, the remaining bad keys are counted, not described: the list then
    ends with one placeholder per such key (`_raise_if_any` only counts those).
    """
    errors: list[FieldError] = []
    unknown = 0
    for key in body:
        f = resource.field(key)
        if f is not None and f.is_client_writable:
            continue
        if len(errors) >= _MAX_ERRORS:
            errors.append(_UNLISTED)
        elif f is None:
            unknown += 1
            errors.append(_unknown(resource, key, suggest=unknown <= _MAX_SUGGESTIONS))
        else:
            errors.append(FieldError(key, "read_only", "is set by the server"))
    return errors


_UNLISTED = FieldError("", "unknown_field", "is not a known field")


def _unknown(resource: Resource, key: str, suggest: bool) -> FieldError:
    if len(key) > _MAX_NAME_ECHO:
        return FieldError(key[:_MAX_NAME_ECHO] + "…", "unknown_field", "is not a known field")
    close = []
    if suggest:
        names = [f.name for f in resource.fields if f.is_client_writable]
        close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return FieldError(key, "unknown_field", f"is not a field of {resource.name}{hint}")


def _apply_default(f: Field, now: datetime.datetime, values: dict[str, object]) -> None:
    default = f.default
    if default is not None and default.expr is not None:
        return  # computed from the caller by the service
    if default is not None and default.now:
        values[f.name] = now.date() if f.kind is Kind.DATE else now
    elif default is not None and default.value is not None:
        values[f.name] = default.value
    elif f.required:
        raise _Invalid("required", "is required")
    else:
        values[f.name] = None


def _raise_if_any(errors: list[FieldError]) -> None:
    if not errors:
        return
    count = len(errors)
    detail = "1 field is invalid" if count == 1 else f"{count} fields are invalid"
    raise ValidationFailed(detail=detail, errors=errors[:_MAX_ERRORS])


# --- merge patch -----------------------------------------------------------------------------


def _patched_value(f: Field, sent: object, current: object) -> object:
    if f.kind is Kind.JSON and isinstance(sent, dict):
        _validate_value(f, sent)  # bounds the patch itself before merging it
        return _validate_value(f, _merge_patch(current, sent))
    return _validate_nullable(f, sent)


def _merge_patch(target: object, patch: object) -> object:
    """RFC 7396 MergePatch(target, patch): objects merge key by key, null removes a key."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _same(a: object, b: object) -> bool:
    """Equal values of the same JSON shape (True is not 1, {"a": 1} is not {"a": true})."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return (type(a) is type(b) and a == b) or _same_number(a, b)


def _same_number(a: object, b: object) -> bool:
    numbers = (int, float, decimal.Decimal)
    return isinstance(a, numbers) and isinstance(b, numbers) and a == b


# --- checks ----------------------------------------------------------------------------------


def _first_field(expr: Expr, resource: Resource) -> str:
    """The first field of `resource` the expression names, reading left to right."""
    for name in _names(expr):
        if name.path[0] != "auth" and resource.field(name.path[0]) is not None:
            return name.path[0]
    return ""


def _names(expr: Expr) -> Iterator[Name]:
    if isinstance(expr, Name):
        yield expr
    elif isinstance(expr, Compare):
        yield from _names(expr.left)
        yield from _names(expr.right)
    elif isinstance(expr, Not):
        yield from _names(expr.operand)
    elif isinstance(expr, Call):
        for arg in expr.args:
            yield from _names(arg)
    elif isinstance(expr, And | Or):
        yield from _names(expr.left)
        yield from _names(expr.right)
