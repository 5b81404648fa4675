"""No secret reaches the logs: a password, a bearer token, a refresh token, an OAuth client
secret and an `encrypted: true` value go through real requests (the OAuth login against the
test providers of conftest.py) while every logger logs at debug, in the json format; the
whole output is then searched."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.oauth.test_oauth_http import (  # the browser and the app that OAuth logins use
    APP,
    CLIENT_SECRET,
    PASSWORD,
    MakeApp,
    make_app,
)

from charpente.runtime.logcontext import JsonFormatter
from charpente.settings import Settings
from charpente.wiring import apply_database_migration, build_application, configure_logging

__all__ = ["make_app"]  # the fixture, used here under its own name

pytestmark = pytest.mark.anyio

KEY = "k1:" + base64.b64encode(bytes(range(32))).decode()
SEALED_VALUE = "my card's PIN is 7305"
VAULT = """\
charpente: 1
name: vault
api_version: 1
resources:
  notes:
    access: {read: true, create: true}
    fields:
      body: {type: text, encrypted: true, max_length: 200}
"""


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything every logger writes, at debug, one JSON object per line."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    charpente = logging.getLogger("charpente")
    saved = root.level, charpente.level, list(charpente.handlers)
    configure_logging("debug", access_log=True, log_format="json")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield output
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        charpente.setLevel(saved[1])
        charpente.handlers[:] = saved[2]
        logging.getLogger("charpente.access").setLevel(logging.WARNING)


async def test_no_secret_is_ever_logged(
    make_app: MakeApp, debug_log: io.StringIO, tmp_path: Path
) -> None:
    app = await make_app()
    secrets = [PASSWORD, CLIENT_SECRET, SEALED_VALUE]
    # a password, then the tokens it gets: a bearer token used, a refresh token spent
    await app.signup("ada@example.com")
    form = {"grant_type": "password", "username": "ada@example.com", "password": PASSWORD}
    pair = (await app.browser.post(f"{APP}/v1/auth/token", data=form)).json()
    secrets += [pair["access_token"], pair["refresh_token"]]
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await app.browser.get(f"{APP}/v1/auth/me", headers=bearer)).status_code == 200
    renewed = await app.browser.post(
        f"{APP}/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
    )
    assert renewed.status_code == 200, renewed.text
    secrets += [renewed.json()["access_token"], renewed.json()["refresh_token"]]
    wrong = {"Authorization": f"Bearer {pair['access_token']}x"}
    await app.browser.get(f"{APP}/v1/auth/me", headers=wrong)  # a bad token is logged?
    # an OAuth login: the client secret goes to the provider's token endpoint
    await app.sign_in("google")
    await app.sign_in("github")
    secrets += app.issued
    # an encrypted field, written and read through the app `serve` builds
    design_file = tmp_path / "vault.yaml"
    design_file.write_text(VAULT, encoding="utf-8")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'vault.db'}",
        design_path=design_file,
        secret_keys=KEY,
    )
    await apply_database_migration(settings, build_vault_design(design_file))
    vault = build_application(settings)
    async with vault.router.lifespan_context(vault):
        transport = httpx.ASGITransport(app=vault)
        async with httpx.AsyncClient(transport=transport, base_url="http://vault") as client:
            created = await client.post("/v1/notes", json={"body": SEALED_VALUE})
            assert created.status_code == 201, created.text
            read = await client.get(created.headers["location"])
            assert read.json()["body"] == SEALED_VALUE
    secrets.append(KEY.split(":", 1)[1])

    output = debug_log.getvalue()
    assert "charpente.access" in output  # the log did run, at debug, with the access log
    for secret in secrets:
        assert secret not in output, f"a secret is in the log: {secret[:6]}…"


def build_vault_design(path: Path) -> Any:
    from charpente.loader import load_design

    return load_design(path)
