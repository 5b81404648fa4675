"""Rate limit policies as the design writes them: `30/minute per account`, `10/10s burst 20`.

Pure: parsing and a frozen record, no I/O. The grammar is

    <count>/<period> [per <scope>] [burst <n>]

where `<period>` is a unit (`second`, `minute`, `hour`, `day`, or `s`, `min`, `h`, `d`),
optionally preceded by a whole number (`10s`, `5min`), and `<scope>` is `ip` (the default),
`account` or `route`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = [
    "MAX_BURST",
    "MAX_COUNT",
    "MAX_PERIOD",
    "SCOPES",
    "LimitRule",
    "parse_limit",
    "sf_string",
]

MAX_COUNT = 1_000_000
MAX_BURST = 1_000_000
MAX_PERIOD = 86_400.0  # one day: longer windows keep state for too long to be worth it
SCOPES = ("ip", "account", "route")

_MAX_TEXT = 100  # a policy is a short phrase; longer text is a mistake, not a policy
_UNITS: dict[str, int] = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86_400,
    "day": 86_400,
    "days": 86_400,
}
_RATE = re.compile(r"([0-9]{1,9})/([0-9]{0,9})([a-z]*)", re.ASCII)
_NUMBER = re.compile(r"[0-9]{1,9}", re.ASCII)
_SLASH = re.compile(r"\s*/\s*")
_SF_STRING = re.compile(r"[\x20-\x7e]*", re.ASCII)
_NAMED = ((86_400, "day", "d"), (3600, "hour", "h"), (60, "minute", "min"), (1, "second", "s"))


@dataclass(frozen=True, slots=True)
class LimitRule:
    """At most `count` requests per `period` seconds for each `per` value (ip, account, route).

    `burst` is how many requests a full bucket allows at once; None means `count`.
    Raises ValueError when a value is out of range.
    """

    count: int
    period: float
    per: str = "ip"
    burst: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"the count must be between 1 and {MAX_COUNT:_}, not {self.count}")
        if not 1.0 <= self.period <= MAX_PERIOD:
            raise ValueError(f"the period must be between 1 second and 1 day, not {self.period}s")
        if not float(self.period).is_integer():  # RateLimit-Policy's `w` is whole seconds
            raise ValueError(f"the period must be a whole number of seconds, not {self.period}")
        if self.per not in SCOPES:
            raise ValueError(f"unknown scope {self.per!r}; use ip, account or route")
        if self.burst is not None and not 1 <= self.burst <= MAX_BURST:
            raise ValueError(f"the burst must be between 1 and {MAX_BURST:_}, not {self.burst}")

    def policy_header_item(self, name: str) -> str:
        """This rule as one `RateLimit-Policy` item: `"name";q=<count>;w=<seconds>`."""
        return f"{sf_string(name)};q={self.count};w={int(self.period)}"

    def __str__(self) -> str:
        text = f"{self.count}/{_period_text(int(self.period))} per {self.per}"
        return text if self.burst is None else f"{text} burst {self.burst}"


def parse_limit(text: str) -> LimitRule:
    """The rule a policy text states, e.g. `30/minute per account`.

    Raises:
        ValueError: the text does not follow the grammar, or a number is out of range;
            the message quotes the text and says what was expected.
    """
    if len(text) > _MAX_TEXT:
        raise ValueError(f"a rate limit is at most {_MAX_TEXT} characters long")
    words = _SLASH.sub("/", text.strip().lower()).split()
    if not words:
        raise ValueError("a rate limit cannot be empty; write e.g. '30/minute per ip'")
    try:
        count, period = _rate(words[0])
        options = _options(words[1:])
        return LimitRule(count, period, options.get("per", "ip"), _burst(options))
    except ValueError as exc:
        raise ValueError(f"rate limit {text.strip()!r}: {exc}") from None


@functools.lru_cache(maxsize=1024)  # policy names: a few, asked for on every response
def sf_string(value: str) -> str:
    """`value` as a structured-field String (RFC 8941 §3.3.3): quoted, `\\` and `"` escaped.

    Raises ValueError when `value` holds a character a String cannot carry (outside
    printable ASCII).
    """
    if not _SF_STRING.fullmatch(value):
        raise ValueError(f"{value!r} can only hold printable ASCII characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rate(word: str) -> tuple[int, float]:
    match = _RATE.fullmatch(word)
    if match is None:
        raise ValueError("expected <count>/<period>, e.g. 30/minute or 10/10s")
    multiplier_text, unit = match.group(2), match.group(3)
    if unit not in _UNITS:
        raise ValueError(
            f"unknown period {unit!r}; use second, minute, hour or day (or s, min, h, d),"
            " optionally after a number (10s, 5min)"
        )
    multiplier = int(multiplier_text) if multiplier_text else 1
    return int(match.group(1)), float(multiplier * _UNITS[unit])


def _options(words: list[str]) -> dict[str, str]:
    if len(words) % 2:
        raise ValueError(f"{words[-1]!r} needs a value (per <scope>, burst <n>)")
    options: dict[str, str] = {}
    for keyword, value in zip(words[::2], words[1::2], strict=True):
        if keyword not in ("per", "burst"):
            raise ValueError(f"unexpected {keyword!r}; expected 'per <scope>' or 'burst <n>'")
        if keyword in options:
            raise ValueError(f"{keyword!r} is given twice")
        options[keyword] = value
    return options


def _burst(options: dict[str, str]) -> int | None:
    text = options.get("burst")
    if text is None:
        return None
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"the burst must be a whole number, not {text!r}")
    return int(text)


def _period_text(seconds: int) -> str:
    for size, word, short in _NAMED:
        if seconds == size:
            return word
        if seconds % size == 0:
            return f"{seconds // size}{short}"
    raise AssertionError("every whole number of seconds is a multiple of 1")
