"""Signing in with Google or GitHub over HTTP, end to end, with a browser played by httpx.

The app runs in this process (ASGI, mounted at http://localhost:8000 and
https://localhost:8443); the providers are the real servers of conftest.py, declared in
the design the way a user declares them (`client_id: env:NAME`) and built by
`wiring.login_providers`. The browser follows start → the provider's authorization →
the callback, carrying the login cookie; every Location header it is sent is recorded,
and none may ever carry a token.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.cookies
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from charpente.design.auth import ACCOUNTS
from charpente.http.app import build_app
from charpente.http.oauth import COOKIE, oauth_routes
from charpente.loader import load_design_text
from charpente.runtime.auth import Accounts
from charpente.runtime.caller import SYSTEM
from charpente.runtime.oauth import LoginState, OAuthClient
from charpente.runtime.oauth.client import TIMEOUT
from charpente.runtime.passwords import PasswordHasher
from charpente.runtime.service import Service
from charpente.sql.authstore import SqlAuthStore
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata
from charpente.wiring import login_providers

pytestmark = pytest.mark.anyio

APP = "http://localhost:8000"
APP_TLS = "https://localhost:8443"
DONE = "http://localhost:3000/done"
COOKIE_PATH = "/v1/auth/oauth/"
# What http/oauth.py binds the sealed login state to: a cookie sealed for anything else
# must not open as one.
COOKIE_CONTEXT = b"charpente.oauth.state"
# The client the test providers (conftest.py) know.
CLIENT_ID, CLIENT_SECRET = "charpente-test", "charpente-secret"
TLS = ssl.create_default_context()  # one for the module: each costs a tenth of a second
PASSWORD = "correct horse battery staple"
FAST_HASHER = PasswordHasher(time_cost=1, memory_kib=1024)
ENV = {
    "CHARPENTE_TEST_GOOGLE_ID": CLIENT_ID,
    "CHARPENTE_TEST_GOOGLE_SECRET": CLIENT_SECRET,
    "CHARPENTE_TEST_GITHUB_ID": CLIENT_ID,
    "CHARPENTE_TEST_GITHUB_SECRET": CLIENT_SECRET,
}
DESIGN = """
charpente: 1
name: notes
api_version: 1
auth:
  signup: {signup}
  redirect_uris: [{done}]
  providers:
    google:
      kind: oidc
      issuer: {oidc}
      client_id: env:CHARPENTE_TEST_GOOGLE_ID
      client_secret: env:CHARPENTE_TEST_GOOGLE_SECRET
    github:
      kind: github
      base_url: {github}
      api_url: {github}
      client_id: env:CHARPENTE_TEST_GITHUB_ID
      client_secret: env:CHARPENTE_TEST_GITHUB_SECRET
resources:
  notes:
    access: {{read: true}}
    fields:
      text: {{type: string, max_length: 100}}
