"""The one pipeline: parse and validate (compile) → plan → execute (ports) → render-ready records.

REST and any other edge call this Service, so every rule (validation, checks, counters,
preconditions, idempotency, hooks) holds whatever the protocol.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from charpente.compile.plan import Delete, GetQuery, Insert, ListQuery, Page, Record, Update
from charpente.compile.policy import (
    DENIED,
    FieldView,
    Filter,
    field_view,
    row_fields,
    row_filter,
    with_filter,
    writable,
)
from charpente.compile.request import (
    encode_cursor,
    parse_get_params,
    parse_history_params,
    parse_list_params,
    split_as_of,
)
from charpente.compile.values import check_row, validate_create, validate_patch
from charpente.design.bind import uses_exists
from charpente.design.evaluate import evaluate
from charpente.design.expr import Expr
from charpente.design.model import ADMIN_ROLE, Design, Field, Kind, Resource
from charpente.errors import (
    ApiError,
    BadRequest,
    FieldError,
    Forbidden,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from charpente.runtime.caller import ANONYMOUS, Caller, rule_auth
from charpente.runtime.clock import SystemClock
from charpente.runtime.counters import Counted, counted_refs, reaches_counted, release_cascaded
from charpente.runtime.encryption import EncryptedFields, FieldCipher
from charpente.runtime.flags import FlagBoard, FlagValue
from charpente.runtime.history import Recorder, history_entry, state_at
from charpente.runtime.hooks import Enqueue, HookContext, Hooks
from charpente.runtime.ids import new_id
from charpente.runtime.jobs import checked_job
from charpente.runtime.ports import Clock, Database, IdempotentResponse, Transaction

__all__ = [
    "Created",
    "IdempotencyKey",
    "Item",
    "ListResult",
    "Precondition",
    "Service",
]

Also = Callable[[Transaction, Record], Awaitable[None]]
"""More work in a create's transaction, once the record is inserted."""
UpdateListener = Callable[[str, Record, Record, Caller], Awaitable[None]]
"""Called after an update commits: resource, record before, record after, caller."""

_MAX_FILTERS = 10_000  # bound rules kept; beyond that the cache starts over

_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}", re.ASCII)
_RETRY_AFTER = {"Retry-After": "5"}


@dataclass(frozen=True, slots=True)
class Item:
    """One record ready to render, and its version even when `fields` trims it.

    `expanded` is a short hash of the expanded records' ids and versions ("" without expand).
    """

    record: Record
    version: int
    expanded: str = ""
    past: bool = False  # a past state (`as_of`): no entity tag, it cannot be written

    @property
    def etag(self) -> str:
        """The entity tag's value: the version, with the expanded records' hash after a `-`."""
        return f"{self.version}-{self.expanded}" if self.expanded else str(self.version)


@dataclass(frozen=True, slots=True)
class ListResult:
    """A page ready to render: its records, the limit, the next cursor and the total if asked."""

    data: list[Record]
    limit: int
    next_cursor: str | None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class Precondition:
    """What If-Match asks: any existing version (`versions` None, for `*`) or one of these."""

    versions: frozenset[int] | None = None

    def allows(self, version: int) -> bool:
        return self.versions is None or version in self.versions


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A POST's Idempotency-Key, where it was sent (`path`, part of the fingerprint), and how
    to render the response stored for replays: `render(record) -> (body, location)`."""

    key: str
    path: str
    render: Callable[[Record], tuple[bytes, str | None]]


@dataclass(frozen=True, slots=True)
class Created:
    """A create's outcome: the new record, or the stored first answer being replayed."""

    item: Item | None = None
    replay: IdempotentResponse | None = None


@dataclass(frozen=True, slots=True)
class _Spec:
    """What the service precomputes once per resource."""

    resource: Resource
    readable: tuple[str, ...]  # every field but writeonly ones, in record order
    refs: Mapping[str, str]  # ref field → target resource
    counted: tuple[Counted, ...]
    cascades_to_counted: bool  # a delete may cascade to rows that counters count
    caller_defaults: tuple[Field, ...]  # fields whose default comes from the caller


