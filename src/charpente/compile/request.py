"""Query parameters → plans: `filter`, `sort`, `limit`, `cursor`, `fields`, `expand`, `count`.

Pure. Every parameter is checked against the design and bounded in size; anything else is
a 400 (a bad `limit` is a 422). Cursors are opaque base64url of the last row's sort key.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence

from charpente.compile.plan import ListQuery, Record, SortKey
from charpente.compile.values import DEFAULT_MAX_LENGTHS, parse_date, parse_datetime, parse_uuid
from charpente.design.expr import And, Call, Compare, Expr, Name, Not, Or, Value
from charpente.design.model import Design, Field, Kind, Resource
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.errors import BadRequest, ExprError, FieldError, ValidationFailed

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_CURSOR_LENGTH",
    "MAX_EXPAND",
    "MAX_LIMIT",
    "MAX_PARAM_LENGTH",
    "MAX_SORT_KEYS",
    "decode_cursor",
    "encode_cursor",
    "parse_get_params",
    "parse_history_params",
    "parse_list_params",
    "split_as_of",
]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SORT_KEYS = 5
MAX_EXPAND = 10
MAX_PARAM_LENGTH = 4096
MAX_CURSOR_LENGTH = 2048
"""A longer cursor is refused, unless the sort's own keys can make longer ones (long strings)."""

_LIST_PARAMS = ("filter", "sort", "limit", "cursor", "fields", "expand", "count")
_GET_PARAMS = ("fields", "expand")
_HISTORY_PARAMS = ("limit", "cursor")
_EVENT_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)
_AS_OF = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_UNSORTABLE = frozenset({Kind.JSON, Kind.TEXT})
_MAX_ECHO = 64  # names from the client are echoed back at most this long
_LIMIT_TEXT = re.compile(r"-?[0-9]{1,20}", re.ASCII)
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]*", re.ASCII)
# the longest JSON text one value of a kind takes in a cursor, in UTF-8 bytes
_VALUE_BYTES = {
    Kind.INT: 20,
    Kind.COUNT: 20,
    Kind.FLOAT: 24,
    Kind.BOOL: 5,
    Kind.DATE: 12,
    Kind.DATETIME: 29,
    Kind.UUID: 38,
    Kind.REF: 38,
}
_BYTES_PER_CHARACTER = 6  # a control character is escaped as \u00XX in JSON


# --- list and item parameters ----------------------------------------------------------------


def parse_list_params(
    resource: Resource, design: Design, params: Sequence[tuple[str, str]]
) -> ListQuery:
    """The decoded query pairs of a collection GET → a ListQuery (BadRequest otherwise)."""
    given = _collect(params, _LIST_PARAMS)
    sort = _sort(resource, given.get("sort"))
    fields, expand = _projection(resource, given)
    return ListQuery(
        resource=resource.name,
        where=_filter(resource, design, given.get("filter")),
        sort=sort,
        limit=_limit(given.get("limit")),
        after=_after(resource, sort, given.get("cursor")),
        fields=fields,
        expand=expand,
        count=_count(given.get("count")),
    )


def parse_get_params(
    resource: Resource, params: Sequence[tuple[str, str]]
) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """The decoded query pairs of an item GET → (fields, expand); BadRequest otherwise."""
    return _projection(resource, _collect(params, _GET_PARAMS))


def parse_history_params(params: Sequence[tuple[str, str]]) -> tuple[int, str | None]:
    """The query pairs of /history → (limit, cursor: the last event id of the previous page)."""
    given = _collect(params, _HISTORY_PARAMS)
    cursor = given.get("cursor")
    if cursor is not None and not _EVENT_ID.fullmatch(cursor):
        raise BadRequest(detail="cursor: not a cursor of this history")
    return _limit(given.get("limit")), cursor


def split_as_of(
    params: Sequence[tuple[str, str]],
) -> tuple[datetime.datetime | None, list[tuple[str, str]]]:
    """`as_of` (an RFC 3339 time with its offset) out of an item GET's query pairs, and the
    other pairs. BadRequest when it is malformed or given twice."""
    times = [value for name, value in params if name == "as_of"]
    rest = [(name, value) for name, value in params if name != "as_of"]
    if not times:
        return None, rest
    if len(times) > 1:
        raise BadRequest(detail="`as_of` given twice")
    text = times[0]
    if len(text) > 40 or not _AS_OF.fullmatch(text):
        raise BadRequest(detail="as_of: a time with its offset, like 2026-01-31T12:00:00Z")
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(detail=f"as_of: `{_echo(text)}` is not a valid time") from None
    return moment.astimezone(datetime.UTC), rest


def _collect(params: Sequence[tuple[str, str]], known: tuple[str, ...]) -> dict[str, str]:
    given: dict[str, str] = {}
    for name, value in params:
        if name not in known:
            raise BadRequest(detail=f"unknown query parameter `{_echo(name)}`")
        if name in given:
            raise BadRequest(detail=f"`{name}` given twice")
        if not value:
            raise BadRequest(detail=f"`{name}` is empty")
        if len(value) > MAX_PARAM_LENGTH:
            raise BadRequest(detail=f"`{name}` is longer than {MAX_PARAM_LENGTH} characters")
        given[name] = value
    return given


