"""OAuthClient against real providers: logins that work, and every way one must fail."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import socket
import time
from collections.abc import Awaitable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from charpente.runtime.oauth import (
    MAX_BODY_BYTES,
    Identity,
    LoginState,
    OAuthClient,
    OAuthError,
    Provider,
)

pytestmark = pytest.mark.anyio

CALLBACK = "http://127.0.0.1:8000/v1/auth/oauth/callback"
APP = "https://app.example/signed-in"
SECRET = "charpente-secret"


async def start(client: OAuthClient, name: str, now: float | None = None) -> tuple[str, LoginState]:
    moment = time.time() if now is None else now
    return await client.begin(name, callback_url=CALLBACK, app_redirect_uri=APP, now=moment)


async def finish(
    client: OAuthClient,
    name: str,
    params: dict[str, str],
    state: LoginState,
    now: float | None = None,
) -> Identity:
    moment = time.time() if now is None else now
    return await client.finish(name, params=params, state=state, callback_url=CALLBACK, now=moment)


async def login(
    client: OAuthClient, browser: Any, name: str, now: float | None = None, **extra: str
) -> tuple[dict[str, str], LoginState]:
    """begin, then the provider's approval: the callback's parameters and the state."""
    url, state = await start(client, name, now)
    return await browser.authorize(url, **extra), state


async def fails(attempt: Awaitable[object], code: str, *secrets: str) -> OAuthError:
    """The attempt raises OAuthError(code), and its text holds none of `secrets`."""
    with pytest.raises(OAuthError) as caught:
        await attempt
    assert caught.value.code == code, caught.value
    for secret in (SECRET, *secrets):
        assert secret not in str(caught.value)
    return caught.value


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --- logins that work ------------------------------------------------------------------


async def test_an_oidc_login_gives_the_identity_in_the_id_token(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    providers.oidc.set_next_user("10769150350006150715", "Ada@Example.COM", name="Ada Lovelace")
    params, state = await login(client, browser, "google")
    identity = await finish(client, "google", params, state)
    assert identity == Identity(
        "google", "10769150350006150715", "ada@example.com", True, "Ada Lovelace"
    )


async def test_the_oidc_authorization_url_asks_for_a_code_with_pkce_state_and_nonce(
    client: OAuthClient, providers: Any
) -> None:
    url, state = await start(client, "google", now=1_800_000_000.7)
    assert url.startswith(f"{providers.oidc.base}/authorize?")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(state.code_verifier.encode()).digest())
    assert query(url) == {
        "response_type": "code",
        "client_id": "charpente-test",
        "redirect_uri": CALLBACK,
        "scope": "openid email profile",
        "state": state.state,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "nonce": state.nonce,
    }
    assert len(state.state) >= 22
    assert len(state.nonce or "") >= 22
    assert 43 <= len(state.code_verifier) <= 128
    assert (state.provider, state.redirect_uri, state.created_at) == ("google", APP, 1_800_000_000)


async def test_every_login_draws_a_new_state_verifier_and_nonce(client: OAuthClient) -> None:
    (_, first), (_, second) = await start(client, "google"), await start(client, "google")
    assert first.state != second.state
    assert first.code_verifier != second.code_verifier
    assert first.nonce != second.nonce


async def test_the_login_hint_picks_who_the_provider_signs_in(
    client: OAuthClient, browser: Any
) -> None:
    params, state = await login(client, browser, "google", login_hint="bob@example.com")
    identity = await finish(client, "google", params, state)
    assert identity.email == "bob@example.com"


async def test_a_github_login_gives_the_verified_primary_address(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    providers.github.set_next_user(
        42,
        "octo",
        [
            {"email": "old@example.com", "primary": False, "verified": True},
            {"email": "Octo@Example.com", "primary": True, "verified": True},
        ],
        name="Octo Cat",
    )
    params, state = await login(client, browser, "github")
    identity = await finish(client, "github", params, state)
    assert identity == Identity("github", "42", "octo@example.com", True, "Octo Cat")


async def test_a_github_user_without_a_name_is_named_by_login(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    emails = [{"email": "o@example.com", "primary": True, "verified": True}]
    providers.github.set_next_user(7, "octo", emails)
    params, state = await login(client, browser, "github")
    assert (await finish(client, "github", params, state)).name == "octo"


async def test_the_github_authorization_url_asks_for_a_code_with_pkce_and_no_nonce(
    client: OAuthClient, providers: Any
) -> None:
    url, state = await start(client, "github")
    assert url.startswith(f"{providers.github.base}/login/oauth/authorize?")
    params = query(url)
    assert params["scope"] == "read:user user:email"
    assert params["code_challenge_method"] == "S256"
    assert "nonce" not in params
    assert state.nonce is None


async def test_discovery_is_fetched_once_and_again_after_its_ttl(
    providers: Any, browser: Any
) -> None:
    before = providers.oidc.stats()
    async with OAuthClient([providers.oidc.provider()], cache_ttl=100) as client:
        now = time.time()
        for _ in range(2):
            params, state = await login(client, browser, "google", now)
            await finish(client, "google", params, state, now)
        after_two = providers.oidc.stats()
        await start(client, "google", now=now + 101)
    after_ttl = providers.oidc.stats()
    assert after_two["discovery"] - before["discovery"] == 1
    assert after_two["jwks"] - before["jwks"] == 1
    assert after_ttl["discovery"] - before["discovery"] == 2


async def test_a_rotated_signing_key_is_fetched_when_a_token_names_it(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    params, state = await login(client, browser, "google")
    await finish(client, "google", params, state)
    providers.oidc.rotate_key()
    before = providers.oidc.stats()["jwks"]
    params, state = await login(client, browser, "google")
    assert (await finish(client, "google", params, state)).email_verified
    assert providers.oidc.stats()["jwks"] == before + 1


async def test_an_injected_http_client_is_used_and_left_open(providers: Any, browser: Any) -> None:
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        async with OAuthClient([providers.github.provider()], http) as client:
            params, state = await login(client, browser, "github")
            await finish(client, "github", params, state)
        assert not http.is_closed
    assert seen == ["/login/oauth/access_token", "/user", "/user/emails"]


# --- the callback is not this login's ------------------------------------------------------


@pytest.mark.parametrize("name", ["google", "github"])
async def test_a_callback_without_state_is_refused(
    client: OAuthClient, browser: Any, name: str
) -> None:
    params, state = await login(client, browser, name)
    del params["state"]
    await fails(finish(client, name, params, state), "state_mismatch", params["code"])


@pytest.mark.parametrize("name", ["google", "github"])
async def test_a_callback_with_another_state_is_refused(
    client: OAuthClient, browser: Any, name: str
) -> None:
    params, _state = await login(client, browser, name)
    _, other = await start(client, name)
    await fails(finish(client, name, params, other), "state_mismatch", params["code"], other.state)


async def test_a_state_made_for_another_provider_is_refused(
    client: OAuthClient, browser: Any
) -> None:
    params, state = await login(client, browser, "github")
    await fails(finish(client, "google", params, state), "state_mismatch")


@pytest.mark.parametrize("name", ["google", "github"])
async def test_a_login_older_than_ten_minutes_is_refused(
    client: OAuthClient, browser: Any, name: str
) -> None:
    params, state = await login(client, browser, name)
    late = state.created_at + 601
    await fails(finish(client, name, params, state, now=late), "state_expired")
    at_the_limit = await finish(client, name, params, state, now=state.created_at + 600)
    assert at_the_limit.provider == name


async def test_a_login_state_from_the_future_is_refused(client: OAuthClient, browser: Any) -> None:
    params, state = await login(client, browser, "google")
    await fails(
        finish(client, "google", params, state, now=state.created_at - 120), "state_expired"
    )


async def test_an_error_from_the_provider_is_refused_and_named(client: OAuthClient) -> None:
    _, state = await start(client, "google")
    params = {"error": "access_denied", "state": state.state}
    error = await fails(finish(client, "google", params, state), "provider_error")
    assert "access_denied" in error.message
    params["error"] = "<script>alert(1)</script>"
    error = await fails(finish(client, "google", params, state), "provider_error")
    assert "<script>" not in error.message


async def test_a_callback_naming_another_issuer_is_refused(
    client: OAuthClient, browser: Any
) -> None:
    params, state = await login(client, browser, "google")
    params["iss"] = "https://issuer.example"
    await fails(finish(client, "google", params, state), "wrong_issuer")


async def test_a_callback_without_code_is_refused(client: OAuthClient) -> None:
    _, state = await start(client, "github")
    await fails(finish(client, "github", {"state": state.state}, state), "provider_error")


# --- the code exchange ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["google", "github"])
async def test_a_tampered_pkce_verifier_makes_the_provider_refuse_the_code(
    client: OAuthClient, browser: Any, name: str
) -> None:
    params, state = await login(client, browser, name)
    tampered = dataclasses.replace(state, code_verifier="x" * 64)
    await fails(finish(client, name, params, tampered), "exchange_failed", params["code"], "x" * 64)


@pytest.mark.parametrize("name", ["google", "github"])
async def test_a_code_works_once(client: OAuthClient, browser: Any, name: str) -> None:
    params, state = await login(client, browser, name)
    await finish(client, name, params, state)
    error = await fails(finish(client, name, params, state), "exchange_failed", params["code"])
    assert "refused the code" in error.message


async def test_a_wrong_client_secret_is_refused(providers: Any, browser: Any) -> None:
    provider = providers.oidc.provider(client_secret="not-the-secret")
    async with OAuthClient([provider]) as client:
        params, state = await login(client, browser, "google")
        await fails(finish(client, "google", params, state), "exchange_failed", "not-the-secret")


async def test_a_token_endpoint_answering_500_is_unreachable(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    params, state = await login(client, browser, "google")
    providers.oidc.misbehave(token="error_500")
    await fails(finish(client, "google", params, state), "provider_unreachable")


@pytest.mark.parametrize("fault", ["huge", "huge_stream"])
async def test_an_answer_over_one_megabyte_is_refused(
    client: OAuthClient, browser: Any, providers: Any, fault: str
) -> None:
    params, state = await login(client, browser, "google")
    providers.oidc.misbehave(token=fault)
    error = await fails(finish(client, "google", params, state), "exchange_failed")
    assert str(MAX_BODY_BYTES) in error.message


# --- the ID token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("bad_signature", "bad_id_token"),
        ("expired", "bad_id_token"),
        ("hs256", "bad_id_token"),
        ("alg_none", "bad_id_token"),
        ("wrong_audience", "wrong_audience"),
        ("extra_audience", "wrong_audience"),
        ("wrong_issuer", "wrong_issuer"),
        ("wrong_nonce", "wrong_nonce"),
    ],
)
async def test_an_id_token_that_fails_a_check_is_refused(
    client: OAuthClient, browser: Any, providers: Any, fault: str, code: str
) -> None:
    params, state = await login(client, browser, "google")
    providers.oidc.misbehave(id_token=fault)
    await fails(finish(client, "google", params, state), code, params["code"])


async def test_a_bad_signature_fetches_the_keys_no_more_than_usual(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    params, state = await login(client, browser, "google")
    await finish(client, "google", params, state)
    before = providers.oidc.stats()["jwks"]
    params, state = await login(client, browser, "google")
    providers.oidc.misbehave(id_token="bad_signature")
    await fails(finish(client, "google", params, state), "bad_id_token")
    assert providers.oidc.stats()["jwks"] == before  # same kid: the cached set is enough


async def test_an_unverified_oidc_email_is_refused(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    providers.oidc.set_next_user("1", "eve@example.com", email_verified=False)
    params, state = await login(client, browser, "google")
    await fails(finish(client, "google", params, state), "email_unverified")


async def test_an_oidc_login_without_email_is_refused(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    providers.oidc.set_next_user("1", None)
    params, state = await login(client, browser, "google")
    await fails(finish(client, "google", params, state), "no_email")


# --- GitHub's addresses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("emails", "code"),
    [
        ([{"email": "eve@example.com", "primary": True, "verified": False}], "email_unverified"),
        (
            [
                {"email": "eve@example.com", "primary": True, "verified": False},
                {"email": "eve@work.example", "primary": False, "verified": True},
            ],
            "email_unverified",
        ),
        ([{"email": "eve@work.example", "primary": False, "verified": True}], "no_email"),
        ([], "no_email"),
    ],
)
async def test_github_without_a_verified_primary_address_is_refused(
    client: OAuthClient, browser: Any, providers: Any, emails: list[dict[str, Any]], code: str
) -> None:
    providers.github.set_next_user(9, "eve", emails)
    params, state = await login(client, browser, "github")
    await fails(finish(client, "github", params, state), code)


# --- a provider that is down or stuck -------------------------------------------------------


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def stuck_url() -> Iterator[str]:
    """A loopback URL that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_an_oidc_provider_that_is_down_cannot_begin(dead_url: str) -> None:
    provider = Provider("google", "oidc", "charpente-test", SECRET, issuer=dead_url)
    async with OAuthClient([provider]) as client:
        await fails(start(client, "google"), "provider_unreachable")


