"""Two real `serve` processes on PostgreSQL during a rename: one of the old design, one of
the new; each reads what the other writes; `migrate complete` waits for the old one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from tests.e2e.test_serve import STOP_TIMEOUT, free_port, wait_for_health

BEFORE = """\
charpente: 1
name: blog
resources:
  posts:
    access: {read: true, create: true, update: true}
    fields:
      headline: {type: string, required: true, max_length: 200}
"""
AFTER = BEFORE.replace(
    "headline: {type: string, required: true, max_length: 200}",
    "title: {type: string, required: true, max_length: 200, renamed_from: headline}",
)
COMMAND = [sys.executable, "-c", "from charpente.cli.main import main; main()"]


def charpente(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def serve(env: dict[str, str], design: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*COMMAND, "serve", "--design", str(design), "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_old_and_new_serve_processes_share_writes_and_complete_waits_for_the_old(
    pg_target, tmp_path: Path
) -> None:
    before, after = tmp_path / "blog.yaml", tmp_path / "blog-v2.yaml"
    before.write_text(BEFORE)
    after.write_text(AFTER)
    env = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": pg_target.url,
        "CHARPENTE_DATABASE_SCHEMA": pg_target.schema,
    }
    applied = charpente(env, "migrate", "apply", "--yes", "--design", str(before))
    assert applied.returncode == 0, applied.stderr
    old_port, new_port = free_port(), free_port()
    old = serve(env, before, old_port)
    new: subprocess.Popen[bytes] | None = None
    try:
        v1 = f"http://127.0.0.1:{old_port}/v1/posts"
        wait_for_health(f"http://127.0.0.1:{old_port}", old)
        first = httpx.post(v1, json={"headline": "before the rename"})
        assert first.status_code == 201, first.text

        started = charpente(env, "migrate", "start", "--design", str(after))
        assert started.returncode == 0, started.stderr
        new = serve(env, after, new_port)
        v2 = f"http://127.0.0.1:{new_port}/v1/posts"
        wait_for_health(f"http://127.0.0.1:{new_port}", new)

        by_new = httpx.post(v2, json={"title": "written by v2"})
        assert by_new.status_code == 201, by_new.text
        by_old = httpx.post(v1, json={"headline": "written by v1"})
        assert by_old.status_code == 201, by_old.text
        assert httpx.get(f"{v1}/{by_new.json()['id']}").json()["headline"] == "written by v2"
        assert httpx.get(f"{v2}/{by_old.json()['id']}").json()["title"] == "written by v1"
        assert httpx.get(f"{v2}/{first.json()['id']}").json()["title"] == "before the rename"

        refused = charpente(env, "migrate", "complete", "--design", str(after))
        assert refused.returncode == 1
        assert "1 process of the old design is still running" in refused.stderr
        stop(old)  # a stopping server unregisters
        completed = charpente(env, "migrate", "complete", "--design", str(after))
        assert completed.returncode == 0, completed.stderr

        titles = sorted(p["title"] for p in httpx.get(v2).json()["data"])
        assert titles == ["before the rename", "written by v1", "written by v2"]
    finally:
        stop(old)
        if new is not None:
            stop(new)
