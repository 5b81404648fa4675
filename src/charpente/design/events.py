"""The design's event keys: `events:` per resource, `webhooks:`, and `outbound:` (which private
networks webhooks may reach).

    posts:
      events: [created, updated, deleted]   # also to the outbox (the history records all)
    webhooks:
      moderation: {url: env:MODERATION_URL, events: [posts.created], secret: env:MODERATION_SECRET}
    outbound:
      allow: [10.0.0.0/8]                   # private targets are refused unless listed
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping

from charpente.design.model import Resource, Webhook
from charpente.design.source import Node, Reader, did_you_mean

__all__ = ["ACTIONS", "read_events", "read_outbound", "read_webhooks", "webhook_problems"]

ACTIONS = ("created", "updated", "deleted")
MAX_WEBHOOKS = 100
MAX_ALLOWED_NETWORKS = 100
_WEBHOOK_KEYS = ("url", "events", "secret", "description")
_OUTBOUND_KEYS = ("allow",)
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_ENV = re.compile(r"env:([A-Z_][A-Z0-9_]{0,100})")
_PATTERN = re.compile(r"([a-z][a-z0-9_]{0,62}|\*)\.([a-z]+|\*)")


def read_events(reader: Reader, node: Node | None, resource: str) -> tuple[str, ...]:
    """A resource's `events:` list (`[created, updated, deleted]`), or `true` for all three."""
    if node is None:
        return ()
    if node.value is True:
        return ACTIONS
    if node.value is False:
        return ()
    if not node.is_list:
        message = f"`events` of `{resource}` is a list like [created, updated, deleted], or true"
        reader.error(node, message)
        return ()
    actions: list[str] = []
    for item in node.items:
        text = item.text or ""
        if text not in ACTIONS:
            reader.error(item, f"unknown event `{text}`{did_you_mean(text, ACTIONS)}")
        elif text in actions:
            reader.error(item, f"`{text}` is listed twice")
        else:
            actions.append(text)
    return tuple(a for a in ACTIONS if a in actions)


def read_webhooks(reader: Reader, node: Node | None) -> tuple[Webhook, ...]:
    if node is None:
        return ()
    pairs = reader.pairs(node, "`webhooks`")
    if len(pairs) > MAX_WEBHOOKS:
        reader.error(node, f"a design declares at most {MAX_WEBHOOKS} webhooks")
    hooks = []
    for key, value in pairs[:MAX_WEBHOOKS]:
        hook = _webhook(reader, key, value)
        if hook is not None:
            hooks.append(hook)
    return tuple(hooks)


def _webhook(reader: Reader, key: Node, node: Node) -> Webhook | None:
    name = str(key.value)
    if not _NAME.fullmatch(name):
        reader.error(key, f"`{name}` is not a valid webhook name: lowercase letters, digits, _ -")
        return None
    options = reader.mapping(node, _WEBHOOK_KEYS, f"webhook `{name}`")
    if options is None:
        return None
    url, url_env = _url(reader, options, key)
    secret_env = _secret(reader, options, key)
    events = _patterns(reader, options.get("events"), key)
    if (url is None and url_env is None) or secret_env is None or not events:
        return None
    description = reader.string(options, "description", limit=500)
    return Webhook(name, events, secret_env, url, url_env, description, key.pos)


def _url(reader: Reader, options: dict[str, Node], owner: Node) -> tuple[str | None, str | None]:
    node = options.get("url")
    if node is None:
        reader.error(owner, f"webhook `{owner.value}` needs `url` (https://... or env:NAME)")
        return None, None
    text = node.text or ""
    if (match := _ENV.fullmatch(text)) is not None:
        return None, match[1]
    problem = url_problem(text)
    if problem is not None:
        reader.error(node, problem)
        return None, None
    return text, None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook target, or None (shape only; addresses are checked when
    delivering, where they resolve)."""
    if len(url) > 2000:
        return "a webhook URL has at most 2000 characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return f"`{url}` is not a valid URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "a webhook URL is an http(s) URL with a host, e.g. https://example.com/hook"
    if "@" in parts.netloc:  # a user name or password, even an empty one
        return "a webhook URL cannot carry a user name or password"
    if port == 0:
        return "a webhook URL's port cannot be 0"
    return None


def _secret(reader: Reader, options: dict[str, Node], owner: Node) -> str | None:
    node = options.get("secret")
    if node is None:
        reader.error(owner, f"webhook `{owner.value}` needs `secret: env:VARIABLE_NAME`")
        return None
    match = _ENV.fullmatch(node.text or "")
    if match is None:
        message = (
            "`secret` names an environment variable (`env:NAME`): secrets never go in a design"
        )
        reader.error(node, message)
        return None
    return match[1]


def _patterns(reader: Reader, node: Node | None, owner: Node) -> tuple[str, ...]:
    if node is None or not node.is_list or not node.items:
        where = node if node is not None else owner
        reader.error(where, f"webhook `{owner.value}` needs `events`, e.g. [posts.created]")
        return ()
    patterns = []
    for item in node.items:
        text = item.text or ""
        match = _PATTERN.fullmatch(text)
        if match is None or (match[2] != "*" and match[2] not in ACTIONS):
            message = (
                f"`{text}` is not an event: write resource.action (created, updated, deleted), "
                "resource.* or *.*"
            )
            reader.error(item, message)
        elif text not in patterns:
            patterns.append(text)
    return tuple(patterns)


def webhook_problems(hook: Webhook, resources: Mapping[str, Resource]) -> list[str]:
    """What a webhook listens to that no resource sends to the outbox."""
    problems = []
    for pattern in hook.events:
        resource, action = pattern.split(".")
        if resource == "*":
            if not any(r.events for r in resources.values()):
                problems.append(
                    f"webhook `{hook.name}` listens to {pattern}: no resource has events"
                )
            continue
        found = resources.get(resource)
        if found is None:
            known = did_you_mean(resource, resources)
            problems.append(f"webhook `{hook.name}`: unknown resource `{resource}`{known}")
        elif action == "*" and not found.events:
            problems.append(f"webhook `{hook.name}`: `{resource}` declares no `events`")
        elif action != "*" and action not in found.events:
            problems.append(
                f"webhook `{hook.name}` listens to {pattern}, but `{resource}` does not send it: "
                f"add `{action}` to its `events`"
            )
    return problems


def read_outbound(reader: Reader, node: Node | None) -> tuple[str, ...]:
    """`outbound: {allow: [CIDR, ...]}`: private networks that webhooks may reach."""
    if node is None:
        return ()
    options = reader.mapping(node, _OUTBOUND_KEYS, "`outbound`") or {}
    allow = options.get("allow")
    if allow is None:
        return ()
    if not allow.is_list:
        reader.error(allow, "`allow` is a list of networks, e.g. [10.0.0.0/8, 127.0.0.1/32]")
        return ()
    networks = []
    for item in allow.items[:MAX_ALLOWED_NETWORKS]:
        try:
            networks.append(str(ipaddress.ip_network(item.text or "", strict=False)))
        except ValueError:
            reader.error(item, f"`{item.text}` is not a network: write 10.0.0.0/8 or ::1/128")
    return tuple(networks)