"""
# Parameter names that would put a token of ours in a URL.
TOKEN_PARAMS = {"access_token", "refresh_token", "id_token", "token"}


@dataclass
class MovableClock:
    """The system clock, moved forward on demand (the Clock port)."""

    offset: datetime.timedelta = datetime.timedelta()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += datetime.timedelta(seconds=seconds)


@dataclass
class App:
    """One app, its browser, and what the tests inspect around them."""

    browser: httpx.AsyncClient
    accounts: Accounts
    engine: AsyncEngine
    database: SqlDatabase
    clock: MovableClock
    locations: list[str] = field(default_factory=list)  # every Location the browser got
    issued: list[str] = field(default_factory=list)  # every token the app handed out

    async def start(self, provider: str, redirect_uri: str = DONE, base: str = APP) -> Any:
        return await self.browser.get(
            f"{base}/v1/auth/oauth/{provider}/start", params={"redirect_uri": redirect_uri}
        )

    async def approve(self, authorization_url: str) -> str:
        """The provider approves at once: the callback URL it sends the browser to."""
        url = authorization_url
        for _ in range(10):
            answer = await self.browser.get(url)
            assert answer.status_code in (302, 303), (answer.status_code, answer.text)
            url = urljoin(url, answer.headers["location"])
            if url.startswith(f"{APP}/v1/auth/oauth/"):
                return url
        raise AssertionError("the provider never sent the browser back to the callback")

    async def until_callback(self, provider: str) -> tuple[str, str]:
        """start and the provider's approval: the callback URL and the login cookie."""
        start = await self.start(provider)
        assert start.status_code == 302, start.text
        return await self.approve(start.headers["location"]), login_cookie(start)

    async def login(self, provider: str) -> Any:
        """A whole login, up to the callback's answer (which is not followed)."""
        callback, _ = await self.until_callback(provider)
        return await self.browser.get(callback)

    async def code(self, provider: str) -> str:
        answer = await self.login(provider)
        back = back_at_app(answer)
        assert "error" not in back, back
        return back["code"]

    async def exchange(self, code: str) -> Any:
        form = {"grant_type": "authorization_code", "code": code}
        answer = await self.browser.post(f"{APP}/v1/auth/token", data=form)
        if answer.status_code == 200:
            self.issued += [answer.json()["access_token"], answer.json()["refresh_token"]]
        return answer

    async def sign_in(self, provider: str) -> dict[str, Any]:
        """A login through `provider`, then the account it signed in as (/v1/auth/me)."""
        tokens = await self.exchange(await self.code(provider))
        assert tokens.status_code == 200, tokens.text
        headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        me = await self.browser.get(f"{APP}/v1/auth/me", headers=headers)
        assert me.status_code == 200, me.text
        account: dict[str, Any] = me.json()
        return account

    async def signup(self, email: str) -> str:
        """A password account; its id."""
        body = {"email": email, "password": PASSWORD}
        created = await self.browser.post(f"{APP}/v1/auth/signup", json=body)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    async def rows(self, table: str) -> list[dict[str, Any]]:
        """A table's rows, typed as the engine reads them (ids as strings)."""
        async with self.engine.connect() as conn:
            result = await conn.execute(sa.select(self.database.metadata_tables[table]))
            return [dict(row._mapping) for row in result]

    async def events(self) -> list[tuple[str, str | None, str | None]]:
        """The authentication log, oldest first: (event, account, detail)."""
        entries = await self.accounts.store.log_entries()
        return [(e["event"], e["account"], e["detail"]) for e in reversed(entries)]

    def check_urls(self) -> None:
        """No URL the browser was sent to carries a token of ours or a token parameter."""
        for url in self.locations:
            names = {name for name, _ in parse_qsl(urlsplit(url).query)}
            names |= {name for name, _ in parse_qsl(urlsplit(url).fragment)}
            assert not names & TOKEN_PARAMS, url
            assert not any(token in url for token in self.issued), url


MakeApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(
    providers: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> AsyncIterator[MakeApp]:
    """`await make_app(signup="open", target=None)`: an app (SQLite unless a target is
    given) whose design declares both test providers, and a browser to drive it."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    closing: list[Callable[[], Awaitable[None]]] = []
    apps: list[App] = []

    async def make(signup: str = "open", target: Any = None) -> App:
        text = DESIGN.format(
            signup=signup, done=DONE, oidc=providers.oidc.base, github=providers.github.base
        )
        design = load_design_text(text)
        sqlite = f"sqlite+aiosqlite:///{tmp_path / f'app{len(apps)}.db'}"
        url, schema = (sqlite, None) if target is None else (target.url, target.schema)
        engine = create_engine(url, schema=schema)
        closing.append(engine.dispose)
        async with engine.begin() as conn:
            await conn.run_sync(build_metadata(design).create_all)
        clock = MovableClock()
        database = SqlDatabase(engine, design)
        service = Service(design, database, clock=clock)
        accounts = Accounts(
            design, service, SqlAuthStore(database), clock=clock, hasher=FAST_HASHER
        )
        await accounts.start()
        closing.append(accounts.stop)
        provider_http = httpx.AsyncClient(timeout=TIMEOUT, verify=TLS)
        closing.append(provider_http.aclose)
        oauth = OAuthClient(login_providers(design), provider_http)
        routes = oauth_routes(accounts, oauth, design, "/v1", None)
        asgi = httpx.ASGITransport(
            app=build_app(service, design, accounts=accounts, extra_routes=routes),
            raise_app_exceptions=False,
        )
        locations: list[str] = []

        async def record(response: httpx.Response) -> None:
            if "location" in response.headers:
                locations.append(response.headers["location"])

        browser = httpx.AsyncClient(
            mounts={APP: asgi, APP_TLS: asgi},
            verify=TLS,
            timeout=10,
            event_hooks={"response": [record]},
        )
        closing.append(browser.aclose)
        app = App(browser, accounts, engine, database, clock, locations)
        apps.append(app)
        return app

    try:
        yield make
    finally:
        for close in reversed(closing):
            await close()
    for app in apps:
        app.check_urls()


@pytest.fixture
async def app(make_app: MakeApp) -> App:
    return await make_app()


def login_cookie(answer: httpx.Response) -> str:
    """The sealed login state a start answer sets."""
    morsel = set_cookie(answer)
    assert morsel is not None, answer.headers
    assert morsel.value
    return morsel.value


def set_cookie(answer: httpx.Response) -> http.cookies.Morsel[str] | None:
    """The login cookie's Set-Cookie in `answer`, parsed, if there is one."""
    for header in answer.headers.get_list("set-cookie"):
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        jar.load(header)
        if COOKIE in jar:
            return jar[COOKIE]
    return None


def back_at_app(answer: httpx.Response) -> dict[str, str]:
    """The query the callback sends the browser back to the app with."""
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.split("?")[0] == DONE, location
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    return dict(parse_qsl(urlsplit(location).query))


def refused(answer: httpx.Response, reason: str) -> None:
    """Sent back to the app with access_denied and `reason`, and the cookie cleared."""
    back = back_at_app(answer)
    assert back == {"error": "access_denied", "error_description": reason}, back
    assert_cleared(answer)


def assert_cleared(answer: httpx.Response) -> None:
    morsel = set_cookie(answer)
    assert morsel is not None, "the callback must end the login cookie"
    assert morsel.value == ""
    assert morsel["max-age"] == "0"
    assert morsel["path"] == COOKIE_PATH


def not_redirected(answer: httpx.Response, status: int = 400) -> None:
    assert answer.status_code == status, answer.text
    assert "location" not in answer.headers
    assert answer.headers["content-type"].startswith("application/problem+json")


def cookie_with(app: App, sealed: str, **changes: Any) -> str:
    """The login cookie `sealed`, opened, changed and sealed again with the app's keys:
    what only someone holding the server's keys could make."""
    sealer = app.accounts.cookie_sealer()
    login = LoginState.from_bytes(sealer.open(sealed, context=COOKIE_CONTEXT))
    changed = dataclasses.replace(login, **changes)
    return sealer.seal(changed.to_bytes(), context=COOKIE_CONTEXT)


async def callback_with(app: App, url: str, cookie: str | None) -> httpx.Response:
    """The callback fetched with exactly this login cookie (or none), not the jar's."""
    app.browser.cookies.clear()
    headers = {} if cookie is None else {"Cookie": f"{COOKIE}={cookie}"}
    return await app.browser.get(url, headers=headers)


def with_param(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | params
    return parts._replace(query=str(httpx.QueryParams(query))).geturl()


# --- logins that work --------------------------------------------------------------------


async def test_a_google_login_creates_the_account_and_signs_it_in(
    make_app: MakeApp, db_target: Any, providers: Any
) -> None:
    app = await make_app(target=db_target)
    providers.oidc.set_next_user("10769150350006150715", "Ada@Example.COM", name="Ada")

    account = await app.sign_in("google")

    assert account["email"] == "ada@example.com"
    assert account["role"] == "member"
    assert account["email_verified"] is True  # the provider proved it
    assert len(await app.rows("accounts")) == 1
    [identity] = await app.rows("charpente_identities")
    assert (identity["provider"], identity["subject"]) == ("google", "10769150350006150715")
    assert identity["account"] == account["id"]
    assert await app.events() == [
        ("signup", account["id"], "google"),
        ("login", account["id"], "oauth"),
    ]
    log = await app.accounts.store.log_entries()
    assert {entry["ip"] for entry in log} == {"127.0.0.1"}
    app.check_urls()


async def test_a_github_login_creates_the_account_with_the_primary_verified_email(
    make_app: MakeApp, db_target: Any, providers: Any
) -> None:
    app = await make_app(target=db_target)
    emails = [
        {"email": "old@example.com", "primary": False, "verified": True},
        {"email": "Grace@Example.com", "primary": True, "verified": True},
    ]
    providers.github.set_next_user(583231, "octocat", emails)

    account = await app.sign_in("github")

    assert account["email"] == "grace@example.com"
    assert account["email_verified"] is True
    [identity] = await app.rows("charpente_identities")
    assert (identity["provider"], identity["subject"]) == ("github", "583231")
    assert await app.events() == [
        ("signup", account["id"], "github"),
        ("login", account["id"], "oauth"),
    ]
    app.check_urls()


async def test_a_second_login_signs_in_to_the_same_account(
    make_app: MakeApp, db_target: Any, providers: Any
) -> None:
    app = await make_app(target=db_target)
    providers.oidc.set_next_user("42", "ada@example.com")
    first = await app.sign_in("google")
    # The provider's address changed since: the link is by subject, not by email.
    providers.oidc.set_next_user("42", "ada.lovelace@example.com")
    second = await app.sign_in("google")

    assert second["id"] == first["id"]
    assert second["email"] == "ada@example.com"
    assert len(await app.rows("accounts")) == 1
    assert len(await app.rows("charpente_identities")) == 1
    assert [event for event, _, _ in await app.events()] == ["signup", "login", "login"]


async def test_a_password_account_with_the_same_email_is_linked_not_duplicated(
    make_app: MakeApp, db_target: Any, providers: Any
) -> None:
    app = await make_app(target=db_target)
    ada = await app.signup("ada@example.com")
    providers.oidc.set_next_user("42", "ADA@example.com")
    providers.github.set_next_user(
        7, "ada", [{"email": "ada@example.com", "primary": True, "verified": True}]
    )

    by_google = await app.sign_in("google")
    by_github = await app.sign_in("github")

    assert by_google["id"] == by_github["id"] == ada
    assert by_google["email_verified"] is True  # proven by the first provider linked
    assert len(await app.rows("accounts")) == 1
    linked = {(row["provider"], row["account"]) for row in await app.rows("charpente_identities")}
    assert linked == {("google", ada), ("github", ada)}
    unproven = "google; unproven email: password removed, 0 tokens ended"
    assert await app.events() == [
        ("signup", ada, None),
        ("account_reclaimed", ada, unproven),
        ("login", ada, "oauth"),
        ("identity_linked", ada, "github"),
        ("login", ada, "oauth"),
    ]
    # Nobody had proven the email of the password account: whoever set that password may not
    # be its owner (pre-hijacking), so the password no longer signs in.
    form = {"grant_type": "password", "username": "ada@example.com", "password": PASSWORD}
    answer = await app.browser.post(f"{APP}/v1/auth/token", data=form)
    assert answer.json()["error"] == "invalid_grant"


async def test_reclaiming_an_unproven_account_ends_its_access_tokens_in_every_process(
    make_app: MakeApp, db_target: Any, providers: Any
) -> None:
    # Two processes of one backend: two apps over the same database.
    here, there = await make_app(target=db_target), await make_app(target=db_target)
    squatter = await here.signup("ada@example.com")  # someone else took the owner's email
    form = {"grant_type": "password", "username": "ada@example.com", "password": PASSWORD}
    stolen = {}
    for app in (here, there):
        answer = await app.browser.post(f"{APP}/v1/auth/token", data=form)
        assert answer.status_code == 200, answer.text
        stolen[app.accounts] = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    for app in (here, there):
        for headers in stolen.values():
            assert (await app.browser.get(f"{APP}/v1/auth/me", headers=headers)).status_code == 200

    providers.oidc.set_next_user("42", "ada@example.com")  # the owner signs in with Google
    owner = await here.sign_in("google")
    assert owner["id"] == squatter

    await there.accounts.learn_ended_sessions()  # what its next reload does
    for app in (here, there):
        for headers in stolen.values():
            answer = await app.browser.get(f"{APP}/v1/auth/me", headers=headers)
            assert answer.status_code == 401, answer.text
            assert "session ended" in answer.headers["www-authenticate"]
    # The owner's own tokens, issued just after, work in both processes.
    tokens = await there.exchange(await there.code("google"))
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    for app in (here, there):
        assert (await app.browser.get(f"{APP}/v1/auth/me", headers=headers)).status_code == 200
    assert ("account_reclaimed", squatter) in [(e, a) for e, a, _ in await here.events()]


async def test_an_existing_account_signs_in_even_when_signup_is_closed(
    make_app: MakeApp, providers: Any
) -> None:
    app = await make_app(signup="closed")
    record = await app.accounts.create_account("ada@example.com", "admin", None)
    providers.oidc.set_next_user("42", "ada@example.com")

    account = await app.sign_in("google")

    assert account["id"] == record["id"]
    assert account["role"] == "admin"


# --- the login cookie ----------------------------------------------------------------------


async def test_the_login_cookie_is_httponly_lax_scoped_and_short_lived(app: App) -> None:
    start = await app.start("github")

    assert start.status_code == 302
    assert start.headers["cache-control"] == "no-store"
    morsel = set_cookie(start)
    assert morsel is not None
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == COOKIE_PATH
    assert morsel["max-age"] == "600"
    assert not morsel["secure"]  # plain http (development): a Secure cookie would be lost
    # Sealed: neither the state nor the PKCE verifier can be read from it.
    authorize = dict(parse_qsl(urlsplit(start.headers["location"]).query))
    assert authorize["state"] not in morsel.value
    assert authorize["code_challenge_method"] == "S256"


async def test_the_login_cookie_is_secure_over_https(app: App) -> None:
    start = await app.start("github", base=APP_TLS)

    assert start.status_code == 302
    morsel = set_cookie(start)
    assert morsel is not None
    assert morsel["secure"] is True
    assert morsel["httponly"] is True


async def test_the_callback_clears_the_login_cookie(app: App, providers: Any) -> None:
    answer = await app.login("google")

    assert "code" in back_at_app(answer)
    assert_cleared(answer)
    assert COOKIE not in app.browser.cookies


# --- requests the app refuses without redirecting -------------------------------------------


async def test_a_redirect_uri_off_the_list_is_refused_without_a_redirect(app: App) -> None:
    for uri in (
        "https://evil.example/done",
        f"{DONE}/more",
        f"{DONE}?next=x",
        "http://localhost:3000/done#x",
        "",
    ):
        answer = await app.start("google", redirect_uri=uri)
        not_redirected(answer)
        assert set_cookie(answer) is None
    missing = await app.browser.get(f"{APP}/v1/auth/oauth/google/start")
    not_redirected(missing)


async def test_an_unknown_provider_is_not_found(app: App) -> None:
    answer = await app.start("gitlab")
    not_redirected(answer, 404)
    callback = await app.browser.get(f"{APP}/v1/auth/oauth/gitlab/callback?code=x&state=y")
    not_redirected(callback, 404)


async def test_a_callback_without_the_login_cookie_is_refused(app: App) -> None:
    callback, _ = await app.until_callback("google")

    answer = await callback_with(app, callback, None)

    not_redirected(answer)
    assert "start the login again" in answer.json()["detail"]
    assert await app.rows("accounts") == []


async def test_a_login_cookie_from_another_provider_is_refused(app: App) -> None:
    callback, cookie = await app.until_callback("google")
    at_github = callback.replace("/oauth/google/", "/oauth/github/")

    not_redirected(await callback_with(app, at_github, cookie))
    assert await app.rows("accounts") == []


async def test_a_tampered_login_cookie_is_refused(app: App) -> None:
    callback, cookie = await app.until_callback("google")
    middle = len(cookie) // 2
    flipped = cookie[:middle] + ("A" if cookie[middle] != "A" else "B") + cookie[middle + 1 :]
    sealer = app.accounts.cookie_sealer()
    login = sealer.open(cookie, context=COOKIE_CONTEXT)
    other_purpose = sealer.seal(login, context=b"charpente.something.else")

    for bad in (flipped, cookie[:-4], other_purpose, "x", cookie + "x"):
        not_redirected(await callback_with(app, callback, bad))
    # The untouched cookie still works: only the tampering was refused.
    assert "code" in back_at_app(await callback_with(app, callback, cookie))


async def test_a_cookie_naming_a_redirect_uri_no_longer_listed_is_refused(app: App) -> None:
    callback, cookie = await app.until_callback("google")
    forged = cookie_with(app, cookie, redirect_uri="https://evil.example/done")

    not_redirected(await callback_with(app, callback, forged))


# --- logins that fail: back at the app with access_denied ------------------------------------


async def test_a_tampered_state_is_refused(app: App) -> None:
    callback, cookie = await app.until_callback("google")

    answer = await callback_with(app, with_param(callback, state="A" * 43), cookie)

    refused(answer, "state_mismatch")
    assert await app.rows("accounts") == []
    assert await app.events() == [("oauth_failed", None, "google: state_mismatch")]


async def test_a_replayed_callback_fails_the_second_time(app: App) -> None:
    callback, cookie = await app.until_callback("github")
    first = await callback_with(app, callback, cookie)
    assert "code" in back_at_app(first)

    # The same provider code, with the same (captured) cookie: the provider refuses it.
    again = await callback_with(app, callback, cookie)

    refused(again, "exchange_failed")
    assert len(await app.rows("accounts")) == 1


async def test_a_wrong_pkce_verifier_is_refused_by_the_provider(app: App) -> None:
    for provider in ("google", "github"):
        callback, cookie = await app.until_callback(provider)
        forged = cookie_with(app, cookie, code_verifier="v" * 64)

        refused(await callback_with(app, callback, forged), "exchange_failed")
    assert await app.rows("accounts") == []


async def test_a_login_that_took_too_long_is_refused(app: App) -> None:
    callback, cookie = await app.until_callback("google")
    created = LoginState.from_bytes(
        app.accounts.cookie_sealer().open(cookie, context=COOKIE_CONTEXT)
    ).created_at
    stale = cookie_with(app, cookie, created_at=created - 601)

    refused(await callback_with(app, callback, stale), "state_expired")


async def test_a_denial_at_the_provider_comes_back_as_access_denied(app: App) -> None:
    start = await app.start("google")
    state = dict(parse_qsl(urlsplit(start.headers["location"]).query))["state"]
    url = f"{APP}/v1/auth/oauth/google/callback?error=access_denied&state={state}"

    refused(await app.browser.get(url), "provider_error")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("bad_signature", "bad_id_token"),
        ("wrong_audience", "wrong_audience"),
        ("wrong_nonce", "wrong_nonce"),
        ("wrong_issuer", "wrong_issuer"),
        ("expired", "bad_id_token"),
        ("alg_none", "bad_id_token"),
    ],
)
async def test_a_bad_id_token_is_refused(app: App, providers: Any, fault: str, reason: str) -> None:
    providers.oidc.misbehave(id_token=fault)

    refused(await app.login("google"), reason)

    assert await app.rows("accounts") == []
    assert await app.rows("charpente_identities") == []
    assert await app.events() == [("oauth_failed", None, f"google: {reason}")]


