"""Request ids: UUIDv7 (time first, then 74 random bits), made for every request without one.

The random bits come from a buffer of os.urandom refilled every few hundred ids, instead of
one system call per id: request ids are made at the request rate.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_request_id"]

_BUFFER_BYTES = 4000
_ID_BYTES = 10  # 80 random bits drawn, the top 74 kept
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_B_MASK = (1 << 62) - 1


class _Entropy:
    """Random bytes handed out in slices of a larger os.urandom read (event-loop use)."""

    __slots__ = ("buffer", "offset")

    def __init__(self) -> None:
        self.buffer = b""
        self.offset = 0

    def take(self) -> bytes:
        start = self.offset
        if start + _ID_BYTES > len(self.buffer):
            self.buffer, start = os.urandom(_BUFFER_BYTES), 0
        self.offset = start + _ID_BYTES
        return self.buffer[start : self.offset]

    def forget(self) -> None:
        """Drop the buffer (in a forked child: it must not repeat the parent's bytes)."""
        self.buffer, self.offset = b"", 0


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.forget)


def new_request_id() -> str:
    """A new UUIDv7 as a canonical lowercase dashed string."""
    random = int.from_bytes(_entropy.take(), "big") >> 6
    ms = time.time_ns() // 1_000_000
    value = (ms << 80) | _VERSION | ((random >> 62) << 64) | _VARIANT | (random & _RAND_B_MASK)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
