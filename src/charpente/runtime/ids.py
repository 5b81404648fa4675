"""Record ids: UUIDv7 (RFC 9562), time-ordered and not guessable.

48 bits of Unix milliseconds, then 74 random bits; ids made by one process within the same
millisecond still increase (the random part is bumped by a random step, RFC 9562 §6.2).
"""

from __future__ import annotations

import secrets
import threading
import time

__all__ = ["new_id"]

_RANDOM_BITS = 74
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_RAND_B_MASK = (1 << 62) - 1
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62

_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def new_id() -> str:
    """A new UUIDv7 as a canonical lowercase dashed string, greater than the previous one."""
    ms, random = _next_parts()
    value = (ms << 80) | _VERSION | ((random >> 62) << 64) | _VARIANT | (random & _RAND_B_MASK)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _next_parts() -> tuple[int, int]:
    """The millisecond and random part of the next id, monotonic within this process."""
    global _last_ms, _last_random
    now = time.time_ns() // 1_000_000
    with _lock:
        if now > _last_ms:
            # A fresh random with its top bit clear leaves room to count up within the ms.
            ms, random = now, secrets.randbits(_RANDOM_BITS - 1)
        else:
            ms, random = _last_ms, _last_random + 1 + secrets.randbits(32)
            if random >= _RANDOM_LIMIT:
                ms, random = _last_ms + 1, secrets.randbits(_RANDOM_BITS - 1)
        _last_ms, _last_random = ms, random
    return ms, random
