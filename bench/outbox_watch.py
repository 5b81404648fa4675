"""Watch a charpente server's outbox relay through /readyz while a load runs, then time its drain.

    python bench/outbox_watch.py --url http://127.0.0.1:8101/readyz --out WATCH.json &
    wrk ...                      # the load
    kill -USR1 $!; wait $!       # the load has ended: time the drain, write WATCH.json

It creates WATCH.json empty as soon as it handles SIGUSR1 (a signal sent earlier would end
it): wait for the file before starting the load.

While the load runs it reads `/readyz` every `--interval` seconds (0.1) over one kept-alive
connection and keeps the highest `outbox.lag_seconds` and `outbox.pending` it saw. On
SIGUSR1 (the load has ended) it polls at the same pace until `pending` is 0, at most
`--drain-cap` seconds (30), and writes one JSON object:

    {"samples": 98, "failed": 0, "max_lag_s": 0.21, "max_pending": 312,
     "pending_at_end": 40, "drained": true, "drain_s": 0.31, "drain_max_lag_s": 0.2,
     "published": 15321, "last_error": null}

`drain_s` is the time from SIGUSR1 to the first answer with nothing pending (null when the
outbox was not empty after `--drain-cap` seconds). A sample that fails (no answer within
2 s, a status other than 200, no `outbox` in the answer) counts in `failed`. Bounded: the
watch ends by itself after `--limit` seconds even when no signal comes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

TIMEOUT_S = 2.0


@dataclass
class Watch:
    """What the samples showed, during the load and after it."""

    samples: int = 0
    failed: int = 0
    max_lag_s: float = 0.0
    max_pending: int = 0
    pending_at_end: int | None = None
    drained: bool = False
    drain_s: float | None = None
    drain_max_lag_s: float = 0.0
    published: int | None = None
    last_error: str | None = None
    errors: list[str] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "errors"}
        out["sample_errors"] = self.errors[:5]  # the first few, to tell what went wrong
        return out


class Readyz:
    """GET /readyz over one kept-alive connection, opened again after a failure."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise SystemExit(f"outbox_watch: --url must be an http:// URL, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/readyz"
        self._conn: http.client.HTTPConnection | None = None

    def outbox(self) -> dict[str, Any]:
        """The `outbox` object of one answer. Raises OSError, HTTPException or ValueError."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        try:
            self._conn.request("GET", self.path)
            response = self._conn.getresponse()
            body = response.read(65536)
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.status != 200:
            raise ValueError(f"status {response.status}")
        outbox = json.loads(body).get("outbox")
        if not isinstance(outbox, dict) or not isinstance(outbox.get("pending"), int):
            raise ValueError("no outbox in the answer")
        return outbox

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Ended:
    """Set by SIGUSR1: when the load ended (monotonic seconds)."""

    at: float | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.at is None:
            self.at = time.monotonic()


def _sample(readyz: Readyz, watch: Watch) -> dict[str, Any] | None:
    watch.samples += 1
    try:
        outbox = readyz.outbox()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        watch.failed += 1
        watch.errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return None
    watch.published = outbox.get("published")
    watch.last_error = outbox.get("last_error")
    return outbox


def _pace(start: float, n: int, interval: float) -> None:
    """Sleep until the n-th tick after `start` (a slow sample makes the next one sooner)."""
    delay = start + n * interval - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def watch(readyz: Readyz, interval: float, drain_cap: float, limit: float, ended: Ended) -> Watch:
    out = Watch()
    start = time.monotonic()
    n = 0
    while ended.at is None and time.monotonic() - start < limit:
        outbox = _sample(readyz, out)
        if outbox is not None:
            out.max_lag_s = max(out.max_lag_s, float(outbox["lag_seconds"]))
            out.max_pending = max(out.max_pending, int(outbox["pending"]))
        n += 1
        _pace(start, n, interval)
    end = ended.at if ended.at is not None else time.monotonic()
    n = 0
    while time.monotonic() - end < drain_cap:
        outbox = _sample(readyz, out)
        if outbox is not None:
            pending = int(outbox["pending"])
            if out.pending_at_end is None:
                out.pending_at_end = pending
            out.drain_max_lag_s = max(out.drain_max_lag_s, float(outbox["lag_seconds"]))
            if pending == 0:
                out.drained, out.drain_s = True, round(time.monotonic() - end, 3)
                break
        n += 1
        _pace(end, n, interval)
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server's /readyz")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    parser.add_argument("--drain-cap", type=float, default=30.0, help="seconds to wait for 0")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds of watch at most")
    args = parser.parse_args(argv)
    if not 0.01 <= args.interval <= 10 or not 0 < args.drain_cap <= 600:
        parser.error("--interval is 0.01-10 s and --drain-cap 0-600 s")
    if not 0 < args.limit <= 3600:
        parser.error("--limit is 0-3600 s")
    ended = Ended()
    signal.signal(signal.SIGUSR1, ended)
    readyz = Readyz(args.url)
    args.out.write_text("")  # ready: the signal is handled from now on
    try:
        result = watch(readyz, args.interval, args.drain_cap, args.limit, ended)
    finally:
        readyz.close()
    args.out.write_text(json.dumps(result.result()) + "\n")
    drained = f"drained in {result.drain_s} s" if result.drained else "not drained"
    print(
        f"max lag {result.max_lag_s} s, max pending {result.max_pending}, {drained}, "
        f"{result.failed} of {result.samples} samples failed"
        + (f", relay error: {result.last_error}" if result.last_error else "")
    )


if __name__ == "__main__":
    main(sys.argv[1:])
