"""Password reset end to end: real HTTP into the backend `serve` builds, the email through a
real SMTP server, the link's token back into the API; and the signed-in password change."""

from __future__ import annotations

import datetime
import uuid

import pytest
import sqlalchemy as sa
from backend import PASSWORD, Backend, table

from charpente.sql.engine import create_engine

pytestmark = pytest.mark.anyio

NEW = "a brand new passphrase"


def unique(backend: Backend, name: str) -> str:
    """An address no other test of the session (sharing the SMTP server) uses."""
    return f"{name}@{backend.settings.database_schema or 'sqlite'}.{uuid.uuid4().hex[:12]}.example"


async def forgot(backend: Backend, email: str) -> dict[str, object]:
    answer = await backend.client.post("/v1/auth/password/forgot", json={"email": email})
    assert answer.status_code == 202, answer.text
    assert answer.headers["cache-control"] == "no-store"
    await backend.accounts.settle()
    body: dict[str, object] = answer.json()
    return body


async def reset(backend: Backend, token: str, password: str = NEW) -> object:
    return await backend.client.post(
        "/v1/auth/password/reset", json={"token": token, "password": password}
    )


async def test_forgot_then_reset_ends_every_session_and_tells_the_owner(backend: Backend) -> None:
    ada = unique(backend, "ada")
    assert (await backend.signup(ada)).status_code == 201
    laptop, phone = await backend.pair(ada), await backend.pair(ada)

    await forgot(backend, ada)
    [mail] = await backend.mail(ada)
    assert mail.message["Subject"] == "Reset your Notes password"
    assert "30 minutes" in mail.part("plain")
    token = backend.link(mail, "reset-password")
    assert len(token) >= 43  # 256 bits, base64url

    done = await reset(backend, token)
    assert done.status_code == 204, done.text  # type: ignore[attr-defined]

    for pair in (laptop, phone):
        assert (await backend.refresh(pair["refresh_token"])).json()["error"] == "invalid_grant"
        answer = await backend.me(pair["access_token"])
        assert answer.status_code == 401
        assert "session ended" in answer.headers["www-authenticate"]
    assert (await backend.sign_in(ada)).status_code == 400  # the old password
    fresh = await backend.pair(ada, NEW)
    assert (await backend.me(fresh["access_token"])).json()["email_verified"] is True

    [_, changed] = await backend.mail(ada, 2)
    assert changed.message["Subject"] == "Your Notes password was changed"
    events = [event for event, _ in await backend.events()]
    assert events.index("reset_requested") < events.index("password_reset")
    assert ("password_reset", "2 refresh tokens ended") in await backend.events()
    # The link works once.
    again = await reset(backend, token, "yet another passphrase")
    assert again.status_code == 422  # type: ignore[attr-defined]
    # Hashed at rest: the token itself is nowhere in the database.
    rows = await table(backend.settings, "charpente_email_tokens")
    assert rows
    assert all(token not in str(row) for row in rows)


async def test_an_unknown_email_gets_the_same_answer_and_no_mail(backend: Backend) -> None:
    ada, nobody = unique(backend, "ada"), unique(backend, "nobody")
    assert (await backend.signup(ada)).status_code == 201

    assert await forgot(backend, nobody) == await forgot(backend, ada)
    await backend.mail(ada)
    assert backend.smtp.arrived(nobody) == []
    assert ("reset_requested", "no active account") in await backend.events()


async def test_a_link_stops_working_once_a_newer_one_is_sent(backend: Backend) -> None:
    ada = unique(backend, "ada")
    await backend.signup(ada)
    await forgot(backend, ada)
    await backend.mail(ada)  # sent: the next one is newer (the worker sends in parallel)
    await forgot(backend, ada)
    first, second = (backend.link(mail, "reset-password") for mail in await backend.mail(ada, 2))

    refused = await reset(backend, first)
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert refused.json()["errors"][0]["field"] == "token"  # type: ignore[attr-defined]
    assert (await reset(backend, second)).status_code == 204  # type: ignore[attr-defined]


