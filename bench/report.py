"""Turn the raw wrk results of one benchmark run into a Markdown and a JSON report.

    python bench/report.py --runs RUNS.jsonl --rss RSS.jsonl --out DIR
                           [--suite main|auth|events] [--quick] [--partial] [--note TEXT]...

RUNS.jsonl: one {"system", "scenario", "run", "result": <BENCH_RESULT of bench/lua>} a line,
with "outbox" (what bench/outbox_watch.py saw of the relay) in the events suite.
RSS.jsonl: one {"system", "rss_kb", "processes"} a line. The median run (by requests/s)
of each system x scenario is the one reported; the targets are checked against it.
The auth and events suites (`bench/run --auth`, `--events`) have their own targets and
their own files (`...-auth.md`, `...-events.md`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEMS = {
    "charpente": "charpente (`charpente serve`, social template)",
    "charpente_open": "charpente, social template with `read: true` on posts "
    "(`design_variant.py --variant open`)",
    "charpente_quiet": "charpente, social template without `events:` on posts "
    "(`design_variant.py --variant quiet`; the history is still written), no relay "
    "(`CHARPENTE_WORKER=separate`)",
    "charpente_rabbit": "charpente, social template, relaying in process to RabbitMQ "
    "(`CHARPENTE_BUS_URL=amqp://...?exchange=charpente.bench`, publisher confirms)",
    "peer_fastapi": "peer: FastAPI + pydantic + SQLAlchemy ORM",
    "limit_py": "ceiling: raw ASGI + asyncpg + orjson",
}
SCENARIOS = {
    "R1": "get one post by id",
    "R2": "an author's 20 newest posts",
    "R3": "page 50 of a long list (cursor)",
    "R3P1": "page 1 of the same lists (no cursor)",
    "W1": "create a post",
    "W2": "patch a post (optimistic lock)",
    "R1A": "R1 with a bearer token",
    "R2A": "R2 with a bearer token",
    "R1S": "R1 during a login storm",
    "LOGIN": "the storm: password logins, 20 clients",
}
RSS_LIMIT_MB = 150
EVENT_SYSTEMS = ("charpente", "charpente_rabbit")  # the systems whose W1 writes to the outbox
LAG_LIMIT_S = 1.0


@dataclass
class Cell:
    """One system x scenario: its median run and every run."""

    median: dict[str, Any]
    runs: list[dict[str, Any]]

    @property
    def errors(self) -> int:
        return sum(_errors(r) for r in self.runs)


def _errors(result: dict[str, Any]) -> int:
    return int(result["non2xx"]) + sum(int(v) for v in result["socket_errors"].values())


def load_cells(path: Path) -> dict[str, dict[str, Cell]]:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            result = dict(
                row["result"],
                busy_before=row.get("busy_before"),
                others_during=row.get("others_during"),
                run=row.get("run"),
            )
            if row.get("outbox") is not None:
                result["outbox"] = row["outbox"]
            runs.setdefault((row["system"], row["scenario"]), []).append(result)
    cells: dict[str, dict[str, Cell]] = {}
    for (system, scenario), results in runs.items():
        ordered = sorted(results, key=lambda r: r["rps"])
        cells.setdefault(system, {})[scenario] = Cell(ordered[(len(ordered) - 1) // 2], results)
    return cells


def load_rss(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["system"]: r["rss_kb"] / 1024 for r in rows}


def machine() -> dict[str, Any]:
    """What the numbers were measured on (no host name)."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.M)
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb.group(1)) / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": _postgres_version(),
    }


def _postgres_version() -> str:
    try:
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_slug(info: dict[str, Any]) -> str:
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|@.*$|\bprocessor\b", "", str(info["cpu"]).lower())
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")[:40].strip("-")
    return f"{info['cores']}cpu-{cpu}-{round(info['memory_gib'] or 0)}gb"


def targets(cells: dict[str, dict[str, Cell]], rss: dict[str, float]) -> list[dict[str, Any]]:
    """The goals, each met / not met / not measured, with the numbers behind it."""
    out = [_ratio(cells, s, "peer_fastapi", 3.0, "≥ 3x the peer's requests/s") for s in SCENARIOS]
    out = [t for t in out if t["scenario"] in ("R1", "R2", "W1")]
    out.append(_ratio(cells, "R1", "limit_py", 0.5, "≥ 50% of the ceiling's requests/s"))
    out += [_p99(cells, s) for s in ("R1", "R2")]
    out.append(_r3_p50_within(cells, "R1", "R3: charpente p50 ≤ 1.5x its R1 p50"))
    first_page = (
        "R3: charpente p50 ≤ 1.5x its page 1 p50 (R3P1: a deep page costs what the first does)"
    )
    out.append(_r3_p50_within(cells, "R3P1", first_page))
    mb = rss.get("charpente")
    out.append(
        _target(
            f"charpente RSS after its runs < {RSS_LIMIT_MB} MB",
            None if mb is None else mb < RSS_LIMIT_MB,
            "" if mb is None else f"{mb:.0f} MB",
        )
    )
    return out


