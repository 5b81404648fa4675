"""The design as SQLAlchemy tables: one table per resource, plus the engine's own tables.

Both the Database adapter and the migration planner read this, so the tables they use are
the tables the design describes, by construction.
"""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from charpente.design.auth import ACCOUNTS
from charpente.design.model import Design, Field, Index, IndexColumn, Kind, OnDelete, Resource

__all__ = [
    "FLAGS_TABLE",
    "FLAG_HISTORY_TABLE",
    "IDEMPOTENCY_TABLE",
    "JOBS_TABLE",
    "MAX_NAME_LENGTH",
    "SHAPES_TABLE",
    "SHAPE_BUCKETS",
    "UtcDateTime",
    "auth_tables",
    "build_metadata",
    "column_type",
    "event_tables",
    "flag_tables",
    "index_name",
    "job_tables",
    "shape_tables",
    "webhook_tables",
]

IDEMPOTENCY_TABLE = "charpente_idempotency"
MAX_NAME_LENGTH = 63  # PostgreSQL's limit on identifiers

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_ON_DELETE = {
    OnDelete.RESTRICT: "RESTRICT",
    OnDelete.CASCADE: "CASCADE",
    OnDelete.SET_NULL: "SET NULL",
}


class UtcDateTime(sa.types.TypeDecorator[datetime.datetime]):
    """A timestamp stored in UTC and always read back as an aware UTC datetime."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: sa.Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        value = value.astimezone(datetime.UTC)
        # SQLite stores text: keep it naive so that every stored value sorts the same way.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: datetime.datetime | None, dialect: sa.Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


def column_type(field: Field) -> sa.types.TypeEngine[Any]:
    """The SQL type that stores values of `field`'s kind on every dialect."""
    kind = field.kind
    # An encrypted value is stored as the text of its sealed form, whatever its kind.
    if field.encrypted or kind in (Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.URL, Kind.ENUM):
        # Code-point order on every dialect (SQLite's default), whatever the server's locale.
        return sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
    if kind in (Kind.INT, Kind.COUNT) or field.name == "version":
        return sa.BigInteger()
    if kind is Kind.FLOAT:
        return sa.Double()
    if kind is Kind.DECIMAL:
        return sa.Numeric(field.precision, field.scale, asdecimal=True)
    if kind is Kind.BOOL:
        return sa.Boolean()
    if kind is Kind.DATE:
        return sa.Date()
    if kind is Kind.DATETIME:
        return UtcDateTime()
    if kind is Kind.JSON:
        return sa.JSON(none_as_null=True).with_variant(
            postgresql.JSONB(none_as_null=True), "postgresql"
        )
    if kind in (Kind.UUID, Kind.REF):
        return sa.Uuid(as_uuid=False)
    raise AssertionError(f"no column type for kind {kind}")  # every Kind is handled above


def build_metadata(design: Design) -> sa.MetaData:
    """Every table the design needs, with constraints and indexes named deterministically."""
    metadata = sa.MetaData(naming_convention=NAMING)
    for resource in design.resources.values():
        _resource_table(metadata, resource)
    _idempotency_table(metadata)
    event_tables(metadata)
    job_tables(metadata)
    if design.flags:
        flag_tables(metadata)
    shape_tables(metadata)
    if ACCOUNTS in design.resources:
        auth_tables(metadata)
        webhook_tables(metadata)
    return metadata


def _resource_table(metadata: sa.MetaData, resource: Resource) -> sa.Table:
    columns = [_column(f) for f in resource.all_fields]
    table = sa.Table(resource.name, metadata, *columns)
    for names in resource.unique:
        table.append_constraint(sa.UniqueConstraint(*(table.c[n] for n in names)))
    indexed_first = {idx.columns[0].field for idx in resource.indexes}
    indexed_first |= {names[0] for names in resource.unique}
    for index in resource.indexes:
        exprs = [
            table.c[c.field].desc() if c.descending else table.c[c.field]
            for c in _with_tie_breaker(index)
        ]
        sa.Index(index_name(resource.name, index.columns), *exprs, unique=index.unique)
    for f in resource.fields:
        # A reference is looked up and cascaded through: index it unless an index leads with it.
        if f.kind is Kind.REF and not f.unique and f.name not in indexed_first:
            name = index_name(resource.name, (IndexColumn(f.name),))
            sa.Index(name, table.c[f.name], table.c.id)
    return table


def index_name(table: str, columns: tuple[IndexColumn, ...]) -> str:
    """`ix_{table}_{columns}`, a descending column as `{field}_desc`; a name over
    MAX_NAME_LENGTH characters is cut and ends with a short hash of the whole name."""
    parts = (f"{c.field}_desc" if c.descending else c.field for c in columns)
    name = "ix_{}_{}".format(table, "_".join(parts))
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]
    return f"{name[: MAX_NAME_LENGTH - len(digest) - 1]}_{digest}"


