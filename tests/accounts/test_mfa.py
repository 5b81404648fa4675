"""Multi-factor sign-in over real HTTP: enrol TOTP, sign-in needs a code, a recovery code
works once; replayed, stale, wrong and locked-out codes are refused."""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from typing import Any

import pyotp
import pytest
from backend import PASSWORD, Backend

pytestmark = pytest.mark.anyio


def unique(name: str) -> str:
    return f"{name}@m{uuid.uuid4().hex[:12]}.example"


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}"}


def claims(access: str) -> dict[str, Any]:
    payload = access.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def code(secret: str, offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(datetime.datetime.now(datetime.UTC), counter_offset=offset)


async def enrolled(backend: Backend) -> tuple[str, str, list[str]]:
    """An account with TOTP on: its email, its secret, its recovery codes."""
    email = unique("ada")
    await backend.signup(email)
    access = (await backend.pair(email))["access_token"]
    started = await backend.client.post("/v1/auth/mfa/totp", headers=bearer(access))
    assert started.status_code == 201, started.text
    assert started.headers["cache-control"] == "no-store"
    secret = started.json()["secret"]
    uri = started.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Notes:")
    assert f"secret={secret}" in uri
    wrong = await backend.client.post(
        "/v1/auth/mfa/totp/confirm", json={"code": "000000"}, headers=bearer(access)
    )
    assert wrong.status_code == 422
    confirmed = code(secret, -1)
    backend.tokens[email] = confirmed  # the code the enrolment used
    done = await backend.client.post(
        "/v1/auth/mfa/totp/confirm", json={"code": confirmed}, headers=bearer(access)
    )
    assert done.status_code == 200, done.text
    codes = done.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    again = await backend.client.post("/v1/auth/mfa/totp", headers=bearer(access))
    assert again.status_code == 409
    return email, secret, codes


async def mfa_token(backend: Backend, email: str) -> str:
    answer = await backend.sign_in(email)
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["error"] == "mfa_required"
    token: str = body["mfa_token"]
    return token


async def second_step(backend: Backend, token: str, **factor: str) -> Any:
    form = {"grant_type": "mfa", "mfa_token": token, **factor}
    return await backend.client.post("/v1/auth/token", data=form)


async def test_sign_in_needs_a_code_and_the_token_says_so(backend: Backend) -> None:
    email, secret, _ = await enrolled(backend)
    without = await backend.sign_in(email)
    assert without.status_code == 403
    assert "access_token" not in without.json()

    token = await mfa_token(backend, email)
    signed = await second_step(backend, token, code=code(secret))
    assert signed.status_code == 200, signed.text
    assert claims(signed.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    refreshed = await backend.refresh(signed.json()["refresh_token"])
    assert claims(refreshed.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
    assert (await second_step(backend, token, code=code(secret, 1))).status_code == 400  # used
    assert "login" in [event for event, _ in await backend.events()]


async def test_a_code_is_used_once_and_one_step_of_drift_is_allowed(backend: Backend) -> None:
    email, secret, _ = await enrolled(backend)  # confirmed with the code of the last step
    used = backend.tokens[email]
    replayed = await second_step(backend, await mfa_token(backend, email), code=used)
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"
    stale = await second_step(backend, await mfa_token(backend, email), code=code(secret, -3))
    assert stale.status_code == 400
    ahead = await second_step(backend, await mfa_token(backend, email), code=code(secret, 1))
    assert ahead.status_code == 200  # a clock one step fast
    now = await second_step(backend, await mfa_token(backend, email), code=code(secret))
    assert now.status_code == 400  # older than the step just used


async def test_a_recovery_code_works_once(backend: Backend) -> None:
    email, _, codes = await enrolled(backend)
    first = await second_step(backend, await mfa_token(backend, email), recovery_code=codes[0])
    assert first.status_code == 200
    assert "mfa" in claims(first.json()["access_token"])["amr"]
    again = await second_step(backend, await mfa_token(backend, email), recovery_code=codes[0])
    assert again.status_code == 400
    spaced = codes[1].upper().replace("-", " ")  # as people type them
    assert (
        await second_step(backend, await mfa_token(backend, email), recovery_code=spaced)
    ).status_code == 200
    assert ("mfa_recovery_used", "recovery code") in await backend.events()


async def test_repeated_wrong_codes_lock_the_codes_out(backend: Backend) -> None:
    email, secret, _ = await enrolled(backend)
    for _ in range(5):
        wrong = await second_step(backend, await mfa_token(backend, email), code="123456")
        assert wrong.status_code == 400
    locked = await second_step(backend, await mfa_token(backend, email), code=code(secret, 1))
    assert locked.status_code == 400  # the right code, but locked for fifteen minutes
    events = [event for event, _ in await backend.events()]
    assert events.count("mfa_failed") >= 5


async def test_an_mfa_token_is_no_login_code_and_no_access_token(backend: Backend) -> None:
    email, _, _ = await enrolled(backend)
    token = await mfa_token(backend, email)
    as_code = await backend.client.post(
        "/v1/auth/token", data={"grant_type": "authorization_code", "code": token}
    )
    assert as_code.status_code == 400
    assert (await backend.me(token)).status_code == 401
    unknown = await second_step(backend, "not-a-token", code="123456")
    assert unknown.json()["error"] == "invalid_grant"
    assert (await second_step(backend, "", code="1")).json()["error"] == "invalid_request"


async def test_disabling_needs_a_second_factor(backend: Backend) -> None:
    email, secret, codes = await enrolled(backend)
    signed = await second_step(backend, await mfa_token(backend, email), recovery_code=codes[2])
    access = signed.json()["access_token"]
    refused = await backend.client.post(
        "/v1/auth/mfa/totp/disable", json={"code": "000000"}, headers=bearer(access)
    )
    assert refused.status_code == 422
    done = await backend.client.post(
        "/v1/auth/mfa/totp/disable", json={"recovery_code": codes[3]}, headers=bearer(access)
    )
    assert done.status_code == 204
    plain = await backend.pair(email, PASSWORD)
    assert claims(plain["access_token"])["amr"] == ["pwd"]
    assert ("mfa_disabled", None) in await backend.events()
    assert secret  # gone with the rest


async def test_access_rules_can_ask_for_a_second_factor(
    db_target: Any, smtp: Any, tmp_path: Any
) -> None:
    from backend import DESIGN, running_backend

    design = DESIGN.replace(
        "access: {read: auth != null, create: auth != null}",
        "access: {read: auth != null, create: auth != null,"
        " delete: owner == auth.id and auth.mfa == true}",
    )
    async with running_backend(db_target, smtp, tmp_path, design) as backend:
        email, secret, codes = await enrolled(backend)
        token = await mfa_token(backend, email)
        strong = (await second_step(backend, token, code=code(secret, 1))).json()["access_token"]
        note = await backend.client.post("/v1/notes", json={"text": "hi"}, headers=bearer(strong))
        assert note.status_code == 201, note.text
        url = f"/v1/notes/{note.json()['id']}"

        # The same person, signed in without the second factor (before enrolling, say).
        off = await backend.client.post(
            "/v1/auth/mfa/totp/disable", json={"recovery_code": codes[0]}, headers=bearer(strong)
        )
        assert off.status_code == 204
        weak = (await backend.pair(email))["access_token"]
        assert (await backend.client.delete(url, headers=bearer(weak))).status_code in (403, 404)
        assert (await backend.client.delete(url, headers=bearer(strong))).status_code == 204


async def test_roles_that_require_mfa_enrol_before_they_get_tokens(
    db_target: Any, smtp: Any, tmp_path: Any
) -> None:
    from backend import DESIGN, running_backend

    design = DESIGN.replace("  app_name: Notes\n", "  app_name: Notes\n  require_mfa: [admin]\n")
    async with running_backend(db_target, smtp, tmp_path, design) as backend:
        root, ada = unique("root"), unique("ada")
        await backend.accounts.create_account(root, "admin", PASSWORD)
        await backend.signup(ada)
        assert (await backend.sign_in(ada)).status_code == 200  # members are not asked

        refused = await backend.sign_in(root)
        assert refused.status_code == 403
        assert refused.json()["error"] == "mfa_enrollment_required"
        assert "access_token" not in refused.json()
        first = refused.json()["mfa_token"]
        assert (await backend.me(first)).status_code == 401  # no access token

        started = await backend.client.post("/v1/auth/mfa/totp", json={"mfa_token": first})
        assert started.status_code == 201, started.text
        secret, second = started.json()["secret"], started.json()["mfa_token"]
        again = await backend.client.post("/v1/auth/mfa/totp", json={"mfa_token": first})
        assert again.status_code == 401  # used up
        done = await backend.client.post(
            "/v1/auth/mfa/totp/confirm", json={"mfa_token": second, "code": code(secret)}
        )
        assert done.status_code == 200, done.text
        assert len(done.json()["recovery_codes"]) == 10
        assert claims(done.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]
        assert (await backend.me(done.json()["access_token"])).json()["role"] == "admin"
        assert (await backend.refresh(done.json()["refresh_token"])).status_code == 200
        assert (await backend.sign_in(root)).json()["error"] == "mfa_required"  # from now on


def test_require_mfa_names_roles_of_the_design() -> None:
    from backend import DESIGN

    from charpente.errors import DesignError
    from charpente.loader import load_design_text

    bad = DESIGN.replace("  app_name: Notes\n", "  app_name: Notes\n  require_mfa: [root]\n")
    with pytest.raises(DesignError, match="`root` is not a role"):
        load_design_text(bad)


async def test_enrolling_needs_the_password_unless_one_signed_in_just_now(
    backend: Backend,
) -> None:
    import sqlalchemy as sa

    from charpente.sql.engine import create_engine

    email = unique("ada")
    await backend.signup(email)
    access = (await backend.pair(email))["access_token"]
    engine = create_engine(backend.settings.database_url, schema=backend.settings.database_schema)
    try:
        async with engine.begin() as conn:
            database = backend.accounts.service.database
            database = getattr(database, "inner", database)  # under the shape log's counting
            sessions = database.metadata_tables["charpente_sessions"]
            long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
            await conn.execute(sa.update(sessions).values(created_at=long_ago))
    finally:
        await engine.dispose()

    refused = await backend.client.post("/v1/auth/mfa/totp", headers=bearer(access))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "password"
    wrong = await backend.client.post(
        "/v1/auth/mfa/totp", json={"password": "not it at all"}, headers=bearer(access)
    )
    assert wrong.status_code == 422
    done = await backend.client.post(
        "/v1/auth/mfa/totp", json={"password": PASSWORD}, headers=bearer(access)
    )
    assert done.status_code == 201
