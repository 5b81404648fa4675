"""`charpente serve` drains on SIGTERM: not ready at once, serving `--drain-seconds` more with
Connection: close, every live stream ended with a last event, every request in flight
answered, exit 0 without a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT = 20.0
DRAIN = 1.5
SLOW = 1.0  # seconds each in-flight request takes

DESIGN = """\
charpente: 1
name: drain
api_version: 1
hooks: hooks.py
resources:
  notes:
    access: {read: true, create: true, update: true, delete: true}
    fields:
      text: {type: string, required: true, max_length: 50}
    events: [created]
"""

HOOKS = f"""\
import asyncio

from starlette.responses import JSONResponse

from charpente import Hooks

hooks = Hooks()


@hooks.route("/slow")
async def slow(request):
    await asyncio.sleep({SLOW})
    return JSONResponse({{"done": True}})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_health(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"the server exited with {process.returncode}: {logs}")
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the server did not answer /healthz in time")


def start_server(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    (tmp_path / "design.yaml").write_text(DESIGN)
    (tmp_path / "hooks.py").write_text(HOOKS)
    port = free_port()
    environ = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "CHARPENTE_DESIGN": "design.yaml",
        "CHARPENTE_LOG_LEVEL": "info",
    }
    command = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "serve", "--migrate", "--host", "127.0.0.1", "--port", str(port), *extra],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_health(base, process)
    return process, base


async def follow(client: httpx.AsyncClient, url: str, opened: asyncio.Event) -> list[str]:
    """The lines of one live stream, until the server ends it."""
    lines: list[str] = []
    async with client.stream("GET", url) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            lines.append(line)
            if line.startswith("retry:"):
                opened.set()
    return lines


async def drain_scenario(process: subprocess.Popen[bytes], base: str) -> dict[str, object]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    timeout = httpx.Timeout(DRAIN + 10)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
        made = await client.post("/v1/notes", json={"text": "before"})
        assert made.status_code == 201, made.text
        opened = [asyncio.Event() for _ in range(10)]
        streams = [
            asyncio.create_task(follow(client, "/v1/notes/changes", event)) for event in opened
        ]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 10)
        slow = [asyncio.create_task(client.get("/slow")) for _ in range(50)]
        await asyncio.sleep(0.3)  # the 50 requests are in flight
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=base) as fresh:
            ready = await fresh.get("/readyz")
            during = await fresh.post("/v1/notes", json={"text": "during the drain"})
        answers = await asyncio.gather(*slow)
        ended = await asyncio.wait_for(asyncio.gather(*streams), DRAIN + 5)
        code = await asyncio.to_thread(process.wait, DRAIN + 5)
        return {
            "stopped_after": time.monotonic() - signalled,
            "code": code,
            "ready": ready,
            "during": during,
            "answers": answers,
            "ended": ended,
        }


def test_sigterm_drains_streams_and_requests_in_flight_then_exits_0(tmp_path: Path) -> None:
    process, base = start_server(tmp_path, "--drain-seconds", str(DRAIN))
    try:
        found = asyncio.run(drain_scenario(process, base))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logs = process.stderr.read().decode() if process.stderr else ""
    assert found["code"] == 0, logs
    assert found["stopped_after"] < DRAIN + 2, logs  # type: ignore[operator]
    ready = found["ready"]
    assert isinstance(ready, httpx.Response)
    assert ready.status_code == 503
    assert ready.headers["retry-after"]
    assert ready.json()["detail"] == "the server is stopping"
    during = found["during"]
    assert isinstance(during, httpx.Response)
    assert during.status_code == 201  # still serving during the drain
    assert during.headers["connection"] == "close"
    answers = found["answers"]
    assert isinstance(answers, list)
    assert [a.status_code for a in answers] == [200] * 50
    ended = found["ended"]
    assert isinstance(ended, list)
    assert len(ended) == 10
    for lines in ended:
        assert "event: end" in lines, lines
        assert any("resume with Last-Event-ID" in line for line in lines), lines
    assert "Traceback" not in logs
    assert "CancelledError" not in logs
    assert "stopping: not ready from now on" in logs


def test_a_stop_without_drain_is_quick_and_clean(tmp_path: Path) -> None:
    process, base = start_server(tmp_path, "--drain-seconds", "0")
    with httpx.stream("GET", f"{base}/v1/notes/changes", timeout=10) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest = list(lines)
    try:
        code = process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logs = process.stderr.read().decode() if process.stderr else ""
    assert code == 0, logs
    assert time.monotonic() - signalled < 2, logs
    assert "event: end" in rest
    assert "Traceback" not in logs
