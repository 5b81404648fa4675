"""The FlagStore port over `charpente_flags` and `charpente_flag_history` (sql.schema).

A flag's row is created the first time a process sees the flag (its setting null: the
design's, and `changed_at` when it was first seen), so that hygiene can tell how long a
flag has stayed as it is. A change is one write transaction: the row is created if it is
missing, read (locked FOR UPDATE on PostgreSQL, the single writer on SQLite), changed,
and its history entry inserted beside it, so concurrent admins never lose each other's
changes and the history always matches the stored setting.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from charpente.compile.plan import Record
from charpente.runtime.flag_control import FlagChange, StoredFlag, history_id
from charpente.runtime.flags import FlagSetting
from charpente.sql.database import SqlDatabase
from charpente.sql.schema import FLAG_HISTORY_TABLE, FLAGS_TABLE

__all__ = ["SqlFlagStore"]


def _p(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


class SqlFlagStore:
    """The FlagStore port on a SqlDatabase's connections."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        f = database.metadata_tables[FLAGS_TABLE]
        h = database.metadata_tables[FLAG_HISTORY_TABLE]
        dialect_insert = postgresql.insert if database.locks else sqlite.insert
        locked = sa.select(f.c.setting).where(f.c.name == _p("_name"))
        if database.locks:
            locked = locked.with_for_update()
        self._s: dict[str, Any] = {
            "all": sa.select(f.c.name, f.c.setting, f.c.changed_at, f.c.changed_by),
            "seed": dialect_insert(f).on_conflict_do_nothing(index_elements=[f.c.name]),
            "locked": locked,
            "save": sa.update(f).where(f.c.name == _p("_name")),
            "log": sa.insert(h),
            "history": sa.select(h)
            .where(h.c.name == _p("_name"))
            .order_by(h.c.id.desc())
            .limit(_p("_limit")),
        }
        for stmt in self._s.values():
            database.keep(stmt)

    async def stored(self) -> list[StoredFlag]:
        async with self._db.reader() as ex:
            rows = await ex.rows(self._s["all"])
        return [_stored(row) for row in rows]

    async def change(
        self,
        name: str,
        default: FlagSetting,
        change: Callable[[FlagSetting], FlagSetting],
        actor: str | None,
        at: datetime.datetime,
    ) -> FlagChange:
        seed = {"name": name, "setting": None, "changed_at": at, "changed_by": None}
        async with self._db.writer() as ex:
            await ex.run(self._s["seed"], seed)
            found = await ex.scalar(self._s["locked"], {"_name": name})
            before = default if found is None else _setting(found)
            after = change(before)
            values = {"_name": name, "setting": _json(after), "changed_at": at, "changed_by": actor}
            await ex.run(self._s["save"], values)
            done = FlagChange(history_id(), name, at, actor, before, after)
            await ex.run(self._s["log"], _history_row(done))
        return done

    async def seen(self, names: Sequence[str], at: datetime.datetime) -> None:
        if not names:
            return
        async with self._db.writer() as ex:
            for name in names:
                seed = {"name": name, "setting": None, "changed_at": at, "changed_by": None}
                await ex.run(self._s["seed"], seed)

    async def history(self, name: str, limit: int) -> list[FlagChange]:
        async with self._db.reader() as ex:
            rows = await ex.rows(self._s["history"], {"_name": name, "_limit": limit})
        return [_change(row) for row in rows]


def _moment(value: object) -> datetime.datetime:
    assert isinstance(value, datetime.datetime)
    return value


def _stored(row: Record) -> StoredFlag:
    by, at = row["changed_by"], _moment(row["changed_at"])
    setting = None if row["setting"] is None else _setting(row["setting"])
    return StoredFlag(str(row["name"]), setting, at, None if by is None else str(by))


def _json(setting: FlagSetting) -> str:
    return msgspec.json.encode(setting.as_json()).decode()


def _setting(text: object) -> FlagSetting:
    data = msgspec.json.decode(str(text))
    assert isinstance(data, dict)
    return FlagSetting.from_json(data)


def _history_row(change: FlagChange) -> dict[str, object]:
    return {
        "id": change.id,
        "name": change.name,
        "at": change.at,
        "actor": change.actor,
        "before": _json(change.before),
        "after": _json(change.after),
    }


def _change(row: Record) -> FlagChange:
    return FlagChange(
        id=str(row["id"]),
        name=str(row["name"]),
        at=_moment(row["at"]),
        actor=None if row["actor"] is None else str(row["actor"]),
        before=_setting(row["before"]),
        after=_setting(row["after"]),
    )
