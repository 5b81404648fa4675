"""`charpente serve` alone (CHARPENTE_WORKER=embedded, the default) runs what a worker runs:
a job queued by a hook runs, and the write's event is relayed — to a live subscriber too —
with no other process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.e2e.test_serve import STOP_TIMEOUT, free_port, wait_for_health

DESIGN = """\
charpente: 1
name: embedded
hooks: hooks.py
resources:
  notes:
    access: {read: true, create: true}
    fields:
      text: {type: string, required: true}
    events: [created]
"""
HOOKS = """\
from pathlib import Path

from charpente.runtime.hooks import Hooks

hooks = Hooks()


@hooks.before_create("notes")
async def queue(ctx, values):
    await ctx.enqueue("write_down", {"text": values["text"]})


@hooks.job("write_down")
async def write_down(ctx, args):
    Path("done.txt").write_text(args["text"])
"""


def test_serve_alone_runs_jobs_and_relays_events(tmp_path: Path) -> None:
    (tmp_path / "design.yaml").write_text(DESIGN)
    (tmp_path / "hooks.py").write_text(HOOKS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "CHARPENTE_DESIGN": "design.yaml",
    }
    environ.pop("CHARPENTE_WORKER", None)
    command = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "serve", "--migrate", "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_health(base, process)
        with httpx.stream("GET", f"{base}/v1/notes/changes", timeout=10) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            made = httpx.post(f"{base}/v1/notes", json={"text": "hello"})
            assert made.status_code == 201, made.text
            lines = []
            for line in stream.iter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    break
        assert "event: notes.created" in lines
        assert '"text":"hello"' in lines[-1].replace(" ", "")
        deadline = time.monotonic() + 10
        while not (tmp_path / "done.txt").exists():
            assert time.monotonic() < deadline, "the job did not run"
            time.sleep(0.1)
        assert (tmp_path / "done.txt").read_text() == "hello"
        assert httpx.get(f"{base}/readyz").json() == {"status": "ok"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("the server did not stop on SIGTERM in time") from None
