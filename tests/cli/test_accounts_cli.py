"""`charpente accounts`, `keys` and `auth log`, in process on a temporary SQLite file; what
they do is then checked through the HTTP app that `charpente serve` runs."""

from __future__ import annotations

import base64
import contextlib
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest
from typer.testing import CliRunner

from charpente.cli.main import app
from charpente.settings import settings_from_process
from charpente.wiring import build_application

PASSWORD = "correct horse battery staple"
CLUB = """\
charpente: 1
name: club
api_version: 1
auth:
  signup: open
  roles: [member, moderator, admin]
  access: {read: true}
  profile:
    handle: {type: string, required: true, unique: true, pattern: "^[a-z0-9_]{3,30}$"}
    bio: {type: text, max_length: 500}
resources:
  notes:
    access: {read: true, create: auth.id != null}
    fields:
      body: {type: text}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the club design and its own SQLite file."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_SCHEMA", "SECRET_KEYS", "ISSUER", "REDIS_URL"):
        monkeypatch.delenv(f"CHARPENTE_{name}", raising=False)
    (tmp_path / "design.yaml").write_text(CLUB, encoding="utf-8")
    monkeypatch.setenv("CHARPENTE_DESIGN", "design.yaml")
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    return tmp_path


@pytest.fixture
def migrated(runner: CliRunner, workdir: Path) -> Path:
    result = runner.invoke(app, ["migrate", "apply", "--yes"])
    assert result.exit_code == 0, result.output
    return workdir


class Client:
    """A blocking client of the app `charpente serve` runs, started through its lifespan
    (so its signing keys are loaded) in a thread of its own."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, client: httpx.AsyncClient):
        self._portal, self._client = portal, client

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self._portal.call(functools.partial(self._client.get, url, **options))

    def post(self, url: str, **options: Any) -> httpx.Response:
        return self._portal.call(functools.partial(self._client.post, url, **options))


@contextlib.contextmanager
def serving() -> Iterator[Client]:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(_started()) as client,
    ):
        yield Client(portal, client)


