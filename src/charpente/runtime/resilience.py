"""Waiting well on something that fails: exponential backoff with full jitter, and a circuit
breaker (closed → open after N consecutive failures → half-open probe after a cool-down).

The relay wraps its broker in one breaker; webhook delivery keeps one per endpoint.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "CircuitBreaker"]


@dataclass(slots=True)
class Backoff:
    """Delays that double from `base` up to `cap`, each drawn uniformly in [0, delay]
    ("full jitter"), so many waiters that failed together do not retry together."""

    base: float = 0.1
    cap: float = 30.0
    attempt: int = 0
    random: Callable[[], float] = field(default=random.random, repr=False)

    def next(self) -> float:
        """The next delay in seconds, and one step further."""
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 62)
        return float(ceiling * self.random())

    def reset(self) -> None:
        self.attempt = 0


class CircuitBreaker:
    """Stops calling what keeps failing, and probes it again after `cool_down` seconds.

    `allow()` says whether to try now: always while closed; once per cool-down while open
    (the call becomes the half-open probe). Report the outcome with `succeeded()` or
    `failed()`: `threshold` consecutive failures open the circuit, a success closes it.
    """

    __slots__ = ("_clock", "_failures", "_opened_at", "_probing", "cool_down", "threshold")

    def __init__(
        self,
        threshold: int = 5,
        cool_down: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.cool_down, self._clock = threshold, cool_down, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open"."""
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.cool_down:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.cool_down:
            return False
        self._probing = True  # one probe at a time
        return True

    def succeeded(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def failed(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._opened_at, self._probing = self._clock(), False

    def retry_in(self) -> float:
        """Seconds until the next probe is allowed (0 when a call is allowed now)."""
        if self._opened_at is None or self._probing:
            return 0.0
        return max(0.0, self.cool_down - (self._clock() - self._opened_at))
