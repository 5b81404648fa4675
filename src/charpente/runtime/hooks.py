"""Hooks: the user's server-side Python, registered on a `Hooks` object by resource and event.

Before-hooks run inside the write's transaction and may change values or reject the write;
after-hooks run once it has committed. `route` adds custom endpoints beside the generated ones,
and `job` registers functions that the worker runs when hooks queue them (runtime.jobs).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import math
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from charpente.compile.plan import Record
from charpente.runtime.caller import Caller

if TYPE_CHECKING:  # the service imports this module: only its type is needed here
    from charpente.runtime.service import Created, Item, ListResult, Service

__all__ = ["CustomRoute", "HookContext", "Hooks", "JobFunction", "RouteContext", "load_hooks"]

logger = logging.getLogger("charpente.hooks")

F = TypeVar("F", bound=Callable[..., Any])
RecordReader = Callable[[str, str], Awaitable[Record | None]]
Enqueue = Callable[[str, Mapping[str, Any], float], Awaitable[str]]
"""Enqueue a job: (function name, JSON arguments, delay in seconds) → the job's id."""

_EVENTS = ("create", "update", "delete")
_JOB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}", re.ASCII)
MAX_RETRIES = 100
MAX_TIMEOUT = 24 * 3600.0  # seconds


@dataclass(frozen=True, slots=True)
class HookContext:
    """What a hook knows about the write: its resource, the request id, and a record reader.

    `get` reads inside the write's transaction for before-hooks and from the database for
    after-hooks; it never writes.
    """

    resource: str
    request_id: str | None
    reader: RecordReader = field(repr=False)
    enqueuer: Enqueue | None = field(default=None, repr=False)
    flags: Mapping[str, bool | str | None] = field(default_factory=dict)

    def flag(self, name: str) -> bool | str | None:
        """The caller's value of the flag `name` (a variant's name for a multivariate flag,
        None when it is off); LookupError for a flag the design does not declare."""
        if name not in self.flags:
            raise LookupError(f"unknown flag {name!r}: declare it under `flags` in the design")
        return self.flags[name]

    async def get(self, resource: str, id: str) -> Record | None:
        """The record `id` of `resource`, or None."""
        return await self.reader(resource, id)

    async def enqueue(
        self, job: str, args: Mapping[str, Any] | None = None, *, delay: float = 0
    ) -> str:
        """Queue the job `job` (a function registered with `@hooks.job`) with JSON `args`,
        to run in the worker `delay` seconds from now at the earliest; its id.

        In a before-hook the job is queued in the write's transaction: it exists only if the
        write commits. In an after-hook it is queued on its own, once the write committed.
        """
        if self.enqueuer is None:
            raise RuntimeError("jobs cannot be queued here")
        return await self.enqueuer(job, args or {}, delay)


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What a custom route (`async def f(request, ctx)`) knows: the authenticated caller,
    the request id, and the service's reads and writes made as that caller — every access
    rule, check and hook of the design applies, as on the generated routes."""

    caller: Caller
    request_id: str | None
    service: Service = field(repr=False)

    async def list(self, resource: str, params: Sequence[tuple[str, str]] = ()) -> ListResult:
        """A page of `resource`, `params` being the query of `GET /v1/{resource}`."""
        return await self.service.list(resource, params, caller=self.caller)

    async def get(self, resource: str, id: str, params: Sequence[tuple[str, str]] = ()) -> Item:
        """One record (NotFound when the caller may not read it)."""
        return await self.service.get(resource, id, params, caller=self.caller)

    async def create(self, resource: str, body: Mapping[str, Any]) -> Created:
        """Create a record as the caller."""
        return await self.service.create(
            resource, dict(body), request_id=self.request_id, caller=self.caller
        )

    async def update(self, resource: str, id: str, patch: Mapping[str, Any]) -> Item:
        """Change a record as the caller (a merge patch)."""
        return await self.service.update(
            resource, id, dict(patch), request_id=self.request_id, caller=self.caller
        )

    async def delete(self, resource: str, id: str) -> None:
        """Delete a record as the caller."""
        await self.service.delete(resource, id, request_id=self.request_id, caller=self.caller)


@dataclass(frozen=True, slots=True)
class CustomRoute:
    """An endpoint a hooks module adds: a Starlette endpoint (`async def f(request)`), or
    `async def f(request, ctx)` to get a RouteContext (the caller) as well."""

    path: str
    methods: tuple[str, ...]
    endpoint: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class JobFunction:
    """A function registered with `@hooks.job`: `async def f(ctx, args)`, how many times it
    is retried after a failed attempt, and how many seconds an attempt may take."""

    name: str
    function: Callable[..., Awaitable[Any]] = field(repr=False)
    retries: int
    timeout: float

    @property
    def max_attempts(self) -> int:
        return self.retries + 1


class Hooks:
    """The registry a hooks module fills in with decorators.

    hooks = Hooks()

    @hooks.before_create("posts")
    async def no_shouting(ctx, values): ...
    """

    def __init__(self) -> None:
        self._hooks: dict[tuple[str, str, str], list[Callable[..., Any]]] = {}
        self.routes: list[CustomRoute] = []
        self.jobs: dict[str, JobFunction] = {}

    def before_create(self, resource: str) -> Callable[[F], F]:
        """`f(ctx, values)`: may change `values` (in place or by returning a dict)."""
        return self._register("before", "create", resource)

    def after_create(self, resource: str) -> Callable[[F], F]:
        """`f(ctx, record)`: after commit, with the stored record."""
        return self._register("after", "create", resource)

    def before_update(self, resource: str) -> Callable[[F], F]:
        """`f(ctx, current, changes)`: may change `changes` (in place or by returning a dict)."""
        return self._register("before", "update", resource)

    def after_update(self, resource: str) -> Callable[[F], F]:
        """`f(ctx, record)`: after commit, with the stored record."""
        return self._register("after", "update", resource)

    def before_delete(self, resource: str) -> Callable[[F], F]:
        """`f(ctx, current)`: may reject the deletion by raising."""
        return self._register("before", "delete", resource)

    def after_delete(self, resource: str) -> Callable[[F], F]:
        """`f(ctx, record)`: after commit, with the record as it was."""
        return self._register("after", "delete", resource)

    def route(self, path: str, methods: Sequence[str] = ("GET",)) -> Callable[[F], F]:
        """Mount `f(request) -> Response` (a Starlette endpoint) at `path`; declared as
        `f(request, ctx)`, it also gets a RouteContext: the caller, and the service as them."""

        def register(endpoint: F) -> F:
            upper = tuple(m.upper() for m in methods)
            self.routes.append(CustomRoute(path, upper, endpoint))
            return endpoint

        return register

    def job(self, name: str, *, retries: int = 5, timeout: float = 60) -> Callable[[F], F]:
        """`async def f(ctx, args)`: run by the worker when a hook queues `name`, retried
        `retries` times after failed attempts, each attempt cut after `timeout` seconds."""
        if not _JOB_NAME.fullmatch(name):
            raise ValueError(
                f"job name {name!r}: use letters, digits and _ . : - "
                "(at most 100, starting with a letter or _)"
            )
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"job {name!r}: retries must be an integer")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"job {name!r}: retries must be between 0 and {MAX_RETRIES}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"job {name!r}: timeout must be a number of seconds")
        if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
            raise ValueError(f"job {name!r}: timeout must be over 0 and at most {MAX_TIMEOUT:g} s")

        def register(function: F) -> F:
            if not inspect.iscoroutinefunction(function):
                raise TypeError(f"job {name!r}: register an `async def` function")
            if name in self.jobs:
                raise ValueError(f"a job named {name!r} is registered already")
            self.jobs[name] = JobFunction(name, function, retries, float(timeout))
            return function

        return register

    async def run_before_create(self, ctx: HookContext, values: Record) -> Record:
        """Run the before_create hooks in order; the values they leave (exceptions propagate)."""
        for hook in self._hooks.get(("before", "create", ctx.resource), ()):
            values = _changed(await _call(hook, ctx, values), values)
        return values

    async def run_before_update(self, ctx: HookContext, current: Record, changes: Record) -> Record:
        """Run the before_update hooks in order; the changes they leave."""
        for hook in self._hooks.get(("before", "update", ctx.resource), ()):
            changes = _changed(await _call(hook, ctx, current, changes), changes)
        return changes

    async def run_before_delete(self, ctx: HookContext, current: Record) -> None:
        """Run the before_delete hooks in order (one raises to reject the deletion)."""
        for hook in self._hooks.get(("before", "delete", ctx.resource), ()):
            await _call(hook, ctx, current)

    async def run_after(self, event: str, ctx: HookContext, record: Record) -> None:
        """Run the after-hooks of `event`; a failure is logged with the request id, not raised."""
        for hook in self._hooks.get(("after", event, ctx.resource), ()):
            try:
                await _call(hook, ctx, record)
            except Exception:
                logger.exception(
                    "after_%s hook %s failed on %s (request %s)",
                    event,
                    getattr(hook, "__qualname__", hook),
                    ctx.resource,
                    ctx.request_id,
                )

    def _register(self, moment: str, event: str, resource: str) -> Callable[[F], F]:
        assert event in _EVENTS

        def register(hook: F) -> F:
            self._hooks.setdefault((moment, event, resource), []).append(hook)
            return hook

        return register


def _changed(result: object, given: Record) -> Record:
    """What a before-hook leaves: the dict it returned, else the one it was given."""
    return dict(result) if isinstance(result, Mapping) else given


async def _call(hook: Callable[..., Any], *args: Any) -> Any:
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def load_hooks(spec: str, base: Path | None = None) -> Hooks:
    """The `hooks` object of a module: `spec` is a `.py` file (relative to `base`) or a
    dotted module name. Raises ImportError when it cannot be loaded or has no `Hooks`."""
    module = _load_file(spec, base) if spec.endswith(".py") else importlib.import_module(spec)
    hooks = getattr(module, "hooks", None)
    if not isinstance(hooks, Hooks):
        raise ImportError(f"{spec} defines no `hooks = Hooks()`")
    return hooks


def _load_file(spec: str, base: Path | None) -> Any:
    path = Path(spec) if base is None else base / spec
    name = f"charpente_hooks_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load hooks from {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module
