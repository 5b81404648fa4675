"""`/v{n}/auth/oauth/{provider}/start` and `/callback`: signing in with Google or GitHub.

Translating only: runtime.oauth speaks the protocol, runtime.auth links or creates the
account. The login state (state, PKCE verifier, nonce, where to send the person back)
travels in a sealed, HttpOnly, short-lived cookie bound to this browser; the end of the
flow is a redirect to an allow-listed `redirect_uri` with a one-time code that the token
endpoint exchanges (`grant_type=authorization_code`) — never a token in a URL.
"""

from __future__ import annotations

import logging
import time
import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from charpente.design.model import Design
from charpente.errors import ApiError, BadRequest, NotFound
from charpente.http.auth import client_ip_of
from charpente.runtime.auth import Accounts
from charpente.runtime.oauth import STATE_LIFETIME, LoginState, OAuthClient, OAuthError
from charpente.runtime.secrets import SealError

__all__ = ["COOKIE", "oauth_routes"]

log = logging.getLogger("charpente.auth")

COOKIE = "charpente_oauth"
_CONTEXT = b"charpente.oauth.state"
_NO_STORE = {"Cache-Control": "no-store"}


def oauth_routes(
    accounts: Accounts, client: OAuthClient, design: Design, prefix: str, public_url: str | None
) -> list[BaseRoute]:
    """The two routes of every configured provider (one pair of path templates)."""
    endpoints = _OAuthEndpoints(accounts, client, design, prefix, public_url)
    base = f"{prefix}/auth/oauth/{{provider}}"
    return [
        Route(f"{base}/start", endpoints.start, methods=["GET"]),
        Route(f"{base}/callback", endpoints.callback, methods=["GET"]),
    ]


class _OAuthEndpoints:
    def __init__(
        self,
        accounts: Accounts,
        client: OAuthClient,
        design: Design,
        prefix: str,
        public_url: str | None,
    ) -> None:
        self.accounts = accounts
        self.client = client
        self.allowed = frozenset(design.auth.redirect_uris)
        self.prefix = prefix
        self.public_url = None if public_url is None else public_url.rstrip("/")
        self._cookie_path = f"{prefix}/auth/oauth/"

    async def start(self, request: Request) -> Response:
        provider = self._provider(request)
        redirect_uri = request.query_params.get("redirect_uri", "")
        if redirect_uri not in self.allowed:
            raise BadRequest(detail="redirect_uri is not on the design's `redirect_uris` list")
        try:
            url, login = await self.client.begin(
                provider,
                callback_url=self._callback_url(request, provider),
                app_redirect_uri=redirect_uri,
                now=time.time(),
            )
        except OAuthError as error:
            log.warning("oauth start with %s failed: %s", provider, error.code)
            raise _ProviderUnreachableError(
                detail=f"{provider} cannot be reached; try again later"
            ) from None
        sealed = self.accounts.cookie_sealer().seal(login.to_bytes(), context=_CONTEXT)
        response = RedirectResponse(url, 302, headers=_NO_STORE)
        response.set_cookie(
            COOKIE,
            sealed,
            max_age=int(STATE_LIFETIME),
            path=self._cookie_path,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back, not cross-site
        )
        return response

    async def callback(self, request: Request) -> Response:
        provider = self._provider(request)
        login = self._login(request, provider)
        params = dict(request.query_params.items())
        ip = client_ip_of(request.scope)
        try:
            identity = await self.client.finish(
                provider,
                params=params,
                state=login,
                callback_url=self._callback_url(request, provider),
                now=time.time(),
            )
            account = await self.accounts.account_for_identity(
                provider, identity.subject, identity.email, identity.email_verified, ip=ip
            )
            code = await self.accounts.login_code(account)
        except OAuthError as error:
            return await self._denied(login, ip, error.code)
        except ApiError as error:  # signup closed, an unverified email
            return await self._denied(login, ip, error.detail or "refused")
        return _back(login.redirect_uri, {"code": code}, self._cookie_path)

    async def _denied(self, login: LoginState, ip: str | None, reason: str) -> Response:
        """Back to the application with access_denied; every refused login is logged."""
        detail = f"{login.provider}: {reason}"
        await self.accounts.store.log("oauth_failed", None, ip, detail, self.accounts.clock.now())
        denied = {"error": "access_denied", "error_description": reason}
        return _back(login.redirect_uri, denied, self._cookie_path)

    def _provider(self, request: Request) -> str:
        name = str(request.path_params["provider"])
        if name not in self.client.providers:
            raise NotFound(detail=f"no login provider {name!r}")
        return name

    def _login(self, request: Request, provider: str) -> LoginState:
        sealed = request.cookies.get(COOKIE)
        if not sealed:
            raise BadRequest(detail="the login state is missing: start the login again")
        try:
            login = LoginState.from_bytes(
                self.accounts.cookie_sealer().open(sealed, context=_CONTEXT)
            )
        except (SealError, OAuthError):
            raise BadRequest(detail="the login state is not valid: start the login again") from None
        if login.provider != provider or login.redirect_uri not in self.allowed:
            raise BadRequest(detail="the login state is not valid: start the login again")
        return login

    def _callback_url(self, request: Request, provider: str) -> str:
        base = self.public_url or f"{request.url.scheme}://{request.url.netloc}"
        return f"{base}{self.prefix}/auth/oauth/{provider}/callback"


class _ProviderUnreachableError(ApiError):
    status, slug, title = 502, "bad-gateway", "The login provider did not answer"


def _back(redirect_uri: str, params: dict[str, str], cookie_path: str) -> Response:
    """A redirect to the application with `params` added to its query; the cookie ends."""
    parts = urllib.parse.urlsplit(redirect_uri)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    url = urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode([*query, *params.items()]))
    )
    response = RedirectResponse(url, 302, headers={**_NO_STORE, "Referrer-Policy": "no-referrer"})
    response.delete_cookie(COOKIE, path=cookie_path)
    return response
