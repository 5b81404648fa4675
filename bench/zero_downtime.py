"""A rename with no downtime on a large PostgreSQL table, under writes through two servers.

    .venv/bin/python bench/zero_downtime.py                      # 1,000,000 rows
    .venv/bin/python bench/zero_downtime.py --rows 100000 --seconds 10

In a schema of its own (dropped at the end), it applies a design whose `posts` has a
`headline`, seeds the rows (COPY), and starts `charpente serve` on that design. Writers
(W1-like: create a post, then update it) run through it for `--seconds`: the baseline.
Then `charpente migrate start` renames `headline` to `title` (`renamed_from`) while the
writers go on; a sampler reads `pg_stat_activity` every 20 ms and keeps the longest lock
wait seen on the schema's tables. Once the backfill is done a second `serve`, of the new
design, starts and half the writers use it (title) while the others keep using the old
one (headline). The old server is stopped, `charpente migrate complete` runs, and every
write is checked: each record holds the last value written, under `title`.

Prints one JSON object: rows, the writers' p50/p99 in the baseline and during the
backfill (and their ratio), the longest lock wait, the backfill's duration, writes made
and writes lost. Exits 1 when a write is lost or a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
CHARPENTE = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
BEFORE = """\
charpente: 1
name: blog
resources:
  posts:
    access: {read: true, create: true, update: true}
    fields:
      headline: {type: string, required: true, max_length: 200}
      score: int
