"""Verified email addresses: the link signup sends, resending it, and changing an address.

With `auth.verify_email` on (`required` or `optional`), signup answers the same for a new
email and for one that has an account: the new account gets a verification link (24 h,
256 bits stored hashed, single use, only the newest works), the owner of a taken address
gets an email saying someone tried. With `required`, the password grant refuses an
account until its address is verified. Changing an address sends a confirmation link to
the new one and tells the old one; the change happens only when the link is opened.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from charpente.compile.plan import Update
from charpente.design.auth import ACCOUNTS
from charpente.design.limits import LimitRule
from charpente.errors import (
    Conflict,
    FieldError,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from charpente.runtime.caller import SYSTEM, Caller
from charpente.runtime.recovery import charge, email_of
from charpente.runtime.tokens import new_opaque_token, token_hash

if TYPE_CHECKING:
    from charpente.runtime.auth import Accounts

__all__ = ["CHANGE_TTL", "VERIFY_TTL", "Verification"]

VERIFY_TTL = datetime.timedelta(hours=24)
CHANGE_TTL = datetime.timedelta(hours=24)
RESEND_PER_IP = LimitRule(count=10, period=3600, per="ip", burst=5)
RESEND_PER_EMAIL = LimitRule(count=3, period=3600, per="route")
_MAX_TOKEN = 200
_BEARER = 'Bearer realm="api"'


class Verification:
    """Verification links: sending, resending, verifying; email changes."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    @property
    def on(self) -> bool:
        return self.accounts.design.auth.verify_email != "off"

    @property
    def required(self) -> bool:
        return self.accounts.design.auth.verify_email == "required"

    async def send_link(self, account: str, email: str) -> None:
        """A new verification link for the account's address (older ones stop working)."""
        accounts, now = self.accounts, self.accounts.clock.now()
        token = new_opaque_token()
        values = {"link": accounts.postman.link("verify-email", token), "expires": "24 hours"}
        async with accounts.service.database.transaction() as tx:
            await accounts.store.add_email_token(
                token_hash(token), account, "verify", email, now, now + VERIFY_TTL, tx
            )
            await accounts.postman.send("verify_email", email, values, tx)

    async def after_signup(self, account: str, email: str, ip: str | None) -> None:
        """What signup does once it answered: the log, and the verification link."""
        await self.accounts.store.log("signup", account, ip, None, self.accounts.clock.now())
        await self.send_link(account, email)

    async def tell_owner(self, email: str, ip: str | None) -> None:
        """Someone signed up with an address that has an account: tell its owner."""
        accounts = self.accounts
        found = await accounts.store.login(email)
        account = None if found is None else str(found[0]["id"])
        await accounts.store.log("signup_taken", account, ip, None, accounts.clock.now())
        await accounts.postman.send("email_taken", email)

    async def verify(self, body: object, *, ip: str | None = None) -> None:
        """`POST /v1/auth/email/verify {token}`: the address the link was sent to is proven."""
        accounts, token = self.accounts, _token(body)
        now = accounts.clock.now()
        async with accounts.service.database.transaction() as tx:
            taken = await accounts.store.take_email_token(token_hash(token), "verify", now, tx)
            record = None if taken is None else await tx.get(ACCOUNTS, taken[0], for_update=True)
            if taken is None or record is None or record.get("email") != taken[1]:
                raise _bad_link("verification")
            if not record.get("email_verified"):
                await tx.update(Update(ACCOUNTS, taken[0], {"email_verified": True}))
        await accounts.store.log("email_verified", taken[0], ip, None, now)

    async def resend(self, body: object, *, ip: str | None = None) -> None:
        """`POST /v1/auth/email/verify/resend {email}`: a new link, if the account exists
        and is not verified yet; the same answer, after the same work, either way."""
        accounts = self.accounts
        if not self.on:
            raise NotFound(detail="email verification is off in this design")
        email = email_of(body)
        await charge(accounts.limiter, f"resend:ip:{ip}", RESEND_PER_IP, "verification")
        await charge(accounts.limiter, f"resend:email:{email}", RESEND_PER_EMAIL, "verification")
        found = await accounts.store.login(email)
        record = None if found is None else found[0]

        async def later() -> None:
            if record is None or record.get("email_verified") or record.get("disabled"):
                return
            await self.send_link(str(record["id"]), email)
            when = accounts.clock.now()
            await accounts.store.log("verification_sent", str(record["id"]), ip, None, when)

        accounts.later(later(), "verification-mail")

    async def change(self, caller: Caller, body: object, *, ip: str | None = None) -> None:
        """`POST /v1/auth/me/email {email, password}`: a confirmation link to the new address,
        a notice to the old one; nothing changes until the link is opened."""
        accounts = self.accounts
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": _BEARER})
        if not accounts.postman.links:
            raise NotFound(detail="email changes are off: the design names no auth.app_url")
        new = email_of(body)
        fields = body if isinstance(body, dict) else {}
        await charge(accounts.limiter, f"email-change:{caller.id}", RESEND_PER_EMAIL, "email")
        account = (await accounts.service.get(ACCOUNTS, caller.id, caller=SYSTEM)).record
        old = str(account.get("email"))
        if new == old:
            error = FieldError("email", "unchanged", "is the account's address already")
            raise ValidationFailed(detail="nothing to change", errors=[error])
        await accounts.deletion.reauthenticate(caller, account, fields, "changing the email")
        now, token = accounts.clock.now(), new_opaque_token()
        postman = accounts.postman
        values = {"link": postman.link("confirm-email", token), "expires": "24 hours"}
        async with accounts.service.database.transaction() as tx:
            await accounts.store.add_email_token(
                token_hash(token), caller.id, "email", new, now, now + CHANGE_TTL, tx
            )
            await postman.send("change_email", new, values, tx)
            await postman.send("email_changing", old, {}, tx)
        await accounts.store.log("email_change_requested", caller.id, ip, None, now)

    async def confirm(self, body: object, *, ip: str | None = None) -> None:
        """`POST /v1/auth/email/confirm {token}`: the account moves to the new address, which
        is verified by the same stroke. 409 when another account has it meanwhile."""
        accounts, token = self.accounts, _token(body)
        now = accounts.clock.now()
        taken = await accounts.store.take_email_token(token_hash(token), "email", now)
        if taken is None:
            raise _bad_link("confirmation")
        account, new = taken
        try:
            await accounts.service.update(ACCOUNTS, account, {"email": new}, caller=SYSTEM)
        except Conflict:
            error = FieldError("email", "unique", "another account has this address now")
            raise Conflict(detail="the address is taken", errors=[error]) from None
        async with accounts.service.database.transaction() as tx:
            await tx.update(Update(ACCOUNTS, account, {"email_verified": True}))
            await accounts.store.end_email_tokens(account, "verify", now, tx)
            await accounts.store.end_email_tokens(account, "reset", now, tx)
        await accounts.store.log("email_changed", account, ip, None, now)


def _token(body: object) -> str:
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
        raise _bad_link("")
    return token


def _bad_link(kind: str) -> ValidationFailed:
    what = f"the {kind} link" if kind else "the link"
    error = FieldError(
        "token", "invalid", "is not valid: used, expired, or replaced by a newer link"
    )
    return ValidationFailed(detail=f"{what} is not valid: ask for a new one", errors=[error])
