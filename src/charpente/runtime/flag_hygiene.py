"""Flag hygiene (`charpente flags status`): the flags that should go.

A flag is worth removing when it has settled (everyone or nobody has it, unchanged for
SETTLED_DAYS days), when it is past its `expires` date, or when no rule and no hook reads it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Set
from dataclasses import dataclass

from charpente.design.model import Flag
from charpente.runtime.flag_control import StoredFlag
from charpente.runtime.flags import FlagSetting

__all__ = ["SETTLED_DAYS", "Finding", "flag_findings"]

SETTLED_DAYS = 30


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to do about one flag."""

    flag: str
    kind: str  # settled | expired | unread
    message: str

    def __str__(self) -> str:
        return f"{self.flag}: {self.message}"


def flag_findings(
    flags: Mapping[str, Flag],
    settings: Mapping[str, FlagSetting],
    stored: Mapping[str, StoredFlag],
    read: Set[str],
    now: datetime.datetime,
) -> list[Finding]:
    """Every finding, by flag name then kind."""
    found: list[Finding] = []
    for name in sorted(flags):
        flag, setting = flags[name], settings[name]
        share = _settled_share(setting)
        since = stored[name].changed_at if name in stored else None
        if share is not None and since is not None:
            days = (now - since).days
            if days >= SETTLED_DAYS:
                message = f"at {share} for {days} days: remove the flag and keep what it decides"
                found.append(Finding(name, "settled", message))
        if flag.expires is not None and flag.expires < now.date():
            message = f"past its expiry date ({flag.expires.isoformat()}){_owner(flag)}"
            found.append(Finding(name, "expired", message))
        if name not in read:
            found.append(Finding(name, "unread", "no rule or hook reads it: remove it"))
    return found


def _settled_share(setting: FlagSetting) -> str | None:
    """`0%` or `100%` when every caller gets the same value (roles aside), else None."""
    if setting.default or setting.rollout == 100:
        return "100%"
    if setting.rollout in (None, 0) and not setting.allow:
        return "0%"
    return None


def _owner(flag: Flag) -> str:
    return f": ask {flag.owner}" if flag.owner else ""
