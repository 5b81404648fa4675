"""The OpenAPI description of accounts and tokens: `/v{n}/auth/*`, the JWKS, security schemes.

Pure; compile.openapi adds it to the design's document.
"""

from __future__ import annotations

from collections.abc import Mapping

from charpente.design.model import Design

__all__ = ["SECURITY", "SIGNED_IN", "auth_paths", "security_schemes"]

Json = dict[str, object]

SECURITY: list[Json] = [{}, {"bearer": []}, {"password": []}]
"""Operations accept anonymous callers and bearer tokens alike, pasted (`bearer`) or got
through the password flow (`password`: what Swagger UI's Authorize sends); the access
rules decide."""
SIGNED_IN: list[Json] = [{"bearer": []}, {"password": []}]
"""Operations that need a token, pasted or got through the password flow."""

_TOKEN_FORM: Json = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"enum": ["password", "refresh_token", "authorization_code", "mfa"]},
        "username": {"type": "string", "format": "email", "description": "password grant"},
        "password": {"type": "string", "format": "password", "description": "password grant"},
        "refresh_token": {"type": "string", "description": "refresh_token grant"},
        "code": {
            "type": "string",
            "description": "authorization_code grant (after OAuth login); mfa grant: the TOTP code",
        },
        "mfa_token": {"type": "string", "description": "mfa grant: from the mfa_required answer"},
        "recovery_code": {"type": "string", "description": "mfa grant, instead of a code"},
    },
}
_TOKENS: Json = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in", "refresh_token"],
    "properties": {
        "access_token": {"type": "string", "description": "A JWT (EdDSA or ES256)."},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string", "description": "Opaque; rotated on every use."},
    },
}
_OAUTH_ERROR: Json = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}


def security_schemes(design: Design) -> Json:
    """A bearer JWT scheme (paste a token), and the OAuth2 password flow of the token
    endpoint (Swagger UI's Authorize: email and password; the client fields stay empty)."""
    token_url = f"/v{design.api_version}/auth/token"
    flows = {"password": {"tokenUrl": token_url, "refreshUrl": token_url, "scopes": {}}}
    return {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": f"An `access_token` from `POST {token_url}`.",
        },
        "password": {
            "type": "oauth2",
            "description": "Sign in with the account's email (as the username) and password. "
            "Clients are public: leave client_id and client_secret empty (an "
            "`Authorization: Basic` header on the token endpoint is ignored).",
            "flows": flows,
        },
    }


