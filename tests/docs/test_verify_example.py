"""docs/authentication.md: the Python example verifies charpente's access tokens offline."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from examples import DOCS
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from charpente.templates import template_text

PAGE = DOCS / "authentication.md"
PASSWORD = "correct horse battery staple"


def example() -> dict[str, Any]:
    """The page's Python block, run as a module: its functions and constants."""
    (code,) = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    namespace: dict[str, Any] = {"__name__": "verify_example"}
    exec(compile(code, str(PAGE), "exec"), namespace)
    return namespace


async def signed_in(make_api: Any) -> tuple[Any, str]:
    api = await make_api(template_text("social"))
    headers = await api.sign_in("ada@example.com", handle="ada", password=PASSWORD)
    return api, headers["Authorization"].removeprefix("Bearer ")


@pytest.mark.anyio
async def test_the_example_verifies_a_token_with_the_published_keys(make_api: Any) -> None:
    api, token = await signed_in(make_api)
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    module = example()
    module["fetch_jwks"] = lambda: jwks

    claims = module["verify"](token)

    assert claims["sub"] == api.ids["ada@example.com"]
    assert claims["role"] == "member"
    assert (claims["iss"], claims["aud"]) == ("charpente:social", "social")


@pytest.mark.anyio
async def test_the_example_fetches_the_keys_again_for_a_key_it_does_not_know(make_api: Any) -> None:
    api, token = await signed_in(make_api)
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    module = example()
    fetched: list[int] = []

    def fetch_jwks() -> dict[str, Any]:
        fetched.append(1)
        return dict(jwks)

    module["fetch_jwks"] = fetch_jwks
    module["_cache"]["jwks"] = (time.monotonic(), KeySet([]))  # a set from before a rotation

    assert module["verify"](token)["sub"] == api.ids["ada@example.com"]
    assert fetched == [1]


@pytest.mark.anyio
async def test_the_example_refuses_a_tampered_token_and_another_backend_s(make_api: Any) -> None:
    api, token = await signed_in(make_api)
    jwks = (await api.client.get("/.well-known/jwks.json")).json()
    module = example()
    module["fetch_jwks"] = lambda: jwks
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(JoseError):
        module["verify"](tampered)
    module["AUDIENCE"] = "another-backend"
    with pytest.raises(JoseError):
        module["verify"](token)
