"""Field encryption: values sealed with AES-256-GCM under named keys, bound to their place.

A sealed value is the text `v1.<kid>.<base64url(nonce | ciphertext+tag)>`: 96-bit random
nonce, no padding. The associated data is `v1.<kid>.` followed by the caller's `context`
(e.g. b"posts.secret"), so a value copied to another column, or relabelled with another
key id, no longer opens. Keys rotate: new values use the active key, old ones still open
with theirs until `rotate_needed` says they were re-sealed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from charpente.errors import CharpenteError

__all__ = ["SealError", "Sealer", "generate_key_text"]

_VERSION = "v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# Sealed values live in columns and settings; anything larger is not one of ours.
_MAX_TOKEN_CHARS = 16 * 1024 * 1024


class SealError(CharpenteError):
    """A sealed value cannot be opened: malformed, unknown key, tampered or wrong context."""


class Sealer:
    """Seals and opens values with AES-256-GCM; `active` names the key new values use."""

    __slots__ = ("_active", "_ciphers")

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        for kid, key in keys.items():
            _check_kid(kid)
            if len(key) != _KEY_BYTES:
                raise ValueError(f"key {kid!r} must be {_KEY_BYTES} bytes, got {len(key)}")
        if active not in keys:
            raise ValueError(f"the active key {active!r} is not among the keys")
        self._ciphers = MappingProxyType({kid: AESGCM(key) for kid, key in keys.items()})
        self._active = active

    @classmethod
    def from_env_value(cls, text: str) -> Sealer:
        """Parse "k2:BASE64KEY,k1:BASE64KEY": the first key is the active one.

        Each key is 32 bytes once base64-decoded (standard or URL-safe alphabet, padding
        optional). Errors name the key id, never the key.
        """
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in text.split(",")):
            kid, sep, encoded = item.partition(":")
            kid = kid.strip()
            if not sep or not kid:
                raise ValueError('each key must be written "kid:base64key", separated by commas')
            if kid in keys:
                raise ValueError(f"key id {kid!r} appears twice")
            keys[kid] = _decode_key(kid, encoded.strip())
        return cls(keys, active=next(iter(keys)))

    def __repr__(self) -> str:
        return f"Sealer(active={self._active!r}, kids={sorted(self._ciphers)!r})"

    @property
    def active(self) -> str:
        """The id of the key that seals new values."""
        return self._active

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        """Encrypt `plaintext` under the active key; `context` must be given again to open it."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._active].encrypt(nonce, plaintext, _aad(self._active, context))
        return f"{_VERSION}.{self._active}.{_b64encode(nonce + sealed)}"

    def open(self, token: str, *, context: bytes) -> bytes:
        """The plaintext of a sealed value. Raises SealError on any failure, without detail."""
        kid, blob = _split(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SealError(f"no key {kid!r} to open this value")
        try:
            return cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(kid, context))
        except InvalidTag:
            raise SealError("the value was altered, or belongs elsewhere") from None

    def rotate_needed(self, token: str) -> bool:
        """Whether `token` was sealed under another key than the active one (re-seal it)."""
        kid, _ = _split(token)
        return kid != self._active


def generate_key_text(kid: str) -> str:
    """A new random key written "kid:base64url", ready for the key setting."""
    _check_kid(kid)
    return f"{kid}:{_b64encode(os.urandom(_KEY_BYTES))}"


def _check_kid(kid: str) -> None:
    if not _KID.fullmatch(kid):
        raise ValueError(f"key id {kid!r} must be 1 to 32 letters, digits, '-' or '_'")


def _decode_key(kid: str, encoded: str) -> bytes:
    """Decode base64 in either alphabet, with or without padding; errors never show the key."""
    standard = encoded.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"key {kid!r} is not valid base64") from None
    if len(key) != _KEY_BYTES:
        raise ValueError(f"key {kid!r} must be {_KEY_BYTES} bytes after base64 decoding")
    return key


def _split(token: str) -> tuple[str, bytes]:
    """The key id and nonce+ciphertext of a sealed value; SealError when it is not one."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise SealError("not a sealed value")
    parts = token.split(".")
    if len(parts) != 3:
        raise SealError("not a sealed value")
    version, kid, encoded = parts
    if version != _VERSION or not _KID.fullmatch(kid) or not _BASE64URL.fullmatch(encoded):
        raise SealError("not a sealed value")
    try:
        blob = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise SealError("not a sealed value") from None
    if len(blob) < _NONCE_BYTES + _TAG_BYTES:
        raise SealError("not a sealed value")
    return kid, blob


def _aad(kid: str, context: bytes) -> bytes:
    return f"{_VERSION}.{kid}.".encode() + context


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
