"""The outbox relay: publishes what writes put in the outbox to the bus, at least once, in
order per record.

Each round claims a batch (runtime.ports.Outbox), publishes it with confirmation, and
removes what the bus confirmed, together with the webhook deliveries those messages call
for (`fan_out`, same transaction). When the bus fails, what it did not confirm stays in
the outbox for the next round; the relay backs off with jitter, and after a few failures
in a row a circuit breaker stops it from calling the bus at all until a probe succeeds.
Its lag — the age of the oldest message still waiting — is in `status()` for /readyz.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from charpente.errors import Unavailable
from charpente.runtime import metrics, tracing
from charpente.runtime.events import Message
from charpente.runtime.ports import Bus, BusError, Clock, FanOut, Outbox
from charpente.runtime.resilience import Backoff, CircuitBreaker

__all__ = ["Relay", "RelayStatus"]

logger = logging.getLogger("charpente.relay")

BATCH = 500  # messages claimed per round
IDLE = 0.05  # seconds between rounds that found less than a full batch
LAG_LOG_EVERY = 30.0  # seconds between warnings while the relay lags
LAG_WARNING = 5.0  # seconds of lag worth a warning
GAUGES_EVERY = 2.0  # seconds between updates of the outbox lag and pending metrics


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """What /readyz shows of the relay."""

    bus: str
    breaker: str  # closed | open | half-open
    pending: int  # messages waiting
    lag_seconds: float  # age of the oldest waiting message (0 when none)
    published: int  # messages published by this process since it started
    last_error: str | None


class Relay:
    """Moves outbox messages to `bus`; run it with `run(stop)`, or a round with `relay_once()`."""

    def __init__(
        self,
        outbox: Outbox,
        bus: Bus,
        clock: Clock,
        *,
        fan_out: FanOut | None = None,
        batch: int = BATCH,
        breaker: CircuitBreaker | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.outbox, self.bus, self.clock = outbox, bus, clock
        self.fan_out = fan_out
        self.batch, self.idle = batch, IDLE
        self.breaker = breaker or CircuitBreaker(threshold=3, cool_down=5.0)
        self.backoff = backoff or Backoff(base=0.1, cap=10.0)
        self.published = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._last_lag_log = 0.0
        self._failing_since = 0.0
        self._last_gauges = 0.0

    def notify(self) -> None:
        """Something was just written to the outbox: start the next round now."""
        self._wake.set()

    async def relay_once(self) -> int:
        """One round: claim, publish, remove what was confirmed; how many were published.

        Raises BusError when the bus failed (what it confirmed before failing is removed).
        """
        async with self.outbox.claim(self.batch) as batch:
            messages = batch.messages
            if not messages:
                return 0
            confirmed = 0
            try:
                confirmed = await self._publish(messages)
            finally:
                await batch.done(confirmed, self.fan_out)
            self.published += confirmed
            metrics.OUTBOX_PUBLISHED.inc(confirmed)
            return confirmed

    async def _publish(self, messages: Sequence[Message]) -> int:
        """Publish in order; how many the bus confirmed (all, or raises BusError)."""
        await self.bus.start()  # connects the first time, and after a failed start
        if not tracing.enabled():
            await self.bus.publish(messages)
            return len(messages)
        with tracing.send_spans(messages, self.bus.name) as sent:
            await self.bus.publish(sent)
        return len(messages)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; never raises for a bus or database failure."""
        while not stop.is_set():
            delay = await self._round()
            if delay > 0:
                await self._sleep(stop, delay)

    async def _round(self) -> float:
        """One round with its failure handling; how long to wait before the next."""
        if not self.breaker.allow():
            return max(self.breaker.retry_in(), 0.05)
        try:
            published = await self.relay_once()
        except BusError as exc:
            self.breaker.failed()
            return self._failed(f"the bus {self.bus.name} refused: {exc}")
        except Unavailable as exc:  # the database is away: one line, no traceback
            return self._failed(f"the database is not reachable ({exc.detail or exc.title})")
        except Exception as exc:  # a bug, most likely: its traceback once per outage
            if self.last_error is None:
                logger.exception("outbox relay round failed")
            return self._failed(f"{type(exc).__name__}: {exc}", log=False)
        self.breaker.succeeded()
        if self.last_error is not None:
            lasted = time.monotonic() - self._failing_since
            logger.warning("outbox relay: relaying again, after %.1f s of failures", lasted)
            self.last_error = None
        self.backoff.reset()
        # A full batch: more wait, go on at once. Otherwise let the next ones gather for
        # `idle` seconds: rounds of a few events each would cost a query per event.
        return 0.0 if published >= self.batch else self.idle

    def _failed(self, error: str, *, log: bool = True) -> float:
        """Note a failed round (the first of an outage is logged once); the pause before
        the next."""
        first = self.last_error is None
        self.last_error = error[:500]
        delay = self.backoff.next()
        if first:
            self._failing_since = time.monotonic()
            if log:
                logger.warning("outbox relay: %s; retrying with backoff", self.last_error)
        return max(delay, 0.01)

    async def _sleep(self, stop: asyncio.Event, delay: float) -> None:
        self._wake.clear()
        stopping = asyncio.ensure_future(stop.wait())
        waking = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopping, waking}, timeout=delay, return_when="FIRST_COMPLETED")
        finally:
            stopping.cancel()
            waking.cancel()
        await self._log_lag()
        await self._update_gauges()

    async def _update_gauges(self) -> None:
        """The outbox lag and pending metrics, every GAUGES_EVERY seconds at most."""
        now = time.monotonic()
        if now - self._last_gauges < GAUGES_EVERY:
            return
        self._last_gauges = now
        try:
            status = await self.status()
        except Exception:  # the database is away: the lag stays as last seen
            return
        metrics.OUTBOX_LAG.set(status.lag_seconds)
        metrics.OUTBOX_PENDING.set(status.pending)

    async def _log_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_log < LAG_LOG_EVERY or self.last_error is None:
            return
        self._last_lag_log = now
        try:
            status = await self.status()
        except Exception:
            return
        if status.lag_seconds >= LAG_WARNING:
            logger.warning(
                "outbox relay lags %.1f s behind (%d waiting; bus %s, breaker %s)",
                status.lag_seconds,
                status.pending,
                status.bus,
                status.breaker,
            )

    async def status(self) -> RelayStatus:
        oldest = await self.outbox.oldest()
        lag = 0.0
        if oldest is not None:
            lag = max(0.0, (self.clock.now() - oldest) / datetime.timedelta(seconds=1))
        return RelayStatus(
            bus=self.bus.name,
            breaker=self.breaker.state,
            pending=await self.outbox.pending() if oldest is not None else 0,
            lag_seconds=round(lag, 3),
            published=self.published,
            last_error=self.last_error,
        )