def auth_targets(cells: dict[str, dict[str, Cell]]) -> list[dict[str, Any]]:
    """The identity and access goals: what a token, the read rule and a login storm cost."""
    r1, r1a = ("charpente", "R1"), ("charpente", "R1A")
    r2, r2a, r2a_open = ("charpente", "R2"), ("charpente", "R2A"), ("charpente_open", "R2A")
    open_rule = "R2A with the read rule ≥ 80% of R2A with `read: true` (charpente_open)"
    return [
        _versus(cells, r1a, r1, 0.9, "R1A ≥ 90% of R1's requests/s"),
        _versus(cells, r2a, r2, 0.9, "R2A ≥ 90% of R2's requests/s"),
        _versus(cells, r2a, r2a_open, 0.8, open_rule),
        _storm_p99(cells, 3.0),
    ]


def events_targets(cells: dict[str, dict[str, Cell]]) -> list[dict[str, Any]]:
    """The events goals: what the outbox costs W1, and whether the relay keeps up with it."""
    without = ("charpente_quiet", "W1")
    out = [
        _versus(cells, ("charpente", "W1"), without, 0.85, "W1 with events ≥ 85% of W1 "
                "without (charpente_quiet)"),
        _lag(cells, "charpente", ""),
        _drain(cells, "charpente", ""),
    ]  # fmt: skip
    if _cell(cells, "charpente_rabbit", "W1") is not None:
        out += [
            _versus(cells, ("charpente_rabbit", "W1"), without, 0.85, "charpente_rabbit: W1 "
                    "with events to RabbitMQ ≥ 85% of W1 without (charpente_quiet)"),
            _lag(cells, "charpente_rabbit", "charpente_rabbit: "),
            _drain(cells, "charpente_rabbit", "charpente_rabbit: "),
        ]  # fmt: skip
    return out


def _watches(cells: dict[str, dict[str, Cell]], system: str) -> list[dict[str, Any]] | None:
    """What the sampler saw during each W1 run of `system`; None when a run has no watch."""
    cell = _cell(cells, system, "W1")
    if cell is None:
        return None
    watches = [r.get("outbox") for r in sorted(cell.runs, key=lambda r: r.get("run") or 0)]
    return None if any(w is None for w in watches) else [w for w in watches if w is not None]


def _lag(cells: dict[str, dict[str, Cell]], system: str, prefix: str) -> dict[str, Any]:
    """The highest lag /readyz showed during the W1 runs: met under LAG_LIMIT_S, with every
    sample answered (a failed sample could hide a lag)."""
    name = f"{prefix}lag during W1 < {LAG_LIMIT_S:g} s (max over runs)"
    watches = _watches(cells, system)
    if not watches or not all(w["samples"] - w["failed"] for w in watches):
        return _target(name, None, "", "W1")
    worst = max(w["max_lag_s"] for w in watches)
    failed, samples = sum(w["failed"] for w in watches), sum(w["samples"] for w in watches)
    runs = " / ".join(f"{w['max_lag_s']:.2f}" for w in watches)
    measured = (
        f"{worst:.2f} s (runs: {runs} s), at most "
        f"{max(w['max_pending'] for w in watches):,} pending"
    )
    if failed:
        measured += f" ({failed} of {samples} samples failed)"
    return _target(name, not failed and worst < LAG_LIMIT_S, measured, "W1")


def _drain(cells: dict[str, dict[str, Cell]], system: str, prefix: str) -> dict[str, Any]:
    """Whether the outbox was empty after every W1 run, and how long that took."""
    name = f"{prefix}outbox drained after W1 (seconds to zero)"
    watches = _watches(cells, system)
    if not watches:
        return _target(name, None, "", "W1")
    if not all(w["drained"] for w in watches):
        left = [w.get("pending_at_end") for w in watches if not w["drained"]]
        return _target(name, False, f"not empty {len(left)} time(s) after its cap", "W1")
    runs = " / ".join(f"{w['drain_s']:.2f}" for w in watches)
    measured = f"at most {max(w['drain_s'] for w in watches):.2f} s (runs: {runs} s)"
    return _target(name, True, measured, "W1")


