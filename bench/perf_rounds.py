"""Alternating rounds: two charpente servers that differ in one setting, one load at a time.

    python bench/perf_rounds.py --compare shapes --scenarios R1,R2 --rounds 6
    python bench/perf_rounds.py --compare cache --scenarios R1,R2 --rounds 6

- `shapes`: the shape log on (the default) against `CHARPENTE_SHAPE_LOG=false`; the
  issue's bound is an overhead of at most 2 % of R2's requests/s.
- `cache`: posts cached in Redis (`bench/design_variant.py --variant cached` and
  `CHARPENTE_REDIS_URL`) against the template as it ships; the issue asks cached R1 at least
  3 times and cached R2 at least 2 times the uncached requests/s, on one process.

Both servers run side by side (ports 8111 and 8112), one process each, and wrk loads one
of them at a time, A then B then A…, so that a machine whose speed drifts (other work,
thermal limits) shifts both the same way; the report gives each side's median
requests/s over the rounds and their ratio. It needs what `bench/run` prepared: the
seeded `charpente_bench` database and the id lists in `bench/.work/ids/` (run
`bench/run --quick --only charpente` once first), and `wrk`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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
R2 = "/v1/posts?filter=author%20%3D%3D%20%22%s%22&sort=-created_at&limit=20"
SCENARIOS = {
    "R1": ["r1.lua", "/v1/posts/%s", str(WORK / "ids/posts.txt")],
    "R2": ["r2.lua", R2, str(WORK / "ids/accounts.txt")],
}


def _sides(compare: str) -> list[tuple[str, dict[str, str]]]:
    """(label, environment) of side A, then side B."""
    base = {
        "CHARPENTE_DATABASE_URL": DATABASE,
        "CHARPENTE_DESIGN": str(TEMPLATE),
        "CHARPENTE_TRUSTED_PROXIES": "127.0.0.1",
    }
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
    parser.add_argument("--compare", choices=("shapes", "cache"), required=True)
    parser.add_argument("--scenarios", default="R1,R2")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    if any(s not in SCENARIOS for s in scenarios):
        sys.exit(f"--scenarios takes {', '.join(SCENARIOS)}")
    if not (WORK / "ids/posts.txt").is_file():
        sys.exit("no id lists in bench/.work/ids: run `bench/run --quick --only charpente` first")
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    sides = _sides(args.compare)
    servers = [
        _start(port, env, WORK / f"logs/rounds-{port}.log")
        for port, (_, env) in zip(PORTS, sides, strict=True)
    ]
    results: dict[str, list[list[float]]] = {s: [[], []] for s in scenarios}
    try:
        for scenario in scenarios:
            for port in PORTS:  # warm both up: caches, prepared statements, the shape log
                _wrk(port, scenario, 2, 0)
            for round_ in range(args.rounds):
                order = (0, 1) if round_ % 2 == 0 else (1, 0)
                for side in order:
                    rps = _wrk(PORTS[side], scenario, args.seconds, round_ + 1)
                    results[scenario][side].append(rps)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=15)
    print(f"{args.compare}: {sides[0][0]} (A) against {sides[1][0]} (B), {args.rounds} rounds")
    for scenario, (a, b) in results.items():
        ratio = statistics.median(a) / statistics.median(b)
        print(f"{scenario}: A {statistics.median(a):.0f} req/s, B {statistics.median(b):.0f} "
              f"req/s, A/B {ratio:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
