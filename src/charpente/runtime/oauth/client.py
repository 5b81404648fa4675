"""OAuthClient: begins and finishes logins, talking to the providers over HTTP."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx

# Authlib ships no type information; the helpers used here take and return strings.
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from charpente.runtime.oauth.checks import (
    Endpoints,
    check_callback,
    check_claims,
    error_name,
    github_identity,
    identity_from_claims,
    read_discovery,
)
from charpente.runtime.oauth.model import (
    MAX_PARAM,
    Identity,
    LoginState,
    OAuthError,
    OAuthErrorCode,
    Provider,
)

__all__ = ["CACHE_TTL", "MAX_BODY_BYTES", "TIMEOUT", "OAuthClient"]

MAX_BODY_BYTES = 1 << 20  # any provider answer larger than this is refused
CACHE_TTL = 3600.0  # seconds a discovery document or a key set is reused
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Asymmetric algorithms only: "none" and HMAC (keyed with the client secret) are refused.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
_GITHUB_API_HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}

_CLOCK_SLACK = 60.0
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Cached(Generic[_T]):
    value: _T
    fetched_at: float


class OAuthClient:
    """Begins and finishes logins with the configured providers.

    Owns the discovery and key-set caches: an entry is reused for `cache_ttl` seconds
    (measured with the `now` the caller passes), and a key set is fetched again at once
    when an ID token names a key it lacks. All HTTP goes through `http` (the caller's to
    close) or a client made here with connect/read timeouts of 5/10 s (closed by
    `aclose()`); redirects are never followed.
    """

    def __init__(
        self,
        providers: Iterable[Provider],
        http: httpx.AsyncClient | None = None,
        *,
        cache_ttl: float = CACHE_TTL,
    ) -> None:
        self._providers: dict[str, Provider] = {}
        for provider in providers:
            if provider.name in self._providers:
                raise ValueError(f"provider {provider.name!r} is configured twice")
            self._providers[provider.name] = provider
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=TIMEOUT)
        self._ttl = cache_ttl
        self._discovery: dict[str, _Cached[Endpoints]] = {}
        self._keys: dict[str, _Cached[KeySet]] = {}

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self._providers

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def begin(
        self, provider: str, *, callback_url: str, app_redirect_uri: str, now: float
    ) -> tuple[str, LoginState]:
        """The provider's authorization URL, and the state `finish` will need.

        Raises KeyError for an unknown provider name (check `providers` first),
        ValueError for an empty app redirect URI or a URL longer than 2048 characters, and
        OAuthError(provider_unreachable) when an OpenID provider cannot be discovered.
        """
        config = self._providers[provider]
        if not 0 < len(app_redirect_uri) <= MAX_PARAM or len(callback_url) > MAX_PARAM:
            raise ValueError("a redirect URI is empty or longer than 2048 characters")
        endpoints = await self._endpoints(config, now)
        login = LoginState(
            provider=provider,
            state=generate_token(43),  # 43 symbols of 62: 256 bits
            code_verifier=generate_token(64),
            nonce=generate_token(43) if config.kind == "oidc" else None,
            redirect_uri=app_redirect_uri,
            created_at=math.floor(now),
        )
        url = prepare_grant_uri(
            endpoints.authorization,
            config.client_id,
            "code",
            redirect_uri=callback_url,
            scope=config.scope,
            state=login.state,
            code_challenge=create_s256_code_challenge(login.code_verifier),
            code_challenge_method="S256",
            nonce=login.nonce,
        )
        return str(url), login

    async def finish(
        self,
        provider: str,
        *,
        params: Mapping[str, str],
        state: LoginState,
        callback_url: str,
        now: float,
    ) -> Identity:
        """Check the callback, exchange its code, and say who signed in.

        `params` are the callback's query parameters; `callback_url` must be the one
        given to `begin`. Raises KeyError for an unknown provider name, OAuthError for
        every failed check.
        """
        config = self._providers[provider]
        code = check_callback(config, params, state, now)
        endpoints = await self._endpoints(config, now)
        tokens = await self._exchange(config, endpoints, code, state, callback_url)
        if config.kind == "github":
            return await self._github_identity(config, tokens["access_token"])
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or endpoints.jwks is None:
            raise OAuthError("bad_id_token", f"{config.name} sent no ID token")
        claims = await self._verified_claims(config, endpoints.jwks, id_token, now)
        check_claims(config, claims, state, now)
        return identity_from_claims(config, claims)

    async def _endpoints(self, provider: Provider, now: float) -> Endpoints:
        if provider.kind == "github":
            return Endpoints(provider.authorize_url, provider.token_url, basic_auth=False)
        cached = self._discovery.get(provider.name)
        if cached is None or not self._fresh(cached, now):
            url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = await self._get_json(url, failure="provider_unreachable")
            cached = _Cached(read_discovery(provider, document), now)
            self._discovery[provider.name] = cached
        return cached.value

    async def _key_set(self, provider: Provider, url: str, now: float, *, again: bool) -> KeySet:
        cached = self._keys.get(provider.name)
        if again or cached is None or not self._fresh(cached, now):
            document = await self._get_json(url, failure="provider_unreachable")
            try:
                cached = _Cached(KeySet.import_key_set(document), now)
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise OAuthError("bad_id_token", f"{provider.name} has no usable keys") from exc
            self._keys[provider.name] = cached
        return cached.value

    def _fresh(self, cached: _Cached[Any], now: float) -> bool:
        # Concurrent logins read the clock in any order: an entry a little younger than
        # `now` is fresh, one from far ahead (the clock went back) is not.
        return -_CLOCK_SLACK <= now - cached.fetched_at < self._ttl

    async def _exchange(
        self,
        provider: Provider,
        endpoints: Endpoints,
        code: str,
        state: LoginState,
        callback_url: str,
    ) -> dict[str, Any]:
        """The token endpoint's answer to the code and this login's PKCE verifier."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback_url,
            "code_verifier": state.code_verifier,
        }
        headers = {"Accept": "application/json"}
        if endpoints.basic_auth:
            headers["Authorization"] = _basic_auth(provider.client_id, provider.client_secret)
        else:
            form |= {"client_id": provider.client_id, "client_secret": provider.client_secret}
        status, answer = await self._request_json(
            "POST", endpoints.token, failure="exchange_failed", data=form, headers=headers
        )
        if not isinstance(answer, dict):
            raise OAuthError("exchange_failed", f"{provider.name} answered {status}")
        # GitHub reports a refused code with a 200 and an `error` member.
        if status != 200 or "error" in answer:
            error = error_name(answer)
            raise OAuthError("exchange_failed", f"{provider.name} refused the code: {error}")
        if not isinstance(answer.get("access_token"), str):
            raise OAuthError("exchange_failed", f"{provider.name} sent no access token")
        return answer

    async def _verified_claims(
        self, provider: Provider, jwks_url: str, id_token: str, now: float
    ) -> dict[str, Any]:
        """The ID token's claims once its signature is checked; a key set that lacks
        the token's `kid` is fetched once more (the provider may have rotated keys)."""
        try:
            kid = jws.extract_compact(id_token.encode()).headers().get("kid")
        except (JoseError, ValueError) as exc:
            raise OAuthError("bad_id_token", "the ID token is malformed") from exc
        keys = await self._key_set(provider, jwks_url, now, again=False)
        if kid is not None and all(key.kid != kid for key in keys):
            keys = await self._key_set(provider, jwks_url, now, again=True)
        try:
            return jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGORITHMS).claims
        except (JoseError, ValueError) as exc:
            raise OAuthError("bad_id_token", "the ID token's signature is not valid") from exc

    async def _github_identity(self, provider: Provider, access_token: str) -> Identity:
        headers = {**_GITHUB_API_HEADERS, "Authorization": f"Bearer {access_token}"}
        base = provider.api_url.rstrip("/")
        user = await self._get_json(f"{base}/user", failure="provider_error", headers=headers)
        emails = await self._get_json(
            f"{base}/user/emails", failure="provider_error", headers=headers
        )
        return github_identity(provider, user, emails)

    async def _get_json(self, url: str, *, failure: OAuthErrorCode, **kwargs: Any) -> Any:
        """The JSON of a GET answered 200; any other answer is `failure`."""
        status, document = await self._request_json("GET", url, failure=failure, **kwargs)
        if status != 200:
            raise OAuthError(failure, f"{urlsplit(url).hostname} answered {status}")
        return document

    async def _request_json(
        self, method: str, url: str, *, failure: OAuthErrorCode, **kwargs: Any
    ) -> tuple[int, Any]:
        """The status and JSON body of one request, the body read up to MAX_BODY_BYTES.

        A provider that cannot be reached, times out or answers 5xx is
        `provider_unreachable`; a body too large or not JSON is `failure`.
        """
        host = urlsplit(url).hostname
        try:
            async with self._http.stream(method, url, **kwargs) as response:
                if response.status_code >= 500:
                    raise OAuthError(
                        "provider_unreachable", f"{host} answered {response.status_code}"
                    )
                body = await _read_bounded(response, failure)
        except httpx.HTTPError as exc:
            raise OAuthError("provider_unreachable", f"{host} did not answer") from exc
        try:
            return response.status_code, json.loads(body)
        except ValueError as exc:
            raise OAuthError(failure, f"{host} did not answer with JSON") from exc


async def _read_bounded(response: httpx.Response, failure: OAuthErrorCode) -> bytes:
    too_large = OAuthError(failure, f"the answer is larger than {MAX_BODY_BYTES} bytes")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


def _basic_auth(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: both parts are form-encoded before they are joined.
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