def _versus(
    cells: dict[str, dict[str, Cell]],
    ours: tuple[str, str],
    base: tuple[str, str],
    factor: float,
    name: str,
) -> dict[str, Any]:
    """charpente's requests/s in one cell against another's: met at `factor` times it or more."""
    a, b = _cell(cells, *ours), _cell(cells, *base)
    if a is None or b is None:
        return _target(name, None, "", ours[1])
    ratio = a.median["rps"] / b.median["rps"] if b.median["rps"] else 0.0
    clean, note = _clean(a, b)
    measured = f"{a.median['rps']:,.0f} vs {b.median['rps']:,.0f} = {ratio:.0%}{note}"
    return _target(name, clean and ratio >= factor, measured, ours[1])


def _storm_p99(cells: dict[str, dict[str, Cell]], factor: float) -> dict[str, Any]:
    """R1's p99 during the login storm against R1's p99 at rest. The storm's own errors
    count: refused logins (429, 400) would be cheap, and the storm would not be one."""
    name = f"R1S: R1's p99 during a login storm < {factor:g}x R1's p99 at rest"
    storm, rest = _cell(cells, "charpente", "R1S"), _cell(cells, "charpente", "R1")
    logins = _cell(cells, "charpente", "LOGIN")
    if storm is None or rest is None or logins is None:
        return _target(name, None, "", "R1S")
    a, b = storm.median["p99_us"] / 1000, rest.median["p99_us"] / 1000
    # The storm that ran beside R1S's median run.
    paired = next((r for r in logins.runs if r.get("run") == storm.median.get("run")), None)
    clean, note = _clean(storm, rest)
    if paired is None or _errors(paired):
        clean, note = False, " (the storm had errors or no result)"
    rate = f", {paired['rps']:,.0f} logins/s beside it" if paired else ""
    measured = f"{a:.1f} ms vs {b:.1f} ms = {a / b:.1f}x{rate}{note}"
    return _target(name, clean and a < factor * b, measured, "R1S")


def _target(name: str, met: bool | None, measured: str, scenario: str = "") -> dict[str, Any]:
    status = "not measured" if met is None else ("met" if met else "not met")
    return {"target": name, "status": status, "measured": measured, "scenario": scenario}


def _cell(cells: dict[str, dict[str, Cell]], system: str, scenario: str) -> Cell | None:
    return cells.get(system, {}).get(scenario)


def _clean(*found: Cell | None) -> tuple[bool, str]:
    """Whether the median runs behind a target had no error (a run with errors cannot pass)."""
    bad = [c for c in found if c is not None and _errors(c.median)]
    return (not bad, " (run had errors)" if bad else "")


def _ratio(
    cells: dict[str, dict[str, Cell]], scenario: str, other: str, factor: float, what: str
) -> dict[str, Any]:
    ours, theirs = _cell(cells, "charpente", scenario), _cell(cells, other, scenario)
    name = f"{scenario}: charpente {what}"
    if ours is None or theirs is None:
        return _target(name, None, "", scenario)
    ratio = ours.median["rps"] / theirs.median["rps"] if theirs.median["rps"] else 0.0
    clean, note = _clean(ours, theirs)
    measured = f"{ours.median['rps']:,.0f} vs {theirs.median['rps']:,.0f} = {ratio:.2f}x{note}"
    return _target(name, clean and ratio >= factor, measured, scenario)


def _p99(cells: dict[str, dict[str, Cell]], scenario: str) -> dict[str, Any]:
    ours = _cell(cells, "charpente", scenario)
    name = f"{scenario}: charpente p99 < 25 ms"
    if ours is None:
        return _target(name, None, "", scenario)
    p99 = ours.median["p99_us"] / 1000
    clean, note = _clean(ours)
    return _target(name, clean and p99 < 25, f"{p99:.1f} ms{note}", scenario)


def _r3_p50_within(cells: dict[str, dict[str, Cell]], base: str, name: str) -> dict[str, Any]:
    """R3's p50 against another scenario's: met when at most 1.5 times it."""
    reference, r3 = _cell(cells, "charpente", base), _cell(cells, "charpente", "R3")
    if reference is None or r3 is None:
        return _target(name, None, "", "R3")
    a, b = r3.median["p50_us"] / 1000, reference.median["p50_us"] / 1000
    clean, note = _clean(reference, r3)
    return _target(name, clean and a <= 1.5 * b, f"{a:.1f} ms vs {b:.1f} ms{note}", "R3")


