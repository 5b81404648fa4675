"""Verified emails end to end: signup → the verification email → its link → sign-in, through
real HTTP and a real SMTP server; a signup that hides taken addresses; email changes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from backend import DESIGN, PASSWORD, Backend, running_backend
from smtpbox import SmtpServer

pytestmark = pytest.mark.anyio

REQUIRED = DESIGN.replace("  app_name: Notes\n", "  app_name: Notes\n  verify_email: required\n")


@pytest.fixture
async def verifying(
    db_target: Any, smtp: SmtpServer, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Backend]:
    async with running_backend(db_target, smtp, tmp_path, REQUIRED) as running:
        yield running


def unique(backend: Backend, name: str) -> str:
    return f"{name}@{backend.settings.database_schema or 'sqlite'}.v{uuid.uuid4().hex[:12]}.example"


async def signup(backend: Backend, email: str) -> dict[str, Any]:
    answer = await backend.signup(email)
    assert answer.status_code == 202, answer.text
    assert answer.headers["cache-control"] == "no-store"
    await backend.accounts.settle()
    body: dict[str, Any] = answer.json()
    return body


async def post(backend: Backend, path: str, body: object, **headers: str) -> Any:
    return await backend.client.post(path, json=body, headers=headers)


async def test_signup_mails_a_link_and_sign_in_waits_for_it(verifying: Backend) -> None:
    ada = unique(verifying, "ada")
    await signup(verifying, ada)
    [mail] = await verifying.mail(ada)
    assert mail.message["Subject"] == "Confirm your email address for Notes"
    assert "24 hours" in mail.part("plain")

    refused = await verifying.sign_in(ada)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "not verified yet" in refused.json()["error_description"]
    wrong = await verifying.sign_in(ada, "not the password at all")
    assert "not verified" not in wrong.json()["error_description"]  # only with the password

    token = verifying.link(mail, "verify-email")
    assert (await post(verifying, "/v1/auth/email/verify", {"token": token})).status_code == 204
    pair = await verifying.pair(ada)
    assert (await verifying.me(pair["access_token"])).json()["email_verified"] is True
    again = await post(verifying, "/v1/auth/email/verify", {"token": token})
    assert again.status_code == 422  # single use
    events = [event for event, _ in await verifying.events()]
    assert {"signup", "login_unverified", "email_verified", "login"} <= set(events)


async def test_a_taken_email_gets_the_same_answer_and_its_owner_is_told(
    verifying: Backend,
) -> None:
    ada, bob = unique(verifying, "ada"), unique(verifying, "bob")
    first = await signup(verifying, ada)
    again = await signup(verifying, ada.upper())
    fresh = await signup(verifying, bob)

    assert first == again == fresh
    both = await verifying.mail(ada, 2)  # in either order: the worker sends in parallel
    [verify, taken] = sorted(both, key=lambda m: "Someone" in m.message["Subject"])
    assert verify.message["Subject"].startswith("Confirm your email address")
    assert taken.message["Subject"] == "Someone tried to sign up to Notes with your email"
    assert "https://notes.example" in taken.part("plain")
    assert ("signup_taken", None) in await verifying.events()


async def test_resend_replaces_the_link_and_answers_the_same_for_anyone(
    verifying: Backend,
) -> None:
    ada, nobody = unique(verifying, "ada"), unique(verifying, "nobody")
    await signup(verifying, ada)
    await verifying.mail(ada)  # sent: the next one is newer (the worker sends in parallel)
    answers = [
        await post(verifying, "/v1/auth/email/verify/resend", {"email": email})
        for email in (ada, nobody)
    ]
    await verifying.accounts.settle()
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    first, second = (verifying.link(m, "verify-email") for m in await verifying.mail(ada, 2))
    assert verifying.smtp.arrived(nobody) == []

    assert (await post(verifying, "/v1/auth/email/verify", {"token": first})).status_code == 422
    assert (await post(verifying, "/v1/auth/email/verify", {"token": second})).status_code == 204
    for _ in range(2):
        await post(verifying, "/v1/auth/email/verify/resend", {"email": ada})
    limited = await post(verifying, "/v1/auth/email/verify/resend", {"email": ada})
    assert limited.status_code == 429


async def test_a_link_only_works_for_what_it_was_sent_for(verifying: Backend) -> None:
    ada = unique(verifying, "ada")
    await signup(verifying, ada)
    verify = verifying.link((await verifying.mail(ada))[0], "verify-email")
    await post(verifying, "/v1/auth/password/forgot", {"email": ada})
    await verifying.accounts.settle()
    reset = verifying.link((await verifying.mail(ada, 2))[1], "reset-password")

    assert (await post(verifying, "/v1/auth/email/verify", {"token": reset})).status_code == 422
    answer = await post(
        verifying, "/v1/auth/password/reset", {"token": verify, "password": "x" * 9}
    )
    assert answer.status_code == 422
    for bad in ({}, {"token": 5}, {"token": "t" * 500}):
        assert (await post(verifying, "/v1/auth/email/verify", bad)).status_code == 422


async def test_an_email_change_takes_effect_once_the_new_address_confirms(
    verifying: Backend,
) -> None:
    ada, new = unique(verifying, "ada"), unique(verifying, "ada.new")
    record = await verifying.accounts.create_account(ada, "member", PASSWORD)  # an operator's
    assert record["email_verified"] is True  # the operator vouches for it
    pair = await verifying.pair(ada)
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}

    wrong = await post(verifying, "/v1/auth/me/email", {"email": new, "password": "no"}, **bearer)
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "password"
    assert (await post(verifying, "/v1/auth/me/email", {"email": new})).status_code == 401
    asked = await post(
        verifying, "/v1/auth/me/email", {"email": new, "password": PASSWORD}, **bearer
    )
    assert asked.status_code == 202, asked.text

    [notice] = await verifying.mail(ada)
    assert notice.message["Subject"] == "Your Notes account is moving to another email address"
    [confirm] = await verifying.mail(new)
    assert (await verifying.me(pair["access_token"])).json()["email"] == ada  # not yet
    token = verifying.link(confirm, "confirm-email")
    assert (await post(verifying, "/v1/auth/email/confirm", {"token": token})).status_code == 204

    assert (await verifying.sign_in(ada)).status_code == 400
    moved = await verifying.pair(new)
    account = (await verifying.me(moved["access_token"])).json()
    assert (account["email"], account["email_verified"]) == (new, True)
    assert (await post(verifying, "/v1/auth/email/confirm", {"token": token})).status_code == 422


async def test_optional_verification_lets_people_sign_in_meanwhile(
    db_target: Any, smtp: SmtpServer, tmp_path: Path
) -> None:
    optional = REQUIRED.replace("verify_email: required", "verify_email: optional")
    async with running_backend(db_target, smtp, tmp_path, optional) as backend:
        ada = unique(backend, "ada")
        await signup(backend, ada)
        pair = await backend.pair(ada)
        assert (await backend.me(pair["access_token"])).json()["email_verified"] is False
        await backend.mail(ada)


async def test_without_verification_signup_answers_the_account(backend: Backend) -> None:
    answer = await backend.signup(unique(backend, "ada"))
    assert answer.status_code == 201
    assert answer.json()["email_verified"] is False
    resend = await post(backend, "/v1/auth/email/verify/resend", {"email": "a@b.example"})
    assert resend.status_code == 404
