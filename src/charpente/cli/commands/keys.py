"""`charpente keys …`: the keys that sign access tokens, and the keys that seal encrypted
fields. Never prints private material: kids, algorithms and dates only.

Signing keys rotate in the database (every server picks the new one up); the sealing keys
are CHARPENTE_SECRET_KEYS: `keys secret` makes one, `keys reseal` moves stored values to
the first (active) one, after which older keys can leave the setting.
"""

from __future__ import annotations

import datetime
from typing import Annotated

import typer

from charpente.cli.commands.accounts import run_on_accounts
from charpente.cli.commands.config import design_and_settings, on_database
from charpente.cli.commands.design import DesignOption
from charpente.cli.commands.output import fail, reports_errors, say
from charpente.runtime.auth import Accounts
from charpente.runtime.encryption import encrypted_fields
from charpente.runtime.secrets import Sealer, generate_key_text
from charpente.runtime.tokens import SigningKey
from charpente.sql.sealed import DEFAULT_BATCH, MAX_BATCH
from charpente.wiring import reseal_encrypted_values

__all__ = ["keys_app"]

keys_app = typer.Typer(
    name="keys",
    help="Rotate and list token signing keys; re-seal encrypted fields under a new key.",
    no_args_is_help=True,
)


@keys_app.command("rotate")
@reports_errors
def rotate(design: DesignOption = None) -> None:
    """Make a new signing key: published now, signing soon; today's keys retire later."""
    loaded, settings = design_and_settings(design)

    async def work(accounts: Accounts) -> tuple[SigningKey, list[SigningKey]]:
        fresh = await accounts.rotate_keys()
        others = [k for k in accounts.ring.published(accounts.clock.now()) if k.kid != fresh.kid]
        return fresh, others

    fresh, others = run_on_accounts(loaded, settings, work)
    say(f"new signing key {fresh.kid} ({fresh.alg}): in the JWKS now")
    say(f"  signs from {_when(fresh.not_before)} (once every server has loaded it)")
    if not others:
        say("  there was no key before it: no access token can be issued until then")
    for key in others:
        if key.retire_after is not None:
            say(f"  {key.kid} retires at {_when(key.retire_after)} (its last tokens expire)")


@keys_app.command("list")
@reports_errors
def list_keys(design: DesignOption = None) -> None:
    """Every signing key still published: kid, algorithm, signing from, retires at."""
    loaded, settings = design_and_settings(design)

    async def work(accounts: Accounts) -> tuple[list[SigningKey], str | None]:
        now = accounts.clock.now()
        keys = accounts.ring.published(now)
        signing = [k for k in keys if k.can_sign(now)]
        current = max(signing, key=lambda k: (k.not_before, k.created_at)) if signing else None
        return keys, None if current is None else current.kid

    keys, current = run_on_accounts(loaded, settings, work)
    if not keys:
        say("no signing key yet: the server makes the first one when it starts")
        return
    now = datetime.datetime.now(datetime.UTC)
    rows = [("kid", "alg", "signing from", "retires at", "state")]
    for key in sorted(keys, key=lambda k: k.not_before):
        retires = "-" if key.retire_after is None else _when(key.retire_after)
        rows.append((key.kid, key.alg, _when(key.not_before), retires, _state(key, current, now)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@keys_app.command("reseal")
@reports_errors
def reseal(
    batch: Annotated[
        int, typer.Option(min=1, max=MAX_BATCH, help="Rows per transaction.")
    ] = DEFAULT_BATCH,
    design: DesignOption = None,
) -> None:
    """Seal every encrypted value again under the active key (the first of
    CHARPENTE_SECRET_KEYS), in batches; values already under it are left alone."""
    loaded, settings = design_and_settings(design)
    if not encrypted_fields(loaded):
        say("the design encrypts no field: nothing to re-seal")
        return
    if settings.secret_keys is None:
        raise fail("CHARPENTE_SECRET_KEYS is not set: it holds the keys that seal the fields")
    active = Sealer.from_env_value(settings.secret_keys).active

    def progress(resource: str, count: int) -> None:
        if count:
            say(f"  {resource}: {count} re-sealed")

    done = on_database(
        settings, reseal_encrypted_values(settings, loaded, batch=batch, progress=progress)
    )
    say(f"re-sealed {done.resealed} of {done.checked} stored values under key {active}")


@keys_app.command("secret")
@reports_errors
def secret(
    kid: Annotated[str, typer.Argument(help="The new key's id (letters, digits, - and _).")],
) -> None:
    """Print a new random sealing key, `kid:base64`, to put first in CHARPENTE_SECRET_KEYS."""
    try:
        say(generate_key_text(kid))
    except ValueError as error:
        raise fail(str(error), code=2) from None


def _state(key: SigningKey, current: str | None, now: datetime.datetime) -> str:
    if key.kid == current:
        return "signing"
    if key.not_before > now:
        return "next"
    return "verifying only"


def _when(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
