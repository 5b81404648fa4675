"""`charpente serve --migrate` as a real process: it comes up, serves the API, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

START_TIMEOUT = 20.0
STOP_TIMEOUT = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_health(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the server did not answer /healthz in time")


def admin_bearer(
    base: str, command: list[str], environ: dict[str, str], cwd: Path, admin: dict[str, str]
) -> dict[str, str]:
    """An admin account made with `charpente accounts create`, signed in."""
    made = subprocess.run(
        [
            *command,
            "accounts",
            "create",
            admin["email"],
            "--role",
            admin["role"],
            "--password-stdin",
        ],
        input=admin["secret"].encode(),
        env=environ,
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr.decode()
    form = {"grant_type": "password", "username": admin["email"], "password": admin["secret"]}
    token = httpx.post(f"{base}/v1/auth/token", data=form)
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_serve_migrates_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'e2e.db'}",
        "CHARPENTE_DESIGN": "template:social",
        "CHARPENTE_LOG_LEVEL": "info",
    }
    command = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "serve", "--migrate", "--port", str(port), "--drain-seconds", "0.5"],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_health(base, process)
        secret = "correct horse battery staple"
        body = {"handle": "ada", "email": "ada@example.com", "password": secret}
        account = httpx.post(f"{base}/v1/auth/signup", json=body)
        assert account.status_code == 201, account.text
        form = {"grant_type": "password", "username": "ada@example.com", "password": secret}
        token = httpx.post(f"{base}/v1/auth/token", data=form)
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        post = httpx.post(f"{base}/v1/posts", json={"body": "hi"}, headers=bearer)
        assert post.status_code == 201, post.text
        assert post.json()["author"] == account.json()["id"]
        read = httpx.get(f"{base}{post.headers['location']}")
        assert read.status_code == 200
        assert read.json()["body"] == "hi"
        assert read.headers["etag"] == '"1"'
        assert httpx.get(f"{base}/readyz").json() == {"status": "ok"}  # details: admins
        admin = {"email": "root@example.com", "role": "admin", "secret": secret}
        root = admin_bearer(base, command, environ, tmp_path, admin)
        # serve relays the outbox itself (CHARPENTE_WORKER=embedded by default)
        deadline = time.monotonic() + 5
        while True:
            ready = httpx.get(f"{base}/readyz", headers=root).json()
            ready = {"status": ready["status"], **ready["checks"]}
            ready["outbox"]["bus"] = ready["bus"]["name"]
            if ready["outbox"]["published"] >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ready["status"] == "ok"
        assert ready["outbox"]["pending"] == 0
        assert ready["outbox"]["bus"] == "memory"
        assert ready["outbox"]["published"] == 1
        history = httpx.get(f"{base}{post.headers['location']}/history", headers=bearer)
        assert [e["action"] for e in history.json()["data"]] == ["created"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("the server did not stop on SIGTERM in time") from None
    output = process.stdout.read().decode() if process.stdout else ""
    logs = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode == 0, logs  # drained, then stopped
    assert "Application shutdown complete" in logs
    assert f"at {base}" in output
