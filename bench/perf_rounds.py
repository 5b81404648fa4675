"""Alternating rounds: two charpente servers that differ in one setting, one load at a time.

    python bench/perf_rounds.py --compare shapes --scenarios R1,R2 --rounds 6
    python bench/perf_rounds.py --compare cache --scenarios R1,R2 --rounds 6
    python bench/perf_rounds.py --compare observability --scenarios W1 --rounds 6

- `shapes`: the shape log on (the default) against `CHARPENTE_SHAPE_LOG=false`; the
  issue's bound is an overhead of at most 2 % of R2's requests/s.
- `cache`: posts cached in Redis (`bench/design_variant.py --variant cached` and
  `CHARPENTE_REDIS_URL`) against the template as it ships; the issue asks cached R1 at least
  3 times and cached R2 at least 2 times the uncached requests/s, on one process.
- `observability`: metrics on (the default) and traces sampled at 10 %
  (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.1`) exported
  over OTLP/HTTP to a sink this script runs (it answers 200 to every batch, as a collector
  would), against `CHARPENTE_METRICS=false` and no tracing; the operations issue asks W1
  (create a post, signed in) with both on to keep at least 95 % of W1 with both off.
  `metrics` and `traces` take one of the two at a time (the other off), to see which costs;
  `--trace-ratio 0` keeps tracing on with nothing sampled (what every request pays).

Both servers run side by side (ports 8111 and 8112), one process each, and wrk loads one
of them at a time, A then B then A…, so that a machine whose speed drifts (other work,
thermal limits) shifts both the same way; the report gives each side's median
requests/s over the rounds and their ratio. It needs what `bench/run` prepared: the
seeded `charpente_bench` database and the id lists in `bench/.work/ids/` (run
`bench/run --quick --only charpente` once first), and `wrk`.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
VENV = ROOT / ".venv"
TEMPLATE = ROOT / "src/charpente/templates/social.yaml"
DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/charpente_bench"
REDIS = "redis://127.0.0.1:6379/0"
PORTS = (8111, 8112)
COMPARES = ("shapes", "cache", "observability", "metrics", "traces")
SINK_PORT = 8113  # the OTLP sink of --compare observability
TOKENS = WORK / "rounds-tokens.txt"
R2 = "/v1/posts?filter=author%20%3D%3D%20%22%s%22&sort=-created_at&limit=20"
SCENARIOS = {
    "R1": ["r1.lua", "/v1/posts/%s", str(WORK / "ids/posts.txt")],
    "R2": ["r2.lua", R2, str(WORK / "ids/accounts.txt")],
    "W1": ["w1.lua", "/v1/posts", str(WORK / "ids/accounts.txt"), str(TOKENS)],
}


def _sides(compare: str, trace_ratio: float = 0.1) -> list[tuple[str, dict[str, str]]]:
    """(label, environment) of side A, then side B."""
    base = {
        "CHARPENTE_DATABASE_URL": DATABASE,
        "CHARPENTE_DESIGN": str(TEMPLATE),
        "CHARPENTE_TRUSTED_PROXIES": "127.0.0.1",
    }
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{SINK_PORT}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(trace_ratio),
    }
    off = {**base, "CHARPENTE_METRICS": "false"}
    if compare == "observability":
        return [("metrics on, traces 10%", {**base, **traced}), ("both off", off)]
    if compare == "metrics":
        return [("metrics on", base), ("metrics off", off)]
    if compare == "traces":
        return [("traces 10%", {**off, **traced}), ("no traces", off)]
    if compare == "shapes":
        return [
            ("shape log on", {**base, "CHARPENTE_SHAPE_LOG": "true"}),
            ("shape log off", {**base, "CHARPENTE_SHAPE_LOG": "false"}),
        ]
    cached = WORK / "designs/social-cached.yaml"
    cached.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(VENV / "bin/python"), str(BENCH / "design_variant.py"), "--variant", "cached",
         "--design", str(TEMPLATE), "--out", str(cached)],
        check=True,
    )  # fmt: skip
    return [
        ("cached (Redis)", {**base, "CHARPENTE_DESIGN": str(cached), "CHARPENTE_REDIS_URL": REDIS}),
        ("uncached", base),
    ]


def _start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    settings = [f"{name}={value}" for name, value in env.items()]  # over the inherited ones
    serve = [str(VENV / "bin/charpente"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["env", *settings, *serve], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server on {port} exited while starting: see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    sys.exit(f"the server on {port} did not answer /healthz within 60 s: see {log}")


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps nothing: 200 to every export, and a count."""

    batches = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).batches += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _start_sink() -> http.server.ThreadingHTTPServer:
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", SINK_PORT), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    return sink


