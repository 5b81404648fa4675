"""`charpente accounts …` and `charpente auth log`: accounts and the authentication log,
straight on the database (no server needed; the database must be migrated).

Passwords never appear in arguments: they are typed (twice, hidden), read from stdin, or
generated and printed once. Invitation codes are printed once; only their hash is stored.
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import fail, reports_errors, say, warn
from charpente.compile.plan import Record
from charpente.design.auth import ACCOUNTS
from charpente.design.model import Design, Kind
from charpente.errors import ApiError, CharpenteError, NotFound
from charpente.runtime.auth import Accounts
from charpente.runtime.caller import SYSTEM
from charpente.settings import Settings
from charpente.wiring import open_accounts

__all__ = ["accounts_app", "auth_app", "generated_password", "run_on_accounts"]

T = TypeVar("T")

GENERATED_BYTES = 18  # 144 random bits, 24 characters of base64url
_TEXT_KINDS = frozenset({Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.URL, Kind.ENUM, Kind.UUID})
_MAX_PASSWORD = 1024

accounts_app = typer.Typer(
    name="accounts",
    help="Create accounts, change roles, disable them, invite people (no server needed).",
    no_args_is_help=True,
)
auth_app = typer.Typer(name="auth", help="The authentication log.", no_args_is_help=True)

EmailArgument = Annotated[str, typer.Argument(help="The account's email.", show_default=False)]


def run_on_accounts(
    design: Design, settings: Settings, work: Callable[[Accounts], Awaitable[T]]
) -> T:
    """Run `work` on the configured database's accounts; an API error becomes one line."""

    async def run() -> T:
        async with _accounts(settings, design) as accounts:
            return await work(accounts)

    return on_database(settings, run())


@asynccontextmanager
async def _accounts(settings: Settings, design: Design) -> AsyncIterator[Accounts]:
    try:
        async with open_accounts(settings, design) as accounts:
            yield accounts
    except ApiError as error:
        raise CharpenteError(_explained(error)) from None


@accounts_app.command("create")
@reports_errors
def create(
    email: EmailArgument,
    role: Annotated[
        str | None, typer.Option(help="The role (default: the design's first role).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    generate: Annotated[
        bool, typer.Option("--generate", help="Make a strong password and print it once.")
    ] = False,
    values: Annotated[
        list[str] | None,
        typer.Option("--set", help="A profile field: name=value (repeatable).", show_default=False),
    ] = None,
    design: DesignOption = None,
) -> None:
    """Create an account (any role, whatever the signup policy) with a password."""
    if password_stdin and generate:
        raise fail("choose one of --password-stdin and --generate", code=2)
    loaded, settings = design_and_settings(design)
    profile = _profile(loaded, values or [])
    role = role or loaded.auth.roles[0]
    password = _password(password_stdin=password_stdin, generate=generate)
    address = email.strip().lower()  # as signup stores it, and sign-in looks it up
    record = run_on_accounts(
        loaded, settings, lambda accounts: accounts.create_account(address, role, password, profile)
    )
    say(f"created account {record['id']} ({record['email']}, {record['role']})")
    if generate:
        say(f"password (shown once): {password}")


@accounts_app.command("role")
@reports_errors
def role(
    email: EmailArgument,
    new_role: Annotated[str, typer.Argument(metavar="ROLE", help="The new role.")],
    design: DesignOption = None,
) -> None:
    """Give an account another role; its refresh tokens end, so the role applies at once."""
    loaded, settings = design_and_settings(design)
    if new_role not in loaded.auth.roles:
        raise fail(f"unknown role {new_role!r}: the roles are {', '.join(loaded.auth.roles)}")
    record = run_on_accounts(loaded, settings, lambda accounts: accounts.set_role(email, new_role))
    say(f"{record['email']} is now {record['role']}")


@accounts_app.command("disable")
@reports_errors
def disable(email: EmailArgument, design: DesignOption = None) -> None:
    """Disable an account: it cannot sign in, and its refresh tokens end."""
    _set_disabled(email, True, design)
    say(f"{email.lower()} is disabled: it cannot sign in, its refresh tokens ended")


@accounts_app.command("enable")
@reports_errors
def enable(email: EmailArgument, design: DesignOption = None) -> None:
    """Enable a disabled account again."""
    _set_disabled(email, False, design)
    say(f"{email.lower()} is enabled")


@accounts_app.command("invite")
@reports_errors
def invite(
    email: Annotated[
        str | None, typer.Option(help="Only this email may use it (default: anyone).")
    ] = None,
    role: Annotated[
        str | None, typer.Option(help="The role it grants (default: the first role).")
    ] = None,
    design: DesignOption = None,
) -> None:
    """Make a one-time invitation code for signup; it is printed once."""
    loaded, settings = design_and_settings(design)
    if loaded.auth.signup != "invite":
        warn(f"signup is `{loaded.auth.signup}`: invitations only count when it is `invite`")
    code, expires = run_on_accounts(
        loaded, settings, lambda accounts: accounts.invite(email, role, by=SYSTEM)
    )
    say(f"invitation code (shown once): {code}")
    say(f"expires: {expires.isoformat(timespec='seconds')}")


@auth_app.command("log")
@reports_errors
def log(
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="How many entries, newest first.")
    ] = 50,
    design: DesignOption = None,
) -> None:
    """Show the authentication log: sign-ins, failures, revocations, role changes."""
    loaded, settings = design_and_settings(design)
    entries = run_on_accounts(loaded, settings, lambda accounts: accounts.store.log_entries(limit))
    if not entries:
        say("the authentication log is empty")
        return
    # One line per entry, newest first: easy to read, and to grep.
    for entry in entries:
        at = entry["at"]
        when = at.strftime("%Y-%m-%d %H:%M:%SZ") if isinstance(at, datetime) else str(at)
        cells = (entry["account"], entry["ip"], entry["detail"])
        say(f"{when}  {entry['event']:<16} " + "  ".join(_cell(c) for c in cells).rstrip())


