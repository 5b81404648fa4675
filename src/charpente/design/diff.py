"""Design diffs: what changed between two designs, and which changes break v1 clients.

Also the design's canonical JSON snapshot (kept with each migration) and its reader. Pure.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from charpente.design import expr as expr_nodes
from charpente.design.model import (
    Check,
    CountSource,
    Default,
    Design,
    Field,
    Index,
    IndexColumn,
    Kind,
    OnDelete,
    Resource,
)

__all__ = ["Change", "design_from_json", "design_to_json", "diff_designs"]

SNAPSHOT_FORMAT = 1

_RECORDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        Resource,
        Field,
        Default,
        CountSource,
        Index,
        IndexColumn,
        Check,
        expr_nodes.Literal,
        expr_nodes.ListOf,
        expr_nodes.Name,
        expr_nodes.Compare,
        expr_nodes.And,
        expr_nodes.Or,
        expr_nodes.Not,
        expr_nodes.Call,
    )
}
_ENUMS: dict[str, Callable[[Any], Any]] = {"kind": Kind, "on_delete": OnDelete}
_VALUE_FIELDS = frozenset({("Default", "value"), ("Literal", "value")})
_SKIPPED = frozenset({"pos", "access", "limits", "cache"})  # rules, limits, caches: not schema


@dataclass(frozen=True, slots=True)
class Change:
    """One design-level change: `field` is None when the whole resource changed."""

    resource: str
    field: str | None
    what: str  # a phrase: "removed", "max_length shrank from 200 to 100"
    breaking: bool  # v1 clients that worked before may now fail

    def __str__(self) -> str:
        where = self.resource if self.field is None else f"{self.resource}.{self.field}"
        return f"{where}: {self.what}" + (" (breaking)" if self.breaking else "")


def diff_designs(old: Design | None, new: Design) -> list[Change]:
    """Every change from `old` to `new` (None: nothing existed), resource by resource.

    A rename cannot be told from a removal plus an addition, and is reported as both.
    """
    before = dict(old.resources) if old is not None else {}
    changes: list[Change] = []
    for name in before:
        if name not in new.resources:
            changes.append(Change(name, None, "removed", breaking=True))
    for name, resource in new.resources.items():
        if name not in before:
            changes.append(Change(name, None, "added", breaking=False))
        else:
            changes.extend(_resource_changes(before[name], resource))
    return changes


def _resource_changes(old: Resource, new: Resource) -> Iterator[Change]:
    old_fields = {f.name: f for f in old.fields}
    new_fields = {f.name: f for f in new.fields}
    for name in old_fields:
        if name not in new_fields:
            yield Change(new.name, name, "removed", breaking=True)
    for name, f in new_fields.items():
        if name not in old_fields:
            yield Change(new.name, name, _added_phrase(f), breaking=_blocks_creates(f))
        else:
            yield from (
                Change(new.name, name, what, breaking)
                for what, breaking in _field_changes(old_fields[name], f)
            )
    for names in set(new.unique) - set(old.unique):
        yield Change(new.name, None, f"unique ({', '.join(names)}) added", breaking=True)
    old_checks = {c.source for c in old.checks}
    for check in new.checks:
        if check.source not in old_checks:
            yield Change(new.name, None, f"check `{check.source}` added", breaking=True)
    if new.require_if_match and not old.require_if_match:
        yield Change(new.name, None, "now requires If-Match", breaking=True)


def _blocks_creates(f: Field) -> bool:
    return f.required and f.default is None and f.is_client_writable


def _added_phrase(f: Field) -> str:
    required = "required" if f.required else "optional"
    return f"added ({f.kind}, {required})"


def _field_changes(old: Field, new: Field) -> Iterator[tuple[str, bool]]:
    if old.kind is not new.kind:
        yield f"type changed from {old.kind} to {new.kind}", True
        return
    yield from _flag_changes(old, new)
    yield from _limit_changes(old, new)
    lost = [c for c in old.choices if c not in new.choices]
    if lost:
        yield f"enum lost {', '.join(repr(c) for c in lost)}", True
    gained = [c for c in new.choices if c not in old.choices]
    if gained:
        yield f"enum gained {', '.join(repr(c) for c in gained)}", False
    if old.ref != new.ref:
        yield f"now refers to {new.ref}", True
    if (new.precision - new.scale, new.scale) < (old.precision - old.scale, old.scale):
        yield f"decimal narrowed to ({new.precision}, {new.scale})", True


_FLAGS = (
    ("required", "became required", "became optional"),
    ("unique", "became unique", "no longer unique"),
    ("readonly", "became read-only", "no longer read-only"),
    ("writeonly", "became write-only", "no longer write-only"),
    ("immutable", "became immutable", "no longer immutable"),
)


def _flag_changes(old: Field, new: Field) -> Iterator[tuple[str, bool]]:
    for attr, turned_on, turned_off in _FLAGS:
        was, now = getattr(old, attr), getattr(new, attr)
        if now and not was:
            yield turned_on, True
        elif was and not now:
            yield turned_off, False
    if old.default != new.default:
        yield "default changed", False


# (attribute, the direction that narrows: +1 when a smaller value narrows, -1 when larger does)
_LIMITS = (("max_length", 1), ("maximum", 1), ("min_length", -1), ("minimum", -1))


def _limit_changes(old: Field, new: Field) -> Iterator[tuple[str, bool]]:
    for attr, narrows in _LIMITS:
        was, now = getattr(old, attr), getattr(new, attr)
        if was == now:
            continue
        if now is None:
            yield f"{attr} {was} removed", False
        elif was is None or (now - was) * narrows < 0:
            verb = (
                "added at"
                if was is None
                else f"{'shrank' if narrows > 0 else 'grew'} from {was} to"
            )
            yield f"{attr} {verb} {now}", True
        else:
            yield f"{attr} relaxed from {was} to {now}", False
    if old.pattern != new.pattern:
        yield ("pattern removed", False) if new.pattern is None else ("pattern changed", True)


def design_to_json(design: Design) -> str:
    """The design as canonical JSON (sorted keys, no positions, no file path)."""
    data = {
        "format": SNAPSHOT_FORMAT,
        "name": design.name,
        "api_version": design.api_version,
        "hooks": design.hooks,
        "format_version": design.format_version,
        "resources": [_encode(r) for r in design.resources.values()],
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def design_from_json(text: str) -> Design:
    """Read back a snapshot written by `design_to_json`."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError("not a design snapshot this version of charpente can read")
    resources = [_decode(r) for r in data["resources"]]
    return Design(
        name=data["name"],
        api_version=data["api_version"],
        resources={r.name: r for r in resources},
        hooks=data["hooks"],
        format_version=data["format_version"],
    )