def _sign_in(port: int) -> None:
    """Fresh access tokens of the members for the W1 rounds (they live 15 minutes)."""
    subprocess.run(
        [str(VENV / "bin/python"), str(BENCH / "tokens.py"), "--base", f"http://127.0.0.1:{port}",
         "--ids", str(WORK / "ids"), "--out", str(TOKENS)],
        check=True, timeout=120, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _wrk(port: int, scenario: str, seconds: int, seed: int) -> float:
    script, *arguments = SCENARIOS[scenario]
    lua = str(BENCH / "lua" / script)
    command = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", lua,
               f"http://127.0.0.1:{port}", "--", *arguments, str(seed)]  # fmt: skip
    found = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    for line in found.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return float(json.loads(line.removeprefix("BENCH_RESULT "))["rps"])
    sys.exit(f"wrk printed no result:\n{found.stdout}{found.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=COMPARES, required=True)
    parser.add_argument("--out", type=Path, help="also write the rounds and ratios as JSON")
    parser.add_argument("--scenarios", default="R1,R2")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--trace-ratio", type=float, default=0.1, help="the traced side's sampling")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    if any(s not in SCENARIOS for s in scenarios):
        sys.exit(f"--scenarios takes {', '.join(SCENARIOS)}")
    if not (WORK / "ids/posts.txt").is_file():
        sys.exit("no id lists in bench/.work/ids: run `bench/run --quick --only charpente` first")
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    sides = _sides(args.compare, args.trace_ratio)
    sink = _start_sink() if args.compare in ("observability", "traces") else None
    servers = [
        _start(port, env, WORK / f"logs/rounds-{port}.log")
        for port, (_, env) in zip(PORTS, sides, strict=True)
    ]
    try:
        results = {scenario: _rounds(scenario, args.rounds, args.seconds) for scenario in scenarios}
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=15)
        if sink is not None:
            sink.shutdown()
    _report(args, sides, results, sink is not None)


def _rounds(scenario: str, rounds: int, seconds: int) -> list[list[float]]:
    """The requests/s of side A and of side B in each round, A first in even rounds."""
    found: list[list[float]] = [[], []]
    if scenario == "W1":
        _sign_in(PORTS[0])  # both servers read the same signing keys
    for port in PORTS:  # warm both up: caches, prepared statements, the shape log
        _wrk(port, scenario, 2, 0)
    for round_ in range(rounds):
        if scenario == "W1" and round_ % 4 == 3:
            _sign_in(PORTS[0])
        for side in (0, 1) if round_ % 2 == 0 else (1, 0):
            found[side].append(_wrk(PORTS[side], scenario, seconds, round_ + 1))
    return found


def _report(
    args: argparse.Namespace,
    sides: list[tuple[str, dict[str, str]]],
    results: dict[str, list[list[float]]],
    traced: bool,
) -> None:
    print(f"{args.compare}: {sides[0][0]} (A) against {sides[1][0]} (B), {args.rounds} rounds")
    report: dict[str, object] = {
        "compare": args.compare,
        "a": sides[0][0],
        "b": sides[1][0],
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cpu, {platform.processor() or platform.machine()}",
        "seconds_per_run": args.seconds,
        "scenarios": {},
    }
    if traced:
        report["otlp_batches_received"] = _Sink.batches
        print(f"the OTLP sink received {_Sink.batches} export batches")
    for scenario, (a, b) in results.items():
        per_round = [x / y for x, y in zip(a, b, strict=True)]
        ratio = statistics.median(per_round)
        print(f"{scenario}: A {statistics.median(a):.0f} req/s, B {statistics.median(b):.0f} "
              f"req/s, median of the per-round A/B {ratio:.3f}")  # fmt: skip
        report["scenarios"][scenario] = {  # type: ignore[index]
            "a_rps": a, "b_rps": b, "per_round_ratio": per_round, "median_ratio": ratio,
        }  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
