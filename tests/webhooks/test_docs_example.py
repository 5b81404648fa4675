"""docs/webhooks.md: the receiver's Python example accepts what charpente signs, and
refuses what it should."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from charpente.runtime.signatures import new_secret, signature_headers

PAGE = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
BODY = b'{"specversion": "1.0", "type": "charpente.posts.created"}'


def example() -> dict[str, Any]:
    """The page's Python block that defines verify_webhook, run as a module."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
    (code,) = [block for block in blocks if "def verify_webhook" in block]
    namespace: dict[str, Any] = {"__name__": "webhook_receiver_example"}
    exec(compile(code, str(PAGE), "exec"), namespace)
    return namespace


def signed(secret: str, body: bytes = BODY, at: float | None = None) -> dict[str, str]:
    return signature_headers(secret, "01935c7e-8f4a-7c3b", int(at or time.time()), body)


def test_the_example_accepts_what_charpente_signs() -> None:
    module, secret = example(), new_secret()
    module["verify_webhook"](secret, signed(secret), BODY)


def test_the_example_accepts_one_good_signature_among_several() -> None:
    module, secret = example(), new_secret()
    headers = signed(secret)
    headers["webhook-signature"] = f"v1,bm90IGl0 {headers['webhook-signature']}"
    module["verify_webhook"](secret, headers, BODY)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "another"}, b),
        lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b),
        lambda h, b: ({**h, "webhook-signature": "v1,é"}, b),
    ],
)
def test_the_example_refuses_a_tampered_request(tamper: Any) -> None:
    module, secret = example(), new_secret()
    headers, body = tamper(signed(secret), BODY)
    with pytest.raises(module["InvalidWebhook"]):
        module["verify_webhook"](secret, headers, body)


def test_the_example_refuses_another_secret_and_an_old_request() -> None:
    module, secret = example(), new_secret()
    with pytest.raises(module["InvalidWebhook"]):
        module["verify_webhook"](new_secret(), signed(secret), BODY)
    with pytest.raises(module["InvalidWebhook"], match="too old"):
        module["verify_webhook"](secret, signed(secret, at=time.time() - 301), BODY)
