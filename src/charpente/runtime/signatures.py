"""Webhook signatures as Standard Webhooks defines them (https://www.standardwebhooks.com).

A request carries `webhook-id` (the message id, the same on every retry), `webhook-timestamp`
(Unix seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
`{id}.{timestamp}.{body}`, keyed with the secret's bytes. Secrets are written
`whsec_<base64>`. `verify` is what a receiver runs; it compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Mapping

from charpente.errors import CharpenteError

__all__ = [
    "SECRET_PREFIX",
    "TOLERANCE",
    "SignatureError",
    "new_secret",
    "secret_key",
    "sign",
    "signature_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of every secret, not one)
TOLERANCE = 300  # seconds a receiver accepts between the timestamp and its clock
SECRET_BYTES = 32
_MIN_KEY, _MAX_KEY = 24, 64  # the key sizes Standard Webhooks allows
_MAX_SIGNATURES = 16  # a header listing more is not a sender's, whatever it holds


class SignatureError(CharpenteError):
    """A webhook request is not signed by the secret, or not recently."""


def new_secret() -> str:
    """A new endpoint secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The key bytes of `whsec_<base64>` (the prefix may be left out).

    Raises ValueError, without showing the secret, when it is not 24 to 64 bytes of base64.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not _MIN_KEY <= len(key) <= _MAX_KEY:
        raise ValueError(f"a webhook secret holds {_MIN_KEY} to {_MAX_KEY} bytes")
    return key


def sign(secret: str | bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (`secret` as text or key bytes)."""
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(
    secret: str | bytes, message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of a request."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a received webhook: its signature with `secret`, its timestamp within
    `tolerance` seconds of `now` (default: this machine's clock), either way.

    `headers` may be any mapping (names in any case). Raises SignatureError.
    """
    found = {name.lower(): value for name, value in headers.items()}
    message_id = found.get("webhook-id", "")
    stamp = found.get("webhook-timestamp", "")
    signatures = found.get("webhook-signature", "")
    if not message_id or not stamp or not signatures:
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are required")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError("webhook-timestamp is not a number of seconds")
    timestamp = int(stamp)
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance:
        raise SignatureError("webhook-timestamp is too far from now (a replay, or a clock off)")
    expected = sign(secret, message_id, timestamp, body).encode()
    offered = signatures.split(" ")[:_MAX_SIGNATURES]
    # Every candidate is compared, in constant time, whatever the first ones gave.
    matches = [hmac.compare_digest(expected, item.encode()) for item in offered if item]
    if not any(matches):
        raise SignatureError("no webhook-signature matches the secret")
