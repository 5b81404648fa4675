"""The first hour of a new user, replayed with real processes: an empty folder, `init`,
`check` with a mistake, `migrate plan`, `serve`, `GET /`, the README tour twice on the
same database, a second server on a taken port."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOUR = ROOT / "docs" / "tour.sh"
COMMAND = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    empty = tmp_path / "newcomer"
    empty.mkdir()
    return empty


@pytest.fixture
def environ(folder: Path) -> dict[str, str]:
    """A shell with no CHARPENTE_* variable but the database file, in the new folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARPENTE_")}
    env["CHARPENTE_DATABASE_URL"] = f"sqlite+aiosqlite:///{folder / 'charpente.db'}"
    return env


def charpente(
    environ: dict[str, str], cwd: Path, *args: str, code: int = 0
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*COMMAND, *args],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    return done


@contextlib.contextmanager
def serving(folder: Path, environ: dict[str, str], *options: str) -> Iterator[str]:
    """`charpente serve --migrate` on the folder's design, on a free port: its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [*COMMAND, "serve", "--migrate", "--port", str(port), *options],
        env=environ,
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_an_empty_folder_gets_a_hint_then_init_and_a_clean_check(
    folder: Path, environ: dict[str, str]
) -> None:
    for command in (["serve"], ["migrate", "plan"], ["openapi"], ["worker"], ["check"]):
        refused = charpente(environ, folder, *command, code=1)
        assert refused.stderr.splitlines() == [
            "error: no design.yaml here and CHARPENTE_DESIGN is not set: write one with "
            "`charpente init` (or pass --design PATH)"
        ]
    listed = charpente(environ, folder, "init", "--list")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["blank", "social"]
    charpente(environ, folder, "init")
    clean = charpente(environ, folder, "check")
    assert (clean.stdout, clean.stderr) == ("design.yaml: ok (6 resources)\n", "")

    design = folder / "design.yaml"
    text = design.read_text(encoding="utf-8")
    design.write_text(text.replace("body: {type: text,", "body: {type: txt,", 1))
    mistake = charpente(environ, folder, "check", code=1)
    assert re.match(r"design\.yaml:\d+:\d+: error: unknown type `txt`", mistake.stderr)
    design.write_text(text, encoding="utf-8")

    plan = charpente(environ, folder, "migrate", "plan")
    assert plan.stderr.splitlines()[0] == "design: design.yaml (social)"
    assert "create table posts" in plan.stdout
    assert not (folder / "charpente.db").exists()  # the plan changed nothing


@pytest.mark.skipif(shutil.which("jq") is None, reason="the tour needs jq")
def test_serve_answers_an_index_and_the_readme_tour_runs_twice(
    folder: Path, environ: dict[str, str]
) -> None:
    charpente(environ, folder, "init")
    with serving(folder, environ) as base:
        index = httpx.get(f"{base}/").json()
        assert (index["name"], index["links"]["docs"]) == ("social", "/docs")
        assert httpx.get(f"{base}/", headers={"Accept": "text/html"}).status_code == 303

        outputs = [_tour(base), _tour(base)]  # twice, on the same database
        assert outputs[0].splitlines()[0] == "signup: 201"
        assert outputs[1].splitlines()[0] == "signup: 409"
        for output in outputs:
            assert "null" not in output, output
            lines = output.splitlines()
            assert "post: 201" in lines
            assert "anonymous post: 401" in lines
            assert 'first page: ["Hello again"]' in lines
            assert '{"next_page":["Hello, world"]}' in lines
            assert 'etag: "2"' in lines
            assert "patch again: 412" in lines

        port = base.rsplit(":", 1)[1]
        taken = charpente(environ, folder, "serve", "--port", port, code=3)
        assert "serving" not in taken.stdout
        assert "Address already in use" in taken.stderr


def test_the_readme_shows_the_tour_as_the_script_runs_it() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = TOUR.read_text(encoding="utf-8").split("set -euo pipefail\n", 1)[1]
    assert f"```sh\n{body}```" in readme
    assert "$NEXT_CURSOR" in body
    assert "NEXT_CURSOR=" in body


def _tour(base: str) -> str:
    env = {**os.environ, "CHARPENTE_URL": base}
    done = subprocess.run(
        ["bash", str(TOUR)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout
