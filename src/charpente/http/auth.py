"""`/v1/auth/*`, `/.well-known/jwks.json`, and the middleware that authenticates requests.

Translating only: the rules live in runtime.auth. The token endpoint speaks OAuth 2.0
(RFC 6749): form-encoded requests (JSON is accepted too), `{"error": ...}` answers (§5.2),
and `Cache-Control: no-store` on every answer that carries a token.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from charpente.errors import BadRequest, Unauthorized, UnsupportedMediaType
from charpente.http.clientip import IPNetwork, client_ip
from charpente.http.problems import problem_response, request_id_of
from charpente.http.rest import CALLER_KEY, JSON, caller_of, encode_json, first_headers
from charpente.runtime.auth import Accounts, OAuthGrantError
from charpente.runtime.caller import ANONYMOUS
from charpente.runtime.recovery import Recovery
from charpente.runtime.sessions import Sessions

__all__ = [
    "AuthRefusalMiddleware",
    "AuthenticationMiddleware",
    "auth_routes",
    "client_ip_of",
    "form_auth_paths",
]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 16_384
_MAX_FIELD = 4096
CLIENT_IP_KEY = "charpente.client_ip"
AUTH_ERROR_KEY = "charpente.auth_error"
_AUTHORIZATION = frozenset({b"authorization"})


def client_ip_of(scope: Scope) -> str | None:
    """The client address the edge settled on (trusted proxies applied), else the peer."""
    found = scope.get(CLIENT_IP_KEY)
    if isinstance(found, str):
        return found
    client = scope.get("client")
    return str(client[0]) if client else None


class AuthenticationMiddleware:
    """Puts the request's Caller in the scope (`charpente.caller`) from its bearer token;
    answers 401 itself when a token is sent and does not verify."""

    def __init__(
        self,
        app: ASGIApp,
        accounts: Accounts,
        trusted_proxies: tuple[IPNetwork, ...] = (),
        form_auth_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.accounts = accounts
        self.trusted_proxies = trusted_proxies
        # The token and revoke endpoints authenticate with their form (RFC 6749): an
        # Authorization header there (Swagger UI sends `Basic` with empty client fields;
        # clients are public) is not a bearer token, and is ignored.
        self.form_auth_paths = form_auth_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = first_headers(scope["headers"], _AUTHORIZATION).get(b"authorization")
        if header is not None and scope["path"] in self.form_auth_paths:
            header = None
        if self.trusted_proxies:
            scope[CLIENT_IP_KEY] = client_ip(scope, self.trusted_proxies)
        try:
            value = None if header is None else header.decode("latin-1")
            scope[CALLER_KEY] = self.accounts.authenticate(value)
        except Unauthorized as error:
            # Answered by AuthRefusalMiddleware, after rate limits: a flood of bad tokens
            # counts against the client's limits like any other request.
            scope[CALLER_KEY] = ANONYMOUS
            scope[AUTH_ERROR_KEY] = error
        await self.app(scope, receive, send)


class AuthRefusalMiddleware:
    """Answers 401 for a request whose token did not verify (see AuthenticationMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = scope.get(AUTH_ERROR_KEY) if scope["type"] == "http" else None
        if isinstance(error, Unauthorized):
            response = problem_response(error, scope["path"], request_id_of(scope))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def form_auth_paths(prefix: str) -> frozenset[str]:
    """The endpoints that authenticate with their form, not with a bearer token."""
    return frozenset({f"{prefix}/auth/token", f"{prefix}/auth/revoke"})


def auth_routes(accounts: Accounts, prefix: str) -> list[BaseRoute]:
    """The account and token endpoints under `prefix` (`/v1`), and the JWKS document."""
    endpoints = _AuthEndpoints(accounts)
    return [
        Route(f"{prefix}/auth/signup", endpoints.signup, methods=["POST"]),
        Route(f"{prefix}/auth/token", endpoints.token, methods=["POST"]),
        Route(f"{prefix}/auth/revoke", endpoints.revoke, methods=["POST"]),
        Route(f"{prefix}/auth/me", endpoints.me, methods=["GET", "DELETE"]),
        Route(f"{prefix}/auth/accounts/{{account}}", endpoints.delete_account, methods=["DELETE"]),
        Route(f"{prefix}/auth/password", endpoints.password, methods=["POST"]),
        Route(f"{prefix}/auth/invites", endpoints.invites, methods=["POST"]),
        Route(f"{prefix}/auth/password/forgot", endpoints.forgot, methods=["POST"]),
        Route(f"{prefix}/auth/password/reset", endpoints.reset, methods=["POST"]),
        Route(f"{prefix}/auth/me/password", endpoints.me_password, methods=["PATCH"]),
        Route(f"{prefix}/auth/email/verify", endpoints.verify_email, methods=["POST"]),
        Route(f"{prefix}/auth/email/verify/resend", endpoints.resend, methods=["POST"]),
        Route(f"{prefix}/auth/email/confirm", endpoints.confirm_email, methods=["POST"]),
        Route(f"{prefix}/auth/me/email", endpoints.change_email, methods=["POST"]),
        Route(f"{prefix}/auth/mfa/totp", endpoints.mfa_enroll, methods=["POST"]),
        Route(f"{prefix}/auth/mfa/totp/confirm", endpoints.mfa_confirm, methods=["POST"]),
        Route(f"{prefix}/auth/mfa/totp/disable", endpoints.mfa_disable, methods=["POST"]),
        Route(f"{prefix}/auth/sessions", endpoints.sessions, methods=["GET", "DELETE"]),
        Route(f"{prefix}/auth/sessions/{{session}}", endpoints.session, methods=["DELETE"]),
        Route(
            f"{prefix}/auth/accounts/{{account}}/sessions",
            endpoints.sessions,
            methods=["GET", "DELETE"],
        ),
        Route(
            f"{prefix}/auth/accounts/{{account}}/sessions/{{session}}",
            endpoints.session,
            methods=["DELETE"],
        ),
        Route("/.well-known/jwks.json", endpoints.jwks, methods=["GET"]),
    ]


class _AuthEndpoints:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.recovery = Recovery(accounts)
        self.sessions_of = Sessions(accounts)

    async def forgot(self, request: Request) -> Response:
        await self.recovery.forgot(await _json_body(request), ip=client_ip_of(request.scope))
        body = {
            "detail": "if an account has this email, a link to reset its password is on its way"
        }
        return Response(encode_json(body), 202, _NO_STORE, JSON)

    async def reset(self, request: Request) -> Response:
        await self.recovery.reset(await _json_body(request), ip=client_ip_of(request.scope))
        return Response(status_code=204, headers=_NO_STORE)

    async def delete_account(self, request: Request) -> Response:
        account, ip = request.path_params["account"], client_ip_of(request.scope)
        await self.accounts.deletion.delete_by_admin(caller_of(request), account, ip=ip)
        return Response(status_code=204, headers=_NO_STORE)

    async def mfa_enroll(self, request: Request) -> Response:
        ip = client_ip_of(request.scope)
        body = await _json_body(request) if await request.body() else None
        enrolled = await self.accounts.mfa.enroll(caller_of(request), body, ip=ip)
        return Response(encode_json(enrolled), 201, _NO_STORE, JSON)

    async def mfa_confirm(self, request: Request) -> Response:
        body, ip = await _json_body(request), client_ip_of(request.scope)
        agent = request.headers.get("user-agent")
        done = await self.accounts.mfa.confirm(caller_of(request), body, ip=ip, user_agent=agent)
        return Response(encode_json(done), 200, _NO_STORE, JSON)

    async def mfa_disable(self, request: Request) -> Response:
        body, ip = await _json_body(request), client_ip_of(request.scope)
        await self.accounts.mfa.disable(caller_of(request), body, ip=ip)
        return Response(status_code=204, headers=_NO_STORE)

    async def sessions(self, request: Request) -> Response:
        account = request.path_params.get("account")
        caller, ip = caller_of(request), client_ip_of(request.scope)
        if request.method == "DELETE":
            ended = await self.sessions_of.end_others(caller, account, ip=ip)
            return Response(encode_json({"ended": ended}), 200, _NO_STORE, JSON)
        found = await self.sessions_of.list(caller, account)
        return Response(encode_json({"data": found}), 200, _NO_STORE, JSON)

    async def session(self, request: Request) -> Response:
        account, session = request.path_params.get("account"), request.path_params["session"]
        caller, ip = caller_of(request), client_ip_of(request.scope)
        await self.sessions_of.end(caller, session, account, ip=ip)
        return Response(status_code=204, headers=_NO_STORE)

    async def verify_email(self, request: Request) -> Response:
        body = await _json_body(request)
        await self.accounts.verification.verify(body, ip=client_ip_of(request.scope))
        return Response(status_code=204, headers=_NO_STORE)

    async def resend(self, request: Request) -> Response:
        body = await _json_body(request)
        await self.accounts.verification.resend(body, ip=client_ip_of(request.scope))
        detail = {"detail": "if this address waits for verification, a new link is on its way"}
        return Response(encode_json(detail), 202, _NO_STORE, JSON)

    async def change_email(self, request: Request) -> Response:
        body = await _json_body(request)
        ip = client_ip_of(request.scope)
        await self.accounts.verification.change(caller_of(request), body, ip=ip)
        detail = {"detail": "open the link sent to the new address to finish the change"}
        return Response(encode_json(detail), 202, _NO_STORE, JSON)

    async def confirm_email(self, request: Request) -> Response:
        body = await _json_body(request)
        await self.accounts.verification.confirm(body, ip=client_ip_of(request.scope))
        return Response(status_code=204, headers=_NO_STORE)

    async def me_password(self, request: Request) -> Response:
        body = await _json_body(request)
        token = await self.recovery.change(caller_of(request), body, ip=client_ip_of(request.scope))
        return Response(encode_json(token), 200, _NO_STORE, JSON)

    async def signup(self, request: Request) -> Response:
        body = await _json_body(request)
        item = await self.accounts.signup(body, ip=client_ip_of(request.scope))
        if item is None:  # email verification: the same answer for a new and a taken email
            detail = {"detail": "check your email: the link in it finishes the signup"}
            return Response(encode_json(detail), 202, _NO_STORE, JSON)
        location = f"{request.url.path.rsplit('/auth/', 1)[0]}/accounts/{item.record['id']}"
        headers = {"Location": location, "ETag": f'"{item.etag}"'}
        return Response(encode_json(item.record), 201, headers, JSON)

    async def token(self, request: Request) -> Response:
        try:
            form = await _form(request)
            pair = await self.accounts.token(
                form,
                ip=client_ip_of(request.scope),
                user_agent=request.headers.get("user-agent"),
            )
        except OAuthGrantError as error:
            return _oauth_error(error)
        return Response(encode_json(pair.as_json()), 200, _NO_STORE, JSON)

    async def revoke(self, request: Request) -> Response:
        try:
            form = await _form(request)
            await self.accounts.revoke(form.get("token"), ip=client_ip_of(request.scope))
        except OAuthGrantError as error:
            return _oauth_error(error)
        return Response(b"", 200, _NO_STORE)

    async def me(self, request: Request) -> Response:
        caller = caller_of(request)
        if request.method == "DELETE":
            body = await _json_body(request) if await request.body() else None
            await self.accounts.deletion.delete_own(caller, body, ip=client_ip_of(request.scope))
            return Response(status_code=204, headers=_NO_STORE)
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": "Bearer"})
        item = await self.accounts.service.get("accounts", caller.id, caller=caller)
        headers = {"ETag": f'"{item.etag}"', "Cache-Control": "no-store"}
        return Response(encode_json(item.record), 200, headers, JSON)

    async def password(self, request: Request) -> Response:
        body = await _json_body(request)
        fields = body if isinstance(body, dict) else {}
        await self.accounts.change_password(
            caller_of(request),
            fields.get("current_password"),
            fields.get("new_password"),
            ip=client_ip_of(request.scope),
        )
        return Response(status_code=204)

    async def invites(self, request: Request) -> Response:
        caller = caller_of(request)
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": "Bearer"})
        body = await _json_body(request)
        fields = body if isinstance(body, dict) else {}
        email, role = fields.get("email"), fields.get("role")
        if not isinstance(email, str | None) or not isinstance(role, str | None):
            raise BadRequest(detail="email and role are strings")
        code, expires = await self.accounts.invite(email, role, by=caller)
        payload = {"code": code, "expires_at": expires.isoformat().replace("+00:00", "Z")}
        return Response(encode_json(payload), 201, _NO_STORE, JSON)

    async def jwks(self, request: Request) -> Response:
        headers = {"Cache-Control": "public, max-age=60"}  # keys sign 120 s after they appear
        return Response(encode_json(self.accounts.public_keys()), 200, headers, JSON)


async def _json_body(request: Request) -> object:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != JSON:
        raise UnsupportedMediaType(detail=f"send {JSON}")
    raw = await request.body()
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadRequest(detail="the body is not valid JSON") from None


async def _form(request: Request) -> Mapping[str, str]:
    """The token endpoint's parameters: a form (RFC 6749) or a JSON object of strings."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await request.body()
    if len(raw) > _MAX_FORM_BYTES:
        raise OAuthGrantError("invalid_request", "the request is too large")
    if media == _FORM:
        try:
            pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), strict_parsing=bool(raw))
        except (UnicodeDecodeError, ValueError):
            raise OAuthGrantError("invalid_request", "the form is not well encoded") from None
        return _unique(pairs)
    if media == JSON:
        try:
            data: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise OAuthGrantError("invalid_request", "the body is not valid JSON") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise OAuthGrantError("invalid_request", "send an object of string values")
        return _unique(list(data.items()))
    raise OAuthGrantError("invalid_request", f"send {_FORM}")


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:  # RFC 6749 §3.2: parameters must not repeat
            raise OAuthGrantError("invalid_request", f"{name} is given twice")
        if len(value) > _MAX_FIELD:
            raise OAuthGrantError("invalid_request", f"{name} is too long")
        found[name] = value
    return found


def _oauth_error(error: OAuthGrantError) -> Response:
    body = {"error": error.error, "error_description": error.description, **error.extra}
    return Response(encode_json(body), error.status_code, _NO_STORE, JSON)
