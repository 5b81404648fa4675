"""Rate limiting: GCRA decisions, the Limiter port, its in-process adapter, a fallback, headers.

GCRA (the generic cell rate algorithm) keeps one number per key, the theoretical arrival
time (TAT) of the next request. With the emission interval T = period / count and the
tolerance tau = T * (burst or count), a request at `now` is allowed when
`max(TAT, now) + T - tau <= now`, and then moves TAT to `max(TAT, now) + T`: a full bucket
allows `burst` (or `count`) requests at once, then one every T.

Times are whole microseconds inside, so that a burst allows exactly `count` requests
whatever the clock's magnitude (floats near 1.7e9 seconds lose the sub-microsecond
digits a sum of intervals needs); the public values are seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, Protocol

from charpente.design.limits import LimitRule, sf_string

__all__ = [
    "MICROS",
    "Decision",
    "FallbackLimiter",
    "Limiter",
    "MemoryLimiter",
    "bounded_key",
    "decision_at",
    "gcra",
    "gcra_params",
    "limit_headers",
]

logger = logging.getLogger("charpente.ratelimit")

MICROS = 1_000_000
_MAX_KEY = 128  # longer keys are stored by digest: a client cannot make a key grow memory


class Decision(NamedTuple):
    """The answer to one request under one rule.

    `new_tat` is the TAT to store (seconds, on the clock `now` was read from);
    `remaining` is how many more requests would be allowed right now; `reset_after` is
    how long until the bucket is full again; `retry_after` is how long a refused
    request should wait (0 when allowed).

    A NamedTuple rather than a frozen dataclass: one is built for every rule of every
    request, and a frozen dataclass's __init__ took four times as long (~2 µs more).
    """

    allowed: bool
    new_tat: float
    remaining: int
    reset_after: float
    retry_after: float


class Limiter(Protocol):
    """The rate limiter port: charge one request to `key` under `rule`."""

    async def hit(self, key: str, rule: LimitRule) -> Decision:
        """Count a request against `key`'s bucket and say whether it may proceed."""


