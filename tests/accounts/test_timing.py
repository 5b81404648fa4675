"""Forgot-password and signup take the same time for an email that has an account and for
one that has not: over 200 requests each, alternating, the medians differ by less than 5%.

The machine is shared and noisy, so a measurement that misses is taken again (three times
at most); a real difference (a skipped password hash, a query only one side makes) shows
in every round. The backend runs without its worker: the messages the requests queue are
not sent meanwhile, so sending them does not slow the next request."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from charpente.design.limits import LimitRule
from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime import recovery
from charpente.runtime.auth import Accounts
from charpente.runtime.service import Service
from charpente.settings import Settings
from charpente.sql.authstore import SqlAuthStore
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata
from charpente.wiring import build_postman, with_mail_job

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery staple"
REQUESTS = 200
ROUNDS = 3
DESIGN = """
charpente: 1
name: notes
api_version: 1
auth:
  signup: open
  app_url: https://notes.example
  verify_email: required
resources:
  notes:
    fields:
      text: {type: string, max_length: 100}
"""


@pytest.fixture
async def client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    loose = LimitRule(count=1_000_000, period=60)
    monkeypatch.setattr(recovery, "FORGOT_PER_EMAIL", loose)
    monkeypatch.setattr(recovery, "FORGOT_PER_IP", loose)
    design = load_design_text(DESIGN)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'timing.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(design).create_all)
    database = SqlDatabase(engine, design)
    service = Service(design, database, hooks=with_mail_job(Settings(), None))
    # The engine's own password hasher (argon2id at OWASP's parameters): what production pays.
    accounts = Accounts(
        design,
        service,
        SqlAuthStore(database),
        clock=service.clock,
        postman=build_postman(Settings(), design, service),
    )
    await accounts.start()
    await accounts.create_account("ada@example.com", "member", PASSWORD)
    transport = httpx.ASGITransport(app=build_app(service, design, accounts=accounts))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        http.accounts = accounts  # type: ignore[attr-defined]
        yield http
    await accounts.stop()
    await engine.dispose()


Call = Callable[[str], Awaitable[httpx.Response]]


async def medians(
    client: httpx.AsyncClient, call: Call, fresh: Callable[[], str]
) -> tuple[float, float]:
    accounts: Accounts = client.accounts  # type: ignore[attr-defined]
    spent: dict[str, list[float]] = {"known": [], "new": []}
    for index in range(REQUESTS * 2):
        kind = "known" if index % 2 == 0 else "new"
        email = "ada@example.com" if kind == "known" else fresh()
        started = time.perf_counter()
        answer = await call(email)
        spent[kind].append(time.perf_counter() - started)
        assert answer.status_code == 202, answer.text
        await accounts.settle()  # what runs after the answer, out of the next one's way
    return statistics.median(spent["known"]), statistics.median(spent["new"])


async def indistinguishable(
    client: httpx.AsyncClient, call: Call, fresh: Callable[[], str]
) -> None:
    seen = []
    for _ in range(ROUNDS):
        known, new = await medians(client, call, fresh)
        difference = abs(known - new) / min(known, new)
        seen.append(f"known {known * 1000:.2f} ms, new {new * 1000:.2f} ms ({difference:.1%})")
        if difference < 0.05:
            return
    raise AssertionError("; ".join(seen))


def new_email() -> str:
    return f"{uuid.uuid4().hex[:16]}@example.com"


async def test_forgot_takes_as_long_for_a_known_email_as_for_an_unknown_one(
    client: httpx.AsyncClient,
) -> None:
    async def forgot(email: str) -> httpx.Response:
        return await client.post("/v1/auth/password/forgot", json={"email": email})

    await indistinguishable(client, forgot, new_email)


async def test_signup_takes_as_long_for_a_taken_email_as_for_a_new_one(
    client: httpx.AsyncClient,
) -> None:
    async def signup(email: str) -> httpx.Response:
        return await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})

    await indistinguishable(client, signup, new_email)
    answers: dict[str, Any] = {}
    for email in ("ada@example.com", new_email()):
        answers[email] = (await signup(email)).json()
    assert len({str(a) for a in answers.values()}) == 1
