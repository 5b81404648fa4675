"""The system clock: the Clock port read from the operating system."""

from __future__ import annotations

import datetime

__all__ = ["SystemClock"]


class SystemClock:
    """The current time as an aware UTC datetime (implements runtime.ports.Clock)."""

    __slots__ = ()

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)