async def test_an_unverified_email_is_refused(app: App, providers: Any) -> None:
    await app.signup("eve@example.com")
    providers.oidc.set_next_user("1", "eve@example.com", email_verified=False)
    refused(await app.login("google"), "email_unverified")
    unverified = [{"email": "eve@example.com", "primary": True, "verified": False}]
    providers.github.set_next_user(2, "eve", unverified)
    refused(await app.login("github"), "email_unverified")

    assert len(await app.rows("accounts")) == 1
    assert await app.rows("charpente_identities") == []


@pytest.mark.parametrize("signup", ["closed", "invite"])
async def test_no_account_is_made_when_signup_is_not_open(
    make_app: MakeApp, providers: Any, signup: str
) -> None:
    app = await make_app(signup=signup)
    providers.oidc.set_next_user("42", "ada@example.com")

    reason = "signup is not open: ask an admin for an account"
    refused(await app.login("google"), reason)

    assert await app.rows("accounts") == []
    assert await app.rows("charpente_identities") == []
    assert await app.events() == [("oauth_failed", None, f"google: {reason}")]


# --- the one-time code -------------------------------------------------------------------------


async def test_the_one_time_code_works_once(app: App) -> None:
    code = await app.code("google")

    assert (await app.exchange(code)).status_code == 200
    again = await app.exchange(code)

    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_the_one_time_code_expires_after_a_minute(app: App) -> None:
    code = await app.code("github")
    app.clock.advance(61)

    late = await app.exchange(code)

    assert late.status_code == 400
    assert late.json()["error"] == "invalid_grant"
    assert [event for event, _, _ in await app.events()] == ["signup"]


