"""Two `charpente serve` processes sharing the response cache in Redis: after each write's
answer from one, the other never answers an older version (versions read from ETags)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from tests.conftest import service_missing
from tests.e2e.test_serve import free_port, wait_for_health

REDIS_URL = os.environ.get("CHARPENTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DESIGN = """\
charpente: 1
name: {name}
cache: {{ttl: 60s}}
resources:
  notes:
    access: {{read: true, create: true, update: true}}
    fields:
      text: {{type: string}}
"""


@pytest.fixture
def redis_name() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing("Redis", str(exc))
    name = f"e2e{uuid.uuid4().hex[:10]}"
    yield name
    keys = list(client.scan_iter(match=f"charpente:{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_a_write_on_one_server_is_seen_at_once_on_the_other(
    tmp_path: Path, redis_name: str
) -> None:
    (tmp_path / "design.yaml").write_text(DESIGN.format(name=redis_name), encoding="utf-8")
    environ = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "CHARPENTE_DESIGN": str(tmp_path / "design.yaml"),
        "CHARPENTE_REDIS_URL": REDIS_URL,
    }
    command = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
    migrated = subprocess.run([*command, "migrate", "apply", "--yes"], env=environ, cwd=tmp_path,
                              capture_output=True, timeout=60, check=False)  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=environ,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        writer, reader = (f"http://127.0.0.1:{port}" for port in ports)
        for base, server in zip((writer, reader), servers, strict=True):
            wait_for_health(base, server)
        with httpx.Client(base_url=writer) as w, httpx.Client(base_url=reader) as r:
            note = w.post("/v1/notes", json={"text": "v1"}).json()
            path = f"/v1/notes/{note['id']}"
            stale = 0
            for version in range(2, 152):
                r.get(path)  # the reader's entry for the current version
                written = w.patch(path, json={"text": f"v{version}"})
                assert written.status_code == 200
                for client in (r, w):
                    seen = client.get(path)
                    stale += int(seen.headers["etag"].strip('"')) < version
                listed = r.get("/v1/notes").json()["data"][0]
                stale += listed["version"] < version
            assert stale == 0
            assert r.get("/readyz").status_code == 200
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
