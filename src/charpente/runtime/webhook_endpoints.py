"""Webhook endpoints ready to send to: the design's, with their URL and secret read from the
environment, and the secrets of those added at run time, sealed at rest.

A design's webhook whose variables are missing or wrong is left out, with one warning that
names the variable, never its value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from charpente.design.events import url_problem
from charpente.design.model import Design, Webhook
from charpente.runtime.ports import WebhookEndpoint
from charpente.runtime.secrets import Sealer, SealError
from charpente.runtime.signatures import SECRET_PREFIX, secret_key

__all__ = ["EndpointSecrets", "Environment", "Target", "declared_targets"]

log = logging.getLogger("charpente.webhooks")

Environment = Callable[[str], str | None]
_SEAL_CONTEXT = b"charpente_webhooks.secret."


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint ready to be sent to; `id` None for the design's."""

    name: str
    url: str
    key: bytes
    id: str | None = None


class EndpointSecrets:
    """Seals run-time endpoints' secrets (when sealing keys are configured), and opens them
    into signing keys, each once."""

    def __init__(self, sealer: Sealer | None) -> None:
        self.sealer = sealer
        self._keys: dict[tuple[str, str], bytes] = {}

    def seal(self, id: str, secret: str) -> str:
        """The stored form of endpoint `id`'s secret: sealed, or as it is without keys."""
        if self.sealer is None:
            return secret
        return self.sealer.seal(secret.encode(), context=_SEAL_CONTEXT + id.encode())

    def key(self, endpoint: WebhookEndpoint) -> bytes:
        """The signing key of a stored secret. Raises SealError or ValueError."""
        found = self._keys.get((endpoint.id, endpoint.secret))
        if found is None:
            found = self._keys[(endpoint.id, endpoint.secret)] = secret_key(self._open(endpoint))
        return found

    def keep_only(self, endpoints: Sequence[WebhookEndpoint]) -> None:
        """Forget the keys of endpoints deleted (or changed) since."""
        stored = {(e.id, e.secret) for e in endpoints}
        self._keys = {k: v for k, v in self._keys.items() if k in stored}

    def _open(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.secret.startswith(SECRET_PREFIX):
            return endpoint.secret
        if self.sealer is None:
            raise SealError("its secret is sealed, and CHARPENTE_SECRET_KEYS is not set")
        context = _SEAL_CONTEXT + endpoint.id.encode()
        return self.sealer.open(endpoint.secret, context=context).decode()


def declared_targets(
    design: Design, environment: Environment
) -> tuple[dict[str, Target], dict[str, str]]:
    """The design's webhooks that can be used, and why each other one cannot (logged once)."""
    targets: dict[str, Target] = {}
    problems: dict[str, str] = {}
    for hook in design.webhooks:
        try:
            targets[hook.name] = _declared_target(hook, environment)
        except ValueError as error:
            problems[hook.name] = str(error)
            log.warning("webhook %r is not used: %s", hook.name, error)
    return targets, problems


def _declared_target(hook: Webhook, environment: Environment) -> Target:
    """Raises ValueError naming the variable that is missing or wrong (never its value)."""
    url = hook.url
    if url is None and hook.url_env is not None:
        url = environment(hook.url_env)
        if url is None:
            raise ValueError(f"the variable {hook.url_env} (its URL) is not set")
        if url_problem(url) is not None:
            raise ValueError(f"the variable {hook.url_env} does not hold an http(s) URL")
    assert url is not None  # the design gives a URL or the variable that holds it
    secret = environment(hook.secret_env)
    if secret is None:
        raise ValueError(f"the variable {hook.secret_env} (its secret) is not set")
    try:
        key = secret_key(secret)
    except ValueError as error:
        raise ValueError(f"the variable {hook.secret_env}: {error}") from None
    return Target(hook.name, url, key)