async def test_a_disabled_account_gets_no_tokens(app: App, providers: Any) -> None:
    providers.oidc.set_next_user("42", "ada@example.com")
    account = await app.sign_in("google")
    await app.accounts.service.update(ACCOUNTS, account["id"], {"disabled": True}, caller=SYSTEM)

    providers.oidc.set_next_user("42", "ada@example.com")
    back = back_at_app(await app.login("google"))

    assert back == {"error": "access_denied", "error_description": "this account is disabled"}


async def test_an_oauth_login_of_an_account_with_mfa_asks_for_the_code(
    make_app: MakeApp, providers: Any
) -> None:
    import pyotp

    app = await make_app()
    providers.oidc.set_next_user("42", "ada@example.com")
    account = await app.sign_in("google")
    ada = app.accounts.authenticate(f"Bearer {app.issued[-2]}")  # signed in just now
    assert ada.id == account["id"]
    secret = (await app.accounts.mfa.enroll(ada))["secret"]
    totp = pyotp.TOTP(secret)
    await app.accounts.mfa.confirm(ada, {"code": totp.at(app.clock.now(), counter_offset=-1)})

    providers.oidc.set_next_user("42", "ada@example.com")
    refused = await app.exchange(await app.code("google"))
    assert refused.status_code == 403
    assert refused.json()["error"] == "mfa_required"
    form = {"grant_type": "mfa", "mfa_token": refused.json()["mfa_token"], "code": totp.now()}
    signed = await app.browser.post(f"{APP}/v1/auth/token", data=form)
    assert signed.status_code == 200, signed.text
    app.issued += [signed.json()["access_token"], signed.json()["refresh_token"]]
    assert ("login", account["id"], "oauth+otp") in await app.events()
