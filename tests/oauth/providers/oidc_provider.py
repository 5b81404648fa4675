"""A Google-like OpenID Connect provider for tests: `python oidc_provider.py`.

It prints `READY <base url>` once bound to a random loopback port; the base URL is its
issuer. Endpoints: the discovery document, JWKS (an RS256 key made at start),
/authorize (approves at once), /token (authorization_code with PKCE, client_secret_basic
or client_secret_post, codes usable once) and /userinfo. ID tokens look like Google's:
`iss`, `aud` = the client id, `azp`, the `nonce` echoed, `email` and `email_verified`.

The client is `charpente-test` / `charpente-secret`. Test-only endpoints:

- POST /test/next-user {sub, email, email_verified, name}: who the next /authorize signs
  in (otherwise the `login_hint` query parameter's address, otherwise a default user);
- POST /test/misbehave {"id_token": "bad_signature" | "wrong_audience" | "wrong_nonce" |
  "wrong_issuer" | "extra_audience" | "expired" | "hs256" | "alg_none"} or
  {"token": "huge" | "huge_stream" | "error_500"}: the next token answer goes wrong so;
- POST /test/rotate-key: sign from now on with a new key, published beside the old one;
- GET /test/stats: how many times discovery, JWKS and /token were asked;
- POST /test/reset: forget the next user and the pending misbehaviour.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oidc.core.grants import OpenIDCode
from authlib_starlette import (
    Client,
    Server,
    bad_request,
    code_grant_with_pkce,
    json_body,
    read_request,
    serve,
)
from joserfc.jwk import KeySet, OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CLIENT = Client("charpente-test", "charpente-secret")
ID_TOKEN_FAULTS = {
    "bad_signature",
    "wrong_audience",
    "wrong_nonce",
    "wrong_issuer",
    "extra_audience",
    "expired",
    "hs256",
    "alg_none",
}
TOKEN_FAULTS = {"huge", "huge_stream", "error_500"}


@dataclass
class User:
    sub: str
    email: str | None
    email_verified: bool = True
    name: str | None = None


@dataclass
class State:
    """Everything the provider remembers besides Authlib's codes and tokens."""

    issuer: str
    keys: list[RSAKey] = field(default_factory=lambda: [new_key()])
    next_user: User | None = None
    id_token_fault: str | None = None
    token_fault: str | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"discovery": 0, "jwks": 0, "token": 0})

    @property
    def key(self) -> RSAKey:
        return self.keys[-1]


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, {"use": "sig", "alg": "RS256"}, auto_kid=True)


class GoogleLikeIdToken(OpenIDCode):
    """Authlib's OpenID extension, with claims shaped like Google's and test faults."""

    def __init__(self, state: State, server: Server) -> None:
        super().__init__(require_nonce=False)
        self.state = state
        self.server = server

    def resolve_client_private_key(self, client: Client) -> RSAKey | OctKey:
        if self.state.id_token_fault == "bad_signature":
            rogue = new_key()  # same kid, another key: the signature cannot verify
            return RSAKey.import_key(rogue.as_dict(private=True) | {"kid": self.state.key.kid})
        if self.state.id_token_fault == "hs256":
            # OpenID Connect allows HMAC keyed with the client secret; charpente does not.
            return OctKey.import_key(client.client_secret)
        return self.state.key

    def get_client_algorithm(self, client: Client) -> str:
        return "HS256" if self.state.id_token_fault == "hs256" else "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        alg = self.get_client_algorithm(client)
        return {"alg": alg, "kid": str(self.state.key.kid), "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        fault = self.state.id_token_fault
        claims: dict[str, Any] = {"iss": self.state.issuer, "aud": client.client_id}
        claims["azp"] = client.client_id
        if fault == "wrong_issuer":
            claims["iss"] = "https://issuer.example"
        elif fault == "wrong_audience":
            claims["aud"] = claims["azp"] = "someone-else"
        elif fault == "extra_audience":
            claims["aud"] = [client.client_id, "someone-else"]
            del claims["azp"]
        elif fault == "expired":
            claims["iat"] = int(time.time()) - 7200
            claims["exp"] = int(time.time()) - 3600
        return claims

    def get_authorization_code_claims(self, authorization_code: Any) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if self.state.id_token_fault == "wrong_nonce":
            claims["nonce"] = "another-login"
        return claims

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(code.nonce == nonce for code in self.server.codes.values())

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user.sub}
        scopes = scope.split()
        if "email" in scopes and user.email is not None:
            info |= {"email": user.email, "email_verified": user.email_verified}
        if "profile" in scopes and user.name is not None:
            info["name"] = user.name
        return info

    def process_token(self, grant: Any, response: Any) -> Any:
        token = super().process_token(grant, response)
        if self.state.id_token_fault == "alg_none":
            token["id_token"] = unsigned(token["id_token"], str(self.state.key.kid))
        self.state.id_token_fault = None  # one token only
        return token


