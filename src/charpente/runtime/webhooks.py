"""Webhooks: which endpoints hear which events, the deliveries the relay hands over, and the
loop that POSTs them.

Endpoints are the design's (URL and secret from the environment) and those added at run time
through the admin API. The relay calls `fan_out` inside its transaction; `run` (in
`charpente worker`, or in `serve`) delivers: each attempt signed (Standard Webhooks), failures
retried on a schedule with jitter, an endpoint that keeps failing held back by its circuit
breaker, and a delivery whose last attempt failed kept as dead until `replay`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from charpente.design.model import ADMIN_ROLE, Design, Webhook
from charpente.errors import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from charpente.runtime import metrics, tracing
from charpente.runtime.caller import Caller
from charpente.runtime.clock import SystemClock
from charpente.runtime.events import Message
from charpente.runtime.ids import new_id
from charpente.runtime.ports import (
    Clock,
    Delivery,
    Outbound,
    Sent,
    Settled,
    Transaction,
    WebhookEndpoint,
    WebhookStore,
)
from charpente.runtime.resilience import Backoff, CircuitBreaker
from charpente.runtime.secrets import Sealer, SealError
from charpente.runtime.signatures import new_secret, signature_headers, verify
from charpente.runtime.webhook_endpoints import (
    EndpointSecrets,
    Environment,
    Target,
    declared_targets,
)
from charpente.runtime.webhook_requests import (
    cursor_of,
    delivery_view,
    design_endpoint_view,
    endpoint_view,
    matches,
    read_changes,
)

__all__ = ["DEFAULT_SCHEDULE", "DeliveryOptions", "RetrySchedule", "Webhooks", "verify"]

log = logging.getLogger("charpente.webhooks")

DEFAULT_SCHEDULE = (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0,
                    86400.0)  # fmt: skip
"""Seconds before each attempt: the first at once, the last about two days later."""
MAX_ENDPOINTS = 100
MAX_ERROR_CHARS = 200
CONTENT_TYPE = "application/json"
DELIVERED_KEPT = datetime.timedelta(days=7)
DEAD_KEPT = datetime.timedelta(days=30)
PRUNE_EVERY = 3600.0  # seconds
PRUNE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When to try again: `delays[n]` seconds after the n-th failed attempt (`delays[0]`
    before the first), each spread by ±`jitter` so that retries do not arrive together."""

    delays: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.2
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.delays or any(d < 0 for d in self.delays):
            raise ValueError("a retry schedule has at least one delay, none negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction from 0 to below 1")

    @property
    def attempts(self) -> int:
        """How many attempts a delivery gets before it is dead."""
        return len(self.delays)

    def delay_after(self, attempts: int) -> float | None:
        """Seconds to wait after `attempts` failed attempts, or None when that was the last."""
        if attempts >= len(self.delays):
            return None
        spread = 1.0 + self.jitter * (2.0 * self.random() - 1.0)
        return self.delays[attempts] * spread


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How the delivery loop works: its schedule, how many deliveries a round claims and
    sends at once (and to one endpoint at once), how long a claim holds, how long an idle
    loop sleeps, and when an endpoint's breaker opens (consecutive failures) and probes
    again (seconds)."""

    schedule: RetrySchedule = RetrySchedule()
    batch: int = 32
    concurrency: int = 16
    per_endpoint: int = 4  # a receiver that hangs holds at most this many of the slots
    lease: float = 120.0  # > (batch / concurrency + 1) x the sender's total timeout
    idle: float = 1.0
    failure_threshold: int = 5
    cool_down: float = 60.0


class Webhooks:
    """The design's and the run-time webhook endpoints, their deliveries, and their admin."""

    def __init__(
        self,
        design: Design,
        store: WebhookStore,
        outbound: Outbound,
        *,
        environment: Environment,
        sealer: Sealer | None = None,
        clock: Clock | None = None,
        options: DeliveryOptions | None = None,
    ) -> None:
        self.design = design
        self.store = store
        self.outbound = outbound
        self.sealer = sealer
        self.clock: Clock = clock or SystemClock()
        self.options = options or DeliveryOptions()
        self._declared, self._problems = declared_targets(design, environment)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._secrets = EndpointSecrets(sealer)
        self._next_prune = 0.0
        self.sent, self.failed = 0, 0  # attempts made by this process: answered 2xx, or not

    # --- the relay's side ----------------------------------------------------------------

    async def fan_out(self, tx: Transaction, messages: Sequence[Message]) -> int:
        """Owe each message to every enabled endpoint listening to its key, inside `tx` (the
        relay's transaction: a rollback leaves no delivery). How many were added."""
        if not messages:
            return 0
        listeners = [(h.name, h.events) for h in self.design.webhooks if h.name in self._declared]
        listeners += [(e.name, e.events) for e in await self.store.endpoints(tx) if e.enabled]
        now = self.clock.now()
        owed = [
            Delivery(new_id(), name, m.id, m.key, m.body, created_at=now, next_attempt_at=now)
            for m in messages
            for name, events in listeners
            if matches(events, m.key)
        ]
        return await self.store.add_deliveries(tx, owed)

    # --- delivering ----------------------------------------------------------------------

    async def run(self, stop: anyio.Event | asyncio.Event) -> None:
        """Deliver until `stop` is set, then let the attempts in flight end: attempts run
        side by side (`options.concurrency`, at most `options.per_endpoint` to one
        endpoint), and a free slot is filled at once, so a receiver that hangs delays no
        delivery to another. A short sleep when idle, a growing pause (up to a minute)
        while the database fails."""
        backoff = Backoff(base=1.0, cap=60.0)
        slots = _Slots(self.options)
        async with anyio.create_task_group() as group:
            while not stop.is_set():
                try:
                    started, full = await self._start_due(group, slots)
                    await self._prune_now_and_then()
                    backoff.reset()
                    pause = 0.0 if started and not full else self.options.idle
                except Exception as error:  # most likely the database: say so, wait, go on
                    pause = backoff.next()
                    log.warning("webhook delivery paused for %.1f s: %s", pause, _describe(error))
                if full or pause > 0:
                    await slots.wait_freed(stop, pause if pause > 0 else self.options.idle)

    async def _start_due(self, group: anyio.abc.TaskGroup, slots: _Slots) -> tuple[int, bool]:
        """Claim what the free slots can take and start sending it; how many were started,
        and whether every slot is taken."""
        free = slots.free()
        if free <= 0:
            return 0, True
        now = self.clock.now()
        held_back = [name for name, b in self._breakers.items() if b.state == "open"]
        held_back += slots.busy_endpoints()
        lease = now + datetime.timedelta(seconds=self.options.lease)
        token = new_id()
        limit = min(self.options.batch, free)
        claimed = await self.store.claim_due(now, lease, token, limit, held_back)
        if not claimed:
            return 0, False
        targets = await self._targets()
        for delivery in claimed:
            slots.take(delivery.webhook)
            target = targets.get(delivery.webhook)
            group.start_soon(self._attempt_in_slot, delivery, target, token, now, slots)
        return len(claimed), slots.free() <= 0

    async def _attempt_in_slot(
        self,
        delivery: Delivery,
        target: Target | None,
        token: str,
        now: datetime.datetime,
        slots: _Slots,
    ) -> None:
        try:
            await self._attempt(delivery, target, token, now, slots.unlimited)
        except Exception as error:  # never the other attempts' end: its claim will expire
            log.warning("delivery %s: %s", delivery.id, _describe(error))
        finally:
            slots.give_back(delivery.webhook)

    async def deliver_due(self, now: datetime.datetime) -> int:
        """One round: claim the deliveries due by `now`, send them (at most
        `options.concurrency` at once), record each outcome. How many were claimed."""
        options = self.options
        held_back = [name for name, b in self._breakers.items() if b.state == "open"]
        token = new_id()
        lease = now + datetime.timedelta(seconds=options.lease)
        claimed = await self.store.claim_due(now, lease, token, options.batch, held_back)
        if not claimed:
            return 0
        targets = await self._targets()
        limiter = anyio.CapacityLimiter(options.concurrency)
        async with anyio.create_task_group() as group:
            for delivery in claimed:
                target = targets.get(delivery.webhook)
                group.start_soon(self._attempt, delivery, target, token, now, limiter)
        return len(claimed)

    async def replay(self, webhook: str | None = None, delivery_id: str | None = None) -> int:
        """Dead deliveries (of one endpoint, or one by id, or all) back to pending, due now,
        with their attempts counted from zero again. How many."""
        if delivery_id is not None:
            try:
                delivery_id = str(uuid.UUID(delivery_id))
            except ValueError:
                return 0
        return await self.store.replay(self.clock.now(), webhook, delivery_id)

    async def _attempt(
        self,
        delivery: Delivery,
        target: Target | None,
        token: str,
        now: datetime.datetime,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        if target is None:
            reason = self._problems.get(delivery.webhook, "no enabled webhook has this name")
            error = _short(f"not sent: {reason}")
            await self._settle(delivery, token, _dead(delivery, now, error))
            _count_outcome("dead")
            return
        breaker = self._breaker(target.name)
        if not breaker.allow():  # open: postponed, not an attempt
            later = now + datetime.timedelta(seconds=max(breaker.retry_in(), 1.0))
            await self._settle(delivery, token, _postponed(delivery, later))
            return
        try:
            async with limiter:
                sent = await self._send(target, delivery)
            attempted = self.clock.now()  # the next attempt is due counting from its end
        except BaseException:  # cancelled (the worker stops): no probe may stay pending
            breaker.failed()
            raise
        if sent.ok:
            breaker.succeeded()
            self.sent += 1
        else:
            breaker.failed()
            self.failed += 1
        settled = self._outcome(delivery, sent, attempted)
        await self._settle(delivery, token, settled)
        _count_outcome(settled.state)
        if sent.status == 410:
            await self._gone(target)

    async def _send(self, target: Target, delivery: Delivery) -> Sent:
        timestamp = int(self.clock.now().timestamp())
        signed = signature_headers(target.key, delivery.message_id, timestamp, delivery.body)
        headers = {"content-type": CONTENT_TYPE, **signed}
        written = tracing.traceparent_in(delivery.body)  # the write's, in the CloudEvent
        if written is None:
            return await self.outbound.post(target.url, headers, delivery.body)
        with tracing.delivery_span(target.name, written) as sent_as:
            headers["traceparent"] = sent_as
            return await self.outbound.post(target.url, headers, delivery.body)

    def _outcome(self, delivery: Delivery, sent: Sent, now: datetime.datetime) -> Settled:
        attempts = delivery.attempts + 1
        if sent.ok:
            return Settled("delivered", attempts, now, sent.status, None, self.clock.now())
        error = _short(sent.error or str(sent.status))
        if sent.status == 410:
            error = "410 Gone: the receiver wants no more deliveries"
            return Settled("dead", attempts, now, sent.status, error)
        delay = self.options.schedule.delay_after(attempts)
        if delay is None:
            return Settled("dead", attempts, now, sent.status, error)
        later = now + datetime.timedelta(seconds=delay)
        return Settled("pending", attempts, later, sent.status, error)

    async def _settle(self, delivery: Delivery, token: str, settled: Settled) -> None:
        """Record an outcome; a failure to record leaves the claim to expire (and the
        delivery to be taken again), never stops the other deliveries of the round."""
        try:
            if not await self.store.settle(delivery.id, token, settled):
                log.warning(
                    "delivery %s of webhook %r outlived its claim: another worker took it",
                    delivery.id,
                    delivery.webhook,
                )
        except Exception as error:  # the database: the lease will expire, and it is retried
            log.warning("delivery %s: outcome not recorded: %s", delivery.id, _describe(error))

    async def _gone(self, target: Target) -> None:
        if target.id is None:
            log.warning("webhook %r answered 410 Gone: remove it from the design", target.name)
            return
        await self.store.update_endpoint(target.id, {"enabled": False}, self.clock.now())
        log.warning("webhook %r answered 410 Gone: it is disabled now", target.name)

    def _breaker(self, name: str) -> CircuitBreaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            options = self.options
            breaker = CircuitBreaker(options.failure_threshold, options.cool_down)
            self._breakers[name] = breaker
        return breaker

    async def _targets(self) -> dict[str, Target]:
        """Every endpoint deliveries can go to now, by name."""
        targets = dict(self._declared)
        endpoints = await self.store.endpoints()
        self._secrets.keep_only(endpoints)
        for endpoint in (e for e in endpoints if e.enabled):
            try:
                key = self._secrets.key(endpoint)
            except (SealError, ValueError) as error:
                if endpoint.name not in self._problems:
                    log.warning("webhook %r cannot be used: %s", endpoint.name, error)
                self._problems[endpoint.name] = f"its secret cannot be opened ({error})"
                continue
            self._problems.pop(endpoint.name, None)
            targets[endpoint.name] = Target(endpoint.name, endpoint.url, key, endpoint.id)
        return targets

    async def _prune_now_and_then(self) -> None:
        """Forget deliveries delivered a week ago, and dead ones after a month, hourly."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        now = self.clock.now()
        await self.store.prune(now - DELIVERED_KEPT, now - DEAD_KEPT, PRUNE_BATCH)

    # --- admin ---------------------------------------------------------------------------

    async def list_endpoints(self, caller: Caller) -> list[dict[str, Any]]:
        """Every endpoint: the design's first, then those added at run time."""
        _require_admin(caller)
        found = [design_endpoint_view(h, h.name in self._declared) for h in self.design.webhooks]
        return found + [endpoint_view(e) for e in await self.store.endpoints()]

    async def get_endpoint(self, caller: Caller, ref: str) -> dict[str, Any]:
        """One endpoint, by id or name."""
        _require_admin(caller)
        return self._view(await self._find(ref))

    async def create_endpoint(self, caller: Caller, body: object) -> dict[str, Any]:
        """Add an endpoint; the answer holds its new secret, shown this once."""
        _require_admin(caller)
        values = read_changes(self.design, body, creating=True).values
        name = values["name"]
        if any(h.name == name for h in self.design.webhooks):
            raise Conflict(detail=f"the design declares a webhook named {name!r}")
        if len(await self.store.endpoints()) >= MAX_ENDPOINTS:
            raise Conflict(detail=f"at most {MAX_ENDPOINTS} webhooks: delete one first")
        await self._refuse_unreachable(values["url"])
        id, secret, now = new_id(), new_secret(), self.clock.now()
        endpoint = WebhookEndpoint(
            id=id,
            name=name,
            url=values["url"],
            events=values["events"],
            secret=self._secrets.seal(id, secret),
            enabled=values.get("enabled", True),
            created_at=now,
            created_by=caller.id,
            description=values.get("description"),
        )
        await self.store.add_endpoint(endpoint)
        return {**endpoint_view(endpoint), "secret": secret}

    async def update_endpoint(self, caller: Caller, ref: str, body: object) -> dict[str, Any]:
        """Change an endpoint added at run time (merge patch of url, events, enabled,
        description)."""
        _require_admin(caller)
        endpoint = _runtime(await self._find(ref))
        values = read_changes(self.design, body, creating=False).values
        if not values:
            return endpoint_view(endpoint)
        if "url" in values:
            await self._refuse_unreachable(values["url"])
        updated = await self.store.update_endpoint(endpoint.id, values, self.clock.now())
        if updated is None:
            raise NotFound(detail="this webhook was deleted meanwhile")
        return endpoint_view(updated)

    async def delete_endpoint(self, caller: Caller, ref: str) -> None:
        """Delete an endpoint added at run time, and every delivery owed to it."""
        _require_admin(caller)
        endpoint = _runtime(await self._find(ref))
        await self.store.remove_endpoint(endpoint.id)

    async def list_deliveries(
        self,
        caller: Caller,
        ref: str | None,
        *,
        state: str | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of deliveries, newest first, of one endpoint (or all), in one state (or
        any), and the cursor of the next page (None at the end)."""
        _require_admin(caller)
        name = None if ref is None else (await self._find(ref)).name
        found = await self.store.deliveries(name, state, limit + 1, after)
        page = found[:limit]
        more = len(found) > limit
        return [delivery_view(d) for d in page], cursor_of(page[-1]) if more else None

    async def _find(self, ref: str) -> WebhookEndpoint | Webhook:
        for hook in self.design.webhooks:
            if hook.name == ref:
                return hook
        for endpoint in await self.store.endpoints():
            if ref in (endpoint.id, endpoint.name):
                return endpoint
        raise NotFound(detail="no webhook has this id or name")

    def _view(self, found: WebhookEndpoint | Webhook) -> dict[str, Any]:
        if isinstance(found, Webhook):
            return design_endpoint_view(found, found.name in self._declared)
        return endpoint_view(found)

    async def _refuse_unreachable(self, url: str) -> None:
        problem = await self.outbound.refusal(url)
        if problem is not None:
            error = FieldError("url", "refused", problem)
            raise ValidationFailed(detail=problem, errors=[error])


def _require_admin(caller: Caller) -> None:
    if caller.system or caller.role == ADMIN_ROLE:
        return
    if not caller.signed_in:
        raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": "Bearer"})
    raise Forbidden(detail="only admins manage webhooks")


def _runtime(found: WebhookEndpoint | Webhook) -> WebhookEndpoint:
    if isinstance(found, Webhook):
        raise Conflict(detail=f"webhook {found.name!r} is declared in the design: change it there")
    return found


def _count_outcome(state: str) -> None:
    """One attempt in charpente_webhook_deliveries (and a dead letter when it was the last)."""
    outcome = {"delivered": "delivered", "dead": "dead"}.get(state, "failed")
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    if outcome == "dead":
        metrics.WEBHOOK_DEAD_LETTERS.inc()


def _dead(delivery: Delivery, now: datetime.datetime, error: str) -> Settled:
    return Settled("dead", delivery.attempts, now, delivery.last_status, error)


def _postponed(delivery: Delivery, later: datetime.datetime) -> Settled:
    status, error = delivery.last_status, delivery.last_error
    return Settled("pending", delivery.attempts, later, status, error)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _describe(error: BaseException) -> str:
    return _short(f"{type(error).__name__}: {error}")


class _Slots:
    """The delivery loop's attempts in flight: how many, and to which endpoint."""

    def __init__(self, options: DeliveryOptions) -> None:
        self.options = options
        self.running: dict[str, int] = {}
        self.unlimited = anyio.CapacityLimiter(max(1, options.concurrency))
        self._freed = asyncio.Event()

    def free(self) -> int:
        return self.options.concurrency - sum(self.running.values())

    def busy_endpoints(self) -> list[str]:
        """Endpoints with as many attempts in flight as one endpoint may have."""
        return [n for n, c in self.running.items() if c >= self.options.per_endpoint]

    def take(self, webhook: str) -> None:
        self.running[webhook] = self.running.get(webhook, 0) + 1

    def give_back(self, webhook: str) -> None:
        left = self.running.get(webhook, 1) - 1
        if left > 0:
            self.running[webhook] = left
        else:
            self.running.pop(webhook, None)
        self._freed.set()

    async def wait_freed(self, stop: anyio.Event | asyncio.Event, timeout: float) -> None:
        """Until an attempt ends, `stop` is set, or `timeout` seconds pass."""
        self._freed.clear()
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as group:

                async def stopped() -> None:
                    await stop.wait()
                    group.cancel_scope.cancel()

                async def freed() -> None:
                    await self._freed.wait()
                    group.cancel_scope.cancel()

                group.start_soon(stopped)
                group.start_soon(freed)