def _projection(
    resource: Resource, given: dict[str, str]
) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    fields = _fields(resource, given["fields"]) if "fields" in given else None
    expand = _expand(resource, given["expand"]) if "expand" in given else ()
    return fields, expand


def _fields(resource: Resource, text: str) -> tuple[str, ...]:
    names = dict.fromkeys(_split("fields", text))
    for name in names:
        field = resource.field(name)
        if field is None or field.writeonly:
            raise BadRequest(detail=f"fields: `{_echo(name)}` is not a field of {resource.name}")
    return tuple(names)


def _expand(resource: Resource, text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(_split("expand", text)))
    if len(names) > MAX_EXPAND:
        raise BadRequest(detail=f"expand: at most {MAX_EXPAND} fields")
    for name in names:
        field = resource.field(name)
        if field is None or field.kind is not Kind.REF or field.writeonly:
            detail = f"expand: `{_echo(name)}` is not a reference field of {resource.name}"
            raise BadRequest(detail=detail)
    return names


def _count(text: str | None) -> bool:
    if text is None:
        return False
    if text != "exact":
        raise BadRequest(detail="count: the only value is `exact`")
    return True


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not _LIMIT_TEXT.fullmatch(text):
        raise _bad_limit("type", "must be an integer")
    limit = int(text)
    if limit < 1:
        raise _bad_limit("too_small", "must be at least 1")
    if limit > MAX_LIMIT:
        raise _bad_limit("too_large", f"must be at most {MAX_LIMIT}")
    return limit


def _bad_limit(code: str, message: str) -> ValidationFailed:
    return ValidationFailed(detail=f"limit {message}", errors=[FieldError("limit", code, message)])


def _split(name: str, text: str) -> list[str]:
    parts = text.split(",")
    if not all(parts):
        raise BadRequest(detail=f"{name}: an empty item in `{_echo(text)}`")
    return parts


def _echo(text: str) -> str:
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "…"


# --- filter ------------------------------------------------------------------------------------


def _filter(resource: Resource, design: Design, text: str | None) -> Expr | None:
    if text is None:
        return None
    try:
        where = resolve_expr(parse_expr(text), resource, design)
    except ExprError as error:
        detail = f"filter: {error.message} at character {error.offset + 1}"
        raise BadRequest(
            detail=detail, errors=[FieldError("filter", "syntax", error.message)]
        ) from None
    except RecursionError:
        message = "nested too deeply"
        raise BadRequest(
            detail=f"filter: {message}", errors=[FieldError("filter", "syntax", message)]
        ) from None
    sealed = sorted({name for name in _field_names(where) if _is_encrypted(resource, name)})
    if sealed:
        listed = ", ".join(f"`{name}`" for name in sealed)
        message = f"encrypted fields cannot be filtered on: {listed}"
        raise BadRequest(
            detail=f"filter: {message}", errors=[FieldError("filter", "encrypted", message)]
        )
    return where


def _field_names(expr: Expr) -> Iterator[str]:
    """The names a filter reads (a filter has no exists(), so each is one field)."""
    match expr:
        case Name(path):
            yield path[0]
        case Compare(_, left, right) | And(left, right) | Or(left, right):
            yield from _field_names(left)
            yield from _field_names(right)
        case Not(operand):
            yield from _field_names(operand)
        case Call(_, args):
            for arg in args:
                yield from _field_names(arg)


def _is_encrypted(resource: Resource, name: str) -> bool:
    field = resource.field(name)
    return field is not None and field.encrypted


# --- sort ----------------------------------------------------------------------------------------


def _sort(resource: Resource, text: str | None) -> tuple[SortKey, ...]:
    if text is None:
        return (SortKey("id"),)
    keys = tuple(_sort_key(resource, part) for part in _split("sort", text))
    names = [key.field for key in keys]
    if len(keys) > MAX_SORT_KEYS:
        raise BadRequest(detail=f"sort: at most {MAX_SORT_KEYS} fields")
    if len(set(names)) != len(names):
        raise BadRequest(detail="sort: a field appears twice")
    if "id" in names[:-1]:
        raise BadRequest(detail="sort: `id` is unique, so it can only come last")
    # The tie-breaker follows the last key's direction, so that an index on the sort keys
    # plus id serves the whole ORDER BY and the keyset is one row-value comparison.
    sort = keys if names[-1] == "id" else (*keys, SortKey("id", keys[-1].descending))
    if _cursor_limit(resource, sort) > MAX_PARAM_LENGTH:
        detail = "sort: these fields could make cursors too long; sort by fewer text fields"
        raise BadRequest(detail=detail)
    return sort


