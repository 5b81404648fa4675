"""Two `charpente serve` on PostgreSQL behind HAProxy, restarted one after the other under
about 50 requests a second for 30 seconds: no request fails, and a live-changes client
that resumes after each restart (Last-Event-ID) misses no change. Marked `slow` (about two
minutes): `-m "not slow"` leaves it out."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import service_missing

pytestmark = pytest.mark.slow

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
RABBITMQ_URL = os.environ.get("CHARPENTE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
DURATION = 30.0  # seconds of load
RATE = 50  # requests a second
DRAIN = 3.0  # > fall x inter: HAProxy has taken the server out before it stops

DESIGN = """\
charpente: 1
name: rolling
api_version: 1
resources:
  notes:
    access: {read: true, create: true}
    fields:
      text: {type: string, required: true, max_length: 50}
    events: [created]
"""

HAPROXY_CONFIG = """\
global
    maxconn 500
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch
frontend api
    bind 127.0.0.1:{front}
    default_backend charpente
backend charpente
    option httpchk GET /readyz
    http-check expect status 200
    timeout check 3s
    default-server inter 500ms fall 2 rise 2
    server a 127.0.0.1:{a} check
    server b 127.0.0.1:{b} check
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One `charpente serve` process on a port of its own."""

    def __init__(self, environ: dict[str, str], cwd: Path, port: int) -> None:
        self.environ, self.cwd, self.port = environ, cwd, port
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[str] = []

    def start(self) -> None:
        command = [sys.executable, "-c", "from charpente.cli.main import main; main()", "serve"]
        options = ["--port", str(self.port), "--drain-seconds", str(DRAIN)]
        log = (self.cwd / f"serve-{self.port}-{len(self.logs)}.log").open("wb")
        self.process = subprocess.Popen(
            [*command, *options], env=self.environ, cwd=self.cwd, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"serve exited with {self.process.returncode}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not get ready"
            time.sleep(0.1)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=DRAIN + 15)
        log = sorted(self.cwd.glob(f"serve-{self.port}-*.log"))[-1]
        self.logs.append(log.read_text())
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def cluster(pg_target: Any, tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    if not Path(HAPROXY).exists():
        service_missing("HAProxy", "not installed: apt-get install haproxy")
    (tmp_path / "design.yaml").write_text(DESIGN)
    exchange = f"rolling_{uuid.uuid4().hex[:12]}"
    environ = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": pg_target.url,
        "CHARPENTE_DATABASE_SCHEMA": pg_target.schema,
        "CHARPENTE_DESIGN": "design.yaml",
        "CHARPENTE_BUS_URL": f"{RABBITMQ_URL}?exchange={exchange}",
        "CHARPENTE_LOG_LEVEL": "info",
    }
    migrate = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
    subprocess.run(
        [*migrate, "migrate", "apply", "--yes"],
        env=environ,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    servers = [Server(environ, tmp_path, free_port()), Server(environ, tmp_path, free_port())]
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(front=front, a=servers[0].port, b=servers[1].port))
    proxy = subprocess.Popen(
        [HAPROXY, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for server in servers:
            server.start()
        yield f"http://127.0.0.1:{front}", servers
    finally:
        for server in servers:
            server.kill()
        proxy.terminate()
        proxy.wait(10)
        asyncio.run(_delete_exchange(exchange))


async def _delete_exchange(name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await connection.channel()
        await channel.exchange_delete(name)
    finally:
        await connection.close()


async def follow(base: str, seen: dict[str, str], stop: asyncio.Event) -> int:
    """Follow the live changes, resuming with Last-Event-ID whenever a stream ends; how many
    times it resumed. `seen`: record id -> event id."""
    last: str | None = None
    resumed = 0
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(5, read=30)) as client:
        while not stop.is_set():
            headers = {"Last-Event-ID": last} if last else {}
            try:
                async with client.stream("GET", "/v1/notes/changes", headers=headers) as answer:
                    if answer.status_code != 200:
                        await asyncio.sleep(0.2)
                        continue
                    event_id = None
                    async for line in answer.aiter_lines():
                        if line.startswith("id: "):
                            event_id = line[4:]
                        elif line.startswith("data: ") and event_id is not None:
                            record = httpx.Response(200, content=line[6:]).json()
                            seen[record["record"]["id"]] = event_id
                            last, event_id = event_id, None
                        if stop.is_set():
                            return resumed
            except httpx.TransportError:
                await asyncio.sleep(0.1)
            resumed += 1
    return resumed


async def load(base: str, results: list[tuple[str, int | str]], created: list[str]) -> None:
    """About RATE requests a second for DURATION seconds: writes and reads, half each."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def one(n: int) -> None:
            try:
                if n % 2:
                    answer = await client.post("/v1/notes", json={"text": f"note {n}"})
                    if answer.status_code == 201:
                        created.append(answer.json()["id"])
                else:
                    answer = await client.get("/v1/notes?limit=5")
                results.append(("ok", answer.status_code))
                if answer.status_code not in (200, 201):  # what answered it, and when
                    said = f"{time.monotonic() - start:.1f} s: {answer.text[:200]}"
                    results.append(("answer", said))
            except httpx.TransportError as exc:
                results.append(("failed", type(exc).__name__))

        tasks = []
        start = time.monotonic()
        for n in range(int(DURATION * RATE)):
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)


async def roll(servers: list[Server]) -> list[int]:
    """Restart each server in turn, once the load runs; their exit codes."""
    codes = []
    await asyncio.sleep(5)
    for server in servers:
        codes.append(await asyncio.to_thread(server.stop))
        await asyncio.to_thread(server.start)
        await asyncio.sleep(6)
    return codes


def test_a_rolling_restart_behind_haproxy_fails_no_request_and_loses_no_change(
    cluster: tuple[str, list[Server]],
) -> None:
    base, servers = cluster

    async def scenario() -> tuple[list[Any], list[str], dict[str, str], int, list[int]]:
        results: list[tuple[str, int | str]] = []
        created: list[str] = []
        seen: dict[str, str] = {}
        stop = asyncio.Event()
        follower = asyncio.create_task(follow(base, seen, stop))
        await asyncio.sleep(1)
        codes, _ = await asyncio.gather(roll(servers), load(base, results, created))
        deadline = time.monotonic() + 10
        while not set(created) <= set(seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        resumed = await asyncio.wait_for(follower, 40)
        return results, created, seen, resumed, codes

    results, created, seen, resumed, codes = asyncio.run(scenario())
    failed = [r for r in results if r[0] == "failed" or r[1] not in (200, 201)]
    assert not failed, failed[:10]
    assert len([r for r in results if r[0] == "ok"]) == int(DURATION * RATE)
    assert codes == [0, 0]
    assert resumed >= 1  # the stream did end at a restart, and resumed
    missed = set(created) - set(seen)
    assert not missed, f"{len(missed)} changes never reached the stream"
    for server in servers:
        for log in server.logs:
            assert "Traceback" not in log