AUTH_NOTES = [
    "- Tokens: before each token scenario the 64 members sign in for real (`POST "
    "/v1/auth/token`, grant_type=password, `bench/tokens.py`); each request carries one of "
    "the 64 access tokens, picked at random (EdDSA JWTs, checked on every request)",
    "- R1/R1A read public posts; R2/R2A read a random author's 20 newest posts: anonymous, "
    "the read rule keeps the public ones; with a token it also keeps the caller's own and, "
    "through `exists(follows, ...)`, the followers-only posts of authors the caller follows "
    "(each member follows 1,000 of the 10,000 authors)",
    "- R1S: R1 while 20 more connections do password logins without pause (`lua/login.lua`: "
    "random accounts, each login from its own X-Forwarded-For address, so the 20-a-minute "
    "per-address limit lets them through, and every one is an argon2id check); the storm "
    "starts 2 s before R1 and ends after it; LOGIN is the storm's own result",
    "- limit_py (R1, R2): the raw asyncpg ceiling of the main benchmark, run here as a "
    "yardstick of the machine, to compare these numbers with other reports",
]


EVENTS_NOTES = [
    "- Events: every write appends to the audit history (`charpente_events`), in the write's "
    "transaction, on every system; with `events:` on posts (`charpente`, `charpente_rabbit`) "
    "a create also puts a CloudEvent in the outbox (`charpente_outbox`), which the server's "
    "own relay (`CHARPENTE_WORKER=embedded`, the default) publishes and removes: to the "
    "in-process bus on `charpente`, to RabbitMQ with publisher confirms on `charpente_rabbit`",
    "- W1: `POST /v1/posts` with one of the 64 members' tokens (signed in before each run); "
    "`charpente` and `charpente_quiet` are up side by side and run in rounds (run 1 of each, "
    "then run 2, then run 3)",
    "- Outbox: during each W1 run of a system with events, `bench/outbox_watch.py` reads its "
    "`/readyz` every 100 ms and keeps the highest `lag_seconds` (age of the oldest event "
    "still waiting) and `pending`; after wrk ends it polls until `pending` is 0 (30 s at "
    "most): the drain time",
]


def _header(report: dict[str, Any]) -> list[str]:
    m, c = report["machine"], report["config"]
    suite = c.get("suite")
    auth, events = suite == "auth", suite == "events"
    what = {"auth": " of identity and access", "events": " of events and the outbox"}
    reset = "reset between systems and before each W2 run"
    if auth:
        reset = "reset before the runs"
    elif events:
        reset = "reset before every run (posts, counters, and the history and outbox emptied)"
    lines = [
        f"# Load benchmark{what.get(str(suite), '')}, {report['date']}"
        f"{' (quick check)' if c['quick'] else ''}",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB memory, "
        f"Linux {m['kernel']}, Python {m['python']}, PostgreSQL {m['postgresql']}"
        + (f"; code at commit {c['commit']}" if c.get("commit") else ""),
        f"- Load: `wrk -t1 -c32 -d{c['duration_s']}s --latency`, median of {c['runs']} run(s) "
        f"after a {c['warmup_s']} s warm-up; server, PostgreSQL and wrk share the machine",
        "- Servers: one process each on 127.0.0.1 (`uvicorn --loop uvloop --http httptools "
        "--no-access-log`; charpente through `charpente serve --workers 1`, trusting "
        "127.0.0.1 as a proxy)",
        "- Data: 10,000 accounts with passwords, 100,000 posts (150-250-byte bodies; 80% "
        "public, 15% followers, 5% private), 114,000 follows (50,000 random, 1,000 for each "
        f"of the 64 members the benchmark signs in); {reset}",
        "- CPU busy before runs: the share of both cores used by other processes in the second "
        f"before a run (the harness waits up to {c.get('quiet_wait_s', 30)} s for it to drop "
        "under 15%); others during: the share of both cores used during a run by processes "
        "other than the server, its PostgreSQL backends and wrk (a run where it tops 15% is "
        f"run again, at most {c.get('retries', 0)} times; the last attempt is kept)",
    ]
    notes = AUTH_NOTES if auth else EVENTS_NOTES if events else []
    return lines + notes + [f"- Note: {n}" for n in c.get("notes", [])]


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        *_header(report),
        "",
        "## Results",
        "",
        "| system | scenario | requests/s | p50 ms | p99 ms | errors (all runs) | runs (req/s) "
        "| CPU busy before / others during runs |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for system, scenarios in report["results"].items():
        for scenario, cell in scenarios.items():
            med = cell["median"]
            runs = " / ".join(f"{r['rps']:,.0f}" for r in cell["runs"])
            lines.append(
                f"| {system} | {scenario} {SCENARIOS.get(scenario, '')} | {med['rps']:,.0f} "
                f"| {med['p50_us'] / 1000:.1f} | {med['p99_us'] / 1000:.1f} "
                f"| {_error_text(cell)} | {runs} | {_busy_text(cell)} |"
            )
    lines += _outbox_table(report)
    lines += ["", "| system | RSS after its runs |", "|---|---:|"]
    lines += [f"| {s} | {mb:.0f} MB |" for s, mb in report["rss_mb"].items()]
    lines += ["", "## Targets", "", "| target | measured | status |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | **{t['status']}** |" for t in report["targets"]]
    shown = [k for k in SYSTEMS if k in report["results"]]
    lines += ["", "Systems:", ""] + [f"- `{k}`: {SYSTEMS[k]}" for k in shown]
    return "\n".join(lines) + "\n"