@contextlib.asynccontextmanager
async def _started() -> AsyncIterator[httpx.AsyncClient]:
    app: Any = build_application(settings_from_process())
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(app, scope, app_inbox.receive, app_outbox.send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client
        finally:
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"


@pytest.fixture
def server(migrated: Path) -> Iterator[Client]:
    """The app `charpente serve` would run on this database."""
    with serving() as client:
        yield client


def run(runner: CliRunner, *args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(runner: CliRunner, *args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines(keepends=True)
    if lines and lines[0].startswith("design: "):  # every command names its design first
        lines = lines[1:]
    return "".join(lines)


def sign_in(client: Client, email: str, password: str = PASSWORD) -> dict[str, str]:
    form = {"grant_type": "password", "username": email, "password": password}
    token = client.post("/v1/auth/token", data=form)
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def refused(client: Client, email: str, password: str = PASSWORD) -> bool:
    form = {"grant_type": "password", "username": email, "password": password}
    token = client.post("/v1/auth/token", data=form)
    return token.status_code == 400 and token.json()["error"] == "invalid_grant"


# --- accounts ------------------------------------------------------------------------------


def test_a_created_admin_signs_in_through_the_api(runner: CliRunner, server: Client) -> None:
    out = run(
        runner,
        *("accounts", "create", "Ada@Example.com", "--role", "admin"),
        *("--password-stdin", "--set", "handle=ada", "--set", "bio=first"),
        input=PASSWORD + "\n",
    )
    assert out.startswith("created account ")
    assert "(ada@example.com, admin)" in out
    assert PASSWORD not in out

    me = server.get("/v1/auth/me", headers=sign_in(server, "ada@example.com"))
    assert me.status_code == 200
    assert (me.json()["role"], me.json()["handle"], me.json()["bio"]) == ("admin", "ada", "first")


def test_the_password_is_asked_twice_by_default(runner: CliRunner, server: Client) -> None:
    out = run(
        runner,
        *("accounts", "create", "bob@example.com", "--set", "handle=bob"),
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert "(bob@example.com, member)" in out  # the design's first role
    assert PASSWORD not in out
    sign_in(server, "bob@example.com")


def test_a_generated_password_is_printed_once_and_works(runner: CliRunner, server: Client) -> None:
    out = run(runner, "accounts", "create", "cy@example.com", "--generate", "--set", "handle=cyd")
    [line] = [line for line in out.splitlines() if line.startswith("password (shown once): ")]
    password = line.removeprefix("password (shown once): ")
    assert len(password) >= 24
    sign_in(server, "cy@example.com", password)


def test_create_explains_what_is_wrong_in_one_line(runner: CliRunner, migrated: Path) -> None:
    missing = fails(runner, "accounts", "create", "d@example.com", "--generate")
    assert missing.strip() == "error: 1 field is invalid: handle is required"
    weak = fails(
        runner,
        *("accounts", "create", "d@example.com", "--password-stdin", "--set", "handle=dee"),
        input="short\n",
    )
    assert "password must have at least 8 characters" in weak
    role = fails(runner, "accounts", "create", "d@example.com", "--role", "king", "--generate")
    assert "unknown role 'king'" in role
    both = fails(runner, "accounts", "create", "d@example.com", "--generate", "--password-stdin")
    assert "choose one of --password-stdin and --generate" in both
    unknown = fails(runner, "accounts", "create", "d@example.com", "--generate", "--set", "x=1")
    assert "write name=value with a field of accounts" in unknown


def test_commands_refuse_a_database_that_is_not_migrated(runner: CliRunner, workdir: Path) -> None:
    error = fails(runner, "accounts", "create", "ada@example.com", "--generate")
    assert error.strip() == (
        "error: the database is behind the design: "
        "run `charpente migrate apply` or `charpente serve --migrate`"
    )
    assert "the database is behind" in fails(runner, "keys", "list")


def test_role_disable_and_enable_take_effect_at_sign_in(runner: CliRunner, server: Client) -> None:
    run(
        runner,
        *("accounts", "create", "ada@example.com", "--password-stdin", "--set", "handle=ada"),
        input=PASSWORD,
    )
    assert run(runner, "accounts", "role", "ada@example.com", "moderator").strip() == (
        "ada@example.com is now moderator"
    )
    me = server.get("/v1/auth/me", headers=sign_in(server, "ada@example.com"))
    assert me.json()["role"] == "moderator"

    run(runner, "accounts", "disable", "ada@example.com")
    assert refused(server, "ada@example.com")
    run(runner, "accounts", "enable", "ada@example.com")
    sign_in(server, "ada@example.com")

    assert "no account with the email nobody@example.com" in fails(
        runner, "accounts", "disable", "nobody@example.com"
    )
    assert "unknown role 'king'" in fails(runner, "accounts", "role", "ada@example.com", "king")


def test_an_invitation_code_is_printed_once_and_lets_someone_sign_up(
    runner: CliRunner, workdir: Path
) -> None:
    (workdir / "design.yaml").write_text(
        CLUB.replace("signup: open", "signup: invite"), encoding="utf-8"
    )
    run(runner, "migrate", "apply", "--yes")
    out = run(runner, "accounts", "invite", "--email", "eve@example.com", "--role", "moderator")
    code = out.splitlines()[0].removeprefix("invitation code (shown once): ")
    assert out.splitlines()[1].startswith("expires: ")

    with serving() as client:
        body = {"email": "eve@example.com", "password": PASSWORD, "handle": "eve"}
        assert client.post("/v1/auth/signup", json=body).status_code == 422  # no invitation
        created = client.post("/v1/auth/signup", json={**body, "invite": code})
        assert created.status_code == 201, created.text
        assert created.json()["role"] == "moderator"
        again = client.post(
            "/v1/auth/signup",
            json={**body, "email": "e2@example.com", "handle": "eve2", "invite": code},
        )
        assert again.status_code == 422  # used once


def test_invite_warns_when_signup_does_not_take_invitations(
    runner: CliRunner, migrated: Path
) -> None:
    result = runner.invoke(app, ["accounts", "invite"])
    assert result.exit_code == 0
    assert "signup is `open`: invitations only count when it is `invite`" in result.stderr


# --- keys -------------------------------------------------------------------------------------


def test_a_rotated_key_set_still_verifies_old_tokens_and_publishes_both_keys(
    runner: CliRunner, server: Client
) -> None:
    run(
        runner,
        *("accounts", "create", "ada@example.com", "--password-stdin", "--set", "handle=ada"),
        input=PASSWORD,
    )
    old_token = sign_in(server, "ada@example.com")
    [old] = server.get("/.well-known/jwks.json").json()["keys"]

    out = run(runner, "keys", "rotate")
    assert out.startswith("new signing key ")
    assert f"{old['kid']} retires at " in out

    with serving() as restarted:
        kids = {key["kid"] for key in restarted.get("/.well-known/jwks.json").json()["keys"]}
        assert len(kids) == 2
        assert old["kid"] in kids
        assert restarted.get("/v1/auth/me", headers=old_token).status_code == 200
        sign_in(restarted, "ada@example.com")  # the old key signs until the new one may

    listed = run(runner, "keys", "list")
    for kid in kids:
        assert kid[:20] in listed
    assert "signing" in listed
    assert "next" in listed
    assert '"d"' not in listed


def test_the_auth_log_lists_sign_ins_and_failures_newest_first(
    runner: CliRunner, server: Client
) -> None:
    run(
        runner,
        *("accounts", "create", "ada@example.com", "--password-stdin", "--set", "handle=ada"),
        input=PASSWORD,
    )
    sign_in(server, "ada@example.com")
    assert refused(server, "ada@example.com", "wrong password, surely")
    lines = run(runner, "auth", "log", "--limit", "2").splitlines()
    assert [line.split()[2] for line in lines] == ["login_failed", "login"]
    assert "203.0.113.9" in lines[0]  # the client's address
    assert "wrong password" not in "\n".join(lines)


def test_reseal_moves_encrypted_values_to_the_active_key(
    runner: CliRunner, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = CLUB.replace("max_length: 500}", "max_length: 500, encrypted: true}")
    assert sealed != CLUB
    (workdir / "design.yaml").write_text(sealed, encoding="utf-8")
    old = "k1:" + base64.b64encode(bytes(32)).decode()
    monkeypatch.setenv("CHARPENTE_SECRET_KEYS", old)
    run(runner, "migrate", "apply", "--yes")
    run(
        runner,
        *("accounts", "create", "ada@example.com", "--generate"),
        *("--set", "handle=ada", "--set", "bio=born 1815"),
    )
    new = run(runner, "keys", "secret", "k2").strip()
    assert new.startswith("k2:")
    monkeypatch.setenv("CHARPENTE_SECRET_KEYS", f"{new},{old}")
    out = run(runner, "keys", "reseal", "--batch", "10")
    assert out.splitlines()[-1] == "re-sealed 1 of 1 stored values under key k2"
    again = run(runner, "keys", "reseal")
    assert again.strip() == "re-sealed 0 of 1 stored values under key k2"

    monkeypatch.setenv("CHARPENTE_SECRET_KEYS", new)  # the old key is gone
    out = run(runner, "accounts", "create", "bo@example.com", "--generate", "--set", "handle=boz")
    password = out.splitlines()[-1].removeprefix("password (shown once): ")
    with serving() as client:
        headers = sign_in(client, "bo@example.com", password)
        found = client.get("/v1/accounts", params={"filter": 'handle == "ada"'}, headers=headers)
        assert found.json()["data"][0]["bio"] == "born 1815"
