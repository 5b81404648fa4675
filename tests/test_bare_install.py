"""The bare install: without extras the engine runs on SQLite, and a URL that needs a missing
driver stops with one line naming the extra.

Each case runs in a fresh interpreter, where a driver is made unimportable the way an absent
package is (`sys.modules[name] = None`). `.ci/run` also installs the package with no extras
into a new virtualenv and serves the social template from it (`.ci/bare-install`).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OPTIONAL_DRIVERS = ("asyncpg", "redis", "aio_pika", "nats", "opentelemetry.sdk", "aiosmtplib")


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=60,
        check=False,
    )


def _loaded_drivers(code: str, cwd: Path, **env: str) -> list[str]:
    listing = f"print(' '.join(m for m in {OPTIONAL_DRIVERS!r} if m in sys.modules))"
    done = _python(f"import sys\n{textwrap.dedent(code)}\n{listing}", cwd, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_importing_the_command_loads_no_optional_driver(tmp_path: Path) -> None:
    assert _loaded_drivers("import charpente.cli.main", tmp_path) == []


def test_serving_on_sqlite_with_the_in_process_bus_loads_no_optional_driver(
    tmp_path: Path,
) -> None:
    code = """
        import asyncio
        from starlette.testclient import TestClient
        from charpente.settings import Settings
        from charpente.wiring import (
            apply_database_migration, build_application, load_configured_design,
        )

        settings = Settings(database_url="sqlite+aiosqlite:///app.db", design_template="social")
        design = load_configured_design(settings)
        asyncio.run(apply_database_migration(settings, design))
        with TestClient(build_application(settings, design)) as client:
            assert client.get("/readyz").status_code == 200
            assert client.get("/v1/posts").status_code == 200
    """
    assert _loaded_drivers(code, tmp_path) == []


@pytest.mark.parametrize(
    ("missing", "variable", "url", "extra"),
    [
        ("asyncpg", "CHARPENTE_DATABASE_URL", "postgresql://u@127.0.0.1:1/db", "postgres"),
        ("aio_pika", "CHARPENTE_BUS_URL", "amqp://guest:guest@127.0.0.1:1/", "rabbitmq"),
        ("nats", "CHARPENTE_BUS_URL", "nats://127.0.0.1:1", "nats"),
        ("redis", "CHARPENTE_BUS_URL", "redis://127.0.0.1:1/0", "redis"),
        ("redis", "CHARPENTE_REDIS_URL", "redis://127.0.0.1:1/0", "redis"),
    ],
)
def test_a_url_whose_driver_is_missing_stops_with_one_line_naming_the_extra(
    tmp_path: Path, missing: str, variable: str, url: str, extra: str
) -> None:
    code = f"""
        import sys
        sys.modules[{missing!r}] = None
        sys.argv = ["charpente", "serve", "--port", "1"]
        from charpente.cli.main import main
        main()
    """
    done = _python(code, tmp_path, CHARPENTE_DESIGN="template:social", **{variable: url})
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0] == "design: template:social (social)", done.stderr
    lines = lines[1:]
    assert len(lines) == 1, done.stderr
    assert variable in lines[0]
    assert f"pip install 'charpente[{extra}]'" in lines[0]