def gcra_params(rule: LimitRule) -> tuple[int, int]:
    """The emission interval T and the tolerance tau of `rule`, in whole microseconds.

    T is rounded up, so rounding never makes a rule more permissive; tau is a whole
    number of Ts, so a full bucket allows exactly `burst` (or `count`) requests.
    """
    interval = -(-int(rule.period * MICROS) // rule.count)
    return interval, interval * (rule.burst or rule.count)


def gcra(tat: float | None, now: float, rule: LimitRule) -> Decision:
    """Decide a request at `now` for a bucket whose TAT is `tat` (None: never used).

    Pure. Store `new_tat` (unchanged when refused); a TAT in the past is a full bucket.
    """
    now_us = round(now * MICROS)
    tat_us = None if tat is None else round(tat * MICROS)
    interval, tolerance = gcra_params(rule)
    allowed, after = _charge(tat_us, now_us, interval, tolerance)
    return _settle(allowed, after, now_us, interval, tolerance)


def decision_at(allowed: bool, tat_us: int, now_us: int, rule: LimitRule) -> Decision:
    """The Decision for a charge already made elsewhere (a Redis script): `tat_us` is the
    bucket's TAT after it, `now_us` the time it was made at, both in microseconds."""
    interval, tolerance = gcra_params(rule)
    return _settle(allowed, tat_us, now_us, interval, tolerance)


def bounded_key(key: str) -> str:
    """`key` itself when short, else a digest of it: stored keys stay small whatever a
    client sends. Keys starting with `#` are digested too, so none can pose as a digest."""
    if len(key) <= _MAX_KEY and not key.startswith("#"):
        return key
    return "#" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _charge(tat: int | None, now: int, interval: int, tolerance: int) -> tuple[bool, int]:
    """Whether a request at `now` fits, and the TAT after it (all microseconds)."""
    start = now if tat is None or tat < now else tat
    if start + interval - tolerance > now:
        return False, start
    return True, start + interval


def _settle(allowed: bool, tat: int, now: int, interval: int, tolerance: int) -> Decision:
    until_full = tat - now if tat > now else 0
    room = tolerance - until_full
    remaining = room // interval if room > 0 else 0
    retry = 0 if allowed else tat + interval - tolerance - now
    return Decision(allowed, tat / MICROS, remaining, until_full / MICROS, retry / MICROS)


class MemoryLimiter:
    """The Limiter in this process (the embedded default, and the fallback of shared ones).

    At most `max_keys` buckets are kept. A full bucket is the same as no bucket, so
    entries whose TAT has passed are dropped as requests come; past the cap the least
    recently charged bucket goes first (the oldest TAT, give or take the rules' periods),
    so a flood of new keys costs a bounded amount of memory.
    """

    def __init__(
        self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._clock = clock
        self._tats: OrderedDict[str, int] = OrderedDict()  # least recently charged first

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, rule: LimitRule) -> Decision:
        return self.hit_now(key, rule)

    def hit_now(self, key: str, rule: LimitRule) -> Decision:
        """`hit`, without awaiting: the memory limiter never waits."""
        # _charge inlined: this runs on every request, and each call costs a few tenths of a µs.
        now = round(self._clock() * MICROS)
        if len(key) > _MAX_KEY or key.startswith("#"):
            key = bounded_key(key)
        interval, tolerance = gcra_params(rule)
        tats = self._tats
        tat = tats.get(key, now)
        if tat < now:
            tat = now
        if tat + interval - tolerance > now:
            return _settle(False, tat, now, interval, tolerance)
        tat += interval
        tats[key] = tat
        tats.move_to_end(key)
        self._evict(now)
        return _settle(True, tat, now, interval, tolerance)

    def _evict(self, now: int) -> None:
        tats = self._tats
        # Two expired entries per charge drain them faster than one charge can add one.
        # The entry just charged is last and not expired, so the loop never empties tats.
        for _ in (1, 2):
            oldest = next(iter(tats))
            if tats[oldest] > now:
                break
            del tats[oldest]
        while len(tats) > self._max_keys:
            tats.popitem(last=False)


class FallbackLimiter:
    """A shared limiter (`primary`) that falls back to a per-process one when it fails.

    A primary that raises or takes longer than `timeout` seconds is taken as down: its
    requests are decided by `fallback`, a warning is logged once per outage, every such
    decision adds one to `degraded_count` and calls `on_degraded()` (a metrics counter's
    `inc`; it must not raise). After `cooldown` seconds one request tries the primary
    again; its success is logged as the recovery. `hit` never raises (except on
    cancellation).
    """

    def __init__(
        self,
        primary: Limiter,
        fallback: Limiter,
        on_degraded: Callable[[], object] | None = None,
        *,
        timeout: float = 0.1,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.degraded_count = 0
        self._primary = primary
        self._fallback = fallback
        self._on_degraded = on_degraded
        self._timeout = timeout
        self._cooldown = cooldown
        self._clock = clock
        self._down = False
        self._retry_at = 0.0  # while down: when the next request may try the primary

    @property
    def degraded(self) -> bool:
        """Whether the primary is currently taken as down."""
        return self._down

    @property
    def primary(self) -> Limiter:
        """The shared limiter (for readiness checks)."""
        return self._primary

    async def hit(self, key: str, rule: LimitRule) -> Decision:
        if self._down:
            now = self._clock()
            if now < self._retry_at:
                return await self._degrade(key, rule)
            self._retry_at = now + self._cooldown  # one probe at a time; the others fall back
        try:
            async with asyncio.timeout(self._timeout):
                decision = await self._primary.hit(key, rule)
        except Exception as exc:  # any failure of the primary means: decide here
            self._failed(exc)
            return await self._degrade(key, rule)
        if self._down:
            self._down = False
            logger.info("rate limiter recovered after %d degraded decisions", self.degraded_count)
        return decision

    def _failed(self, exc: Exception) -> None:
        self._retry_at = self._clock() + self._cooldown
        if not self._down:
            self._down = True
            # The type and message only: connection errors name a host, never a password.
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            logger.warning("rate limiter unavailable, limiting per process (%s)", reason)

    async def _degrade(self, key: str, rule: LimitRule) -> Decision:
        self.degraded_count += 1
        if self._on_degraded is not None:
            self._on_degraded()
        return await self._fallback.hit(key, rule)


def limit_headers(name: str, rule: LimitRule, decision: Decision) -> list[tuple[str, str]]:
    """`RateLimit-Policy`, `RateLimit` and, on refusal, `Retry-After` for one rule.

    Follows draft-ietf-httpapi-ratelimit-headers-11 (May 2026), structured-field form:
    `RateLimit-Policy: "name";q=30;w=60` and `RateLimit: "name";r=12;t=3`. `t` is the
    seconds until the whole quota is back; on refusal it is the seconds until the next
    request fits, the same as `Retry-After`, which the draft requires to be no earlier
    than the end of `t`. Seconds are rounded up.
    """
    headers = [("RateLimit-Policy", rule.policy_header_item(name))]
    if decision.allowed:
        window = math.ceil(decision.reset_after)
        headers.append(("RateLimit", f"{sf_string(name)};r={decision.remaining};t={window}"))
        return headers
    wait = max(math.ceil(decision.retry_after), 1)
    headers.append(("RateLimit", f"{sf_string(name)};r=0;t={wait}"))
    headers.append(("Retry-After", str(wait)))
    return headers
