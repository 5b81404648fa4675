"""The design model: what a design file declares, as small frozen records.

Pure data, no behaviour beyond lookups. design.load builds it; everything else reads it.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field as dc_field

from charpente.design.expr import Expr
from charpente.design.limits import LimitRule

__all__ = [
    "ACTIONS",
    "ADMIN_ROLE",
    "SYSTEM_FIELDS",
    "Access",
    "AuthConfig",
    "CachePolicy",
    "Check",
    "Cors",
    "CountSource",
    "Default",
    "Design",
    "Field",
    "Flag",
    "FlagVariant",
    "Index",
    "IndexColumn",
    "Kind",
    "OnDelete",
    "Position",
    "Provider",
    "Resource",
    "Rule",
]

ACTIONS = ("list", "get", "create", "update", "delete")
"""What access rules govern; `read` in a design sets both `list` and `get`."""

ADMIN_ROLE = "admin"
"""The role that a resource without an `access` block is reserved to."""


class Kind(enum.StrEnum):
    """A field's type, as written in a design."""

    STRING = "string"
    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    DECIMAL = "decimal"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"
    ENUM = "enum"
    JSON = "json"
    EMAIL = "email"
    URL = "url"
    UUID = "uuid"
    REF = "ref"
    COUNT = "count"  # a counter kept exact by the engine: `count: likes.post`


class OnDelete(enum.StrEnum):
    """What happens to a referencing row when the referenced row is deleted."""

    RESTRICT = "restrict"
    CASCADE = "cascade"
    SET_NULL = "set_null"


@dataclass(frozen=True, slots=True)
class Position:
    """Where something stands in a design file (1-based line and column)."""

    file: str = "<design>"
    line: int = 0
    column: int = 0


NOWHERE = Position()


@dataclass(frozen=True, slots=True)
class Default:
    """A field's default: a literal `value` (already of the field's kind) or the time of the write.

    `expr` is reserved for defaults computed from the caller (`auth.id`).
    """

    value: object = None
    now: bool = False
    expr: Expr | None = None


@dataclass(frozen=True, slots=True)
class CountSource:
    """`count: likes.post`: rows of `resource` whose `field` references this record.

    `hidden`: `count_hidden: true`, the design counts rows the reader may not read on
    purpose (no warning)."""

    resource: str
    field: str
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a resource.

    Values at run time, by kind: str (string, text, email, url, enum, uuid, ref), int (int,
    count), float, decimal.Decimal, bool, datetime.date, datetime.datetime (aware, UTC),
    and any JSON value for json. Ids and refs are canonical lowercase UUID strings.
    """

    name: str
    kind: Kind
    required: bool = False
    default: Default | None = None
    unique: bool = False
    readonly: bool = False  # clients never set it (422 if they try)
    writeonly: bool = False  # clients set it, it is never returned
    immutable: bool = False  # set on create, never changed
    minimum: int | float | None = None
    maximum: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()  # enum values
    ref: str | None = None  # target resource of a ref
    on_delete: OnDelete = OnDelete.RESTRICT
    count: CountSource | None = None
    precision: int = 18  # decimal digits in all (decimal only)
    scale: int = 2  # decimal digits after the point (decimal only)
    system: bool = False  # id, created_at, updated_at, version: managed by the server
    encrypted: bool = False  # stored sealed (AES-256-GCM); never filtered, sorted or indexed
    description: str | None = None  # a sentence for the API docs
    renamed_from: str | None = dc_field(default=None, compare=False)  # the stored column's old name
    pos: Position = dc_field(default=NOWHERE, compare=False)

    @property
    def is_client_writable(self) -> bool:
        """Whether a client may ever put this field in a body."""
        from_caller = self.default is not None and self.default.expr is not None
        return not (self.system or self.readonly or self.kind is Kind.COUNT or from_caller)


SYSTEM_FIELDS: tuple[Field, ...] = (
    Field("id", Kind.UUID, readonly=True, system=True),
    Field("created_at", Kind.DATETIME, readonly=True, system=True),
    Field("updated_at", Kind.DATETIME, readonly=True, system=True),
    Field("version", Kind.INT, readonly=True, system=True),
)


@dataclass(frozen=True, slots=True)
class IndexColumn:
    """One column of an index; `-created_at` in a design is descending."""

    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Index:
    """A (possibly composite) index the design asks for."""

    columns: tuple[IndexColumn, ...]
    unique: bool = False
    pos: Position = dc_field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Check:
    """A declared check: an expression every row must satisfy."""

    source: str
    expr: Expr
    message: str | None = None
    pos: Position = dc_field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Rule:
    """An access rule: its text and its tree, resolved against the resource (auth names kept)."""

    source: str
    expr: Expr
    pos: Position = dc_field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Access:
    """Who may do what on a resource: a rule per action (ACTIONS), and field rules.

    `fields_read` hides a field from callers for whom its rule is not true;
    `fields_write` refuses a body that sets the field (422) when its rule is not true.
    `declared` is False when the design gave no `access` block (admin-only defaults).
    """

    rules: Mapping[str, Rule]
    fields_read: Mapping[str, Rule] = dc_field(default_factory=dict)
    fields_write: Mapping[str, Rule] = dc_field(default_factory=dict)
    declared: bool = True


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Cache a resource's GET answers for at most `ttl` seconds; while one request
    recomputes an invalidated answer, others may get the previous one if it is at most
    `stale` seconds old (design.cache reads it)."""

    ttl: float
    stale: float = 0.0


