"""Fixtures of the account tests: a real SMTP server for the whole session (mailbox.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import mailbox.py beside this file

from mailbox import SmtpServer, running_smtp_server


@pytest.fixture(scope="session")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    with running_smtp_server(tmp_path_factory.mktemp("smtp")) as server:
        yield server
