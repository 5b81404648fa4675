"""Ports: the few operations the runtime needs from the outside world.

Each port is a small Protocol; adapters (sql/, later cache/ and bus/) implement them and
wiring.py picks which. The runtime imports this module, never an adapter.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from charpente.design.expr import Expr
from charpente.compile.plan import Delete, GetQuery, Insert, ListQuery, Page, Record, Update

__all__ = [
    "Clock",
    "Database",
    "IdempotentResponse",
    "Transaction",
]


@dataclass(frozen=True, slots=True)
class IdempotentResponse:
    """A stored first answer to a POST with an Idempotency-Key."""

    fingerprint: str  # hash of method, path and body: a retry with another body is a 422
    status: int
    body: bytes
    location: str | None


class Transaction(Protocol):
    """Writes that commit or roll back together (one database transaction)."""

    async def get(
        self, resource: str, id: str, *, for_update: bool = False, where: Expr | None = None
    ) -> Record | None:
        """Read one record inside the transaction (locking it on engines that can), if it
        satisfies `where` (a resolved condition, auth names bound)."""

    async def matches(self, resource: str, id: str, where: Expr) -> bool:
        """Whether the record `id`, as this transaction sees it, satisfies `where`."""

    async def insert(self, plan: Insert) -> Record:
        """Insert and return the stored record. Raises Conflict naming the unique field(s)."""

    async def update(self, plan: Update) -> Record | None:
        """Apply changes, bump version and updated_at; None when the id is missing or the
        expected version is stale. Raises Conflict on a unique violation."""

    async def delete(self, plan: Delete) -> bool:
        """Delete; False when the id is missing or the expected version is stale.
        Raises Conflict when a `restrict` reference still points at the record."""

    async def add_to_counter(self, resource: str, id: str, field: str, delta: int) -> None:
        """counter = counter + delta on one record (no version bump: counters are derived)."""

    async def select_ids(self, resource: str, field: str, values: Sequence[str]) -> list[str]:
        """Ids of the rows of `resource` whose `field` is one of `values` (a cascade's reach)."""

    async def count_by(self, resource: str, ids: Sequence[str], field: str) -> dict[str, int]:
        """Among the rows of `resource` with these ids: how many per non-null value of `field`."""

    async def claim_idempotency_key(self, key: str, fingerprint: str) -> IdempotentResponse | None:
        """Reserve `key` for this transaction. Returns the stored response when the key was
        already used (waiting for a concurrent holder to finish), None when it is ours."""

    async def save_idempotent_response(self, key: str, response: IdempotentResponse) -> None:
        """Store the answer for a key claimed in this transaction (committed with the write)."""


class Database(Protocol):
    """Reads, and a way to open a transaction."""

    async def select_page(self, query: ListQuery) -> Page:
        """A keyset page; `query.where` compiled to SQL with bound parameters only."""

    async def select_one(self, query: GetQuery) -> Record | None:
        """One record by id, or None."""

    async def select_by_ids(
        self,
        resource: str,
        ids: Sequence[str],
        fields: tuple[str, ...] | None = None,
        where: Expr | None = None,
    ) -> list[Record]:
        """Records with these ids that satisfy `where`, in any order, in one query."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction: commits when the block ends, rolls back when it raises."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""

    async def close(self) -> None:
        """Release every connection."""


class Clock(Protocol):
    """The current time, as an aware UTC datetime (a port so that tests can set it)."""

    def now(self) -> datetime.datetime: ...