def _with_tie_breaker(index: Index) -> tuple[IndexColumn, ...]:
    """A non-unique index ends with `id` in its last column's direction: lists always sort
    by id last, so the index then serves the whole ORDER BY and the keyset comparison."""
    if index.unique or any(c.field == "id" for c in index.columns):
        return index.columns
    return (*index.columns, IndexColumn("id", index.columns[-1].descending))


def _column(field: Field) -> sa.Column[Any]:
    args: list[Any] = []
    if field.kind is Kind.REF and field.ref is not None:
        args.append(sa.ForeignKey(f"{field.ref}.id", ondelete=_ON_DELETE[field.on_delete]))
    server_default = sa.text("0") if field.kind is Kind.COUNT else None
    return sa.Column(
        field.name,
        column_type(field),
        *args,
        primary_key=field.name == "id",
        nullable=not (field.required or field.system or field.kind is Kind.COUNT),
        unique=field.unique or None,
        server_default=server_default,
    )


def auth_tables(metadata: sa.MetaData) -> None:
    """The engine's own account tables: passwords, refresh tokens, one-time login codes,
    invitations, linked OAuth identities, signing keys and the authentication log."""
    account = sa.Uuid(as_uuid=False)

    def owner() -> sa.Column[Any]:
        fk = sa.ForeignKey(f"{ACCOUNTS}.id", ondelete="CASCADE")
        return sa.Column("account", account, fk, nullable=False, index=True)

    sa.Table(
        "charpente_passwords",
        metadata,
        sa.Column("account", account, sa.ForeignKey(f"{ACCOUNTS}.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("changed_at", UtcDateTime(), nullable=False),
    )  # fmt: skip
    sa.Table(
        "charpente_refresh_tokens",
        metadata,
        sa.Column("hash", sa.Text(), primary_key=True),
        sa.Column("family", sa.Text(), nullable=False, index=True),
        owner(),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
    )
    sa.Table(
        "charpente_login_codes",
        metadata,
        sa.Column("hash", sa.Text(), primary_key=True),
        owner(),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
    )
    sa.Table(
        "charpente_invites",
        metadata,
        sa.Column("hash", sa.Text(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
    )
    sa.Table(
        "charpente_identities",
        metadata,
        sa.Column("provider", sa.Text(), primary_key=True),
        sa.Column("subject", sa.Text(), primary_key=True),
        owner(),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    sa.Table(
        "charpente_sessions",  # one per sign-in: its refresh-token family, for people to see
        metadata,
        sa.Column("family", sa.Text(), primary_key=True),
        owner(),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_used_at", UtcDateTime(), nullable=False),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("method", sa.Text(), nullable=False),  # password | oauth
        sa.Column("amr", sa.Text(), nullable=True),  # RFC 8176 methods, space-separated
    )
    sa.Table(
        "charpente_mfa",  # an account's TOTP secret (sealed when keys are configured)
        metadata,
        sa.Column("account", account, sa.ForeignKey(f"{ACCOUNTS}.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("confirmed_at", UtcDateTime(), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),  # a code is used once
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
    )  # fmt: skip
    sa.Table(
        "charpente_recovery_codes",
        metadata,
        sa.Column("hash", sa.Text(), primary_key=True),
        owner(),
        sa.Column("used_at", UtcDateTime(), nullable=True),
    )
    sa.Table(
        "charpente_email_tokens",  # one-time links sent by email: verify, reset, change
        metadata,
        sa.Column("hash", sa.Text(), primary_key=True),
        owner(),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),  # the address the link was sent to
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
    )
    sa.Table(
        "charpente_signing_keys",
        metadata,
        sa.Column("kid", sa.Text(), primary_key=True),
        sa.Column("record", sa.Text(), nullable=False),  # JSON; the private key sealed if set up
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    sa.Table(
        "charpente_auth_log",
        metadata,
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("at", UtcDateTime(), nullable=False, index=True),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("account", account, nullable=True, index=True),  # no FK: outlives it
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )


EVENTS_TABLE = "charpente_events"
OUTBOX_TABLE = "charpente_outbox"


def event_tables(metadata: sa.MetaData) -> None:
    """The audit history (append-only: the engine never updates nor deletes its rows) and the
    outbox (events waiting for the relay, pointing at their history row; a row is removed
    once its message is published)."""
    uuid = sa.Uuid(as_uuid=False)
    sa.Table(
        EVENTS_TABLE,
        metadata,
        sa.Column("id", uuid, primary_key=True),  # UUIDv7: in time order
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("record_id", uuid, nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("actor", uuid, nullable=True),  # no FK: the history outlives accounts
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("changes", sa.Text(), nullable=False),  # JSON: field -> new value
        # JSON: the record after the change, for resources with `events:` (live streams
        # resumed from the history filter on it)
        sa.Column("record", sa.Text(), nullable=True),
        sa.Index("ix_charpente_events_record", "resource", "record_id", "id"),
        sa.Index("ix_charpente_events_resource", "resource", "id"),
        sa.Index("ix_charpente_events_at", "at"),
    )
    sa.Table(
        OUTBOX_TABLE,
        metadata,
        # Commit order per record: a record's writes are serialized by its row lock.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("id", uuid, nullable=False),  # the event's id: the message id
        sa.Column("key", sa.Text(), nullable=False),  # {resource}.{action}
        sa.Column("subject", sa.Text(), nullable=False),  # the record id: order is kept per subject
        sa.Column("created_at", UtcDateTime(), nullable=False),
        # The W3C traceparent of the write (its producer span) when it was traced: the relay
        # continues that trace, in whichever process it runs.
        sa.Column("traceparent", sa.Text(), nullable=True),
        # The message itself is built from the history row when it is published: a write
        # stores its record once. No index on subject: the outbox holds what waits, few rows.
    )  # fmt: skip


def webhook_tables(metadata: sa.MetaData) -> None:
    """Webhook endpoints added at run time, and the deliveries owed to every endpoint (the
    design's too: `webhook` is a name, not a reference)."""
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    sa.Table(
        "charpente_webhooks",
        metadata,
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False, unique=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", json, nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),  # sealed when keys are configured
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.Uuid(as_uuid=False), nullable=True),  # no FK: outlives it
        sa.Column("updated_at", UtcDateTime(), nullable=True),
    )
    deliveries = sa.Table(
        "charpente_deliveries",
        metadata,
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),
        sa.Column("webhook", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),  # pending | delivered | dead
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_until", UtcDateTime(), nullable=True),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("webhook", "message_id"),
    )
    # Claiming reads the due pending ones in order; listing reads one endpoint's newest.
    sa.Index(None, deliveries.c.state, deliveries.c.next_attempt_at)
    sa.Index(None, deliveries.c.webhook, deliveries.c.state, deliveries.c.id)


JOBS_TABLE = "charpente_jobs"


def job_tables(metadata: sa.MetaData) -> None:
    """The job queue: jobs that hooks queued, run by the worker with retries; `done` ones
    are pruned after a while, `dead` ones stay until retried."""
    jobs = sa.Table(
        JOBS_TABLE,
        metadata,
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),  # UUIDv7: in time order
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),  # a JSON object
        sa.Column("state", sa.Text(), nullable=False),  # queued | running | done | dead
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_until", UtcDateTime(), nullable=True),  # the running worker's lease
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        # The W3C traceparent of the request whose hook queued it, when traced.
        sa.Column("traceparent", sa.Text(), nullable=True),
    )
    # Claiming reads queued jobs by run_at, and running ones whose lease has ended.
    sa.Index(None, jobs.c.state, jobs.c.run_at)
    sa.Index(None, jobs.c.state, jobs.c.claimed_until)


def _idempotency_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        IDEMPOTENCY_TABLE,
        metadata,
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )


FLAGS_TABLE = "charpente_flags"
FLAG_HISTORY_TABLE = "charpente_flag_history"


def flag_tables(metadata: sa.MetaData) -> None:
    """Feature flags as admins set them (the design gives the defaults), and every change."""
    sa.Table(
        FLAGS_TABLE,
        metadata,
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("setting", sa.Text(), nullable=True),  # a JSON object; null: the design's
        sa.Column("changed_at", UtcDateTime(), nullable=False),  # or first seen, if never set
        sa.Column("changed_by", sa.Text(), nullable=True),
    )
    history = sa.Table(
        FLAG_HISTORY_TABLE,
        metadata,
        sa.Column("id", sa.Uuid(as_uuid=False), primary_key=True),  # UUIDv7: in time order
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
    )
    sa.Index(None, history.c.name, history.c.id)


SHAPES_TABLE = "charpente_query_shapes"
SHAPE_BUCKETS = tuple(f"h{i}" for i in range(13))  # runtime.shapes.BUCKETS_US, and the rest


def shape_tables(metadata: sa.MetaData) -> None:
    """`charpente_query_shapes`: one row per shape, its counts summed over processes."""
    sa.Table(
        SHAPES_TABLE,
        metadata,
        sa.Column("id", sa.Text(), primary_key=True),  # compile.shapes.shape_id
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),  # the shape as JSON, no values
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("total_us", sa.BigInteger(), nullable=False),
        sa.Column("max_us", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in SHAPE_BUCKETS),
        sa.Column("first_seen", UtcDateTime(), nullable=False),
        sa.Column("last_seen", UtcDateTime(), nullable=False),
    )
