"""The records of a login through a provider: its configuration, its state, its result."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal, Self, TypeGuard, get_args
from urllib.parse import urlsplit

from charpente.errors import CharpenteError

__all__ = [
    "GITHUB_API_URL",
    "GITHUB_AUTHORIZE_URL",
    "GITHUB_TOKEN_URL",
    "GOOGLE_ISSUER",
    "MAX_PARAM",
    "Identity",
    "LoginState",
    "OAuthError",
    "OAuthErrorCode",
    "Provider",
    "ProviderKind",
    "is_secure_url",
]

GOOGLE_ISSUER = "https://accounts.google.com"
GITHUB_AUTHORIZE_URL = "https://github.com/login/oauth/authorize"
GITHUB_TOKEN_URL = "https://github.com/login/oauth/access_token"  # noqa: S105 (a URL)
GITHUB_API_URL = "https://api.github.com"

DEFAULT_SCOPES = {"oidc": ("openid", "email", "profile"), "github": ("read:user", "user:email")}
MAX_PARAM = 2048  # longest state, code or URL accepted from a browser or a provider
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_SCOPE = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")  # RFC 6749 §3.3 scope-token

OAuthErrorCode = Literal[
    "state_mismatch",
    "state_expired",
    "provider_error",
    "exchange_failed",
    "bad_id_token",
    "wrong_audience",
    "wrong_issuer",
    "wrong_nonce",
    "email_unverified",
    "no_email",
    "provider_unreachable",
]
ProviderKind = Literal["oidc", "github"]


class OAuthError(CharpenteError):
    """A login through a provider failed; `code` says why (one of `OAuthErrorCode`).

    `message` is for logs and people; it never holds a token, a code or a secret.
    """

    def __init__(self, code: OAuthErrorCode, message: str) -> None:
        self.code: OAuthErrorCode = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True, slots=True)
class Provider:
    """One login provider: an OpenID Connect issuer (`kind="oidc"`) or GitHub.

    `oidc` uses `issuer` (its discovery document is at issuer + /.well-known/...);
    `github` uses `authorize_url`, `token_url` and `api_url`. `scopes` empty means the
    kind's default. Endpoints must be https (plain http only on a loopback host).
    Raises ValueError when the configuration cannot work.
    """

    name: str
    kind: ProviderKind
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    issuer: str = GOOGLE_ISSUER
    authorize_url: str = GITHUB_AUTHORIZE_URL
    token_url: str = GITHUB_TOKEN_URL
    api_url: str = GITHUB_API_URL

    def __post_init__(self) -> None:
        if self.kind not in get_args(ProviderKind):
            raise ValueError(f"provider {self.name!r}: kind must be 'oidc' or 'github'")
        if not (self.name and self.client_id and self.client_secret):
            raise ValueError(f"provider {self.name!r}: name, client_id and secret are required")
        if not all(_SCOPE.fullmatch(scope) for scope in self.scopes):
            raise ValueError(f"provider {self.name!r}: a scope is not a valid scope token")
        urls = (self.issuer,) if self.kind == "oidc" else (self.authorize_url, self.token_url)
        for url in (*urls, self.api_url):
            if not is_secure_url(url):
                raise ValueError(f"provider {self.name!r}: {url!r} is not an https URL")

    @property
    def scope(self) -> str:
        """The `scope` parameter of the authorization request."""
        return " ".join(self.scopes or DEFAULT_SCOPES[self.kind])


@dataclass(frozen=True, slots=True)
class LoginState:
    """What the browser must carry from `begin` to `finish` (sealed in a cookie).

    `redirect_uri` is the application's, where the HTTP layer sends the user at the end;
    `nonce` is None for GitHub; `created_at` is in epoch seconds.
    """

    provider: str
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    nonce: str | None = field(repr=False)
    redirect_uri: str
    created_at: int

    def to_bytes(self) -> bytes:
        """Compact JSON (a list, about 200 bytes plus the redirect URI)."""
        fields = (self.provider, self.state, self.code_verifier, self.nonce, self.redirect_uri)
        return json.dumps([*fields, self.created_at], separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """The state `to_bytes` wrote; raises OAuthError(state_mismatch) on anything else."""
        try:
            fields = json.loads(data)
        except (ValueError, TypeError) as exc:
            raise OAuthError("state_mismatch", "the login state is not readable") from exc
        if not (isinstance(fields, list) and len(fields) == 6):
            raise OAuthError("state_mismatch", "the login state is not readable")
        provider, state, verifier, nonce, redirect_uri, created = fields
        strings = (provider, state, verifier, redirect_uri)
        if not (
            all(_is_param(value) for value in strings)
            and (nonce is None or _is_param(nonce))
            and type(created) is int
        ):
            raise OAuthError("state_mismatch", "the login state is not readable")
        return cls(provider, state, verifier, nonce, redirect_uri, created)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed in: `subject` is the provider's id for the user (unique per provider),
    `email` the address the provider has verified, lowercased."""

    provider: str
    subject: str
    email: str
    email_verified: bool
    name: str | None = None


def is_secure_url(url: object) -> TypeGuard[str]:
    """https, or http to this machine (development and tests)."""
    if not isinstance(url, str) or len(url) > MAX_PARAM:
        return False
    parts = urlsplit(url)
    if parts.scheme == "http":
        return parts.hostname in _LOOPBACK
    return parts.scheme == "https" and bool(parts.hostname)


def _is_param(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_PARAM