"""
AFTER = BEFORE.replace(
    "headline: {type: string, required: true, max_length: 200}",
    "title: {type: string, required: true, max_length: 200, renamed_from: headline}",
)


@dataclass
class Writes:
    """Latencies by phase, and the last value written to each record."""

    phase: str = "baseline"
    latencies: dict[str, list[float]] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def record(self, seconds: float) -> None:
        self.latencies.setdefault(self.phase, []).append(seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def seed(dsn: str, schema: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        now = dt.datetime.now(dt.UTC)
        batch = 100_000
        for start in range(0, rows, batch):
            records = [
                (uuid.uuid4(), f"seeded headline {n}", n, now, now, 1)
                for n in range(start, min(rows, start + batch))
            ]
            await conn.copy_records_to_table(
                "posts",
                records=records,
                columns=["id", "headline", "score", "created_at", "updated_at", "version"],
            )
        await conn.execute("ANALYZE posts")
    finally:
        await conn.close()


async def writer(
    client: httpx.AsyncClient,
    base: str,
    field_name: str,
    writes: Writes,
    stop: asyncio.Event,
    n: int,
) -> None:
    """Create a post, then update it, again and again (a short pause between writes)."""
    count = 0
    while not stop.is_set():
        count += 1
        value = f"w{n} {count} {uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        try:
            created = await client.post(
                f"{base}/v1/posts", json={field_name: value, "score": count}
            )
            writes.record(time.perf_counter() - started)
            if created.status_code != 201:
                writes.failures.append(f"create {created.status_code}: {created.text[:200]}")
                continue
            record = created.json()["id"]
            writes.last[record] = value
            value = value + " edited"
            started = time.perf_counter()
            updated = await client.patch(f"{base}/v1/posts/{record}", json={field_name: value})
            writes.record(time.perf_counter() - started)
            if updated.status_code != 200:
                writes.failures.append(f"update {updated.status_code}: {updated.text[:200]}")
                continue
            writes.last[record] = value
        except httpx.HTTPError as exc:
            writes.failures.append(f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(0.01)


async def lock_sampler(dsn: str, stop: asyncio.Event, waits: list[float]) -> None:
    """The longest time any backend of the database was seen waiting on a lock."""
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT extract(epoch FROM clock_timestamp() - query_start) AS waited, query "
                "FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() "
                "AND query ILIKE '%posts%'"
            )
            waits.extend(float(r["waited"]) for r in rows)
            await asyncio.sleep(0.02)
    finally:
        await conn.close()


def serve(env: dict[str, str], design: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CHARPENTE, "serve", "--design", str(design), "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if process.poll() is not None:
                raise SystemExit(f"the server {base} exited with {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/healthz", timeout=1)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit(f"the server {base} did not start")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def run(args: argparse.Namespace) -> dict[str, object]:
    dsn = args.url.replace("postgresql+asyncpg://", "postgresql://")
    schema = f"bench_zdm_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    work = Path(args.workdir) if args.workdir else Path.cwd()
    before, after = work / f"{schema}-v1.yaml", work / f"{schema}-v2.yaml"
    before.write_text(BEFORE)
    after.write_text(AFTER)
    settings = {"CHARPENTE_DATABASE_URL": args.url, "CHARPENTE_DATABASE_SCHEMA": schema}
    env = os.environ | settings  # noqa: TID251 (the servers' environment, not configuration)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            [*CHARPENTE, "migrate", "apply", "--yes", "--design", str(before)],
            env=env,
            check=True,
            capture_output=True,
        )
        started = time.monotonic()
        await seed(dsn, schema, args.rows)
        seeded_s = time.monotonic() - started
        old_port, new_port = free_port(), free_port()
        old = serve(env, before, old_port)
        servers.append(old)
        v1 = f"http://127.0.0.1:{old_port}"
        await healthy(v1, old)

        writes, stop, waits, sampling = Writes(), asyncio.Event(), [], asyncio.Event()
        limits = httpx.Limits(max_connections=args.writers * 2)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            tasks = [
                asyncio.create_task(writer(client, v1, "headline", writes, stop, n))
                for n in range(args.writers)
            ]
            await asyncio.sleep(args.seconds)  # the baseline

            writes.phase = "backfill"
            sampler = asyncio.create_task(lock_sampler(dsn, sampling, waits))
            started = time.monotonic()
            migration = await asyncio.create_subprocess_exec(
                *CHARPENTE,
                "migrate",
                "start",
                "--design",
                str(after),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await migration.communicate()
            backfill_s = time.monotonic() - started
            sampling.set()
            await sampler
            if migration.returncode != 0:
                raise SystemExit(f"migrate start failed: {err.decode()[-2000:]}")

            writes.phase = "side by side"
            new = serve(env, after, new_port)
            servers.append(new)
            v2 = f"http://127.0.0.1:{new_port}"
            await healthy(v2, new)
            tasks += [
                asyncio.create_task(writer(client, v2, "title", writes, stop, args.writers + n))
                for n in range(args.writers)
            ]
            await asyncio.sleep(args.seconds)
            stop.set()
            await asyncio.gather(*tasks)

        stop_process(old)
        completed = subprocess.run(
            [*CHARPENTE, "migrate", "complete", "--design", str(after)],
            env=env,
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise SystemExit(f"migrate complete failed: {completed.stderr[-2000:]}")

        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            stored = {
                str(r["id"]): r["title"]
                for r in await conn.fetch(
                    "SELECT id, title FROM posts WHERE id = ANY($1::uuid[])", list(writes.last)
                )
            }
            total = await conn.fetchval("SELECT count(*) FROM posts")
        finally:
            await conn.close()
        lost = [i for i, value in writes.last.items() if stored.get(i) != value]
        base, during = writes.latencies.get("baseline", []), writes.latencies.get("backfill", [])
        return {
            "rows": args.rows,
            "seeded_s": round(seeded_s, 1),
            "backfill_s": round(backfill_s, 1),
            "writers_per_server": args.writers,
            "baseline": {
                "writes": len(base),
                "p50_ms": round(1000 * statistics.median(base), 1) if base else None,
                "p99_ms": round(1000 * percentile(base, 0.99), 1),
            },
            "during_backfill": {
                "writes": len(during),
                "p50_ms": round(1000 * statistics.median(during), 1) if during else None,
                "p99_ms": round(1000 * percentile(during, 0.99), 1),
            },
            "p99_ratio": round(percentile(during, 0.99) / percentile(base, 0.99), 2)
            if base and during
            else None,
            "longest_lock_wait_ms": round(1000 * max(waits), 1) if waits else 0.0,
            "side_by_side_writes": len(writes.latencies.get("side by side", [])),
            "records_written": len(writes.last),
            "writes_lost": len(lost),
            "write_errors": writes.failures[:5],
            "rows_at_end": total,
        }
    finally:
        for process in servers:
            stop_process(process)
        before.unlink(missing_ok=True)
        after.unlink(missing_ok=True)
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="baseline and side-by-side durations"
    )
    parser.add_argument("--writers", type=int, default=4, help="concurrent writers per server")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if result["writes_lost"] or result["write_errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