class Service:
    """Reads and writes on a design's resources through a Database.

    `list(resource, params)`, `get(resource, id, params)`, `create(resource, body)`,
    `update(resource, id, patch)` and `delete(resource, id)` raise ApiError subclasses
    (NotFound, ValidationFailed, PreconditionFailed, …) for the edge to answer.
    """

    def __init__(
        self,
        design: Design,
        database: Database,
        *,
        clock: Clock | None = None,
        hooks: Hooks | None = None,
        cipher: FieldCipher | None = None,
    ) -> None:
        self.design = design
        self.database = database
        self.clock: Clock = clock or SystemClock()
        self.hooks = hooks or Hooks()
        # Encrypted fields are sealed on every write and opened on every read, right at
        # the Database port: nothing above this line ever sees a sealed value.
        self._sealed = EncryptedFields(design, cipher)
        self._specs = {name: _spec(design, r) for name, r in design.resources.items()}
        # The engine's own reactions to updates (accounts: a disabled one loses its tokens).
        self.on_update: builtins.list[UpdateListener] = []
        # Told the resource of every committed write, before its answer (the response cache).
        self.on_write: builtins.list[Callable[[str], Awaitable[None]]] = []
        self._filters: dict[tuple[object, ...], Filter] = {}
        self.recorder = Recorder(design, self.clock)
        self.flags = FlagBoard(design.flags)  # the flags' current settings (runtime.flags)

    # --- reads -------------------------------------------------------------------------

    async def list(
        self,
        resource: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        caller: Caller = ANONYMOUS,
    ) -> ListResult:
        """A page of `resource` from query parameters (filter, sort, limit, cursor, fields,
        expand, count) among the rows the caller may read; BadRequest or ValidationFailed
        when they are not valid, Unauthorized/Forbidden when the caller may read none."""
        spec, view, query, fetch = self._list_plan(resource, params, caller)
        page = await self.database.select_page(fetch)
        return await self._list_result(spec, view, query, page, caller)

    async def list_under(
        self,
        resource: str,
        params: Sequence[tuple[str, str]],
        via: str,
        parents: Sequence[str],
        *,
        caller: Caller = ANONYMOUS,
    ) -> dict[str, ListResult]:
        """`list` for each parent id, among the records whose ref field `via` holds it (a
        nested GraphQL connection): the same rules, one read for every parent."""
        spec, view, query, fetch = self._list_plan(resource, params, caller)
        if view.restricts and not view.visible(via):
            raise BadRequest(detail=f"you may not filter or sort on: {via}")
        if fetch.fields is not None and via not in fetch.fields:
            fetch = dataclasses.replace(fetch, fields=(*fetch.fields, via))
        pages = await self.database.select_pages(fetch, via, parents)
        return {
            id: await self._list_result(spec, view, query, page, caller)
            for id, page in pages.items()
        }

    def _list_plan(
        self, resource: str, params: Sequence[tuple[str, str]], caller: Caller
    ) -> tuple[_Spec, FieldView, ListQuery, ListQuery]:
        """A list's checks, and (the query asked, the query to run under the read rule)."""
        spec = self._spec(resource)
        rule = self._filter(spec.resource, "list", caller)
        if rule is DENIED:
            raise _refused(caller, resource, hide=False)
        view = field_view(spec.resource, _auth(caller))
        query = parse_list_params(spec.resource, self.design, params)
        if view.restricts:
            _refuse_hidden_names(view, query)
        fetch = _fetching(query, query.fields, query.expand, view)
        return spec, view, query, dataclasses.replace(fetch, where=with_filter(query.where, rule))

    async def _list_result(
        self, spec: _Spec, view: FieldView, query: ListQuery, page: Page, caller: Caller
    ) -> ListResult:
        """A page as the caller sees it: its cursor, field rules applied, refs expanded."""
        auth = _auth(caller)
        cursor = None
        if page.has_more and page.rows:
            cursor = encode_cursor(query, page.rows[-1], spec.resource)
        shown = _shown(spec, query.fields, query.expand)
        opened = self._sealed.open_rows(spec.resource.name, page.rows)
        rows = [_visible(view, row, shown, auth) for row in opened]
        await self._expand(spec, rows, query.expand, caller)
        return ListResult(rows, query.limit, cursor, page.total)

    async def get(
        self,
        resource: str,
        id: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        caller: Caller = ANONYMOUS,
    ) -> Item:
        """One record by id (with `fields` and `expand` from params); NotFound when missing
        or when the caller may not read it."""
        spec = self._spec(resource)
        auth = _auth(caller)
        rule = self._filter(spec.resource, "get", caller)
        if rule is DENIED:
            raise _refused(caller, resource, hide=True)
        view = field_view(spec.resource, auth)
        as_of, params = split_as_of(params) if params else (None, list(params))
        fields, expand = parse_get_params(spec.resource, params) if params else (None, ())
        if as_of is not None:
            if expand:
                raise BadRequest(detail="`expand` cannot be combined with `as_of`")
            return await self._as_of(spec, id, as_of, fields, caller)
        fetch = None if fields is None else (*fields, *expand, "version", *_per_row_names(view))
        query = GetQuery(resource, _path_id(id), fetch, expand, rule)
        found = await self.database.select_one(query)
        if found is None:
            raise NotFound(detail=f"no {resource} with this id")
        found = self._sealed.open(resource, found)
        record = _visible(view, found, _shown(spec, fields, expand), auth)
        if not expand:
            return Item(record, _version(found))
        await self._expand(spec, [record], expand, caller)
        return Item(record, _version(found), _expanded_hash(record, expand))

    async def history(
        self,
        resource: str,
        id: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        caller: Caller = ANONYMOUS,
    ) -> ListResult:
        """A record's events, newest first, a page at a time (`limit`, `cursor`): for whoever
        may read the record, and for admins once it is deleted; NotFound otherwise."""
        spec = self._spec(resource)
        limit, cursor = parse_history_params(params)
        hide = await self._history_view(spec, id, caller)
        events = await self.database.history(resource, id, cursor, limit + 1)
        page = [history_entry(e, hide) for e in events[:limit]]
        next_cursor = str(events[limit - 1].id) if len(events) > limit else None
        return ListResult(page, limit, next_cursor)

    async def _history_view(self, spec: _Spec, id: str, caller: Caller) -> set[str]:
        """The fields to leave out of the record's past for this caller; NotFound when the
        caller may not see its past at all."""
        resource = spec.resource.name
        auth = _auth(caller)
        rule = self._filter(spec.resource, "get", caller)
        if rule is not DENIED:
            found = await self.database.select_one(GetQuery(resource, _path_id(id), None, (), rule))
            if found is not None:
                view = field_view(spec.resource, auth)
                return set() if auth is None else view.hidden_in(found, auth)
        admin = caller.system or caller.role == ADMIN_ROLE
        if admin and await self.database.history(resource, _path_id(id), None, 1):
            # deleted (or hidden by its read rule): its past is for admins only
            return set(field_view(spec.resource, auth).hidden)
        raise NotFound(detail=f"no {resource} with this id")

    async def _as_of(
        self,
        spec: _Spec,
        id: str,
        at: datetime.datetime,
        fields: tuple[str, ...] | None,
        caller: Caller,
    ) -> Item:
        """The record as it was at `at`, rebuilt from its events (see runtime.history)."""
        resource = spec.resource.name
        hide = await self._history_view(spec, id, caller)
        state = state_at(await self.database.events_until(resource, _path_id(id), at), at)
        if state is None:
            raise NotFound(detail=f"no {resource} with this id at {at.isoformat()}")
        shown = [n for n in (fields or spec.readable) if n not in hide]
        record = {name: state.get(name) for name in shown}
        return Item(record, _version(state), past=True)

    async def check_ready(self) -> None:
        """Raise Unavailable (with Retry-After) when the database cannot be reached."""
        try:
            await self.database.ping()
        except Exception as exc:
            error = Unavailable(detail="the database is not reachable", headers=_RETRY_AFTER)
            raise error from exc

    # --- writes ------------------------------------------------------------------------

    async def create(
        self,
        resource: str,
        body: object,
        *,
        request_id: str | None = None,
        idempotency: IdempotencyKey | None = None,
        caller: Caller = ANONYMOUS,
        also: Also | None = None,
    ) -> Created:
        """Validate `body`, run before_create hooks and checks, check the create rule,
        insert, count, commit.

        With an idempotency key (scoped to the caller), a retry with the same body replays
        the stored answer and one with another body is a 422.
        """
        spec = self._spec(resource)
        auth = _auth(caller)
        rule = self._filter(spec.resource, "create", caller)
        if rule is DENIED:
            raise _refused(caller, resource, hide=False)
        fingerprint = _fingerprint(idempotency, body)
        now = self.clock.now()
        values = _normalized(spec, validate_create(spec.resource, body, now))
        _check_field_writes(spec, values.keys() & _keys(body), values, auth)
        values = self._with_caller_defaults(spec, values, caller)
        async with self.database.transaction() as tx:
            if idempotency is not None:
                key = _scoped(idempotency, caller)
                stored = await tx.claim_idempotency_key(key, fingerprint)
                if stored is not None:
                    replay = _replayable(stored, fingerprint)
                    return Created(replay=self._sealed.open_response(resource, replay))
            record = await self._insert(spec, tx, values, now, request_id, (rule, caller))
            if also is not None:
                await also(tx, record)
            if idempotency is not None:
                response = self._sealed.seal_response(
                    resource, _response(idempotency, fingerprint, record)
                )
                await tx.save_idempotent_response(_scoped(idempotency, caller), response)
        await self._written(resource)
        await self.hooks.run_after(
            "create", self._after_context(resource, request_id, caller), record
        )
        view = field_view(spec.resource, auth)
        return Created(item=Item(_visible(view, record, spec.readable, auth), _version(record)))

    async def update(
        self,
        resource: str,
        id: str,
        patch: object,
        *,
        if_match: Precondition | None = None,
        request_id: str | None = None,
        caller: Caller = ANONYMOUS,
    ) -> Item:
        """Apply a JSON Merge Patch under If-Match; a patch that changes nothing writes nothing.

        The update rule must hold before the change and after it (a caller cannot give a
        record away); a record the caller may not read is a 404, unless the rule allows the
        caller no record at all (401 anonymous, 403 signed in).
        """
        spec = self._spec(resource)
        auth = _auth(caller)
        rule = self._filter(spec.resource, "update", caller)
        if rule is DENIED:  # no record allows it: 401/403 whether or not the record exists
            raise _refused(caller, resource, hide=False)
        async with self.database.transaction() as tx:
            current = await self._current(tx, spec, _path_id(id), caller)
            if not await _holds(tx, spec, rule, current, auth):
                raise _refused(caller, resource, hide=False)
            _preconditions(spec, if_match, current)  # only once the write would be allowed
            changes = _normalized(spec, validate_patch(spec.resource, patch, current))
            _check_field_writes(spec, changes.keys(), {**current, **changes}, auth)
            ctx = HookContext(
                resource, request_id, self._reader(tx), self._enqueuer(tx), self._flags_of(caller)
            )
            changes = await self.hooks.run_before_update(ctx, current, changes)
            view = field_view(spec.resource, auth)
            if not changes:
                return Item(_visible(view, current, spec.readable, auth), _version(current))
            await self._refuse_hidden_refs(tx, spec, changes, caller)
            stored = await self._apply_update(spec, tx, current, changes)
            if not await _holds(tx, spec, rule, stored, auth):
                raise _refused(caller, resource, hide=False)
            await self.recorder.updated(tx, resource, current, stored, caller, request_id)
        await self._written(resource)
        await self.hooks.run_after(
            "update", self._after_context(resource, request_id, caller), stored
        )
        for listener in self.on_update:
            await listener(resource, current, stored, caller)
        return Item(_visible(view, stored, spec.readable, auth), _version(stored))

    async def delete(
        self,
        resource: str,
        id: str,
        *,
        if_match: Precondition | None = None,
        request_id: str | None = None,
        caller: Caller = ANONYMOUS,
    ) -> None:
        """Delete under If-Match and the delete rule, keeping counters exact."""
        spec = self._spec(resource)
        auth = _auth(caller)
        rule = self._filter(spec.resource, "delete", caller)
        if rule is DENIED:  # no record allows it: 401/403 whether or not the record exists
            raise _refused(caller, resource, hide=False)
        async with self.database.transaction() as tx:
            current = await self._current(tx, spec, _path_id(id), caller)
            if not await _holds(tx, spec, rule, current, auth):
                raise _refused(caller, resource, hide=False)
            _preconditions(spec, if_match, current)  # only once the write would be allowed
            ctx = HookContext(
                resource, request_id, self._reader(tx), self._enqueuer(tx), self._flags_of(caller)
            )
            await self.hooks.run_before_delete(ctx, current)
            plan = Delete(resource, str(current["id"]), expected_version=_version(current))
            if spec.cascades_to_counted:
                await release_cascaded(self.design, tx, resource, plan.id)
            if not await tx.delete(plan):
                raise PreconditionFailed(detail="the record changed during the request")
            for counted in spec.counted:
                await _count(tx, counted, current.get(counted.field), -1)
            await self.recorder.deleted(tx, resource, current, caller, request_id)
        await self._written(resource)
        ctx = self._after_context(resource, request_id, caller)
        await self.hooks.run_after("delete", ctx, self._shape(spec, current))

    # --- steps -------------------------------------------------------------------------

    async def _written(self, resource: str) -> None:
        for listener in self.on_write:
            await listener(resource)

    def _filter(self, resource: Resource, action: str, caller: Caller) -> Filter:
        """The caller's row filter for `action` (see compile.policy.row_filter), remembered:
        binding a rule walks its tree, and a caller asks the same thing again and again."""
        key = (
            resource.name,
            action,
            caller.id,
            caller.role,
            caller.system,
            caller.flags,
            caller.mfa,
        )
        if key in self._filters:
            return self._filters[key]
        if len(self._filters) >= _MAX_FILTERS:
            self._filters.clear()
        found = self._filters[key] = row_filter(resource, action, _auth(caller))
        return found

    def _spec(self, resource: str) -> _Spec:
        spec = self._specs.get(resource)
        if spec is None:
            raise NotFound(detail="no such resource")
        return spec

    def _shape(self, spec: _Spec, row: Record) -> Record:
        return {name: row.get(name) for name in spec.readable}

    def _with_caller_defaults(
        self, spec: _Spec, values: dict[str, object], caller: Caller
    ) -> dict[str, object]:
        """Fields whose default is the caller (`default: auth.id`) get the caller's id."""
        if not spec.caller_defaults:
            return values
        return {**values, **{f.name: caller.id for f in spec.caller_defaults}}

    async def _current(
        self,
        tx: Transaction,
        spec: _Spec,
        id: str,
        caller: Caller,
    ) -> Record:
        """The record being written, locked, if the caller may read it."""
        resource = spec.resource.name
        read = self._filter(spec.resource, "get", caller)
        if read is DENIED:
            raise _refused(caller, resource, hide=True)
        current = await tx.get(resource, id, for_update=True, where=read)
        if current is None:
            raise NotFound(detail=f"no {resource} with this id")
        return self._sealed.open(resource, current)

    async def _insert(
        self,
        spec: _Spec,
        tx: Transaction,
        values: dict[str, object],
        now: object,
        request_id: str | None,
        guard: tuple[Filter, Caller] = (None, ANONYMOUS),
    ) -> Record:
        reader, enqueuer, flags = self._reader(tx), self._enqueuer(tx), self._flags_of(guard[1])
        ctx = HookContext(spec.resource.name, request_id, reader, enqueuer, flags)
        values = await self.hooks.run_before_create(ctx, values)
        row: dict[str, object] = {"id": new_id(), **values}
        row.update(created_at=now, updated_at=now, version=1)
        _check(spec, row)
        rule, caller = guard
        if rule is not None and not uses_exists(rule) and not _holds_here(rule, row, caller):
            raise _refused(caller, spec.resource.name, hide=False)
        await self._refuse_hidden_refs(tx, spec, row, caller)
        name = spec.resource.name
        stored = await tx.insert(Insert(name, self._sealed.seal(name, row)))
        stored = self._sealed.open(name, stored)
        if rule is not None and uses_exists(rule):
            allowed = await tx.matches(spec.resource.name, str(stored["id"]), rule)
            if not allowed:
                raise _refused(caller, spec.resource.name, hide=False)
        for counted in spec.counted:
            await _count(tx, counted, stored.get(counted.field), +1)
        await self.recorder.created(tx, name, stored, caller, request_id)
        return self._shape(spec, stored)

    async def _refuse_hidden_refs(
        self, tx: Transaction, spec: _Spec, values: Mapping[str, object], caller: Caller
    ) -> None:
        """422 for a reference to a record the caller may not read, worded as for a missing
        record: a write never reveals that such a record exists, nor changes its counters."""
        errors = []
        for name, target in spec.refs.items():
            value = values.get(name)
            if value is None or any(f.name == name for f in spec.caller_defaults):
                continue
            read = self._filter(self._specs[target].resource, "get", caller)
            if read is not None and (
                read is DENIED or await tx.get(target, str(value), where=read) is None
            ):
                errors.append(FieldError(name, "not_found", f"no {target} with this id"))
        if errors:
            raise ValidationFailed(detail="a reference points at no record", errors=errors)

    async def _apply_update(
        self, spec: _Spec, tx: Transaction, current: Record, changes: dict[str, object]
    ) -> Record:
        _check(spec, {**current, **changes})
        changes = {**changes, "updated_at": self.clock.now()}
        sealed = self._sealed.seal(spec.resource.name, changes)
        plan = Update(spec.resource.name, str(current["id"]), sealed, _version(current))
        stored = await tx.update(plan)
        if stored is None:
            raise PreconditionFailed(detail="the record changed during the request")
        stored = self._sealed.open(spec.resource.name, stored)
        for counted in spec.counted:
            old, new = current.get(counted.field), stored.get(counted.field)
            if old != new:
                await _count(tx, counted, old, -1)
                await _count(tx, counted, new, +1)
        return stored

    async def _expand(
        self,
        spec: _Spec,
        rows: builtins.list[Record],
        expand: Sequence[str],
        caller: Caller,
    ) -> None:
        """Inline referenced records the caller may read (null for the others): one query
        per expanded field for the whole page."""
        auth = _auth(caller)
        for name in expand:
            target = self._specs[spec.refs[name]]
            rule = self._filter(target.resource, "get", caller)
            ids = list({str(row[name]) for row in rows if row.get(name) is not None})
            if rule is DENIED:
                ids = []
            view = field_view(target.resource, auth)
            found = await self.database.select_by_ids(
                target.resource.name, ids, target.readable, rule
            )
            opened = self._sealed.open_rows(target.resource.name, found)
            by_id = {str(r["id"]): _visible(view, r, target.readable, auth) for r in opened}
            for row in rows:
                value = row.get(name)
                row[name] = None if value is None else by_id.get(str(value))

    async def read_many(
        self, resource: str, ids: Sequence[str], *, caller: Caller = ANONYMOUS
    ) -> dict[str, Record]:
        """The records among `ids` the caller may read, by id, as `expand` inlines them
        (the get rule, field rules, encrypted fields opened): one query for them all."""
        target = self._spec(resource)
        auth = _auth(caller)
        rule = self._filter(target.resource, "get", caller)
        wanted = list(dict.fromkeys(i for i in ids if _UUID.fullmatch(i)))
        if rule is DENIED or not wanted:
            return {}
        view = field_view(target.resource, auth)
        found = await self.database.select_by_ids(resource, wanted, target.readable, rule)
        opened = self._sealed.open_rows(resource, found)
        return {str(r["id"]): _visible(view, r, target.readable, auth) for r in opened}

    def _after_context(self, resource: str, request_id: str | None, caller: Caller) -> HookContext:
        flags = self._flags_of(caller)
        return HookContext(resource, request_id, self.read_record, self.enqueue_job, flags)

    def _flags_of(self, caller: Caller) -> dict[str, FlagValue]:
        """The caller's flags, as hooks read them (`ctx.flag`): those of the request, else
        (the engine itself, a caller made without the edge) as the board gives them now."""
        return dict(caller.flags or self.flags.values_for(caller))

    async def read_record(self, resource: str, id: str) -> Record | None:
        """A record as after-hooks and jobs see it (no access rule; encrypted fields opened)."""
        spec = self._spec(resource)
        found = await self.database.select_one(GetQuery(resource, id))
        return None if found is None else self._shape(spec, self._sealed.open(resource, found))

    def _enqueuer(self, tx: Transaction) -> Enqueue:
        """What before-hooks queue jobs with: in the write's transaction."""

        async def enqueue(job: str, args: Mapping[str, Any], delay: float) -> str:
            return await tx.enqueue_job(checked_job(self.hooks, job, args, delay, self.clock.now()))

        return enqueue

    async def enqueue_job(self, job: str, args: Mapping[str, Any], delay: float = 0) -> str:
        """Queue a job in a transaction of its own (what after-hooks and jobs use); its id.
        Raises ValueError when the job is not registered or its args or delay are invalid."""
        checked = checked_job(self.hooks, job, args, delay, self.clock.now())
        async with self.database.transaction() as tx:
            return await tx.enqueue_job(checked)

    def _reader(self, tx: Transaction) -> Callable[[str, str], Awaitable[Record | None]]:
        """What before-hooks read with: the transaction's records, opened."""

        async def get(resource: str, id: str) -> Record | None:
            found = await tx.get(resource, id)
            return None if found is None else self._sealed.open(resource, found)

        return get


