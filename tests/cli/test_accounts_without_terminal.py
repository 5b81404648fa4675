"""`charpente accounts` in a script: no terminal, the password comes from stdin; the
examples of docs/cli.md run as written on the social template."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHARPENTE = str(Path(sys.executable).with_name("charpente"))


@pytest.fixture
def social(tmp_path: Path) -> dict[str, str]:
    """The social template on a migrated SQLite file: the environment to run commands in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARPENTE_")}
    env |= {
        "CHARPENTE_DESIGN": "template:social",
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
    }
    run(["migrate", "apply", "--yes"], env, tmp_path)
    return env


def run(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = "", code: int = 0
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [CHARPENTE, *args],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_without_a_terminal_the_password_is_read_from_stdin(
    social: dict[str, str], tmp_path: Path
) -> None:
    args = ["accounts", "create", "you@example.com", "--role", "admin", "--set", "handle=you"]
    done = run(args, social, tmp_path, stdin="correct horse battery staple\n")
    assert "(you@example.com, admin)" in done.stdout
    assert "correct horse" not in done.stdout + done.stderr


def test_without_a_terminal_and_an_empty_stdin_it_says_what_to_do(
    social: dict[str, str], tmp_path: Path
) -> None:
    args = ["accounts", "create", "you@example.com", "--role", "admin", "--set", "handle=you"]
    done = run(args, social, tmp_path, code=1)
    assert done.stderr.splitlines()[1:] == [
        "error: no password on stdin (and no terminal to ask for one): "
        "pipe it in (`--password-stdin < secret.txt`) or use --generate"
    ]


def test_the_accounts_examples_of_the_cli_page_run_as_written(
    social: dict[str, str], tmp_path: Path
) -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = re.findall(r"^charpente (accounts (?:create|invite) .*)$", page, re.MULTILINE)
    assert len(commands) >= 3
    for command in commands:  # without a terminal, the typed password comes from stdin
        words = shlex.split(command.split(" < ")[0])
        run(words, social, tmp_path, stdin="correct horse battery staple\n")