def auth_paths(design: Design, account_schema: str) -> Json:
    """The account and token endpoints, and the JWKS document."""
    prefix = f"/v{design.api_version}/auth"
    account = {"application/json": {"schema": {"$ref": f"#/components/schemas/{account_schema}"}}}
    form = {"application/x-www-form-urlencoded": {"schema": _TOKEN_FORM}}
    grant_error = {
        "description": "RFC 6749 §5.2 error (`invalid_grant`, `invalid_request`, ...).",
        "content": {"application/json": {"schema": _OAUTH_ERROR}},
    }
    paths: Json = {
        f"{prefix}/signup": _post(
            "signUp",
            "Create an account with an email and a password (per the design's signup policy)",
            {"application/json": {"schema": {"type": "object", "required": ["email", "password"]}}},
            {
                "201": {"description": "The new account.", "content": account},
                "202": {"description": "With email verification: check your email."},
            },
            (403, 409, 422, 429),
        ),
        f"{prefix}/token": _post(
            "getToken",
            "OAuth 2.0 token endpoint: password, refresh_token and authorization_code grants",
            form,
            {
                "200": {
                    "description": "Tokens.",
                    "content": {"application/json": {"schema": _TOKENS}},
                },
                "400": grant_error,
            },
            (429,),
        ),
        f"{prefix}/revoke": _post(
            "revokeToken",
            "Revoke a refresh token and its whole family (RFC 7009)",
            {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
            {"200": {"description": "Revoked (or unknown)."}, "400": grant_error},
            (429,),
        ),
        f"{prefix}/password": _post(
            "changePassword",
            "Change the caller's password; every refresh token of the account ends",
            {"application/json": {"schema": {"type": "object"}}},
            {"204": {"description": "Changed."}},
            (401, 422, 429),
        ),
        f"{prefix}/password/forgot": _post(
            "forgotPassword",
            "Send a password reset link to this email, if an account has it (the same answer"
            " either way)",
            {"application/json": {"schema": _object({"email": {"type": "string"}})}},
            {"202": {"description": "Accepted: a link is on its way if the account exists."}},
            (422, 429),
        ),
        f"{prefix}/password/reset": _post(
            "resetPassword",
            "Set a new password with a reset link's token; every session of the account ends",
            {"application/json": {"schema": _object({"token": _TEXT, "password": _PASSWORD})}},
            {"204": {"description": "Changed."}},
            (422, 429),
        ),
        f"{prefix}/me/password": _as_patch(
            _post(
                "changeMyPassword",
                "Change the caller's password: the other sign-ins end, this one gets a new"
                " access token",
                {"application/json": {"schema": _object({"current": _PASSWORD, "new": _PASSWORD})}},
                {
                    "200": {
                        "description": "A new access token for this sign-in.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                (401, 422, 429),
            )
        ),
        f"{prefix}/email/verify": _post(
            "verifyEmail",
            "Prove an address with the token of its verification link",
            {"application/json": {"schema": _object({"token": _TEXT})}},
            {"204": {"description": "Verified."}},
            (422, 429),
        ),
        f"{prefix}/email/verify/resend": _post(
            "resendVerification",
            "Send a new verification link (the same answer for any email)",
            {"application/json": {"schema": _object({"email": _TEXT})}},
            {"202": {"description": "Accepted."}},
            (422, 429),
        ),
        f"{prefix}/me/email": _post(
            "changeMyEmail",
            "Ask to move the caller's account to another address (confirmed by a link to it)",
            {"application/json": {"schema": _object({"email": _TEXT, "password": _PASSWORD})}},
            {"202": {"description": "A confirmation link is on its way to the new address."}},
            (401, 422, 429),
        ),
        f"{prefix}/email/confirm": _post(
            "confirmEmail",
            "Move the account to the new address with the token of its confirmation link",
            {"application/json": {"schema": _object({"token": _TEXT})}},
            {"204": {"description": "Moved."}},
            (409, 422, 429),
        ),
        **_session_paths(prefix),
        f"{prefix}/mfa/totp": _post(
            "enrollTotp",
            "Start TOTP enrolment: a new secret and its otpauth:// URI (on once confirmed)",
            {"application/json": {"schema": {"type": "object"}}},
            {"201": {"description": "The secret and its URI."}},
            (401, 409),
        ),
        f"{prefix}/mfa/totp/confirm": _post(
            "confirmTotp",
            "Turn TOTP on with one valid code; answers ten recovery codes, shown once",
            {"application/json": {"schema": _object({"code": _TEXT})}},
            {"200": {"description": "The recovery codes."}},
            (401, 422),
        ),
        f"{prefix}/mfa/totp/disable": _post(
            "disableTotp",
            "Turn TOTP off with a code or a recovery code",
            {"application/json": {"schema": {"type": "object"}}},
            {"204": {"description": "Off."}},
            (401, 422),
        ),
        f"{prefix}/invites": _post(
            "createInvite",
            "An invitation code for signup (admins)",
            {"application/json": {"schema": {"type": "object"}}},
            {"201": {"description": "The code, shown once, and its expiry."}},
            (401, 403, 422),
        ),
        f"{prefix}/me": {
            "get": {
                "operationId": "getMe",
                "summary": "The caller's account",
                "tags": ["auth"],
                "security": SIGNED_IN,
                "responses": {
                    "200": {"description": "The account.", "content": account},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            },
            "delete": {
                "operationId": "deleteMe",
                "summary": "Delete the caller's account (with its password, or a recent sign-in)",
                "tags": ["auth"],
                "security": [{"bearer": []}],
                "responses": {
                    "204": {"description": "Deleted."},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "409": {"$ref": "#/components/responses/Conflict"},
                    "422": {"$ref": "#/components/responses/ValidationFailed"},
                },
            },
        },
        f"{prefix}/accounts/{{account}}": {
            "delete": _operation(
                "deleteAnyAccount",
                "Delete an account (admins)",
                [{"name": "account", "in": "path", "required": True, "schema": _TEXT}],
                {
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "409": {"$ref": "#/components/responses/Conflict"},
                },
                "204",
            )
        },
        "/.well-known/jwks.json": {
            "get": {
                "operationId": "getJwks",
                "summary": "The public keys that verify access tokens",
                "tags": ["auth"],
                "responses": {"200": {"description": "A JSON Web Key Set."}},
            }
        },
    }
    if design.auth.providers:
        paths.update(_oauth_paths(prefix))
    return paths


_TEXT: Json = {"type": "string"}
_PASSWORD: Json = {"type": "string", "format": "password"}


def _session_paths(prefix: str) -> Json:
    """`/sessions` and `/sessions/{session}`, the caller's and (admins) any account's."""
    session = {"name": "session", "in": "path", "required": True, "schema": _TEXT}
    account = {"name": "account", "in": "path", "required": True, "schema": _TEXT}
    paths: Json = {}
    for base, params, name in (
        (f"{prefix}/sessions", [], "My"),
        (f"{prefix}/accounts/{{account}}/sessions", [account], "Account"),
    ):
        errors: Json = {"401": {"$ref": "#/components/responses/Unauthorized"}}
        if params:
            errors["403"] = {"$ref": "#/components/responses/Forbidden"}
        paths[base] = {
            "get": _operation(f"list{name}Sessions", "The live sign-ins", params, errors),
            "delete": _operation(
                f"end{name}OtherSessions", "End every sign-in but the caller's", params, errors
            ),
        }
        paths[f"{base}/{{session}}"] = {
            "delete": _operation(
                f"end{name}Session", "End one sign-in", [*params, session], errors, "204"
            )
        }
    return paths


def _operation(op_id: str, summary: str, params: list[Json], errors: Json, ok: str = "200") -> Json:
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": ["auth"],
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": {ok: {"description": summary}, **errors},
    }


def _as_patch(operation: Json) -> Json:
    """A `_post` operation as a signed-in PATCH."""
    post = operation["post"]
    assert isinstance(post, dict)
    return {"patch": {**post, "security": [{"bearer": []}]}}


def _object(properties: Json) -> Json:
    return {"type": "object", "required": sorted(properties), "properties": properties}


def _post(
    op_id: str,
    summary: str,
    content: Mapping[str, object],
    responses: Json,
    errors: tuple[int, ...],
) -> Json:
    names = {401: "Unauthorized", 403: "Forbidden", 409: "Conflict", 422: "ValidationFailed",
             429: "TooManyRequests"}  # fmt: skip
    for status in errors:
        responses.setdefault(str(status), {"$ref": f"#/components/responses/{names[status]}"})
    return {
        "post": {
            "operationId": op_id,
            "summary": summary,
            "tags": ["auth"],
            "requestBody": {"required": True, "content": content},
            "responses": responses,
        }
    }


def _oauth_paths(prefix: str) -> Json:
    provider = {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}
    redirect = {
        "name": "redirect_uri",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "format": "uri"},
        "description": "Where to send the person back: one of the design's `redirect_uris`.",
    }
    found = {"302": {"description": "To the provider, or back to the application."}}
    return {
        f"{prefix}/oauth/{{provider}}/start": {
            "get": {
                "operationId": "startOAuthLogin",
                "summary": "Sign in with a provider: a redirect with state, PKCE and nonce",
                "tags": ["auth"],
                "parameters": [provider, redirect],
                "responses": found,
            }
        },
        f"{prefix}/oauth/{{provider}}/callback": {
            "get": {
                "operationId": "finishOAuthLogin",
                "summary": "The provider's redirect: back to the application with a one-time code",
                "tags": ["auth"],
                "parameters": [provider],
                "responses": found,
            }
        },
    }
