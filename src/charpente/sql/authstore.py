"""The AuthStore port over the engine's account tables (see sql.schema.auth_tables).

Every statement is built once. Refresh-token rotation reads the token's row with FOR
UPDATE (PostgreSQL) or under SQLite's single writer, so two requests presenting the same
token cannot both rotate it: the second sees it used and revokes the family.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa

from charpente.compile.plan import Record
from charpente.design.auth import ACCOUNTS
from charpente.errors import Conflict
from charpente.runtime.events import REDACTED
from charpente.runtime.ids import new_id
from charpente.runtime.ports import Refreshed, Transaction
from charpente.sql.database import SqlDatabase, SqlTransaction
from charpente.sql.executor import Executor
from charpente.sql.integrity import INTEGRITY_ERRORS
from charpente.sql.schema import EVENTS_TABLE

__all__ = ["SESSION_ENDING", "SqlAuthStore"]

SESSION_ENDING = (
    *("account_disabled", "role_changed", "password_changed", "account_reclaimed"),
    *("password_reset", "account_deleted"),
)
"""Log events after which the account's earlier access tokens stop working."""


def _p(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


class SqlAuthStore:
    """The AuthStore port on a SqlDatabase's connections."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        t = database.metadata_tables
        accounts, passwords = t[ACCOUNTS], t["charpente_passwords"]
        tokens, codes = t["charpente_refresh_tokens"], t["charpente_login_codes"]
        invites, identities = t["charpente_invites"], t["charpente_identities"]
        keys, log = t["charpente_signing_keys"], t["charpente_auth_log"]
        links, sessions = t["charpente_email_tokens"], t["charpente_sessions"]
        self._live = sa.exists().where(
            tokens.c.family == sessions.c.family,
            tokens.c.revoked_at.is_(None),
            tokens.c.used_at.is_(None),
            tokens.c.expires_at > _p("now"),
        )
        link_row = sa.select(links).where(links.c.hash == _p("hash"))
        self._t = t
        lock = database.locks
        token_row = sa.select(tokens).where(tokens.c.hash == _p("hash"))
        code_row = sa.select(codes).where(codes.c.hash == _p("hash"))
        invite_row = sa.select(invites).where(invites.c.hash == _p("hash"))
        self._s = {
            "login": sa.select(accounts, passwords.c.hash.label("_password"))
            .select_from(accounts.outerjoin(passwords, passwords.c.account == accounts.c.id))
            .where(accounts.c.email == _p("email")),
            "password_del": sa.delete(passwords).where(passwords.c.account == _p("account")),
            "password_add": sa.insert(passwords),
            "token_add": sa.insert(tokens),
            "token_row": token_row.with_for_update() if lock else token_row,
            "token_used": sa.update(tokens)
            .where(tokens.c.hash == _p("_hash"))
            .values(used_at=_p("_now")),
            "family_revoke": sa.update(tokens)
            .where(tokens.c.family == _p("_family"), tokens.c.revoked_at.is_(None))
            .values(revoked_at=_p("_now")),
            "account_revoke": sa.update(tokens)
            .where(tokens.c.account == _p("_account"), tokens.c.revoked_at.is_(None))
            .values(revoked_at=_p("_now")),
            "code_add": sa.insert(codes),
            "code_row": code_row.with_for_update() if lock else code_row,
            "code_used": sa.update(codes)
            .where(codes.c.hash == _p("_hash"))
            .values(used_at=_p("_now")),
            "invite_add": sa.insert(invites),
            "invite_row": invite_row.with_for_update() if lock else invite_row,
            "invite_used": sa.update(invites)
            .where(invites.c.hash == _p("_hash"))
            .values(used_at=_p("_now")),
            "identity": sa.select(identities.c.account).where(
                identities.c.provider == _p("provider"), identities.c.subject == _p("subject")
            ),
            "link": sa.insert(identities),
            "session_add": sa.insert(sessions),
            "session_touch": sa.update(sessions)
            .where(sessions.c.family == _p("_family"))
            .values(last_used_at=_p("_now"), ip=_p("_ip")),
            "sessions": sa.select(sessions)
            .where(sessions.c.account == _p("account"), self._live)
            .order_by(sessions.c.created_at.desc(), sessions.c.family.desc())
            .limit(100),
            "session_live": sa.select(sessions.c.family).where(
                sessions.c.account == _p("account"),
                sessions.c.family == _p("family"),
                self._live,
            ),
            "families_ended": sa.select(log.c.detail, log.c.at).where(
                log.c.at >= _p("since"), log.c.event == "session_ended"
            ),
            "link_add": sa.insert(links),
            "link_row": link_row.with_for_update() if lock else link_row,
            "link_used": sa.update(links)
            .where(links.c.hash == _p("_hash"), links.c.used_at.is_(None))
            .values(used_at=_p("_now")),
            "links_end": sa.update(links)
            .where(
                links.c.account == _p("_account"),
                links.c.purpose == _p("_purpose"),
                links.c.used_at.is_(None),
            )
            .values(used_at=_p("_now")),
            "keys": sa.select(keys.c.record).order_by(keys.c.created_at, keys.c.kid),
            "key_del": sa.delete(keys).where(keys.c.kid == _p("kid")),
            "key_add": sa.insert(keys),
            "log": sa.insert(log),
            "ended": sa.select(log.c.account, log.c.at).where(
                log.c.at >= _p("since"), log.c.event.in_(SESSION_ENDING), log.c.account.is_not(None)
            ),
            "log_entries": sa.select(log)
            .order_by(log.c.at.desc(), log.c.id.desc())
            .limit(_p("limit")),
        }
        for stmt in self._s.values():
            database.keep(stmt)

    # --- passwords -----------------------------------------------------------------------

    async def login(self, email: str) -> tuple[Record, str | None] | None:
        async with self._db.reader() as ex:
            row = await ex.first(self._s["login"], {"email": email})
        if row is None:
            return None
        password = row.pop("_password")
        return row, None if password is None else str(password)

    async def set_password(
        self, account: str, hash: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> None:
        async with self._writer(tx) as ex:
            await ex.run(self._s["password_del"], {"account": account})
            await ex.run(
                self._s["password_add"], {"account": account, "hash": hash, "changed_at": now}
            )

    # --- refresh tokens ------------------------------------------------------------------

    async def add_refresh(
        self,
        hash: str,
        family: str,
        account: str,
        now: datetime.datetime,
        expires_at: datetime.datetime,
    ) -> None:
        async with self._writer(None) as ex:
            await ex.run(self._s["token_add"], _token(hash, family, account, now, expires_at))

    async def rotate_refresh(self, hash: str, new_hash: str, now: datetime.datetime) -> Refreshed:
        async with self._writer(None) as ex:
            row = await ex.first(self._s["token_row"], {"hash": hash})
            if row is None:
                return Refreshed("invalid")
            family, account = str(row["family"]), str(row["account"])
            if row["used_at"] is not None or row["revoked_at"] is not None:
                await ex.run(self._s["family_revoke"], {"_family": family, "_now": now})
                return Refreshed("reused", account, family)
            expires_at = row["expires_at"]
            assert isinstance(expires_at, datetime.datetime)
            if expires_at <= now:
                return Refreshed("invalid", account, family)
            await ex.run(self._s["token_used"], {"_hash": hash, "_now": now})
            await ex.run(self._s["token_add"], _token(new_hash, family, account, now, expires_at))
        return Refreshed("rotated", account, family)

    async def revoke_refresh(self, hash: str, now: datetime.datetime) -> str | None:
        async with self._writer(None) as ex:
            row = await ex.first(self._s["token_row"], {"hash": hash})
            if row is None:
                return None
            await ex.run(self._s["family_revoke"], {"_family": row["family"], "_now": now})
            return str(row["account"])

    async def revoke_account(
        self, account: str, now: datetime.datetime, *, keep_family: str | None = None
    ) -> int:
        async with self._writer(None) as ex:
            tokens = self._t["charpente_refresh_tokens"]
            live = sa.select(sa.func.count()).where(
                tokens.c.account == account, tokens.c.revoked_at.is_(None)
            )
            if keep_family is None:
                count = int(await ex.scalar(live))
                await ex.run(self._s["account_revoke"], {"_account": account, "_now": now})
                return count
            count = int(await ex.scalar(live.where(tokens.c.family != keep_family)))
            others = (
                sa.update(tokens)
                .where(
                    tokens.c.account == account,
                    tokens.c.revoked_at.is_(None),
                    tokens.c.family != keep_family,
                )
                .values(revoked_at=now)
            )
            await ex.run(others)
            return count

    # --- one-time codes and invitations --------------------------------------------------

    async def add_code(self, hash: str, account: str, expires_at: datetime.datetime) -> None:
        async with self._writer(None) as ex:
            params = {"hash": hash, "account": account, "expires_at": expires_at, "used_at": None}
            await ex.run(self._s["code_add"], params)

    async def take_code(self, hash: str, now: datetime.datetime) -> str | None:
        async with self._writer(None) as ex:
            row = await ex.first(self._s["code_row"], {"hash": hash})
            if row is None or row["used_at"] is not None:
                return None
            await ex.run(self._s["code_used"], {"_hash": hash, "_now": now})
            expires_at = row["expires_at"]
            assert isinstance(expires_at, datetime.datetime)
            return str(row["account"]) if expires_at > now else None

    async def add_invite(
        self, hash: str, email: str | None, role: str, expires_at: datetime.datetime
    ) -> None:
        async with self._writer(None) as ex:
            params = {"hash": hash, "email": email, "role": role, "expires_at": expires_at}
            await ex.run(self._s["invite_add"], {**params, "used_at": None})

    async def take_invite(
        self, hash: str, email: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> str | None:
        async with self._writer(tx) as ex:
            row = await ex.first(self._s["invite_row"], {"hash": hash})
            if row is None or row["used_at"] is not None:
                return None
            expires_at = row["expires_at"]
            assert isinstance(expires_at, datetime.datetime)
            if expires_at <= now or row["email"] not in (None, email):
                return None
            await ex.run(self._s["invite_used"], {"_hash": hash, "_now": now})
            return str(row["role"])

    # --- identities, keys, log -----------------------------------------------------------

    async def identity(self, provider: str, subject: str) -> str | None:
        async with self._db.reader() as ex:
            row = await ex.first(self._s["identity"], {"provider": provider, "subject": subject})
        return None if row is None else str(row["account"])

    async def link(
        self,
        provider: str,
        subject: str,
        account: str,
        email: str,
        now: datetime.datetime,
        tx: Transaction | None = None,
    ) -> None:
        async with self._writer(tx) as ex:
            params = {"provider": provider, "subject": subject, "account": account}
            try:
                await ex.run(self._s["link"], {**params, "email": email, "created_at": now})
            except INTEGRITY_ERRORS:
                raise Conflict(detail="this provider's user is linked already") from None

    async def remove_password(self, account: str, tx: Transaction | None = None) -> None:
        async with self._writer(tx) as ex:
            await ex.run(self._s["password_del"], {"account": account})

    async def add_session(
        self,
        family: str,
        account: str,
        now: datetime.datetime,
        ip: str | None,
        user_agent: str | None,
        method: str,
        amr: str | None = None,
    ) -> None:
        row = {"family": family, "account": account, "created_at": now, "last_used_at": now}
        row |= {"ip": ip, "user_agent": user_agent, "method": method, "amr": amr}
        async with self._writer(None) as ex:
            await ex.run(self._s["session_add"], row)

    async def touch_session(self, family: str, now: datetime.datetime, ip: str | None) -> None:
        async with self._writer(None) as ex:
            await ex.run(self._s["session_touch"], {"_family": family, "_now": now, "_ip": ip})

    async def sessions(self, account: str, now: datetime.datetime) -> list[Record]:
        async with self._db.reader() as ex:
            return await ex.rows(self._s["sessions"], {"account": account, "now": now})

    async def revoke_family(self, account: str, family: str, now: datetime.datetime) -> bool:
        async with self._writer(None) as ex:
            params = {"account": account, "family": family, "now": now}
            if await ex.first(self._s["session_live"], params) is None:
                return False
            await ex.run(self._s["family_revoke"], {"_family": family, "_now": now})
            return True

    async def families_ended_since(
        self, since: datetime.datetime
    ) -> list[tuple[str, datetime.datetime]]:
        async with self._db.reader() as ex:
            rows = await ex.rows(self._s["families_ended"], {"since": since})
        return [(str(row["detail"]), row["at"]) for row in rows]  # type: ignore[misc]

    async def session_amr(self, family: str) -> str | None:
        sessions = self._t["charpente_sessions"]
        async with self._db.reader() as ex:
            found = await ex.scalar(sa.select(sessions.c.amr).where(sessions.c.family == family))
        return None if found is None else str(found)

    async def mfa(self, account: str) -> Record | None:
        mfa = self._t["charpente_mfa"]
        async with self._db.reader() as ex:
            return await ex.first(sa.select(mfa).where(mfa.c.account == account))

    async def save_mfa(self, account: str, secret: str, now: datetime.datetime) -> None:
        mfa = self._t["charpente_mfa"]
        async with self._writer(None) as ex:
            await ex.run(sa.delete(mfa).where(mfa.c.account == account))
            row = {"account": account, "secret": secret, "created_at": now, "failures": 0}
            await ex.run(sa.insert(mfa), row | {"confirmed_at": None, "last_step": None})

    async def mfa_checked(
        self,
        account: str,
        step: int | None,
        now: datetime.datetime,
        lock_after: int,
        locked_until: datetime.datetime,
    ) -> bool:
        mfa = self._t["charpente_mfa"]
        row_of = sa.select(mfa).where(mfa.c.account == account)
        async with self._writer(None) as ex:
            row = await ex.first(row_of.with_for_update() if self._db.locks else row_of)
            if row is None:
                return False
            locked = row["locked_until"]
            if isinstance(locked, datetime.datetime) and locked > now:
                return False
            last = row["last_step"]
            same = sa.update(mfa).where(mfa.c.account == account)
            if step is not None and (last is None or step > int(str(last))):
                await ex.run(same.values(last_step=step, failures=0, locked_until=None))
                return True
            failures = int(str(row["failures"])) + 1
            lock = locked_until if failures >= lock_after else None
            await ex.run(same.values(failures=0 if lock else failures, locked_until=lock))
            return False

    async def confirm_mfa(self, account: str, codes: Sequence[str], now: datetime.datetime) -> None:
        mfa, recovery = self._t["charpente_mfa"], self._t["charpente_recovery_codes"]
        async with self._writer(None) as ex:
            confirmed = sa.update(mfa).where(mfa.c.account == account).values(confirmed_at=now)
            await ex.run(confirmed)
            await ex.run(sa.delete(recovery).where(recovery.c.account == account))
            for code in codes:
                await ex.run(
                    sa.insert(recovery), {"hash": code, "account": account, "used_at": None}
                )

    async def use_recovery_code(self, account: str, hash: str, now: datetime.datetime) -> bool:
        recovery = self._t["charpente_recovery_codes"]
        found = sa.select(recovery).where(recovery.c.hash == hash, recovery.c.account == account)
        async with self._writer(None) as ex:
            row = await ex.first(found.with_for_update() if self._db.locks else found)
            if row is None or row["used_at"] is not None:
                return False
            used = sa.update(recovery).where(recovery.c.hash == hash).values(used_at=now)
            await ex.run(used)
            return True

    async def remove_mfa(self, account: str) -> None:
        mfa, recovery = self._t["charpente_mfa"], self._t["charpente_recovery_codes"]
        async with self._writer(None) as ex:
            await ex.run(sa.delete(recovery).where(recovery.c.account == account))
            await ex.run(sa.delete(mfa).where(mfa.c.account == account))

    async def redact_history(
        self, account: str, keep: Collection[str], now: datetime.datetime
    ) -> int:
        events = self._t[EVENTS_TABLE]
        mine = (events.c.resource == ACCOUNTS) & (events.c.record_id == account)
        async with self._writer(None) as ex:
            rows = await ex.rows(
                sa.select(events.c.id, events.c.changes, events.c.record).where(mine)
            )
            for row in rows:
                values = {
                    "changes": _redacted(row["changes"], keep),
                    "record": None if row["record"] is None else _redacted(row["record"], keep),
                }
                await ex.run(sa.update(events).where(events.c.id == row["id"]).values(**values))
            return len(rows)

    async def add_email_token(
        self,
        hash: str,
        account: str,
        purpose: str,
        email: str,
        now: datetime.datetime,
        expires_at: datetime.datetime,
        tx: Transaction | None = None,
    ) -> None:
        async with self._writer(tx) as ex:
            params = {"_account": account, "_purpose": purpose, "_now": now}
            await ex.run(self._s["links_end"], params)
            row: dict[str, object] = {"hash": hash, "account": account, "purpose": purpose}
            row |= {"email": email, "created_at": now, "expires_at": expires_at, "used_at": None}
            await ex.run(self._s["link_add"], row)

    async def take_email_token(
        self, hash: str, purpose: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> tuple[str, str] | None:
        async with self._writer(tx) as ex:
            row = await ex.first(self._s["link_row"], {"hash": hash})
            if row is None or row["used_at"] is not None or row["purpose"] != purpose:
                return None
            expires_at = row["expires_at"]
            assert isinstance(expires_at, datetime.datetime)
            if expires_at <= now:
                return None
            await ex.run(self._s["link_used"], {"_hash": hash, "_now": now})
            return str(row["account"]), str(row["email"])

    async def end_email_tokens(
        self, account: str, purpose: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> None:
        async with self._writer(tx) as ex:
            params = {"_account": account, "_purpose": purpose, "_now": now}
            await ex.run(self._s["links_end"], params)

    async def signing_keys(self) -> list[str]:
        async with self._db.reader() as ex:
            return [str(row["record"]) for row in await ex.rows(self._s["keys"])]

    async def save_signing_key(self, kid: str, record: str, now: datetime.datetime) -> None:
        async with self._writer(None) as ex:
            await ex.run(self._s["key_del"], {"kid": kid})
            await ex.run(self._s["key_add"], {"kid": kid, "record": record, "created_at": now})

    async def log(
        self,
        event: str,
        account: str | None,
        ip: str | None,
        detail: str | None,
        now: datetime.datetime,
    ) -> None:
        async with self._writer(None) as ex:
            params = {"id": new_id(), "at": now, "event": event, "account": account}
            await ex.run(self._s["log"], {**params, "ip": ip, "detail": detail})

    async def sessions_ended_since(
        self, since: datetime.datetime
    ) -> list[tuple[str, datetime.datetime]]:
        async with self._db.reader() as ex:
            rows = await ex.rows(self._s["ended"], {"since": since})
        return [(str(row["account"]), row["at"]) for row in rows]  # type: ignore[misc]

    async def log_entries(self, limit: int = 100) -> list[Record]:
        async with self._db.reader() as ex:
            return await ex.rows(self._s["log_entries"], {"limit": limit})

    @asynccontextmanager
    async def _writer(self, tx: Transaction | None) -> AsyncIterator[Executor]:
        if isinstance(tx, SqlTransaction):
            yield tx.executor
            return
        async with self._db.writer() as ex:
            yield ex


def _token(
    hash: str, family: str, account: str, now: datetime.datetime, expires_at: datetime.datetime
) -> dict[str, object]:
    return {
        "hash": hash,
        "family": family,
        "account": account,
        "created_at": now,
        "expires_at": expires_at,
        "used_at": None,
        "revoked_at": None,
    }


def _redacted(text: object, keep: Collection[str]) -> str:
    """A history event's JSON object with every value but `keep`'s replaced by `[redacted]`."""
    try:
        found = json.loads(str(text))
    except ValueError:
        return json.dumps({})
    if not isinstance(found, dict):
        return json.dumps({})
    return json.dumps({k: v if k in keep else REDACTED for k, v in found.items()})
