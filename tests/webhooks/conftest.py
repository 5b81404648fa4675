"""Webhook fixtures: a real receiver on 127.0.0.1 and the Webhooks service over a fresh
database of each dialect (helpers in webhook_support.py, beside this file)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import `webhook_support`

from webhook_support import MakeSetup, Receiver, setups


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver().start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture
async def make_setup(db_target: Any, anyio_backend: str) -> AsyncIterator[MakeSetup]:
    async with setups(db_target) as make:
        yield make


@pytest.fixture
async def make_pg_setup(pg_target: Any, anyio_backend: str) -> AsyncIterator[MakeSetup]:
    async with setups(pg_target) as make:
        yield make


def _load_api_fixtures() -> object:
    """tests/http/conftest.py (which pytest applies to tests/http only), under its own name,
    for its `make_api`: apps with accounts on every dialect."""
    import importlib.util

    path = Path(__file__).parent.parent / "http" / "conftest.py"
    spec = importlib.util.spec_from_file_location("charpente_webhook_api_fixtures", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


make_api = _load_api_fixtures().make_api  # type: ignore[attr-defined]
