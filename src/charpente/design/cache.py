"""A resource's response cache, as the design asks for it: `cache: {ttl: 60s}`.

Top-level `cache:` applies to every resource; a resource's own `cache:` replaces it, and
`cache: false` turns it off for that resource. `stale: 5s` lets a request get the previous
answer, at most that old, while another one recomputes it (stale-while-revalidate).
Pure: data and its reading only.
"""

from __future__ import annotations

import re

from charpente.design.model import CachePolicy
from charpente.design.source import Node, Reader

__all__ = ["MAX_TTL", "OFF", "read_cache"]

MAX_TTL = 86_400.0  # one day: a bound on any staleness a lost invalidation could cause
_KEYS = ("ttl", "stale")
MAX_STALE = 3600.0
_TTL = re.compile(r"([0-9]{1,6})\s*(s|sec|seconds?|m|min|minutes?|h|hours?)?", re.ASCII)
_UNITS = {"": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60}
_UNITS |= {"minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}


OFF = CachePolicy(0.0)  # `cache: false`: never, even when the design caches everything


def read_cache(reader: Reader, node: Node | None, what: str) -> CachePolicy | None:
    """`cache: {ttl: 60s}`, `cache: false` (OFF), or None when absent or invalid."""
    if node is None:
        return None
    if node.value is False:
        return OFF
    options = reader.mapping(node, _KEYS, what)
    if options is None:
        return None
    ttl = options.get("ttl")
    if ttl is None:
        reader.error(node, f"{what} needs a `ttl`, like `{{ttl: 60s}}`")
        return None
    seconds = _seconds(ttl)
    if seconds is None or not 1 <= seconds <= MAX_TTL:
        reader.error(ttl, f"`ttl` is a duration from 1s to 24h (`30s`, `5m`), not {ttl.describe()}")
        return None
    stale = options.get("stale")
    if stale is None:
        return CachePolicy(seconds)
    allowed = _seconds(stale)
    if allowed is None or not 1 <= allowed <= min(seconds, MAX_STALE):
        reader.error(stale, f"`stale` is a duration from 1s to the ttl, not {stale.describe()}")
        return None
    return CachePolicy(seconds, allowed)


def _seconds(node: Node) -> float | None:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        return float(node.value)
    found = _TTL.fullmatch((node.text or "").strip())
    if found is None:
        return None
    return float(int(found[1]) * _UNITS[found[2] or ""])