@dataclass(frozen=True, slots=True)
class Resource:
    """A collection of records with the same fields: `/v1/{name}`."""

    name: str
    fields: tuple[Field, ...]  # declared fields, in design order (no system fields)
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[Index, ...] = ()
    checks: tuple[Check, ...] = ()
    require_if_match: bool = False
    description: str | None = None
    # Rules and limits are not schema: they take no part in equality (nor in migrations).
    access: Access | None = dc_field(default=None, compare=False)  # filled by design.check
    limits: Mapping[str, LimitRule] = dc_field(default_factory=dict, compare=False)
    events: tuple[str, ...] = dc_field(default=(), compare=False)  # to the outbox: created, ...
    cache: CachePolicy | None = dc_field(default=None, compare=False)  # GET answers cached
    builtin: bool = False  # the `accounts` resource, extended by `auth.profile`
    renamed_from: str | None = dc_field(default=None, compare=False)  # the stored table's old name
    pos: Position = dc_field(default=NOWHERE, compare=False)

    @property
    def all_fields(self) -> tuple[Field, ...]:
        """System fields and declared ones: id first, then the design's, then the timestamps."""
        return (SYSTEM_FIELDS[0], *self.fields, *SYSTEM_FIELDS[1:])

    def field(self, name: str) -> Field | None:
        """The field called `name` (system ones included), or None."""
        for f in SYSTEM_FIELDS:
            if f.name == name:
                return f
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def counters(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.kind is Kind.COUNT)


@dataclass(frozen=True, slots=True)
class Provider:
    """An OAuth2 / OIDC login provider. Client id and secret are environment variable names."""

    name: str
    kind: str  # "oidc" (Google and other OpenID Connect providers) or "github"
    client_id_env: str
    client_secret_env: str
    issuer: str | None = None  # oidc: where discovery starts
    base_url: str | None = None  # github: github.com, or a local twin
    api_url: str | None = None  # github: api.github.com, or a local twin


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The design's `auth` block: signup policy, roles (the first is the default), providers,
    where OAuth logins may send people back to, and token lifetimes (seconds)."""

    signup: str = "closed"  # open | invite | closed
    roles: tuple[str, ...] = ("member", ADMIN_ROLE)
    providers: tuple[Provider, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 86400
    algorithm: str = "EdDSA"  # or ES256
    app_name: str | None = None  # what emails call the application (default: the design's name)
    app_url: str | None = None  # the application: every link an email carries points under it
    verify_email: str = "off"  # required | optional | off
    mail_templates: str | None = None  # a folder of templates, relative to the design file
    require_mfa: tuple[str, ...] = ()  # roles that sign in only with a second factor

    def provider(self, name: str) -> Provider | None:
        return next((p for p in self.providers if p.name == name), None)


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook the design declares: where to POST which events, signed with which secret.

    The URL is either written out or read from the environment variable `url_env`; the
    secret always comes from the environment variable `secret_env`.
    """

    name: str
    events: tuple[str, ...]  # `posts.created`, `posts.*`, `*.*`
    secret_env: str
    url: str | None = None
    url_env: str | None = None
    description: str | None = None
    pos: Position = dc_field(default=NOWHERE, compare=False)


@dataclass(frozen=True, slots=True)
class Cors:
    """Cross-origin requests: which browser origins may call the API."""

    origins: tuple[str, ...] = ()
    credentials: bool = False
    max_age: int = 600


@dataclass(frozen=True)
class Design:
    """A whole design file: its resources and the engine options it sets."""

    name: str
    api_version: int
    resources: Mapping[str, Resource]
    hooks: str | None = None  # a module name or a .py file relative to the design
    format_version: int = 1
    source: str = "<design>"  # the file it came from, for messages
    warnings: tuple[str, ...] = ()
    auth: AuthConfig = dc_field(default_factory=AuthConfig)
    cors: Cors = dc_field(default_factory=Cors)
    limits: Mapping[str, LimitRule] = dc_field(default_factory=dict)  # `all`, `auth`
    webhooks: tuple[Webhook, ...] = ()
    outbound_allow: tuple[str, ...] = ()  # private networks webhooks may reach (CIDR)
    flags: Mapping[str, Flag] = dc_field(default_factory=dict)  # the `flags` section
    graphql_introspection: bool = True  # `graphql: {introspection: false}` switches it off

    def resource(self, name: str) -> Resource | None:
        return self.resources.get(name)

    def referencing(self, name: str) -> tuple[tuple[Resource, Field], ...]:
        """Every (resource, ref field) that points at resource `name`."""
        return tuple((r, f) for r in self.resources.values() for f in r.fields if f.ref == name)


@dataclass(frozen=True, slots=True)
class FlagVariant:
    """One value of a multivariate flag and the share of callers (percent) who get it."""

    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class Flag:
    """A feature flag the design declares (`flags:`); its settings are the run-time defaults.

    A caller has the flag on when their role is in `allow`, or when they fall in the first
    `rollout` percent of `group` (bucketed by `by`); everyone else gets `default`. With
    `variants`, a caller who has it on gets one variant's name, bucketed by its weights.
    """

    name: str
    default: bool = False
    rollout: int | None = None  # percent, 0..100; None: no rollout (everyone gets default)
    by: str = "account"  # account (the caller's id, else a client id) | client
    group: str = ""  # the bucketing group; the flag's name when empty
    allow: tuple[str, ...] = ()
    expires: datetime.date | None = None
    owner: str | None = None
    variants: tuple[FlagVariant, ...] = ()
    description: str | None = None
    pos: Position = dc_field(default_factory=Position)

    @property
    def bucket_group(self) -> str:
        return self.group or self.name
