"""Password recovery and the signed-in password change.

`forgot` answers the same way, after the same work, whether or not an account has the
email: it validates, charges the rate limits (per client address and per email), looks the
email up, and answers; issuing the link and queueing the email happen after the answer
(`Accounts.later`). The link carries 256 random bits, is stored as a SHA-256 hash, works
once, for 30 minutes, and only while it is the account's newest one and the account still
has that address. `reset` sets the new password (under the password policy), ends every
refresh-token family and every access token of the account (in every process: the log's
`password_reset` is a session-ending event), records it, and tells the owner by email.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from charpente.compile.plan import Update
from charpente.design.auth import ACCOUNTS
from charpente.design.limits import LimitRule
from charpente.errors import FieldError, NotFound, TooManyRequests, Unauthorized, ValidationFailed
from charpente.runtime.caller import Caller
from charpente.runtime.ratelimit import Limiter
from charpente.runtime.tokens import new_opaque_token, token_hash

if TYPE_CHECKING:
    from charpente.runtime.auth import Accounts

__all__ = ["FORGOT_PER_EMAIL", "FORGOT_PER_IP", "RESET_TTL", "Recovery", "charge", "email_of"]

RESET_TTL = datetime.timedelta(minutes=30)
FORGOT_PER_IP = LimitRule(count=10, period=3600, per="ip", burst=5)
FORGOT_PER_EMAIL = LimitRule(count=3, period=3600, per="route")
_MAX_EMAIL = 254
_MAX_TOKEN = 200
_BEARER = 'Bearer realm="api"'


class Recovery:
    """`/v1/auth/password/forgot`, `/v1/auth/password/reset` and `PATCH /v1/auth/me/password`."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    @property
    def limiter(self) -> Limiter:
        return self.accounts.limiter

    async def forgot(self, body: object, *, ip: str | None = None) -> None:
        """Queue a reset link for the account with this email, if there is one."""
        accounts = self.accounts
        if not accounts.postman.links:
            raise NotFound(detail="password reset is off: the design names no auth.app_url")
        email = email_of(body)
        await charge(self.limiter, f"forgot:ip:{ip}", FORGOT_PER_IP, "password reset")
        await charge(self.limiter, f"forgot:email:{email}", FORGOT_PER_EMAIL, "password reset")
        found = await accounts.store.login(email)
        account = None if found is None else found[0]
        accounts.later(self._send_reset(account, email, ip), "password-reset-mail")

    async def _send_reset(
        self, account: Mapping[str, Any] | None, email: str, ip: str | None
    ) -> None:
        accounts, now = self.accounts, self.accounts.clock.now()
        if account is None or account.get("disabled"):
            await accounts.store.log("reset_requested", None, ip, "no active account", now)
            return
        account_id = str(account["id"])
        token = new_opaque_token()
        postman = accounts.postman
        values = {"link": postman.link("reset-password", token), "expires": "30 minutes"}
        async with accounts.service.database.transaction() as tx:
            await accounts.store.add_email_token(
                token_hash(token), account_id, "reset", email, now, now + RESET_TTL, tx
            )
            await postman.send("reset_password", email, values, tx)
        await accounts.store.log("reset_requested", account_id, ip, None, now)

    async def reset(self, body: object, *, ip: str | None = None) -> None:
        """Set a new password with a reset link's token; every session of the account ends."""
        accounts = self.accounts
        fields = body if isinstance(body, dict) else {}
        token, password = fields.get("token"), fields.get("password")
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
            raise _bad_link()
        problems = accounts.password_problems(password, None)
        if problems:
            raise ValidationFailed(detail="the new password is not acceptable", errors=problems)
        assert isinstance(password, str)
        hashed = await accounts.hasher.hash(password)  # before the transaction: it is slow
        now = accounts.clock.now()
        async with accounts.service.database.transaction() as tx:
            taken = await accounts.store.take_email_token(token_hash(token), "reset", now, tx)
            record = None if taken is None else await tx.get(ACCOUNTS, taken[0], for_update=True)
            if taken is None or record is None or record.get("email") != taken[1]:
                raise _bad_link()
            account, email = taken
            if record.get("disabled"):
                raise _bad_link()
            problems = accounts.password_problems(password, email)
            if problems:
                raise ValidationFailed(detail="the new password is not acceptable", errors=problems)
            await accounts.store.set_password(account, hashed, now, tx)
            await accounts.store.end_email_tokens(account, "reset", now, tx)
            if not record.get("email_verified"):  # the link proved the address
                await tx.update(Update(ACCOUNTS, account, {"email_verified": True}))
            await accounts.postman.send("password_changed", email, {}, tx)
        accounts.end_access_tokens(account, now)
        ended = await accounts.store.revoke_account(account, now)
        await accounts.store.log(
            "password_reset", account, ip, f"{ended} refresh tokens ended", now
        )

    async def change(
        self, caller: Caller, body: object, *, ip: str | None = None
    ) -> dict[str, object]:
        """`PATCH /v1/auth/me/password {current, new}`: the caller's password replaced; the
        account's other sign-ins end, and the caller's gets a new access token (the
        old ones end with the others)."""
        accounts = self.accounts
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": _BEARER})
        fields = body if isinstance(body, dict) else {}
        unknown = sorted(set(fields) - {"current", "new"})
        if not isinstance(body, dict) or unknown:
            detail = 'send {"current": ..., "new": ...}'
            raise ValidationFailed(detail=detail, errors=[
                FieldError(name, "unknown", "is not a field of this request") for name in unknown
            ])  # fmt: skip
        now = await accounts.replace_password(
            caller, fields.get("current"), fields.get("new"), keep=caller.session, ip=ip,
            current_field="current", new_field="new",
        )  # fmt: skip
        account = await accounts.service.get(ACCOUNTS, caller.id, caller=caller)
        ttl = accounts.design.auth.access_token_ttl
        access = accounts.access_token(account.record, caller.session, after=now)
        return {"access_token": access, "token_type": "Bearer", "expires_in": ttl}


async def charge(limiter: Limiter, key: str, rule: LimitRule, what: str) -> None:
    """Charge one request to `key`'s bucket; 429 with Retry-After when it is empty."""
    decision = await limiter.hit(key, rule)
    if not decision.allowed:
        wait = str(max(1, math.ceil(decision.retry_after)))
        raise TooManyRequests(
            detail=f"too many {what} requests: try again later", headers={"Retry-After": wait}
        )


def email_of(body: object) -> str:
    """The `email` of a JSON body, lowercased; 422 unless it looks like an address."""
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or "@" not in email or len(email.strip()) > _MAX_EMAIL:
        error = FieldError("email", "invalid", "is required: an email address")
        raise ValidationFailed(detail="the email is not valid", errors=[error])
    return email.strip().lower()


def _bad_link() -> ValidationFailed:
    error = FieldError(
        "token", "invalid", "is not valid: used, expired, or replaced by a newer link"
    )
    return ValidationFailed(detail="the reset link is not valid: ask for a new one", errors=[error])
