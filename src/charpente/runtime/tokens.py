"""Tokens: signed access tokens (JWT, EdDSA or ES256) on a ring of rotating keys, and opaque ones.

An access token is a JWS compact token whose header names its key (`kid`) and algorithm;
verification trusts neither blindly: the algorithm must be one we sign with *and* the one of
the key the `kid` names, so `none`, HMAC and EdDSA/ES256 confusion are refused before any
signature check. Verification never touches a database; a verified token is remembered in
a small cache until it expires.

Refresh tokens and one-time codes are opaque: 256 random bits, stored only as a hash.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import EdDSAAlgorithm
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry

from charpente.errors import CharpenteError, ConfigError
from charpente.runtime.ids import new_id
from charpente.runtime.secrets import Sealer

__all__ = [
    "ALGORITHMS",
    "Claims",
    "InvalidToken",
    "KeyRing",
    "SigningKey",
    "issue_access_token",
    "jwks",
    "key_from_record",
    "key_to_record",
    "new_opaque_token",
    "new_signing_key",
    "token_hash",
]

Algorithm = Literal["EdDSA", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("EdDSA", "ES256")
MAX_TOKEN_CHARS = 8192
_CURVES = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")  # may be empty: `none` tokens have no signature
_CACHE_SIZE = 4096
_SEAL_CONTEXT = b"charpente.signing_keys:"


class InvalidToken(CharpenteError):  # noqa: N818 (named like the errors it sits beside: NotFound)
    """A token was refused; `reason` says why in a few words (safe to log, not to answer)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _EdDSA(EdDSAAlgorithm):
    # RFC 9864 prefers the name "Ed25519", but "EdDSA" (RFC 8037) with an Ed25519 key is
    # what JWT libraries verify today; the curve is checked when a key joins the ring.
    security_warning = ""


class _Registry(JWSRegistry):
    """Only our two algorithms exist here: no `none`, no HMAC, whatever a header says."""

    algorithms = {
        "EdDSA": _EdDSA(),
        "ES256": JWSRegistry.algorithms["ES256"],
    }
    recommended: list[str] = []


