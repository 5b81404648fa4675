"""A GitHub-like OAuth2 server for tests: `python github_provider.py`.

It prints `READY <base url>` once bound to a random loopback port. Like GitHub it serves
/login/oauth/authorize (approves at once), /login/oauth/access_token (answers 200 even
for a refused code, as a form unless the client asks for JSON; checks the PKCE
`code_verifier`), and the API's /user and /user/emails (an `Authorization: Bearer …` or
`token …` header). The OAuth pages and the API share the base URL here.

The client is `charpente-test` / `charpente-secret`. Test-only endpoints:

- POST /test/next-user {id, login, name, emails: [{email, primary, verified}]}: who the
  next /login/oauth/authorize signs in (otherwise a user with one verified address);
- POST /test/reset: forget the next user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from authlib_starlette import Client, Server, code_grant_with_pkce, json_body, read_request, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT = Client("charpente-test", "charpente-secret")
# What GitHub calls the errors Authlib's server raises.
GITHUB_ERRORS = {
    "invalid_client": "incorrect_client_credentials",
    "invalid_grant": "bad_verification_code",
    "invalid_request": "bad_verification_code",
}


@dataclass
class User:
    id: int
    login: str
    name: str | None = None
    emails: list[dict[str, Any]] = field(default_factory=list)


def default_user() -> User:
    email = {"email": "Grace@Example.com", "primary": True, "verified": True}
    return User(id=583231, login="octocat", name="The Octocat", emails=[email])


def github_token_answer(response: Response, accept: str) -> Response:
    """Authlib's answer re-shaped like GitHub's: always 200, a form unless JSON is asked."""
    data = dict(json_body(bytes(response.body)))
    if "error" in data:
        data["error"] = GITHUB_ERRORS.get(data["error"], data["error"])
    if "scope" in data:
        data["scope"] = ",".join(data["scope"].split())
    if "token_type" in data:
        data["token_type"] = data["token_type"].lower()
    data.pop("expires_in", None)  # GitHub's OAuth app tokens do not expire
    if "application/json" in accept:
        return JSONResponse(data)
    return Response(urlencode(data), media_type="application/x-www-form-urlencoded")


def build(base: str) -> Starlette:
    server = Server([CLIENT])
    code_grant_with_pkce(server, [])
    pending: dict[str, User] = {}

    async def authorize(request: Request) -> Response:
        # GitHub does not ask for response_type: the code flow is its only flow.
        oauth_request = await read_request(request, defaults={"response_type": "code"})
        return server.authorize(oauth_request, pending.pop("next", None) or default_user())

    async def access_token(request: Request) -> Response:
        # Nor for grant_type: a code is the only grant its token endpoint takes.
        oauth_request = await read_request(request, defaults={"grant_type": "authorization_code"})
        answer = server.create_token_response(oauth_request)
        return github_token_answer(answer, request.headers.get("accept", ""))

    async def user(request: Request) -> Response:
        who = server.user_for(request)
        if who is None:
            return bad_credentials()
        return JSONResponse(
            {"login": who.login, "id": who.id, "name": who.name, "type": "User", "email": None}
        )

    async def emails(request: Request) -> Response:
        who = server.user_for(request)
        if who is None:
            return bad_credentials()
        return JSONResponse([{"visibility": None, **email} for email in who.emails])

    async def next_user(request: Request) -> Response:
        body = json_body(await request.body())
        pending["next"] = User(
            id=int(body["id"]), login=body["login"], name=body.get("name"), emails=body["emails"]
        )
        return Response(status_code=204)

    async def reset(request: Request) -> Response:
        pending.clear()
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/login/oauth/authorize", authorize),
            Route("/login/oauth/access_token", access_token, methods=["POST"]),
            Route("/user", user),
            Route("/user/emails", emails),
            Route("/test/next-user", next_user, methods=["POST"]),
            Route("/test/reset", reset, methods=["POST"]),
        ]
    )


def bad_credentials() -> JSONResponse:
    return JSONResponse(
        {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, 401
    )


if __name__ == "__main__":
    serve(build)
