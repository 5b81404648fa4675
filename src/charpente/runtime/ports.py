"""Ports: the few operations the runtime needs from the outside world.

Each port is a small Protocol; adapters (sql/, later cache/ and bus/) implement them and
wiring.py picks which. The runtime imports this module, never an adapter.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from charpente.compile.plan import Delete, GetQuery, Insert, ListQuery, Page, Record, Update
from charpente.design.expr import Expr
from charpente.runtime.events import Event, Message

__all__ = [
    "AuthStore",
    "Bus",
    "BusError",
    "Clock",
    "Database",
    "Delivery",
    "IdempotentResponse",
    "Job",
    "JobStore",
    "MailMessage",
    "Mailer",
    "NewJob",
    "Outbound",
    "Outbox",
    "OutboxBatch",
    "Refreshed",
    "Sent",
    "Settled",
    "Subscription",
    "Transaction",
    "WebhookEndpoint",
    "WebhookStore",
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

    async def append_event(self, event: Event, *, outbox: bool = False) -> None:
        """Append `event` to the history and, with `outbox`, queue it for the relay."""

    async def enqueue_job(self, job: NewJob) -> str:
        """Queue a checked job in this transaction (it exists only if the write commits); its id."""

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

    async def select_pages(
        self, query: ListQuery, via: str, parents: Sequence[str]
    ) -> dict[str, Page]:
        """`query`'s page for each of `parents` among the rows whose ref field `via` holds
        it, in one statement (a nested GraphQL connection): by parent id, each one present."""

    async def history(
        self, resource: str, record_id: str, before: str | None, limit: int
    ) -> list[Event]:
        """A record's events, newest first, older than the event `before` if given."""

    async def events_until(
        self, resource: str, record_id: str, at: datetime.datetime
    ) -> list[Event]:
        """A record's events up to time `at`, oldest first."""

    async def events_after(self, resource: str, after: str, limit: int) -> list[Event]:
        """A resource's events after the event `after`, oldest first (resuming a stream)."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction: commits when the block ends, rolls back when it raises."""

    async def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""

    async def close(self) -> None:
        """Release every connection."""