def unsigned(id_token: str, kid: str) -> str:
    """The same claims under `alg: none`, without a signature."""
    header = json.dumps({"alg": "none", "kid": kid}).encode()
    encoded = base64.urlsafe_b64encode(header).rstrip(b"=").decode()
    return f"{encoded}.{id_token.split('.')[1]}."


def pick_user(state: State, login_hint: str | None) -> User:
    if state.next_user is not None:
        user, state.next_user = state.next_user, None
        return user
    email = login_hint or "ada@example.com"
    sub = str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16))
    return User(sub=sub, email=email, name=email.split("@")[0].title())


def build(issuer: str) -> Starlette:
    state = State(issuer)
    server = Server([CLIENT])
    extension = GoogleLikeIdToken(state, server)
    code_grant_with_pkce(server, [extension])

    async def discovery(request: Request) -> Response:
        state.stats["discovery"] += 1
        return JSONResponse(discovery_document(issuer))

    async def jwks(request: Request) -> Response:
        state.stats["jwks"] += 1
        return JSONResponse(KeySet(list(state.keys)).as_dict(private=False))

    async def authorize(request: Request) -> Response:
        oauth_request = await read_request(request)
        user = pick_user(state, request.query_params.get("login_hint"))
        return server.authorize(oauth_request, user)

    async def token(request: Request) -> Response:
        state.stats["token"] += 1
        fault, state.token_fault = state.token_fault, None
        if fault is not None:
            return faulty_token_answer(fault)
        oauth_request = await read_request(request)
        return server.create_token_response(oauth_request)

    async def userinfo(request: Request) -> Response:
        user = server.user_for(request)
        if user is None:
            return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse(extension.generate_user_info(user, "openid email profile"))

    async def next_user(request: Request) -> Response:
        body = json_body(await request.body())
        state.next_user = User(
            sub=str(body["sub"]),
            email=body.get("email"),
            email_verified=body.get("email_verified", True),
            name=body.get("name"),
        )
        return Response(status_code=204)

    async def misbehave(request: Request) -> Response:
        body = json_body(await request.body())
        id_token, token_fault = body.get("id_token"), body.get("token")
        if id_token not in (None, *ID_TOKEN_FAULTS) or token_fault not in (None, *TOKEN_FAULTS):
            return bad_request(f"unknown fault: {body}")
        state.id_token_fault, state.token_fault = id_token, token_fault
        return Response(status_code=204)

    async def rotate_key(request: Request) -> Response:
        state.keys.append(new_key())
        return Response(status_code=204)

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats)

    async def reset(request: Request) -> Response:
        state.next_user = state.id_token_fault = state.token_fault = None
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", authorize),
            Route("/token", token, methods=["POST"]),
            Route("/userinfo", userinfo, methods=["GET", "POST"]),
            Route("/test/next-user", next_user, methods=["POST"]),
            Route("/test/misbehave", misbehave, methods=["POST"]),
            Route("/test/rotate-key", rotate_key, methods=["POST"]),
            Route("/test/stats", stats),
            Route("/test/reset", reset, methods=["POST"]),
        ]
    )


def discovery_document(issuer: str) -> dict[str, Any]:
    """What https://accounts.google.com/.well-known/openid-configuration holds, here."""
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name", "sub"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "grant_types_supported": ["authorization_code"],
    }


def faulty_token_answer(fault: str) -> Response:
    """A token endpoint gone wrong: 2 MB of JSON (declared or streamed), or a 500."""
    if fault == "error_500":
        return JSONResponse({"error": "server_error"}, 500)
    padding = "x" * (2 << 20)
    if fault == "huge":
        return JSONResponse({"access_token": "t", "padding": padding})

    async def chunks() -> Any:
        yield b'{"padding": "'
        for _ in range(32):
            yield b"x" * (64 << 10)
        yield b'"}'

    return StreamingResponse(chunks(), media_type="application/json")


if __name__ == "__main__":
    serve(build)
