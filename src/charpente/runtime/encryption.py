"""Encrypted fields: the FieldCipher port, its AES-256-GCM implementation, and records
sealed on their way to the database and opened on their way back.

Pure work, no I/O. A field's value is sealed under the context `b"<resource>.<field>"`, so
a value copied into another column or record of another resource no longer opens; json
values are sealed as their compact JSON text.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Protocol

from charpente.compile.plan import Record
from charpente.design.model import Design, Field, Kind
from charpente.errors import ConfigError
from charpente.runtime.ports import IdempotentResponse
from charpente.runtime.secrets import Sealer, SealError

__all__ = [
    "AesFieldCipher",
    "EncryptedFields",
    "FieldCipher",
    "describe_fields",
    "encrypted_fields",
]


# The context of a stored idempotent answer: `#` is in no field name, so it cannot collide.
_RESPONSE = "#response"
_SEALED_PREFIX = b"v1."


class FieldCipher(Protocol):
    """Seals and opens the text of one field's values; `is_stale` says that a sealed value
    was sealed under another key than the one that seals today (re-seal it)."""

    def seal(self, resource: str, field: str, text: str) -> str:
        """The sealed form of `text`, bound to `resource.field`."""

    def open(self, resource: str, field: str, token: str) -> str:
        """The text of a sealed value. Raises SealError when it does not open."""

    def is_stale(self, token: str) -> bool:
        """Whether `token` was sealed under a key other than the active one."""


class AesFieldCipher:
    """A FieldCipher on a Sealer (AES-256-GCM under named, rotating keys)."""

    __slots__ = ("_sealer",)

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer

    def __repr__(self) -> str:
        return f"AesFieldCipher(active={self._sealer.active!r})"

    def seal(self, resource: str, field: str, text: str) -> str:
        return self._sealer.seal(text.encode("utf-8"), context=_context(resource, field))

    def open(self, resource: str, field: str, token: str) -> str:
        return self._sealer.open(token, context=_context(resource, field)).decode("utf-8")

    def is_stale(self, token: str) -> bool:
        return self._sealer.rotate_needed(token)


def encrypted_fields(design: Design) -> dict[str, tuple[Field, ...]]:
    """The encrypted fields of each resource that has any."""
    found = {
        name: tuple(f for f in resource.fields if f.encrypted)
        for name, resource in design.resources.items()
    }
    return {name: fields for name, fields in found.items() if fields}


class EncryptedFields:
    """A design's encrypted fields and a cipher: seals values to write, opens rows read.

    Resources without encrypted fields pass through untouched (one dictionary lookup).
    Raises ConfigError when the design has encrypted fields and no cipher is given.
    """

    __slots__ = ("_cipher", "_fields")

    def __init__(self, design: Design, cipher: FieldCipher | None) -> None:
        self._fields = encrypted_fields(design)
        if self._fields and cipher is None:
            listed = describe_fields(self._fields)
            raise ConfigError(f"the design encrypts {listed}, and no key is set to seal them")
        self._cipher = cipher

    def __bool__(self) -> bool:
        return bool(self._fields)

    def seal(self, resource: str, values: Mapping[str, object]) -> dict[str, object]:
        """A copy of `values` (a row or changes) with its encrypted fields sealed."""
        fields = self._fields.get(resource)
        if not fields or self._cipher is None:
            return dict(values)
        sealed = dict(values)
        for field in fields:
            value = sealed.get(field.name)
            if value is not None:
                sealed[field.name] = self._cipher.seal(resource, field.name, _text(field, value))
        return sealed

    def open(self, resource: str, row: Record) -> Record:
        """`row` (as read from the database) with its encrypted fields opened, in place.

        Raises SealError naming the field (never the value) when one does not open.
        """
        fields = self._fields.get(resource)
        if not fields or self._cipher is None:
            return row
        for field in fields:
            token = row.get(field.name)
            if token is not None:
                row[field.name] = self._opened(resource, field, token)
        return row

    def open_rows(self, resource: str, rows: Iterable[Record]) -> list[Record]:
        """Every row opened (see `open`)."""
        return [self.open(resource, row) for row in rows]

    def seal_response(self, resource: str, response: IdempotentResponse) -> IdempotentResponse:
        """A stored answer for replays: sealed when it may hold encrypted values."""
        if resource not in self._fields or self._cipher is None:
            return response
        body = self._cipher.seal(resource, _RESPONSE, response.body.decode("utf-8"))
        return dataclasses.replace(response, body=body.encode("ascii"))

    def open_response(self, resource: str, response: IdempotentResponse) -> IdempotentResponse:
        """A stored answer as it was rendered (answers stored in clear pass unchanged)."""
        if self._cipher is None or not response.body.startswith(_SEALED_PREFIX):
            return response  # a JSON body starts with `{`; a sealed one never does
        body = self._cipher.open(resource, _RESPONSE, response.body.decode("ascii"))
        return dataclasses.replace(response, body=body.encode("utf-8"))

    def _opened(self, resource: str, field: Field, token: object) -> object:
        assert self._cipher is not None  # checked by the callers
        if not isinstance(token, str):
            raise SealError(f"{resource}.{field.name} holds a value that was never sealed")
        try:
            text = self._cipher.open(resource, field.name, token)
        except SealError as error:
            raise SealError(f"{resource}.{field.name}: {error}") from None
        return json.loads(text) if field.kind is Kind.JSON else text


def describe_fields(fields: Mapping[str, tuple[Field, ...]]) -> str:
    """`notes.body, users.phone` for messages."""
    return ", ".join(f"{resource}.{f.name}" for resource, fs in fields.items() for f in fs)


def _text(field: Field, value: object) -> str:
    if field.kind is Kind.JSON:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _context(resource: str, field: str) -> bytes:
    return f"{resource}.{field}".encode()