def _spec(design: Design, resource: Resource) -> _Spec:
    readable = tuple(f.name for f in resource.all_fields if not f.writeonly)
    refs = {f.name: f.ref for f in resource.fields if f.kind is Kind.REF and f.ref}
    counted = counted_refs(design, resource.name)
    cascades = reaches_counted(design, resource.name)
    caller = tuple(f for f in resource.fields if f.default is not None and f.default.expr)
    return _Spec(resource, readable, refs, counted, cascades, caller)


def _fetching(
    query: ListQuery, fields: tuple[str, ...] | None, expand: Sequence[str], view: FieldView
) -> ListQuery:
    """The query to run: expanded refs, and what field rules read, are fetched even when
    `fields` leaves them out."""
    if fields is None:
        return query
    extra = [n for n in (*expand, *_per_row_names(view)) if n not in fields]
    if not extra:
        return query
    return dataclasses.replace(query, fields=(*fields, *dict.fromkeys(extra)))


def _normalized(spec: _Spec, values: dict[str, object]) -> dict[str, object]:
    """An account's email in lower case: unique and signed in with whatever its case."""
    email = values.get("email")
    if spec.resource.builtin and isinstance(email, str):
        return {**values, "email": email.strip().lower()}
    return values


def _auth(caller: Caller) -> dict[str, object] | None:
    """The caller as access rules read it; None for the engine itself (no rule applies)."""
    return rule_auth(caller)