def _sort_key(resource: Resource, part: str) -> SortKey:
    descending = part.startswith("-")
    name = part[1:] if descending else part
    field = resource.field(name)
    if field is None or field.writeonly:
        raise BadRequest(detail=f"sort: `{_echo(name)}` is not a field of {resource.name}")
    if field.kind in _UNSORTABLE:
        raise BadRequest(detail=f"sort: {field.kind} fields like `{name}` cannot be sorted")
    if field.encrypted:
        raise BadRequest(detail=f"sort: `{name}` is encrypted and cannot be sorted")
    return SortKey(name, descending)


# --- cursors -------------------------------------------------------------------------------------


def encode_cursor(query: ListQuery, row: Record, resource: Resource) -> str:
    """The cursor that starts the page after `row`: base64url (no padding) of compact JSON."""
    values = [_encode_value(row.get(key.field)) for key in query.sort]
    text = json.dumps(
        [_signature(query.sort), values],
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(resource: Resource, sort: tuple[SortKey, ...], cursor: str) -> tuple[Value, ...]:
    """The sort values a cursor carries, typed by field kind; BadRequest if it is not ours."""
    if len(cursor) > _cursor_limit(resource, sort) or not _CURSOR_TEXT.fullmatch(cursor):
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        signature, values = json.loads(raw.decode(), parse_constant=_no_constant)
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise _bad_cursor() from None
    if signature != _signature(sort):
        raise BadRequest(detail="cursor: it was made for another sort")
    if not isinstance(values, list) or len(values) != len(sort):
        raise _bad_cursor()
    return tuple(
        _decode_value(_sort_field(resource, k), v) for k, v in zip(sort, values, strict=True)
    )


def _after(
    resource: Resource, sort: tuple[SortKey, ...], cursor: str | None
) -> tuple[Value, ...] | None:
    return None if cursor is None else decode_cursor(resource, sort, cursor)


@functools.lru_cache(maxsize=1024)
def _signature(sort: tuple[SortKey, ...]) -> str:
    """A short digest of the sort, so a cursor cannot be replayed against another one."""
    spec = ",".join(("-" if key.descending else "") + key.field for key in sort)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def _encode_value(value: object) -> object:
    if isinstance(value, datetime.datetime):
        utc = value.astimezone(datetime.UTC)
        return utc.isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # uuid.UUID and other str-like ids


def _decode_value(field: Field, value: object) -> Value:
    if value is None:
        if _never_null(field):
            raise _bad_cursor()
        return None
    try:
        return _DECODERS.get(field.kind, _decode_string)(value)
    except (ValueError, TypeError, ArithmeticError):
        raise _bad_cursor() from None


def _never_null(field: Field) -> bool:
    """Whether no stored row can hold null in this field (so no cursor carries one)."""
    return field.required or field.system or field.kind is Kind.COUNT


def _decode_string(value: object) -> Value:
    if not isinstance(value, str) or "\x00" in value:
        raise TypeError(value)
    return value


def _decode_int(value: object) -> Value:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    if not -(2**63) <= value < 2**63:
        raise ValueError(value)
    return value


def _decode_float(value: object) -> Value:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _decode_bool(value: object) -> Value:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _decode_decimal(value: object) -> Value:
    number = decimal.Decimal(_decode_text(value))
    if not number.is_finite():
        raise ValueError(value)
    return number


def _decode_text(value: object) -> str:
    if not isinstance(value, str) or len(value) > 100 or "\x00" in value:
        raise TypeError(value)
    return value


_DECODERS: dict[Kind, Callable[[object], Value]] = {
    Kind.INT: _decode_int,
    Kind.COUNT: _decode_int,
    Kind.FLOAT: _decode_float,
    Kind.BOOL: _decode_bool,
    Kind.DECIMAL: _decode_decimal,
    Kind.DATE: lambda v: parse_date(_decode_text(v)),
    Kind.DATETIME: lambda v: parse_datetime(_decode_text(v)),
    Kind.UUID: lambda v: parse_uuid(_decode_text(v)),
    Kind.REF: lambda v: parse_uuid(_decode_text(v)),
}


def _sort_field(resource: Resource, key: SortKey) -> Field:
    field = resource.field(key.field)
    assert field is not None  # sort keys were checked against the resource
    return field


def _cursor_limit(resource: Resource, sort: tuple[SortKey, ...]) -> int:
    """The longest cursor `sort` can produce, and never less than MAX_CURSOR_LENGTH."""
    total = 20 + sum(_value_bytes(_sort_field(resource, key)) + 1 for key in sort)
    return max(MAX_CURSOR_LENGTH, -(-total * 4 // 3))


def _value_bytes(field: Field) -> int:
    if field.kind in _VALUE_BYTES:
        return _VALUE_BYTES[field.kind]
    if field.kind is Kind.DECIMAL:
        return field.precision + 4
    if field.kind is Kind.ENUM:
        return 2 + _BYTES_PER_CHARACTER * max((len(c) for c in field.choices), default=0)
    length = field.max_length or DEFAULT_MAX_LENGTHS.get(field.kind, 255)
    return 2 + _BYTES_PER_CHARACTER * length


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed")


def _bad_cursor() -> BadRequest:
    return BadRequest(detail="cursor: not a cursor of this list")