async def test_an_expired_link_and_a_link_for_an_old_address_are_refused(
    backend: Backend,
) -> None:
    ada, bob = unique(backend, "ada"), unique(backend, "bob")
    await backend.signup(ada)
    await backend.signup(bob)
    await forgot(backend, ada)
    await forgot(backend, bob)
    [ada_mail], [bob_mail] = await backend.mail(ada), await backend.mail(bob)
    engine = create_engine(backend.settings.database_url, schema=backend.settings.database_schema)
    try:
        async with engine.begin() as conn:
            links = sa.table("charpente_email_tokens", sa.column("email"), sa.column("expires_at"))
            past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
            await conn.execute(sa.update(links).where(links.c.email == ada).values(expires_at=past))
            accounts = sa.table("accounts", sa.column("email"))
            moved = unique(backend, "bob.elsewhere")
            await conn.execute(
                sa.update(accounts).where(accounts.c.email == bob).values(email=moved)
            )
    finally:
        await engine.dispose()

    for mail in (ada_mail, bob_mail):
        answer = await reset(backend, backend.link(mail, "reset-password"))
        assert answer.status_code == 422  # type: ignore[attr-defined]
    assert (await backend.sign_in(ada)).status_code == 200  # nothing changed


async def test_a_weak_password_is_refused_and_the_link_still_works(backend: Backend) -> None:
    ada = unique(backend, "ada")
    await backend.signup(ada)
    await forgot(backend, ada)
    token = backend.link((await backend.mail(ada))[0], "reset-password")

    weak = await reset(backend, token, "password")
    assert weak.status_code == 422  # type: ignore[attr-defined]
    assert weak.json()["errors"][0]["field"] == "password"  # type: ignore[attr-defined]
    named = await reset(backend, token, "ada lovelace rules")  # the address's own name
    assert named.status_code == 422  # type: ignore[attr-defined]
    assert (await reset(backend, token, "lovelace rules ok")).status_code == 204  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [{}, {"email": 7}, {"email": "no-at-sign"}, []])
async def test_forgot_needs_an_email(backend: Backend, body: object) -> None:
    answer = await backend.client.post("/v1/auth/password/forgot", json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"


async def test_forgot_is_rate_limited_per_email(backend: Backend) -> None:
    ada = unique(backend, "ada")
    for _ in range(3):
        await forgot(backend, ada)
    answer = await backend.client.post("/v1/auth/password/forgot", json={"email": ada.upper()})
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) > 0
    other = await backend.client.post(
        "/v1/auth/password/forgot", json={"email": unique(backend, "bob")}
    )
    assert other.status_code == 202


async def test_the_signed_in_change_keeps_this_sign_in_and_ends_the_others(
    backend: Backend,
) -> None:
    ada = unique(backend, "ada")
    await backend.signup(ada)
    here, there = await backend.pair(ada), await backend.pair(ada)
    headers = {"Authorization": f"Bearer {here['access_token']}"}

    wrong = await backend.client.patch(
        "/v1/auth/me/password", json={"current": "not it at all", "new": NEW}, headers=headers
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "current"
    unknown = await backend.client.patch(
        "/v1/auth/me/password", json={"current_password": PASSWORD}, headers=headers
    )
    assert unknown.status_code == 422
    anonymous = await backend.client.patch(
        "/v1/auth/me/password", json={"current": PASSWORD, "new": NEW}
    )
    assert anonymous.status_code == 401

    changed = await backend.client.patch(
        "/v1/auth/me/password", json={"current": PASSWORD, "new": NEW}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.headers["cache-control"] == "no-store"
    assert set(changed.json()) == {"access_token", "token_type", "expires_in"}

    assert (await backend.me(changed.json()["access_token"])).status_code == 200
    assert (await backend.me(here["access_token"])).status_code == 401  # issued before
    assert (await backend.refresh(here["refresh_token"])).status_code == 200  # this sign-in
    assert (await backend.refresh(there["refresh_token"])).status_code == 400  # the other
    assert (await backend.sign_in(ada, NEW)).status_code == 200