async def test_github_down_at_the_exchange_is_unreachable(
    providers: Any, browser: Any, dead_url: str
) -> None:
    provider = providers.github.provider(token_url=f"{dead_url}/login/oauth/access_token")
    async with OAuthClient([provider]) as client:
        params, state = await login(client, browser, "github")
        await fails(finish(client, "github", params, state), "provider_unreachable", params["code"])


async def test_a_provider_that_never_answers_times_out(stuck_url: str) -> None:
    provider = Provider("google", "oidc", "charpente-test", SECRET, issuer=stuck_url)
    async with httpx.AsyncClient(timeout=0.3) as http:
        client = OAuthClient([provider], http)
        await fails(start(client, "google"), "provider_unreachable")


# --- the records ----------------------------------------------------------------------------


async def test_a_login_state_survives_its_bytes_and_hides_its_secrets(client: OAuthClient) -> None:
    _, state = await start(client, "google")
    assert LoginState.from_bytes(state.to_bytes()) == state
    assert len(state.to_bytes()) < 300
    for secret in (state.state, state.code_verifier, state.nonce or "?"):
        assert secret not in repr(state)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{}",
        b'["google", "s", "v", null, "/app"]',
        b'["g", "", "v", null, "/", 1]',
        b'["g", "s", "v", null, "/", "1"]',
        b'["g", "s", "v", 3, "/", 1]',
    ],
)
def test_unreadable_login_state_bytes_are_a_state_mismatch(data: bytes) -> None:
    with pytest.raises(OAuthError) as caught:
        LoginState.from_bytes(data)
    assert caught.value.code == "state_mismatch"