def generated_password() -> str:
    """A strong random password (144 bits), for `--generate`."""
    return secrets.token_urlsafe(GENERATED_BYTES)


def _password(*, password_stdin: bool, generate: bool) -> str:
    if generate:
        return generated_password()
    if password_stdin or not sys.stdin.isatty():  # no terminal to ask on: stdin's first line
        text = sys.stdin.readline(_MAX_PASSWORD + 1).rstrip("\r\n")
        if not text:
            raise fail(
                "no password on stdin (and no terminal to ask for one): "
                "pipe it in (`--password-stdin < secret.txt`) or use --generate"
            )
        return text
    typed: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return typed


def _profile(design: Design, values: list[str]) -> dict[str, object]:
    """`--set name=value` pairs, typed by the accounts resource's fields (json for others)."""
    accounts = design.resources[ACCOUNTS]
    profile: dict[str, object] = {}
    for item in values:
        name, sep, text = item.partition("=")
        field = accounts.field(name.strip())
        if not sep or field is None:
            raise fail(f"--set {item!r}: write name=value with a field of {ACCOUNTS}", code=2)
        profile[field.name] = text if field.kind in _TEXT_KINDS else _json_value(item, text)
    return profile


def _json_value(item: str, text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise fail(f"--set {item!r}: the value is not a number, true, false or null") from None


def _set_disabled(email: str, disabled: bool, design_path: Path | None) -> None:
    loaded, settings = design_and_settings(design_path)

    async def work(accounts: Accounts) -> Record:
        found = await accounts.store.login(email.strip().lower())
        if found is None:
            raise NotFound(detail=f"no account with the email {email}")
        account = str(found[0]["id"])
        item = await accounts.service.update(
            ACCOUNTS, account, {"disabled": disabled}, caller=SYSTEM
        )
        if not disabled:
            await accounts.store.log("account_enabled", account, None, None, accounts.clock.now())
        return item.record

    run_on_accounts(loaded, settings, work)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _explained(error: ApiError) -> str:
    """An API error as one line: its detail, then each field's problem."""
    fields = "; ".join(f"{e.field} {e.message}" for e in error.errors)
    return f"{error.detail or error.title}: {fields}" if fields else error.detail or error.title
