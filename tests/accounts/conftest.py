"""Fixtures of the account tests: a real SMTP server for the whole session (smtpbox.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import smtpbox.py beside this file

from backend import Backend, running_backend
from smtpbox import SmtpServer, running_smtp_server


@pytest.fixture(scope="session")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    with running_smtp_server(tmp_path_factory.mktemp("smtp")) as server:
        yield server


@pytest.fixture
async def backend(
    db_target: Any, smtp: SmtpServer, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Backend]:
    """The notes design served as `serve` would, on each dialect, mailing through `smtp`."""
    async with running_backend(db_target, smtp, tmp_path) as running:
        yield running