_REGISTRIES = {alg: _Registry(algorithms=[alg]) for alg in ALGORITHMS}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the ring: it signs from `not_before` on and verifies until `retire_after`."""

    kid: str
    alg: Algorithm
    private_jwk: Mapping[str, str] = field(repr=False, compare=False)
    created_at: datetime.datetime
    not_before: datetime.datetime
    retire_after: datetime.datetime | None = None
    _key: OKPKey | ECKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.alg not in _CURVES:
            raise ValueError(f"key {self.kid!r}: algorithm must be one of {ALGORITHMS}")
        kty, crv = _CURVES[self.alg]
        jwk: dict[str, str | list[str]] = dict(self.private_jwk)
        if jwk.get("kty") != kty or jwk.get("crv") != crv or "d" not in jwk:
            raise ValueError(f"key {self.kid!r}: {self.alg} needs a private {kty} {crv} key")
        times = (self.created_at, self.not_before, self.retire_after)
        if any(t is not None and t.utcoffset() is None for t in times):
            raise ValueError(f"key {self.kid!r}: times must be timezone-aware")
        key_class = OKPKey if kty == "OKP" else ECKey
        object.__setattr__(self, "_key", key_class.import_key(jwk))
        # A read-only copy: the dataclass is frozen, its JWK should be too.
        object.__setattr__(self, "private_jwk", MappingProxyType(dict(self.private_jwk)))

    def is_retired(self, now: datetime.datetime) -> bool:
        return self.retire_after is not None and now >= self.retire_after

    def can_sign(self, now: datetime.datetime) -> bool:
        return self.not_before <= now and not self.is_retired(now)

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK with kid, alg and use (never a private member)."""
        public = {k: str(v) for k, v in self._key.as_dict(private=False).items()}
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified access token says: who, with which role, and when it ends."""

    subject: str
    role: str | None
    jti: str
    expires_at: datetime.datetime
    issued_at: datetime.datetime
    session: str | None = None  # `sid`: the sign-in (refresh-token family) it belongs to
    amr: tuple[str, ...] = ()  # RFC 8176: how it signed in (`pwd`, `otp`, `mfa`)


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: Claims
    expires: float  # the token's exp, as a Unix timestamp
    retires: float | None  # its key's retire_after


class KeyRing:
    """The signing keys in use: the newest usable one signs, every unretired one verifies.

    Rotation: add a key with a future `not_before` (it is published in the JWKS before it
    signs), then give the old key a `retire_after` of at least the new key's `not_before`
    plus the token lifetime and leeway, so that its last tokens verify until they expire.
    """

    __slots__ = ("_cache", "_keys")

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys: dict[str, SigningKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise ValueError(f"two signing keys share the kid {key.kid!r}")
            self._keys[key.kid] = key
        self._cache: OrderedDict[tuple[str, str, str], _Verified] = OrderedDict()

    def __repr__(self) -> str:
        return f"KeyRing(kids={sorted(self._keys)!r})"

    def published(self, now: datetime.datetime) -> list[SigningKey]:
        """Keys to list in the JWKS: every key not yet retired, future ones included."""
        return [key for key in self._keys.values() if not key.is_retired(now)]

    def signing_key(self, now: datetime.datetime) -> SigningKey:
        """The newest key allowed to sign at `now`. Raises ConfigError when there is none."""
        usable = [key for key in self._keys.values() if key.can_sign(now)]
        if not usable:
            raise ConfigError("no signing key is usable now")
        return max(usable, key=lambda key: (key.not_before, key.created_at))

    def sign(self, claims: Mapping[str, Any], *, now: datetime.datetime) -> str:
        """A compact JWS of `claims` signed by the current signing key."""
        key = self.signing_key(now)
        header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
        payload = json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False)
        return jws.serialize_compact(header, payload, key._key, registry=_REGISTRIES[key.alg])

    def verify(
        self,
        token: str,
        *,
        issuer: str,
        audience: str,
        now: datetime.datetime,
        leeway: int = 30,
    ) -> Claims:
        """The claims of a valid access token for `issuer` and `audience`, else InvalidToken.

        Expiry, iat and nbf allow `leeway` seconds of clock difference. A token already
        verified is answered from a bounded cache until its exp (or its key's retirement).
        """
        stamp = now.timestamp()
        cache_key = (token, issuer, audience)
        hit = self._cache.get(cache_key)
        if hit is not None and _still_valid(hit, stamp, leeway):
            self._cache.move_to_end(cache_key)
            return hit.claims
        key, payload = self._check_signature(token, now)
        claims = _check_claims(payload, issuer=issuer, audience=audience, now=stamp, leeway=leeway)
        self._remember(cache_key, claims, key)
        return claims

    def _check_signature(self, token: str, now: datetime.datetime) -> tuple[SigningKey, bytes]:
        """The key that signed `token` and its payload, once the header and signature pass."""
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("token too large")
        segments = token.split(".")
        if len(segments) != 3 or not all(_SEGMENT.fullmatch(s) for s in segments):
            raise InvalidToken("malformed token")
        key = self._header_key(_json_object(_decode_segment(segments[0]), "header"), now)
        try:
            signed = jws.deserialize_compact(token, key._key, registry=_REGISTRIES[key.alg])
        except JoseError:
            raise InvalidToken("bad signature") from None
        except (ValueError, TypeError):
            raise InvalidToken("malformed token") from None
        return key, signed.payload

    def _header_key(self, header: dict[str, Any], now: datetime.datetime) -> SigningKey:
        alg = header.get("alg")
        if alg not in _CURVES:
            raise InvalidToken("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("missing kid")
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        if key.alg != alg:
            raise InvalidToken("algorithm does not match the key")
        if "crit" in header:
            raise InvalidToken("unsupported critical header")
        if key.is_retired(now):
            raise InvalidToken("key retired")
        return key

    def _remember(self, cache_key: tuple[str, str, str], claims: Claims, key: SigningKey) -> None:
        retires = key.retire_after.timestamp() if key.retire_after is not None else None
        self._cache[cache_key] = _Verified(claims, claims.expires_at.timestamp(), retires)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)


def new_signing_key(alg: Algorithm, now: datetime.datetime) -> SigningKey:
    """A fresh key pair that may sign from `now`; its kid is its RFC 7638 thumbprint."""
    if alg == "EdDSA":
        generated: OKPKey | ECKey = OKPKey.generate_key("Ed25519")
    elif alg == "ES256":
        generated = ECKey.generate_key("P-256")
    else:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}")
    private = {k: str(v) for k, v in generated.as_dict(private=True).items()}
    return SigningKey(generated.thumbprint(), alg, private, created_at=now, not_before=now)


def jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, str]]]:
    """The JSON Web Key Set of `keys`: public parts only, with kid, alg and use=sig."""
    return {"keys": [key.public_jwk() for key in keys]}


def issue_access_token(  # noqa: PLR0913 (keyword-only claims)
    ring: KeyRing,
    *,
    issuer: str,
    audience: str,
    subject: str,
    role: str | None,
    now: datetime.datetime,
    ttl: int = 900,
    session: str | None = None,
    amr: tuple[str, ...] = (),
) -> str:
    """A signed access token: iss, aud, sub, exp (now + ttl seconds), iat, jti and role,
    and `sid` (the sign-in it belongs to) when `session` is given."""
    # iat to the millisecond (RFC 7519 NumericDate may have a fraction), rounded down: a
    # session that ends refuses exactly the tokens issued before it, not every token of
    # the same second (the one an OAuth login issues right after linking, say).
    stamp = now.timestamp()
    issued = math.floor(stamp * 1000) / 1000
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "exp": int(stamp) + ttl,
        "iat": issued,
        "jti": new_id(),
        "role": role,
    }
    if session is not None:
        claims["sid"] = session
    if amr:
        claims["amr"] = list(amr)
    return ring.sign(claims, now=now)


def key_to_record(key: SigningKey, sealer: Sealer | None) -> dict[str, Any]:
    """A storable row for `key`: the private JWK is sealed when a sealer is configured."""
    private = json.dumps(dict(key.private_jwk), separators=(",", ":"), sort_keys=True)
    if sealer is not None:
        private = sealer.seal(private.encode(), context=_SEAL_CONTEXT + key.kid.encode())
    return {
        "kid": key.kid,
        "alg": key.alg,
        "private_jwk": private,
        "created_at": key.created_at,
        "not_before": key.not_before,
        "retire_after": key.retire_after,
    }


def key_from_record(record: Mapping[str, Any], sealer: Sealer | None) -> SigningKey:
    """The key stored by key_to_record. Raises ConfigError for a sealed key without a sealer;
    SealError when the sealer cannot open it."""
    kid, private = str(record["kid"]), str(record["private_jwk"])
    if not private.startswith("{"):  # a sealed value, never JSON
        if sealer is None:
            raise ConfigError(f"signing key {kid!r} is sealed, and no sealing key is configured")
        private = sealer.open(private, context=_SEAL_CONTEXT + kid.encode()).decode()
    return SigningKey(
        kid,
        record["alg"],
        json.loads(private),
        created_at=_datetime(record["created_at"]),
        not_before=_datetime(record["not_before"]),
        retire_after=_datetime(record["retire_after"]) if record.get("retire_after") else None,
    )


def new_opaque_token() -> str:
    """32 random bytes, base64url without padding (a refresh token or a one-time code)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """SHA-256 hex of an opaque token: what is stored in place of the token.

    A fast hash is right here, unlike for passwords: the token has 256 random bits, so
    there is no dictionary to try and brute force is out of reach whatever the hash's speed.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def _still_valid(hit: _Verified, stamp: float, leeway: int) -> bool:
    return stamp <= hit.expires + leeway and (hit.retires is None or stamp < hit.retires)


def _decode_segment(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise InvalidToken(f"malformed {what}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed {what}")
    return value


def _check_claims(payload: bytes, *, issuer: str, audience: str, now: float, leeway: int) -> Claims:
    """The Claims of a signed payload, after the issuer, audience and time rules."""
    claims = _json_object(payload, "payload")
    if claims.get("iss") != issuer:
        raise InvalidToken("wrong issuer")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise InvalidToken("wrong audience")
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    if now > exp + leeway:
        raise InvalidToken("token expired")
    if iat > now + leeway:
        raise InvalidToken("issued in the future")
    if "nbf" in claims and _number(claims, "nbf") > now + leeway:
        raise InvalidToken("not valid yet")
    subject, jti, role = claims.get("sub"), claims.get("jti"), claims.get("role")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("missing sub")
    if not isinstance(jti, str) or not jti:
        raise InvalidToken("missing jti")
    if role is not None and not isinstance(role, str):
        raise InvalidToken("malformed role")
    session = claims.get("sid")
    if session is not None and not isinstance(session, str):
        raise InvalidToken("malformed sid")
    amr = claims.get("amr", [])
    if not isinstance(amr, list) or not all(isinstance(m, str) for m in amr):
        raise InvalidToken("malformed amr")
    return Claims(subject, role, jti, _from_stamp(exp), _from_stamp(iat), session, tuple(amr))


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"missing {name}")
    if not math.isfinite(value):  # json.loads accepts NaN and Infinity
        raise InvalidToken(f"malformed {name}")
    return float(value)


def _from_stamp(stamp: float) -> datetime.datetime:
    try:
        return datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidToken("time out of range") from None


def _datetime(value: object) -> datetime.datetime:
    """A stored time: a datetime or ISO 8601 text; naive ones are UTC (SQLite drops the zone)."""
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        parsed = datetime.datetime.fromisoformat(str(value))
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=datetime.UTC)