def test_a_provider_hides_its_secret_and_refuses_plain_http_elsewhere() -> None:
    provider = Provider("google", "oidc", "id", "very-secret")
    assert "very-secret" not in repr(provider)
    assert provider.scope == "openid email profile"
    with pytest.raises(ValueError, match="https"):
        Provider("google", "oidc", "id", "s", issuer="http://accounts.example")
    with pytest.raises(ValueError, match="kind"):
        Provider("x", "saml", "id", "s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="required"):
        Provider("github", "github", "id", "")
    with pytest.raises(ValueError, match="configured twice"):
        OAuthClient([provider, provider])


async def test_the_oidc_provider_also_takes_client_secret_post(
    client: OAuthClient, browser: Any, providers: Any
) -> None:
    url, state = await start(client, "google")
    params = await browser.authorize(url)
    form = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": CALLBACK,
        "code_verifier": state.code_verifier,
        "client_id": "charpente-test",
        "client_secret": SECRET,
    }
    answer = httpx.post(f"{providers.oidc.base}/token", data=form, timeout=5)
    assert answer.status_code == 200
    assert "id_token" in answer.json()


async def test_a_discovery_document_naming_another_issuer_is_refused(providers: Any) -> None:
    provider = providers.oidc.provider(issuer=providers.oidc.base + "/")
    async with OAuthClient([provider]) as client:
        await fails(start(client, "google"), "wrong_issuer")


async def test_a_github_api_that_answers_404_is_a_provider_error(
    providers: Any, browser: Any
) -> None:
    provider = providers.github.provider(api_url=providers.github.base + "/elsewhere")
    async with OAuthClient([provider]) as client:
        params, state = await login(client, browser, "github")
        await fails(finish(client, "github", params, state), "provider_error")
