"""Sign in with an OAuth2 / OpenID Connect provider: the protocol, not the HTTP endpoints.

What this owns: the authorization code flow with PKCE (S256), `state` and, for OpenID
Connect, `nonce`; the code exchange; ID-token verification against the provider's
published keys (OpenID Connect, e.g. Google) or reading the user API (GitHub); and the
result, an `Identity` whose email the provider has verified.

How the HTTP layer uses it::

    url, login = await oauth.begin("google", callback_url=cb, app_redirect_uri=app, now=t)
    # seal login.to_bytes() into a short-lived HttpOnly cookie, answer 302 to url
    ...
    login = LoginState.from_bytes(unsealed_cookie)
    identity = await oauth.finish("google", params=query, state=login, callback_url=cb, now=t)

Every failure is an `OAuthError` with a stable `code`; its message never holds a token,
a code or a secret.

    model.py    Provider, LoginState, Identity, OAuthError: records, no I/O
    checks.py   the checks of the callback, the discovery document, the ID token's
                claims and GitHub's answers: pure functions
    client.py   OAuthClient: discovery and key caches, the code exchange, bounded HTTP
"""

from __future__ import annotations

from charpente.runtime.oauth.checks import STATE_LIFETIME
from charpente.runtime.oauth.client import MAX_BODY_BYTES, OAuthClient
from charpente.runtime.oauth.model import (
    GITHUB_API_URL,
    GITHUB_AUTHORIZE_URL,
    GITHUB_TOKEN_URL,
    GOOGLE_ISSUER,
    Identity,
    LoginState,
    OAuthError,
    OAuthErrorCode,
    Provider,
)

__all__ = [
    "GITHUB_API_URL",
    "GITHUB_AUTHORIZE_URL",
    "GITHUB_TOKEN_URL",
    "GOOGLE_ISSUER",
    "MAX_BODY_BYTES",
    "STATE_LIFETIME",
    "Identity",
    "LoginState",
    "OAuthClient",
    "OAuthError",
    "OAuthErrorCode",
    "Provider",
]
