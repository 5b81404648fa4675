"""Authlib's authorization server on Starlette, for the test providers beside this file.

Authlib ships its server for Flask and Django only; this module adapts it to Starlette
(a request becomes an `OAuth2Request`, a `(status, body, headers)` answer becomes a
Response) and keeps clients, codes, tokens and users in memory. The grant is Authlib's
own `AuthorizationCodeGrant` with its `CodeChallenge` extension (PKCE), with both
client_secret_basic and client_secret_post, and codes that can be used once.

Each provider process runs one event loop; every endpoint is `async`, so the in-memory
state is only ever touched from that loop.
"""

from __future__ import annotations

import hmac
import json
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import uvicorn
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    AuthorizationServer,
    ClientMixin,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

CODE_LIFETIME = 600
MAX_FORM_BYTES = 64 * 1024


@dataclass
class Client(ClientMixin):
    """A registered client; any loopback http redirect URI is accepted (tests pick ports)."""

    client_id: str
    client_secret: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        parts = urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    """One issued code, with what the token endpoint must check against it."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: Any
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    issued_at: float = field(default_factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.issued_at)

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class CodeGrant(AuthorizationCodeGrant):
    """Authlib's code grant over the server's in-memory store; a code works once."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri,
            scope=request.payload.scope or "",
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        item = self.server.codes.get(code)
        if item is None or item.client_id != client.client_id:
            return None
        if time.time() - item.issued_at > CODE_LIFETIME:
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.server.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Any:
        return authorization_code.user


class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._data = dict(pairs)
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """A Starlette request already read: query and form pairs, headers."""

    def __init__(self, request: Request, form: list[tuple[str, str]]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        query = list(request.query_params.multi_items())
        self._args = dict(query)
        self._form = dict(form)
        self.payload = _Payload(query + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


async def read_request(request: Request, defaults: dict[str, str] | None = None) -> OAuth2Request:
    """An OAuth2Request from a Starlette request (a form body is read, bounded)."""
    form: list[tuple[str, str]] = []
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise ValueError("form too large")
        form = parse_qsl(body.decode(), keep_blank_values=True)
    oauth_request = StarletteOAuth2Request(request, form)
    for key, value in (defaults or {}).items():
        oauth_request.payload.data.setdefault(key, value)
    return oauth_request


class Server(AuthorizationServer):
    """The authorization server of one provider process."""

    def __init__(self, clients: list[Client]) -> None:
        super().__init__()
        self.clients = {client.client_id: client for client in clients}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: dict[str, Any] = {}  # access token → user
        self.register_token_generator(
            "default", BearerTokenGenerator(lambda **_: generate_token(40))
        )

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.tokens[token["access_token"]] = request.user

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        content = json.dumps(body) if isinstance(body, dict) else body
        return Response(content, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def authorize(self, request: OAuth2Request, user: Any) -> Response:
        """The /authorize answer: a 302 to the client's redirect URI, or an error."""
        try:
            grant = self.get_consent_grant(request, end_user=user)
        except OAuth2Error as error:
            return self.handle_error_response(request, error)
        return self.create_authorization_response(request, grant_user=user, grant=grant)

    def user_for(self, request: Request) -> Any | None:
        """The user an `Authorization: Bearer …` (or GitHub's `token …`) header names."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self.tokens.get(token.strip())


def code_grant_with_pkce(server: Server, extensions: list[Any]) -> None:
    """Register the code grant with PKCE (S256 or plain, as the client asks)."""
    server.register_grant(CodeGrant, [CodeChallenge(required=True), *extensions])


def json_body(data: bytes) -> dict[str, Any]:
    value = json.loads(data or b"{}")
    if not isinstance(value, dict):
        raise ValueError("a JSON object is expected")
    return value


def bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "error_description": message}, 400)


def serve(build: Callable[[str], Starlette]) -> None:
    """Bind a random loopback port, print `READY <base url>`, and serve `build(base)`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(build(base), log_level="warning", lifespan="off")
    print(f"READY {base}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)
