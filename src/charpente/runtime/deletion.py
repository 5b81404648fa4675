"""Deleting an account: by its owner (`DELETE /v1/auth/me`, with the password or a sign-in
of the last ten minutes) or by an admin (`DELETE /v1/auth/accounts/{id}`).

The account goes through the Service like any record, so the design's references decide
what happens to the records that point at it (`on_delete`: `cascade` removes them,
`set_null` keeps them without an author, `restrict` refuses the deletion with a 409 until
they are gone). The engine's own rows of the account (password, tokens, sessions,
identities, TOTP secret, recovery codes, one-time links) go with it. Every access token
of the account ends at once here and in every process (`account_deleted` is a
session-ending event). The history keeps its events — what happened and when — but the
values of the account's own record in them become `[redacted]`, except `role`,
`disabled`, `email_verified` and the engine's bookkeeping; the authentication log keeps
its entries (ids, addresses, times: no email, no profile).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING

from charpente.design.auth import ACCOUNTS
from charpente.design.model import ADMIN_ROLE
from charpente.errors import FieldError, Forbidden, Unauthorized, ValidationFailed
from charpente.runtime.caller import SYSTEM, Caller

if TYPE_CHECKING:
    from charpente.runtime.auth import Accounts

__all__ = ["KEPT_IN_HISTORY", "RECENT_SIGN_IN", "Deletion"]

RECENT_SIGN_IN = datetime.timedelta(minutes=10)
KEPT_IN_HISTORY = frozenset({"id", "role", "disabled", "email_verified"})
KEPT_IN_HISTORY |= {"created_at", "updated_at", "version"}
_BEARER = 'Bearer realm="api"'


class Deletion:
    """Account deletion, by the owner or by an admin."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    async def delete_own(self, caller: Caller, body: object, *, ip: str | None = None) -> None:
        """The caller deletes their account: with `{"password": ...}` when it has one, or
        within ten minutes of signing in."""
        accounts = self.accounts
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": _BEARER})
        record = (await accounts.service.get(ACCOUNTS, caller.id, caller=SYSTEM)).record
        await self.reauthenticate(caller, record, body, "deleting an account")
        await self._delete(caller.id, "by its owner", ip)

    async def reauthenticate(
        self, caller: Caller, record: Mapping[str, object], body: object, what: str
    ) -> None:
        """The caller proves again it is the account's owner: `{"password": ...}`, or a
        sign-in of the last ten minutes. 422 on `password` otherwise."""
        accounts = self.accounts
        password = body.get("password") if isinstance(body, dict) else None
        if password is not None:
            found = await accounts.store.login(str(record["email"]))
            hashed = None if found is None else found[1]
            if (
                not isinstance(password, str)
                or hashed is None
                or not await accounts.hasher.verify(hashed, password)
            ):
                error = FieldError("password", "invalid", "is not the account's password")
                raise ValidationFailed(detail="the password is wrong", errors=[error])
        elif not await self._recent(caller):
            error = FieldError("password", "required", "is required (or sign in again first)")
            raise ValidationFailed(
                detail=f"{what} needs the account's password or a sign-in of the last ten minutes",
                errors=[error],
            )

    async def delete_by_admin(self, caller: Caller, account: str, *, ip: str | None = None) -> None:
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": _BEARER})
        if caller.role != ADMIN_ROLE:
            raise Forbidden(detail="only admins delete other accounts")
        await self.accounts.service.get(ACCOUNTS, account, caller=SYSTEM)  # 404 if unknown
        await self._delete(account, f"by admin {caller.id}", ip)

    async def _recent(self, caller: Caller) -> bool:
        if caller.session is None:
            return False
        now = self.accounts.clock.now()
        for row in await self.accounts.store.sessions(str(caller.id), now):
            created = row["created_at"]
            if row["family"] == caller.session and isinstance(created, datetime.datetime):
                return now - created <= RECENT_SIGN_IN
        return False

    async def _delete(self, account: str, who: str, ip: str | None) -> None:
        accounts = self.accounts
        await accounts.service.delete(ACCOUNTS, account, caller=SYSTEM)  # on_delete applies
        now = accounts.clock.now()
        accounts.end_access_tokens(account, now)
        redacted = await accounts.store.redact_history(account, KEPT_IN_HISTORY, now)
        detail = f"{who}; {redacted} history events redacted"
        await accounts.store.log("account_deleted", account, ip, detail, now)
