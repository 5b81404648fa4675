"""The token endpoint authenticates with its form (RFC 6749): an Authorization header —
`Basic` with empty client fields, as Swagger UI sends, or a stale bearer token — is
ignored, and its errors are always RFC 6749 §5.2 JSON."""

from __future__ import annotations

from typing import Any

import pytest

from charpente.compile.openapi import openapi_document

pytestmark = pytest.mark.anyio

SIGNUP = """
charpente: 1
name: t
api_version: 1
auth: {signup: open}
resources:
  notes:
    access: {read: true}
    fields:
      text: {type: string}
"""
PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize("header", ["Basic Og==", "Bearer not-a-token", "Digest x"])
async def test_an_authorization_header_on_the_token_endpoint_is_ignored(
    make_api: Any, header: str
) -> None:
    api = await make_api(SIGNUP)
    await api.accounts.create_account("ada@example.com", "member", PASSWORD, {})
    form = {"grant_type": "password", "username": "ada@example.com", "password": PASSWORD}
    good = await api.client.post("/v1/auth/token", data=form, headers={"Authorization": header})
    assert good.status_code == 200, good.text
    assert good.json()["token_type"] == "Bearer"
    bad = await api.client.post(
        "/v1/auth/token", data={**form, "password": "wrong"}, headers={"Authorization": header}
    )
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/json")
    assert bad.json()["error"] == "invalid_grant"
    # elsewhere a bad token still answers 401
    other = await api.client.get("/v1/notes", headers={"Authorization": "Bearer not-a-token"})
    assert other.status_code == 401


async def test_every_operation_accepts_the_password_flow_token(make_api: Any) -> None:
    api = await make_api(SIGNUP)
    document = openapi_document(api.design)
    assert {"password": []} in document["security"]
    me = document["paths"]["/v1/auth/me"]["get"]["security"]
    assert {"password": []} in me
    flow = document["components"]["securitySchemes"]["password"]["flows"]["password"]
    assert flow["tokenUrl"] == "/v1/auth/token"
