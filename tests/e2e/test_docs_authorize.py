"""/docs in a real browser: Swagger UI's "Authorize" password flow signs in against the
token endpoint as it is (defaults untouched), and "Try it out" then sends the token.

Drives Debian's `chromium` (CHARPENTE_CHROMIUM, else /usr/bin/chromium) with Playwright;
skips when either is missing, unless CHARPENTE_REQUIRE_SERVICES=1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import REQUIRE_SERVICES

COMMAND = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
PASSWORD = "correct horse battery staple"


def _chromium() -> str | None:
    found = os.environ.get("CHARPENTE_CHROMIUM") or shutil.which("chromium") or None
    return found if found and Path(found).exists() else None


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}; CHARPENTE_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = _chromium()
    if chromium is None:
        _missing("chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (the dev extra)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CHARPENTE_")}
    environ |= {
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}",
        "CHARPENTE_DESIGN": "template:social",
    }
    process = subprocess.Popen(
        [*COMMAND, "serve", "--migrate", "--port", str(port)],
        env=environ,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_authorize_password_flow_signs_in_and_try_it_out_sends_the_token(
    browser: Any, server: str
) -> None:
    body = {"email": "ada@example.com", "password": PASSWORD, "handle": "ada"}
    assert httpx.post(f"{server}/v1/auth/signup", json=body).status_code == 201

    page = browser.new_page()
    sent: list[dict[str, str]] = []
    page.on("request", lambda r: sent.append({"url": r.url, **r.headers}))
    page.goto(f"{server}/docs")
    page.locator("button.authorize").first.click()
    dialog = page.locator(".modal-ux")
    dialog.locator("#oauth_username").fill("ada@example.com")
    dialog.locator("#oauth_password").fill(PASSWORD)
    # Swagger UI's defaults: the client credentials go in an `Authorization: Basic` header
    dialog.locator(".auth-container:has(#oauth_username) button.authorize").click()
    dialog.locator("button:has-text('Logout')").first.wait_for(timeout=10_000)  # signed in
    assert "Authorized" in dialog.inner_text()
    dialog.locator("button:has-text('Close')").first.click()

    operation = page.locator("#operations-auth-getMe")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=10_000)
    assert status.inner_text().strip() == "200"
    assert "ada@example.com" in operation.locator(".live-responses-table").inner_text()
    [me] = [r for r in sent if r["url"].endswith("/v1/auth/me")]
    assert me["authorization"].startswith("Bearer ")