def _encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        out: dict[str, Any] = {"$": name}
        for f in dataclasses.fields(obj):
            if f.name not in _SKIPPED:
                value = getattr(obj, f.name)
                is_value = (name, f.name) in _VALUE_FIELDS
                out[f.name] = _encode_value(value) if is_value else _encode(value)
        return out
    if isinstance(obj, tuple | list):
        return [_encode(item) for item in obj]
    return obj  # str (enums are StrEnum), int, float, bool, None


def _encode_value(value: object) -> dict[str, Any]:
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"date": value.isoformat()}
    return {"json": value}


def _decode(data: Any) -> Any:
    if isinstance(data, list):
        return tuple(_decode(item) for item in data)
    if not isinstance(data, dict):
        return data
    name = data["$"]
    kwargs: dict[str, Any] = {}
    for key, raw in data.items():
        if key == "$":
            continue
        if (name, key) in _VALUE_FIELDS:
            kwargs[key] = _decode_value(raw)
        elif key in _ENUMS:
            kwargs[key] = _ENUMS[key](raw)
        else:
            kwargs[key] = _decode(raw)
    return _RECORDS[name](**kwargs)


def _decode_value(data: dict[str, Any]) -> object:
    (tag, raw), *_ = data.items()
    if tag == "decimal":
        return decimal.Decimal(raw)
    if tag == "datetime":
        return datetime.datetime.fromisoformat(raw)
    if tag == "date":
        return datetime.date.fromisoformat(raw)
    return raw
