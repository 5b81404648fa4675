"""Real login providers for the OAuth tests, each in its own process on a random port.

`providers` (session-scoped) starts the OpenID Connect provider and the GitHub-like
server from providers/, waits until they answer, and stops them at the end; every test
starts with their test-only knobs reset. `browser` plays the user's browser without one:
it follows the provider's redirects from the authorization URL until the provider sends
the user back to the callback URL, and returns the query parameters it carries.
"""

from __future__ import annotations

import select
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest

from charpente.runtime.oauth import OAuthClient, Provider
from charpente.runtime.oauth.client import TIMEOUT

HERE = Path(__file__).parent / "providers"
CLIENT_ID, CLIENT_SECRET = "charpente-test", "charpente-secret"
CALLBACK = "http://127.0.0.1:8000/v1/auth/oauth/callback"
START_TIMEOUT = 15.0
# Building a TLS context costs a tenth of a second here; every client in these tests
# shares one (the providers speak plain http on loopback anyway).
TLS = ssl.create_default_context()


@dataclass
class RunningProvider:
    """One provider process: its base URL and its test-only knobs."""

    base: str
    process: subprocess.Popen[str]
    http: httpx.Client

    def post(self, path: str, body: dict[str, Any] | None = None) -> None:
        response = self.http.post(f"{self.base}{path}", json=body or {})
        assert response.status_code == 204, response.text

    def reset(self) -> None:
        self.post("/test/reset")


class OidcProvider(RunningProvider):
    """The Google-like OpenID Connect provider; its base URL is its issuer."""

    def provider(self, name: str = "google", **overrides: Any) -> Provider:
        config = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "issuer": self.base}
        return Provider(name, "oidc", **(config | overrides))

    def set_next_user(
        self, sub: str, email: str | None, *, email_verified: bool = True, name: str | None = None
    ) -> None:
        body = {"sub": sub, "email": email, "email_verified": email_verified, "name": name}
        self.post("/test/next-user", body)

    def misbehave(self, *, id_token: str | None = None, token: str | None = None) -> None:
        self.post("/test/misbehave", {"id_token": id_token, "token": token})

    def rotate_key(self) -> None:
        self.post("/test/rotate-key")

    def stats(self) -> dict[str, int]:
        answer: dict[str, int] = self.http.get(f"{self.base}/test/stats").json()
        return answer


class GithubProvider(RunningProvider):
    """The GitHub-like server; OAuth pages and the API share its base URL."""

    def provider(self, name: str = "github", **overrides: Any) -> Provider:
        config = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authorize_url": f"{self.base}/login/oauth/authorize",
            "token_url": f"{self.base}/login/oauth/access_token",
            "api_url": self.base,
        }
        return Provider(name, "github", **(config | overrides))

    def set_next_user(
        self, id: int, login: str, emails: list[dict[str, Any]], *, name: str | None = None
    ) -> None:
        body = {"id": id, "login": login, "name": name, "emails": emails}
        self.post("/test/next-user", body)


@dataclass(frozen=True)
class Providers:
    oidc: OidcProvider
    github: GithubProvider


def _start(script: str, log: TextIO) -> tuple[subprocess.Popen[str], str]:
    """Run a provider script; its first line of output is `READY <base url>`."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / script)], stdout=subprocess.PIPE, stderr=log, text=True
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"{script} did not start (see {log.name})")
    return process, line.split()[1]


def _wait_until_answering(base: str) -> None:
    """Until the server answers HTTP at all (it binds before uvicorn listens)."""
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=1, verify=TLS) as http:
        while True:
            try:
                http.get(f"{base}/test/ping")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Providers]:
    logs = tmp_path_factory.mktemp("oauth-providers")
    with open(logs / "oidc.log", "w") as oidc_log, open(logs / "github.log", "w") as github_log:
        oidc_process, oidc_base = _start("oidc_provider.py", oidc_log)
        try:
            github_process, github_base = _start("github_provider.py", github_log)
        except BaseException:
            _stop(oidc_process)
            raise
        try:
            _wait_until_answering(oidc_base)
            _wait_until_answering(github_base)
            with httpx.Client(timeout=5, verify=TLS) as http:
                yield Providers(
                    OidcProvider(oidc_base, oidc_process, http),
                    GithubProvider(github_base, github_process, http),
                )
        finally:
            _stop(oidc_process)
            _stop(github_process)


@pytest.fixture(autouse=True)
def _fresh_knobs(providers: Providers) -> None:
    """No test inherits another's next user or pending misbehaviour."""
    providers.oidc.reset()
    providers.github.reset()


@dataclass(frozen=True)
class Browser:
    """Follows a provider's redirects like a browser whose user approves at once."""

    http: httpx.AsyncClient

    async def authorize(self, url: str, callback: str = CALLBACK, **extra: str) -> dict[str, str]:
        """The query parameters the provider sends to `callback`, which is not fetched."""
        if extra:
            url = f"{url}&{httpx.QueryParams(extra)}"
        for _ in range(10):
            response = await self.http.get(url)
            assert response.status_code in (302, 303), (response.status_code, response.text)
            url = urljoin(url, response.headers["location"])
            if url.split("?")[0] == callback:
                return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        raise AssertionError("the provider never sent the browser back to the callback")


@pytest.fixture
async def browser(anyio_backend: str) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(timeout=5, verify=TLS) as http:
        yield Browser(http)


@pytest.fixture
async def client(providers: Providers, anyio_backend: str) -> AsyncIterator[OAuthClient]:
    """An OAuthClient that knows both test providers, as `google` and `github`."""
    configured = [providers.oidc.provider(), providers.github.provider()]
    async with httpx.AsyncClient(timeout=TIMEOUT, verify=TLS) as http:
        yield OAuthClient(configured, http)
