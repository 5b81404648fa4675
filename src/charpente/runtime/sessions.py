"""Sessions: the sign-ins of an account (one per refresh-token family), to see and to end.

`GET /v1/auth/sessions` lists the caller's live sign-ins — when each began and was last
used, from which address and user agent, how it signed in, and which one is the caller's
own; `DELETE /v1/auth/sessions/{id}` ends one, `DELETE /v1/auth/sessions` all but the
caller's. Ending a sign-in revokes its refresh tokens at once and refuses its access
tokens (they carry its id as `sid`), here at once and in every other process at its next
reload (the log's `session_ended`). Admins do the same for any account under
`/v1/auth/accounts/{id}/sessions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from charpente.design.model import ADMIN_ROLE
from charpente.errors import Forbidden, NotFound, Unauthorized
from charpente.runtime.caller import Caller

if TYPE_CHECKING:
    from charpente.runtime.auth import Accounts

__all__ = ["Sessions"]

_BEARER = 'Bearer realm="api"'
_MAX_ID = 64


class Sessions:
    """The sign-ins of the caller's account, or (for admins) of any account."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    async def list(self, caller: Caller, account: str | None = None) -> list[dict[str, Any]]:
        owner = _owner(caller, account)
        rows = await self.accounts.store.sessions(owner, self.accounts.clock.now())
        return [
            {
                "id": row["family"],
                "created_at": _iso(row["created_at"]),
                "last_used_at": _iso(row["last_used_at"]),
                "ip": row["ip"],
                "user_agent": row["user_agent"],
                "method": row["method"],
                "current": caller.session is not None and row["family"] == caller.session,
            }
            for row in rows
        ]

    async def end(
        self, caller: Caller, session: str, account: str | None = None, *, ip: str | None = None
    ) -> None:
        """End one sign-in; 404 when the account has no such live one."""
        owner = _owner(caller, account)
        if len(session) > _MAX_ID or not await self._end(owner, session, caller, ip):
            raise NotFound(detail="no such session (it may have ended already)")

    async def end_others(
        self, caller: Caller, account: str | None = None, *, ip: str | None = None
    ) -> int:
        """End every sign-in of the account but the caller's own; how many ended."""
        owner = _owner(caller, account)
        ended = 0
        for row in await self.accounts.store.sessions(owner, self.accounts.clock.now()):
            family = str(row["family"])
            if family != caller.session and await self._end(owner, family, caller, ip):
                ended += 1
        return ended

    async def _end(self, owner: str, family: str, caller: Caller, ip: str | None) -> bool:
        accounts, now = self.accounts, self.accounts.clock.now()
        if not await accounts.store.revoke_family(owner, family, now):
            return False
        accounts.end_family(family, now)
        await accounts.store.log("session_ended", owner, ip, family, now)
        return True


def _owner(caller: Caller, account: str | None) -> str:
    if caller.id is None:
        raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": _BEARER})
    if account is None or account == caller.id:
        return caller.id
    if caller.role != ADMIN_ROLE:
        raise Forbidden(detail="only admins see and end other accounts' sessions")
    return account


def _iso(value: object) -> object:
    isoformat = getattr(value, "isoformat", None)
    return value if isoformat is None else str(isoformat()).replace("+00:00", "Z")