class Clock(Protocol):
    """The current time, as an aware UTC datetime (a port so that tests can set it)."""

    def now(self) -> datetime.datetime: ...


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What presenting a refresh token did: `status` is "rotated" (a new token replaced it),
    "reused" (it was used before: its family is now revoked) or "invalid"."""

    status: str
    account: str | None = None
    family: str | None = None


class AuthStore(Protocol):
    """The engine's own account tables (passwords, tokens, codes, invites, identities,
    signing keys, the authentication log). `tx` runs a call inside a write's transaction."""

    async def login(self, email: str) -> tuple[Record, str | None] | None:
        """The account with this (lowercase) email and its password hash, or None."""

    async def set_password(
        self, account: str, hash: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> None:
        """Store (or replace) an account's password hash."""

    async def remove_password(self, account: str, tx: Transaction | None = None) -> None:
        """Remove an account's password (it then signs in through its providers only)."""

    async def add_refresh(
        self,
        hash: str,
        family: str,
        account: str,
        now: datetime.datetime,
        expires_at: datetime.datetime,
    ) -> None:
        """A new refresh token (its hash) in `family`."""  # fmt: skip

    async def rotate_refresh(self, hash: str, new_hash: str, now: datetime.datetime) -> Refreshed:
        """Use a refresh token once: replace it by `new_hash` in its family (same expiry),
        or revoke the family when it was used already."""

    async def revoke_refresh(self, hash: str, now: datetime.datetime) -> str | None:
        """Revoke the family of a refresh token; its account id, or None if unknown."""

    async def revoke_account(
        self, account: str, now: datetime.datetime, *, keep_family: str | None = None
    ) -> int:
        """Revoke every refresh token family of an account (but `keep_family`); how many
        tokens it ended."""

    async def add_code(self, hash: str, account: str, expires_at: datetime.datetime) -> None:
        """A one-time login code (its hash) for an account."""

    async def take_code(self, hash: str, now: datetime.datetime) -> str | None:
        """Use a one-time code: its account id if it is valid and unused, else None."""

    async def add_invite(
        self, hash: str, email: str | None, role: str, expires_at: datetime.datetime
    ) -> None:
        """An invitation (its hash), for one email or for anyone who holds it."""

    async def take_invite(
        self, hash: str, email: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> str | None:
        """Use an invitation for `email`: the role it grants, or None."""

    async def identity(self, provider: str, subject: str) -> str | None:
        """The account linked to a provider's user, or None."""

    async def link(
        self,
        provider: str,
        subject: str,
        account: str,
        email: str,
        now: datetime.datetime,
        tx: Transaction | None = None,
    ) -> None:
        """Link a provider's user to an account."""  # fmt: skip

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
        """Record a sign-in (its refresh-token family) for the sessions list."""

    async def touch_session(self, family: str, now: datetime.datetime, ip: str | None) -> None:
        """A sign-in's refresh token was used: when, and from where."""

    async def sessions(self, account: str, now: datetime.datetime) -> list[Record]:
        """The account's live sign-ins (a refresh token of the family still usable), newest
        first: family, created_at, last_used_at, ip, user_agent, method."""

    async def revoke_family(self, account: str, family: str, now: datetime.datetime) -> bool:
        """End one sign-in of the account; False when it has no such live sign-in."""

    async def families_ended_since(
        self, since: datetime.datetime
    ) -> list[tuple[str, datetime.datetime]]:
        """(family, when) of the sign-ins ended one by one since then (`session_ended`)."""

    async def session_amr(self, family: str) -> str | None:
        """How a sign-in was made (RFC 8176 methods, space-separated), if recorded."""

    async def mfa(self, account: str) -> Record | None:
        """The account's TOTP row: secret, confirmed_at, last_step, failures, locked_until."""

    async def save_mfa(self, account: str, secret: str, now: datetime.datetime) -> None:
        """A new, unconfirmed TOTP secret for the account (replacing an unconfirmed one)."""

    async def mfa_checked(
        self,
        account: str,
        step: int | None,
        now: datetime.datetime,
        lock_after: int,
        locked_until: datetime.datetime,
    ) -> bool:
        """Record a code check: `step` the time step a right code matched (None: wrong).
        True when accepted: right, newer than the last accepted step, and not locked out.
        A wrong code counts a failure; `lock_after` failures in a row lock the account's
        codes until `locked_until`."""

    async def confirm_mfa(self, account: str, codes: Sequence[str], now: datetime.datetime) -> None:
        """Mark the TOTP secret confirmed and replace the recovery codes (their hashes)."""

    async def use_recovery_code(self, account: str, hash: str, now: datetime.datetime) -> bool:
        """Use one recovery code of the account; False if unknown or used."""

    async def remove_mfa(self, account: str) -> None:
        """Remove the account's TOTP secret and recovery codes."""

    async def redact_history(
        self, account: str, keep: Collection[str], now: datetime.datetime
    ) -> int:
        """Replace every value but `keep`'s in the history events of the account's own
        record (its changes and the record it shows) by `[redacted]`; how many events."""

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
        """A one-time email link (its hash) for `purpose` (`reset`, `verify`, `email`); the
        account's earlier unused links for the same purpose stop working."""

    async def take_email_token(
        self, hash: str, purpose: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> tuple[str, str] | None:
        """Use a one-time email link: (account, email it was sent to) if it is valid for
        `purpose`, unused and unexpired, else None."""

    async def end_email_tokens(
        self, account: str, purpose: str, now: datetime.datetime, tx: Transaction | None = None
    ) -> None:
        """Every unused link of the account for `purpose` stops working."""

    async def signing_keys(self) -> list[str]:
        """Every stored signing key record (JSON text)."""

    async def save_signing_key(self, kid: str, record: str, now: datetime.datetime) -> None:
        """Add a signing key record, or replace the one with this kid."""

    async def log(
        self,
        event: str,
        account: str | None,
        ip: str | None,
        detail: str | None,
        now: datetime.datetime,
    ) -> None:
        """Append to the authentication log."""  # fmt: skip

    async def sessions_ended_since(
        self, since: datetime.datetime
    ) -> list[tuple[str, datetime.datetime]]:
        """(account, when) of each disable, role change or password change since `since`."""

    async def log_entries(self, limit: int = 100) -> list[Record]:
        """The newest entries of the authentication log."""


class BusError(Exception):
    """The bus did not take a message (unreachable, refused, or no confirmation in time)."""


class Subscription(Protocol):
    """Messages published on a bus from now on, to every subscriber (a fan-out, not a queue)."""

    def __aiter__(self) -> AsyncIterator[Message]: ...

    async def close(self) -> None: ...


class Bus(Protocol):
    """A message broker: publish with confirmation, subscribe to everything published.

    `publish` returns once the broker has accepted every message (publisher confirms,
    JetStream acks, XADD replies), in order, or raises BusError; a message may then have been
    taken twice, never lost: consumers deduplicate by Message.id. `subscribe` is for live
    changes: each server process sees every message, from the moment it subscribed.
    """

    name: str

    async def start(self) -> None: ...

    async def publish(self, messages: Sequence[Message]) -> None: ...

    async def subscribe(self) -> Subscription: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A webhook endpoint added at run time (the design's own are not stored); `secret` is
    the stored form: sealed when sealing keys are configured."""

    id: str
    name: str
    url: str
    events: tuple[str, ...]  # `posts.created`, `posts.*`, `*.*`
    secret: str
    enabled: bool
    created_at: datetime.datetime
    created_by: str | None = None
    description: str | None = None
    updated_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message owed to one webhook endpoint, and how far its delivery got.

    `state` is "pending" (due at `next_attempt_at`), "delivered" or "dead" (every attempt
    failed: the dead letter, until replayed)."""

    id: str
    webhook: str  # the endpoint's name
    message_id: str  # the CloudEvent id: `webhook-id`, the same on every attempt
    key: str  # `{resource}.{action}`
    body: bytes
    created_at: datetime.datetime
    next_attempt_at: datetime.datetime
    attempts: int = 0
    state: str = "pending"
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """What to record on a delivery after an attempt (or a postponement)."""

    state: str
    attempts: int
    next_attempt_at: datetime.datetime
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime.datetime | None = None


class WebhookStore(Protocol):
    """Run-time webhook endpoints and the deliveries owed to every endpoint.

    Deliveries are claimed with a lease: `claim_due` marks them taken by `token` until
    `lease_until`, and `settle` records an outcome only while that claim holds, so a
    delivery whose worker died is taken again once its lease ends."""

    async def endpoints(self, tx: Transaction | None = None) -> list[WebhookEndpoint]:
        """Every run-time endpoint, enabled or not, by name."""

    async def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        """Store a new endpoint. Raises Conflict when its name is taken."""

    async def update_endpoint(
        self, id: str, changes: Mapping[str, object], now: datetime.datetime
    ) -> WebhookEndpoint | None:
        """Change `url`, `events`, `enabled` or `description`; None when there is no such id."""

    async def remove_endpoint(self, id: str) -> bool:
        """Delete an endpoint and the deliveries owed to it; False when there is no such id."""

    async def add_deliveries(self, tx: Transaction, deliveries: Sequence[Delivery]) -> int:
        """Insert pending deliveries in `tx`, skipping any (webhook, message) already owed;
        how many were added."""

    async def claim_due(
        self,
        now: datetime.datetime,
        lease_until: datetime.datetime,
        token: str,
        limit: int,
        skip: Sequence[str] = (),
    ) -> list[Delivery]:
        """Take up to `limit` pending deliveries due by `now` and not claimed (or whose claim
        expired), leaving out the endpoints named in `skip`; each held by `token`."""

    async def settle(self, id: str, token: str, settled: Settled) -> bool:
        """Record an outcome and release the claim; False when `token` no longer holds it."""

    async def deliveries(
        self, webhook: str | None, state: str | None, limit: int, after: str | None = None
    ) -> list[Delivery]:
        """Deliveries, newest first, of one endpoint (or all) in one state (or any); `after`
        is the id of the last one of the previous page."""

    async def replay(
        self, now: datetime.datetime, webhook: str | None = None, delivery_id: str | None = None
    ) -> int:
        """Dead deliveries (of one endpoint, or the one with this id) back to pending, due
        now, with no attempt counted; how many."""

    async def prune(
        self, delivered_before: datetime.datetime, dead_before: datetime.datetime, limit: int
    ) -> int:
        """Delete up to `limit` deliveries delivered, or dead, before these times; how many."""


@dataclass(frozen=True, slots=True)
class Sent:
    """How an outbound POST went: the status answered (None when none came) and, unless
    it was a 2xx, a short reason fit for logs (no secret, no more than a body excerpt)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Outbound(Protocol):
    """POSTs to addresses outside the backend, refusing those it may not reach (private,
    loopback, link-local… unless allowed): a refusal is a Sent without a status."""

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Sent: ...

    async def refusal(self, url: str) -> str | None:
        """Why `url` may not be reached (its host is or resolves to a refused address), or
        None. A host that does not resolve is not refused here: sending will say."""

    async def close(self) -> None: ...


FanOut = Callable[["Transaction", Sequence[Message]], Awaitable[None]]
"""Work done in the transaction that removes published messages (webhook deliveries)."""


class OutboxBatch(Protocol):
    """Outbox messages claimed by one relay, oldest first, in order per subject."""

    messages: Sequence[Message]

    async def done(self, count: int, fan_out: FanOut | None = None) -> None:
        """The first `count` messages were published: remove them (after `fan_out`, in the
        same transaction)."""


class Outbox(Protocol):
    """Events waiting to be published (the transactional outbox)."""

    def claim(self, limit: int) -> AbstractAsyncContextManager[OutboxBatch]:
        """At most `limit` of the oldest messages this relay may publish now."""

    async def oldest(self) -> datetime.datetime | None:
        """When the oldest waiting message was written (None when there is none)."""

    async def pending(self) -> int:
        """How many messages wait."""


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to queue, checked already: the registered function's name, its arguments (a JSON
    object's text), how many attempts it gets, and when it may run first."""

    name: str
    args: str
    max_attempts: int
    run_at: datetime.datetime
    created_at: datetime.datetime
    traceparent: str | None = None  # the trace of the request that queued it, when traced


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored. `state` is queued, running, done or dead; `attempts` counts the runs
    started (a run counts from its claim); `args` is a JSON object's text."""

    id: str
    name: str
    args: str
    state: str
    attempts: int
    max_attempts: int
    run_at: datetime.datetime
    created_at: datetime.datetime
    claimed_until: datetime.datetime | None = None
    last_error: str | None = None
    finished_at: datetime.datetime | None = None
    traceparent: str | None = None  # the trace of the request that queued it, when traced


class JobStore(Protocol):
    """The job queue. Jobs are claimed with a lease: `claim_due` marks them running, held by
    `token` until `lease_until`, and an outcome is recorded only while that claim holds, so
    a job whose worker died runs again once its lease ends (at least once)."""

    async def claim_due(
        self,
        now: datetime.datetime,
        lease_until: datetime.datetime,
        token: str,
        limit: int,
        names: Sequence[str],
    ) -> list[Job]:
        """Take up to `limit` jobs named one of `names` and due by `now` (queued ones whose
        `run_at` has come, running ones whose lease ended), counting one more attempt on
        each; a running one whose lease ended on its last attempt becomes dead instead."""

    async def finish(self, id: str, token: str, now: datetime.datetime) -> bool:
        """Mark a claimed job done; False when `token` no longer holds it."""

    async def fail(
        self,
        id: str,
        token: str,
        error: str,
        now: datetime.datetime,
        retry_at: datetime.datetime | None,
    ) -> bool:
        """Record a failed attempt: queued again for `retry_at`, or dead when it is None;
        False when `token` no longer holds the job."""

    async def job(self, id: str) -> Job | None:
        """The job with this id, or None."""

    async def jobs(self, state: str | None, limit: int, after: str | None = None) -> list[Job]:
        """Jobs, newest first, in one state (or any); `after` is the id of the last one of
        the previous page."""

    async def retry(self, now: datetime.datetime, id: str | None = None) -> int:
        """Dead jobs (all of them, or the one with this id) queued again, due now, with no
        attempt counted; how many."""

    async def prune(self, finished_before: datetime.datetime, limit: int) -> int:
        """Delete up to `limit` done jobs finished before that time; how many."""


@dataclass(frozen=True, slots=True)
class MailMessage:
    """One email, rendered: its recipient, subject, plain text and (optionally) HTML body.
    `kind` names the template it came from (for logs: a message's body never is)."""

    to: str
    subject: str
    text: str
    html: str | None = None
    kind: str = "mail"


class Mailer(Protocol):
    """Where email goes: an SMTP server, or the log (development). `send` raises when the
    message was not accepted; the mail job then retries it later."""

    @property
    def name(self) -> str:
        """What the logs call it: `smtp://host:port` (no credentials) or `log`."""

    async def send(self, message: MailMessage) -> None:
        """Hand `message` over for delivery."""