def _outbox_table(report: dict[str, Any]) -> list[str]:
    """Each W1 run of a system with events: what /readyz showed of the relay."""
    rows = []
    for system, scenarios in report["results"].items():
        runs = scenarios.get("W1", {}).get("runs", [])
        for run in sorted(runs, key=lambda r: r.get("run") or 0):
            w = run.get("outbox")
            if w is None:
                continue
            drained = f"{w['drain_s']:.2f} s" if w["drained"] else "not within the cap"
            at_end = "?" if w["pending_at_end"] is None else f"{w['pending_at_end']:,}"
            rows.append(
                f"| {system} | {run.get('run')} | {run['rps']:,.0f} | {w['max_lag_s']:.2f} "
                f"| {w['max_pending']:,} | {at_end} "
                f"| {drained} | {w['failed']} of {w['samples']} | {w.get('published') or 0:,} "
                f"| {w.get('last_error') or '-'} |"
            )
    if not rows:
        return []
    return [
        "",
        "## The outbox during W1",
        "",
        "| system | run | requests/s | max lag s | max pending | pending when wrk ended "
        "| drained after | failed samples | published (since the server started) | relay error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows,
    ]


def _busy_text(cell: dict[str, Any]) -> str:
    texts = []
    for key in ("busy_before", "others_during"):
        readings = [r[key] for r in cell["runs"] if r.get(key) is not None]
        texts.append(f"≤ {max(readings)}%" if readings else "?")
    return " / ".join(texts)


def _error_text(cell: dict[str, Any]) -> str:
    total: dict[str, int] = {}
    for run in cell["runs"]:
        for status, n in run["statuses"].items():
            total[status] = total.get(status, 0) + n
        for kind, n in run["socket_errors"].items():
            if n:
                total[kind] = total.get(kind, 0) + n
    if not total:
        return "0"
    return ", ".join(f"{n} x {k}" for k, n in sorted(total.items()))


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    cells = load_cells(args.runs)
    rss = load_rss(args.rss)
    order = [s for s in SYSTEMS if s in cells]
    results = {
        s: {k: {"median": cells[s][k].median, "runs": cells[s][k].runs}
            for k in SCENARIOS if k in cells[s]}
        for s in order
    }  # fmt: skip
    return {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "config": {
            "quick": args.quick,
            "partial": args.partial,
            "runs": 1 if args.quick else 3,
            "duration_s": 3 if args.quick else 10,
            "warmup_s": args.warmup,
            "connections": 32,
            "threads": 1,
            "suite": args.suite,
            "quiet_wait_s": args.quiet_wait,
            "retries": args.retries,
            "notes": args.note,
            "commit": args.commit or None,
        },
        "results": results,
        "rss_mb": {s: round(mb, 1) for s, mb in rss.items()},
        "targets": _suite_targets(args.suite, cells, rss),
    }


def _suite_targets(
    suite: str, cells: dict[str, dict[str, Cell]], rss: dict[str, float]
) -> list[dict[str, Any]]:
    if suite == "auth":
        return auth_targets(cells)
    return events_targets(cells) if suite == "events" else targets(cells, rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--rss", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--partial", action="store_true")
    parser.add_argument("--suite", choices=("main", "auth", "events"), default="main")
    parser.add_argument("--commit", default="", help="the code measured (git HEAD)")
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    parser.add_argument("--quiet-wait", type=int, default=30, help="bench/run's QUIET_WAIT")
    parser.add_argument("--retries", type=int, default=0, help="bench/run's RETRIES")
    args = parser.parse_args()
    report = build_report(args)
    name = f"{report['date']}-{machine_slug(report['machine'])}"
    if args.suite in ("auth", "events"):
        name += f"-{args.suite}"
    if args.quick or args.partial:
        name += "-quick" if args.quick else "-partial"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(render_markdown(report))
    print(render_markdown(report))
    print(f"report: {args.out / name}.md and .json")


if __name__ == "__main__":
    main()
