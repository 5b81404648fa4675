"""The WebhookStore port over `charpente_webhooks` and `charpente_deliveries`
(see sql.schema.webhook_tables).

Claiming is one short transaction: an UPDATE that sets a lease (`claimed_until`, and the
claimer's token in `claimed_by`) on the due rows a subquery picks. On PostgreSQL the
subquery locks them FOR UPDATE SKIP LOCKED, so workers claiming at the same time take
different rows without waiting for each other; on SQLite the single writer serialises
claims. An outcome is recorded only while the claimer's token still holds the row.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa

from charpente.errors import Conflict
from charpente.runtime.ports import Delivery, Settled, Transaction, WebhookEndpoint
from charpente.sql.database import SqlDatabase, SqlTransaction
from charpente.sql.executor import Executor
from charpente.sql.integrity import INTEGRITY_ERRORS

__all__ = ["DELIVERIES_TABLE", "WEBHOOKS_TABLE", "SqlWebhookStore"]

WEBHOOKS_TABLE = "charpente_webhooks"
DELIVERIES_TABLE = "charpente_deliveries"
_CHANGEABLE = frozenset({"url", "events", "enabled", "description"})


def _p(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


class SqlWebhookStore:
    """The WebhookStore port on a SqlDatabase's connections."""

    def __init__(self, database: SqlDatabase) -> None:
        self._db = database
        hooks = database.metadata_tables[WEBHOOKS_TABLE]
        d = database.metadata_tables[DELIVERIES_TABLE]
        self._hooks, self._d = hooks, d
        due = (
            sa.select(d.c.id)
            .where(
                d.c.state == "pending",
                d.c.next_attempt_at <= _p("_now"),
                sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until < _p("_now")),
                d.c.webhook.not_in(sa.bindparam("_skip", expanding=True)),
            )
            .order_by(d.c.next_attempt_at, d.c.id)
            .limit(_p("_limit"))
        )
        if database.locks:  # PostgreSQL: concurrent claimers skip each other's rows
            due = due.with_for_update(skip_locked=True)
        self._s: dict[str, Any] = {
            "endpoints": sa.select(hooks).order_by(hooks.c.name),
            "endpoint_add": sa.insert(hooks),
            "endpoint_name": sa.select(hooks.c.name).where(hooks.c.id == _p("_id")),
            "endpoint_del": sa.delete(hooks).where(hooks.c.id == _p("_id")),
            "owed_del": sa.delete(d).where(d.c.webhook == _p("_webhook")),
            "owed": sa.select(d.c.webhook, d.c.message_id).where(
                d.c.message_id.in_(sa.bindparam("_messages", expanding=True))
            ),
            "delivery_add": sa.insert(d),
            "claim": sa.update(d)
            .where(d.c.id.in_(due))
            .values(claimed_until=_p("_lease"), claimed_by=_p("_token"))
            .returning(*_public(d)),
            "settle": sa.update(d)
            .where(d.c.id == _p("_id"), d.c.claimed_by == _p("_token"))
            .values(
                state=_p("_state"),
                attempts=_p("_attempts"),
                next_attempt_at=_p("_next"),
                last_status=_p("_status"),
                last_error=_p("_error"),
                delivered_at=_p("_delivered"),
                claimed_until=None,
                claimed_by=None,
            )
            .returning(d.c.id),
        }
        for stmt in self._s.values():
            database.keep(stmt)

    # --- endpoints -----------------------------------------------------------------------

    async def endpoints(self, tx: Transaction | None = None) -> list[WebhookEndpoint]:
        async with self._reader(tx) as ex:
            return [_endpoint(row) for row in await ex.rows(self._s["endpoints"])]

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        row = {**dataclasses.asdict(endpoint), "events": list(endpoint.events)}
        try:
            async with self._db.writer() as ex:
                await ex.run(self._s["endpoint_add"], row)
        except INTEGRITY_ERRORS:
            raise Conflict(detail=f"a webhook named {endpoint.name!r} exists already") from None

    async def update_endpoint(
        self, id: str, changes: Mapping[str, object], now: datetime.datetime
    ) -> WebhookEndpoint | None:
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        values: dict[str, object] = {**changes, "updated_at": now}
        if "events" in values:
            values["events"] = list(values["events"])  # type: ignore[call-overload]
        hooks = self._hooks
        stmt = sa.update(hooks).where(hooks.c.id == id).values(values).returning(*hooks.c)
        async with self._db.writer() as ex:
            row = await ex.first(stmt)
        return None if row is None else _endpoint(row)

    async def remove_endpoint(self, id: str) -> bool:
        async with self._db.writer() as ex:
            name = await ex.first(self._s["endpoint_name"], {"_id": id})
            if name is None:
                return False
            await ex.run(self._s["owed_del"], {"_webhook": name["name"]})
            await ex.run(self._s["endpoint_del"], {"_id": id})
        return True

    # --- deliveries ----------------------------------------------------------------------

    async def add_deliveries(self, tx: Transaction, deliveries: Sequence[Delivery]) -> int:
        if not deliveries:
            return 0
        async with self._writer(tx) as ex:
            messages = sorted({d.message_id for d in deliveries})
            rows = await ex.rows(self._s["owed"], {"_messages": messages})
            owed = {(str(r["webhook"]), str(r["message_id"])) for r in rows}
            added = 0
            for delivery in deliveries:
                if (delivery.webhook, delivery.message_id) in owed:
                    continue
                owed.add((delivery.webhook, delivery.message_id))
                await ex.run(self._s["delivery_add"], _delivery_row(delivery))
                added += 1
        return added

    async def claim_due(
        self,
        now: datetime.datetime,
        lease_until: datetime.datetime,
        token: str,
        limit: int,
        skip: Sequence[str] = (),
    ) -> list[Delivery]:
        params = {"_now": now, "_lease": lease_until, "_token": token, "_limit": limit}
        async with self._db.writer() as ex:
            rows = await ex.rows(self._s["claim"], {**params, "_skip": list(skip)})
        found = [_delivery(row) for row in rows]
        found.sort(key=lambda d: (d.next_attempt_at, d.id))  # RETURNING keeps no order
        return found

    async def settle(self, id: str, token: str, settled: Settled) -> bool:
        params = {
            "_id": id,
            "_token": token,
            "_state": settled.state,
            "_attempts": settled.attempts,
            "_next": settled.next_attempt_at,
            "_status": settled.last_status,
            "_error": settled.last_error,
            "_delivered": settled.delivered_at,
        }
        async with self._db.writer() as ex:
            return await ex.first(self._s["settle"], params) is not None

    async def deliveries(
        self, webhook: str | None, state: str | None, limit: int, after: str | None = None
    ) -> list[Delivery]:
        d = self._d
        query = sa.select(*_public(d)).order_by(d.c.id.desc()).limit(limit)
        if webhook is not None:
            query = query.where(d.c.webhook == webhook)
        if state is not None:
            query = query.where(d.c.state == state)
        if after is not None:
            query = query.where(d.c.id < after)
        async with self._db.reader() as ex:
            return [_delivery(row) for row in await ex.rows(query)]

    async def replay(
        self, now: datetime.datetime, webhook: str | None = None, delivery_id: str | None = None
    ) -> int:
        d = self._d
        stmt = sa.update(d).where(d.c.state == "dead")
        if webhook is not None:
            stmt = stmt.where(d.c.webhook == webhook)
        if delivery_id is not None:
            stmt = stmt.where(d.c.id == delivery_id)
        stmt = stmt.values(
            state="pending", attempts=0, next_attempt_at=now, claimed_until=None, claimed_by=None
        )
        async with self._db.writer() as ex:
            return len(await ex.rows(stmt.returning(d.c.id)))

    async def prune(
        self, delivered_before: datetime.datetime, dead_before: datetime.datetime, limit: int
    ) -> int:
        d = self._d
        old = sa.or_(
            sa.and_(d.c.state == "delivered", d.c.delivered_at < delivered_before),
            sa.and_(d.c.state == "dead", d.c.next_attempt_at < dead_before),
        )
        doomed = sa.select(d.c.id).where(old).limit(limit)
        stmt = sa.delete(d).where(d.c.id.in_(doomed)).returning(d.c.id)
        async with self._db.writer() as ex:
            return len(await ex.rows(stmt))

    # --- connections ---------------------------------------------------------------------

    @asynccontextmanager
    async def _writer(self, tx: Transaction | None) -> AsyncIterator[Executor]:
        """`tx`'s connection when it is one of this database's transactions (the relay's),
        else a transaction of our own."""
        if isinstance(tx, SqlTransaction):
            yield tx.executor
            return
        async with self._db.writer() as ex:
            yield ex

    @asynccontextmanager
    async def _reader(self, tx: Transaction | None) -> AsyncIterator[Executor]:
        if isinstance(tx, SqlTransaction):
            yield tx.executor
            return
        async with self._db.reader() as ex:
            yield ex


def _public(d: sa.Table) -> list[sa.Column[Any]]:
    """Every column but the claim's bookkeeping."""
    return [c for c in d.c if c.name not in ("claimed_until", "claimed_by")]


def _endpoint(row: Mapping[str, Any]) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=str(row["id"]),
        name=str(row["name"]),
        url=str(row["url"]),
        events=tuple(str(e) for e in row["events"]),
        secret=str(row["secret"]),
        enabled=bool(row["enabled"]),
        created_at=row["created_at"],
        created_by=None if row["created_by"] is None else str(row["created_by"]),
        description=row["description"],
        updated_at=row["updated_at"],
    )


def _delivery(row: Mapping[str, Any]) -> Delivery:
    return Delivery(
        id=str(row["id"]),
        webhook=str(row["webhook"]),
        message_id=str(row["message_id"]),
        key=str(row["key"]),
        body=bytes(row["body"]),
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        attempts=int(row["attempts"]),
        state=str(row["state"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
    )


def _delivery_row(delivery: Delivery) -> dict[str, object]:
    return {
        "id": delivery.id,
        "webhook": delivery.webhook,
        "message_id": delivery.message_id,
        "key": delivery.key,
        "body": delivery.body,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "claimed_until": None,
        "claimed_by": None,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    }
