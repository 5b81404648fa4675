"""The checks of a login, as pure functions over what the browser and the provider sent.

Each raises OAuthError with the code that names what failed, and returns what the next
step needs. Comparisons of values an attacker may probe are constant-time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from charpente.runtime.oauth.model import (
    GOOGLE_ISSUER,
    MAX_PARAM,
    Identity,
    LoginState,
    OAuthError,
    Provider,
    is_secure_url,
)

__all__ = [
    "STATE_LIFETIME",
    "TOKEN_LEEWAY",
    "Endpoints",
    "check_callback",
    "check_claims",
    "error_name",
    "github_identity",
    "identity_from_claims",
    "read_discovery",
]

STATE_LIFETIME = 600  # seconds a login may take between begin and finish
TOKEN_LEEWAY = 60  # seconds of clock skew allowed on ID tokens and login states
# Google documents both spellings of its issuer in ID tokens.
_ISSUER_ALIASES = {GOOGLE_ISSUER: frozenset({GOOGLE_ISSUER, "accounts.google.com"})}
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where one provider is reached, from its discovery document or its configuration."""

    authorization: str
    token: str
    basic_auth: bool  # client_secret_basic, else client_secret_post
    jwks: str | None = None  # OpenID Connect only


def read_discovery(provider: Provider, document: Any) -> Endpoints:
    """The endpoints an OpenID provider's discovery document names, checked."""
    if not isinstance(document, dict):
        raise OAuthError("provider_unreachable", f"{provider.name} has no discovery document")
    if document.get("issuer") != provider.issuer:
        raise OAuthError("wrong_issuer", f"{provider.name}'s discovery names another issuer")
    authorization, token, jwks = (
        document.get(key) for key in ("authorization_endpoint", "token_endpoint", "jwks_uri")
    )
    if not (is_secure_url(authorization) and is_secure_url(token) and is_secure_url(jwks)):
        raise OAuthError("provider_unreachable", f"{provider.name}'s discovery lacks endpoints")
    # OpenID Connect Discovery §3: client_secret_basic when the document names none.
    methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    basic = not isinstance(methods, list) or "client_secret_basic" in methods
    return Endpoints(authorization, token, basic_auth=basic, jwks=jwks)


def check_callback(
    provider: Provider, params: Mapping[str, str], state: LoginState, now: float
) -> str:
    """The callback's code, once its state is this login's and the provider sent no error."""
    sent = params.get("state", "")
    same = len(sent) <= MAX_PARAM and hmac.compare_digest(sent.encode(), state.state.encode())
    if not same or state.provider != provider.name:
        raise OAuthError("state_mismatch", "the callback's state is not this login's")
    if not -TOKEN_LEEWAY <= now - state.created_at <= STATE_LIFETIME:
        raise OAuthError("state_expired", "the login took longer than 10 minutes")
    if "error" in params:
        raise OAuthError("provider_error", f"{provider.name} answered {error_name(params)}")
    issuer = params.get("iss")  # RFC 9207: who sent the user back, when the provider says
    if provider.kind == "oidc" and issuer is not None and issuer != provider.issuer:
        raise OAuthError("wrong_issuer", "the callback comes from another issuer")
    code = params.get("code", "")
    if not 0 < len(code) <= MAX_PARAM:
        raise OAuthError("provider_error", f"{provider.name} sent no code")
    return code


def check_claims(
    provider: Provider, claims: Mapping[str, Any], state: LoginState, now: float
) -> None:
    """OpenID Connect Core §3.1.3.7 on a signature-checked ID token: issuer, audience,
    authorized party, expiry and issue time (with leeway), and this login's nonce."""
    if claims.get("iss") not in _ISSUER_ALIASES.get(provider.issuer, {provider.issuer}):
        raise OAuthError("wrong_issuer", f"the ID token was not issued by {provider.name}")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or provider.client_id not in audiences:
        raise OAuthError("wrong_audience", "the ID token is meant for another client")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != provider.client_id:
        raise OAuthError("wrong_audience", "the ID token is meant for another party")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not (_is_number(exp) and _is_number(iat)):
        raise OAuthError("bad_id_token", "the ID token has no exp or iat")
    if exp <= now - TOKEN_LEEWAY or iat > now + TOKEN_LEEWAY:
        raise OAuthError("bad_id_token", "the ID token is expired or not yet valid")
    nonce, expected = claims.get("nonce"), state.nonce
    if not (isinstance(nonce, str) and expected and hmac.compare_digest(nonce, expected)):
        raise OAuthError("wrong_nonce", "the ID token was issued for another login")


def identity_from_claims(provider: Provider, claims: Mapping[str, Any]) -> Identity:
    """Who the checked ID token names; its email must be there and verified."""
    subject, email = claims.get("sub"), claims.get("email")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise OAuthError("bad_id_token", "the ID token has no subject")
    if not _is_email(email):
        raise OAuthError("no_email", f"{provider.name} shared no email address")
    # Some issuers have sent the flag as the string "true".
    if claims.get("email_verified") not in (True, "true"):
        raise OAuthError("email_unverified", f"{provider.name} has not verified the email")
    return Identity(provider.name, subject, email.lower(), True, _name(claims.get("name")))


def github_identity(provider: Provider, user: Any, emails: Any) -> Identity:
    """Who GitHub's /user and /user/emails answers name: the primary address, verified."""
    if not isinstance(user, dict) or type(user.get("id")) not in (int, str):
        raise OAuthError("provider_error", f"{provider.name} sent no user id")
    entries = emails if isinstance(emails, list) else []
    primary = next((e for e in entries if isinstance(e, dict) and e.get("primary") is True), None)
    if primary is None or not _is_email(address := primary.get("email")):
        raise OAuthError("no_email", f"{provider.name} has no primary email address")
    if primary.get("verified") is not True:
        raise OAuthError("email_unverified", f"{provider.name} has not verified the email")
    name = _name(user.get("name")) or _name(user.get("login"))
    return Identity(provider.name, str(user["id"]), address.lower(), True, name)


def error_name(answer: Mapping[str, Any]) -> str:
    """The `error` member of a provider's answer, if it is a plain error code."""
    error = answer.get("error")
    return error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else "an error"


def _name(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 255 else None


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_email(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 3 <= len(value) <= 320 and "@" in value