def _refused(caller: Caller, resource: str, *, hide: bool) -> ApiError:
    """401 for a caller without an account; else 404 where a 403 would reveal a record."""
    if not caller.signed_in and not caller.system:
        return Unauthorized(
            detail="sign in to do this", headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    if hide:
        return NotFound(detail=f"no {resource} with this id")
    return Forbidden(detail=f"you may not do this on {resource}")


async def _holds(
    tx: Transaction, spec: _Spec, rule: Filter, row: Record, auth: dict[str, object] | None
) -> bool:
    """Whether `rule` (bound to the caller) holds for `row`, in Python or, with exists(),
    by asking the database about the row as this transaction sees it."""
    if rule is None:
        return True
    if rule is DENIED:
        return False
    if uses_exists(rule):
        return await tx.matches(spec.resource.name, str(row["id"]), rule)
    return evaluate(rule, row, auth) is True


def _holds_here(rule: Expr, row: Record, caller: Caller) -> bool:
    return rule is not DENIED and evaluate(rule, row, _auth(caller)) is True


def _check_field_writes(
    spec: _Spec, names: Iterable[str], row: Mapping[str, object], auth: dict[str, object] | None
) -> None:
    """422 naming each field the body sets that the caller may not write."""
    access = spec.resource.access
    if auth is None or access is None or not access.fields_write:
        return
    refused = writable(access.fields_write, set(names), row, auth)
    if refused:
        errors = [FieldError(name, "forbidden", "you may not set this field") for name in refused]
        raise ValidationFailed(detail="the body sets fields you may not set", errors=errors)


def _keys(body: object) -> set[str]:
    return set(body) if isinstance(body, dict) else set()


def _visible(
    view: FieldView, row: Mapping[str, object], shown: Sequence[str], auth: dict[str, object] | None
) -> Record:
    """`row` as the caller sees it: the `shown` fields, less those its field rules hide."""
    if not view.restricts or auth is None:
        return {name: row.get(name) for name in shown}
    hide = view.hidden_in(row, auth)
    return {name: row.get(name) for name in shown if name not in hide}


def _per_row_names(view: FieldView) -> tuple[str, ...]:
    """Fields that per-row field rules read, so that they are fetched."""
    names: dict[str, None] = {}
    for cond in view.per_row.values():
        names.update(dict.fromkeys(row_fields(cond)))
    return tuple(names)


def _refuse_hidden_names(view: FieldView, query: ListQuery) -> None:
    """A filter or sort on a field the caller may not see on every row would reveal it."""
    names = set(row_fields(query.where)) if query.where is not None else set()
    names.update(key.field for key in query.sort)
    hidden = sorted(n for n in names if not view.visible(n))
    if hidden:
        raise BadRequest(detail=f"you may not filter or sort on: {', '.join(hidden)}")


def _shown(spec: _Spec, fields: Sequence[str] | None, expand: Sequence[str]) -> tuple[str, ...]:
    if fields is None:
        return spec.readable
    wanted = (*fields, *(e for e in expand if e not in fields))
    return tuple(name for name in wanted if name in spec.readable)


def _path_id(id: str) -> str:
    """A record id from a path: a UUID in canonical form, else the record cannot exist."""
    if not _UUID.fullmatch(id):
        raise NotFound(detail="no record with this id")
    return id.lower()


def _version(record: Mapping[str, object]) -> int:
    version = record.get("version")
    assert isinstance(version, int)
    return version


def _expanded_hash(record: Record, expand: Sequence[str]) -> str:
    """A short hash of the ids and versions of `record`'s expanded records."""
    parts = []
    for name in expand:
        value = record.get(name)
        inner = value if isinstance(value, Mapping) else {}
        parts.append(f"{name}={inner.get('id')}@{inner.get('version')}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _preconditions(spec: _Spec, if_match: Precondition | None, current: Record) -> None:
    """428 without If-Match where the resource requires it; 412 when it names another
    version. Checked after authorization: RFC 9110 §13.2.1 ignores preconditions of a
    request that would fail anyway."""
    if if_match is None and spec.resource.require_if_match:
        raise PreconditionRequired(detail=f"{spec.resource.name} needs If-Match on writes")
    if if_match is not None and not if_match.allows(_version(current)):
        raise PreconditionFailed(detail=f"the record is now at version {_version(current)}")


def _check(spec: _Spec, row: Record) -> None:
    """Raise ValidationFailed when the full row breaks a declared check."""
    if spec.resource.checks:
        errors = check_row(spec.resource, row)
        if errors:
            raise ValidationFailed(detail="the record breaks a declared check", errors=errors)


async def _count(tx: Transaction, counted: Counted, ref: object, delta: int) -> None:
    if ref is not None:
        await tx.add_to_counter(counted.target, str(ref), counted.counter, delta)


def _fingerprint(idempotency: IdempotencyKey | None, body: object) -> str:
    """sha256 of the method, the path and the body in canonical JSON ('' without a key)."""
    if idempotency is None:
        return ""
    if not _IDEMPOTENCY_KEY.fullmatch(idempotency.key):
        raise BadRequest(detail="Idempotency-Key must be 1 to 255 printable ASCII characters")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    text = f"POST\n{idempotency.path}\n{canonical}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _replayable(stored: IdempotentResponse, fingerprint: str) -> IdempotentResponse:
    if stored.fingerprint != fingerprint:
        error = FieldError("Idempotency-Key", "reused", "was already used with another request")
        raise ValidationFailed(
            detail="this Idempotency-Key was used for another body", errors=[error]
        )
    return stored


def _response(idempotency: IdempotencyKey, fingerprint: str, record: Record) -> IdempotentResponse:
    body, location = idempotency.render(record)
    return IdempotentResponse(fingerprint, 201, body, location)


def _scoped(idempotency: IdempotencyKey, caller: Caller) -> str:
    """The key as stored: scoped by caller, method and collection path, so one client's
    keys never collide with another's, nor with its own for another collection."""
    return f"POST {idempotency.path}\n{caller.id or '-'}\n{idempotency.key}"
