"""A private PostgreSQL cluster, started by the tests in a temporary directory on a port of
their own, so that they can stop and start it (never the shared server)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(os.environ.get("CHARPENTE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrivatePostgres:
    """A cluster of our own: `stop()` (fast: sessions are ended) and `start()` it at will."""

    data: Path
    port: int
    as_user: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        command = [*self.as_user, str(BIN / "pg_ctl"), "-D", str(self.data), "-s", *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-w", "-l", str(self.data / "server.log"), "-o", options, "start")

    def stop(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "stop")


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {BIN}")
    as_user: tuple[str, ...] = ()
    root = Path(tempfile.mkdtemp(prefix="charpente-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ("runuser", "-u", "postgres", "--")
        shutil.chown(root, "postgres")
    data = root / "data"
    init = [*as_user, str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
    subprocess.run([*init, "--no-sync"], check=True, capture_output=True, timeout=120)
    cluster = PrivatePostgres(data, _free_port(), as_user)
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
