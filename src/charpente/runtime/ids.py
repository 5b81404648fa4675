"""Ids: UUIDv7 (RFC 9562), time-ordered and not guessable, for records and requests alike.

48 bits of Unix milliseconds, then 74 random bits; ids made by one process within the same
millisecond still increase (the random part is bumped by a random step, RFC 9562 §6.2).
The random bits come from a buffer of os.urandom refilled every few hundred ids rather than
one system call per id: ids are made at the request rate.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id"]

_RANDOM_BITS = 74
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_RAND_B_MASK = (1 << 62) - 1
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_BUFFER_BYTES = 4000


class _Entropy:
    """Random integers cut from a larger os.urandom read."""

    __slots__ = ("buffer", "offset")

    def __init__(self) -> None:
        self.buffer = b""
        self.offset = 0

    def bits(self, count: int) -> int:
        size = (count + 7) // 8
        start = self.offset
        if start + size > len(self.buffer):
            self.buffer, start = os.urandom(_BUFFER_BYTES), 0
        self.offset = start + size
        return int.from_bytes(self.buffer[start : self.offset], "big") >> (size * 8 - count)

    def forget(self) -> None:
        """Drop the buffer (in a forked child: it must not repeat the parent's bytes)."""
        self.buffer, self.offset = b"", 0


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.forget)
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
            ms, random = now, _entropy.bits(_RANDOM_BITS - 1)
        else:
            ms, random = _last_ms, _last_random + 1 + _entropy.bits(32)
            if random >= _RANDOM_LIMIT:
                ms, random = _last_ms + 1, _entropy.bits(_RANDOM_BITS - 1)
        _last_ms, _last_random = ms, random
    return ms, random
