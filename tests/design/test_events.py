"""The design's event keys: `events:` per resource, `webhooks:` and `outbound:`."""

from __future__ import annotations

import pytest

from charpente.design.model import Webhook
from charpente.errors import DesignError
from charpente.loader import load_design_text

HEAD = "charpente: 1\nname: t\nresources:\n  posts:\n    fields:\n      a: int\n"


def errors(text: str) -> list[str]:
    with pytest.raises(DesignError) as info:
        load_design_text(text, "d.yaml")
    return [
        f"{p.line}:{p.column}: {p.message}" for p in info.value.problems if p.severity == "error"
    ]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("[created]", ("created",)),
        ("[deleted, created]", ("created", "deleted")),
        ("true", ("created", "updated", "deleted")),
        ("false", ()),
    ],
)
def test_a_resource_lists_the_events_it_sends_to_the_outbox(written, expected):
    design = load_design_text(HEAD + f"    events: {written}\n")
    assert design.resources["posts"].events == expected


def test_a_resource_without_events_sends_none():
    assert load_design_text(HEAD).resources["posts"].events == ()


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("[create]", "7:14: unknown event `create` (did you mean `created`?)"),
        ("[created, created]", "7:23: `created` is listed twice"),
        (
            "created",
            "7:13: `events` of `posts` is a list like [created, updated, deleted], or true",
        ),
    ],
)
def test_a_bad_events_list_is_an_error_at_its_place(written, message):
    assert errors(HEAD + f"    events: {written}\n") == [message]


WITH_EVENTS = HEAD + "    events: [created, updated]\n"


def test_a_webhook_reads_its_url_and_secret_from_the_environment():
    design = load_design_text(
        WITH_EVENTS
        + "webhooks:\n"
        + "  moderation: {url: env:MOD_URL, events: [posts.created], secret: env:MOD_SECRET}\n"
        + "  audit: {url: 'https://audit.example.com/in', events: ['posts.*'], secret: env:S}\n"
    )
    moderation, audit = design.webhooks
    assert moderation == Webhook("moderation", ("posts.created",), "MOD_SECRET", url_env="MOD_URL")
    assert audit.url == "https://audit.example.com/in"
    assert audit.events == ("posts.*",)


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (
            "{url: env:U, events: [posts.created], secret: hunter2}",
            "9:52: `secret` names an environment variable (`env:NAME`): "
            "secrets never go in a design",
        ),
        (
            "{url: env:U, events: [posts.created]}",
            "9:3: webhook `h` needs `secret: env:VARIABLE_NAME`",
        ),
        (
            "{url: 'ftp://x', events: [posts.created], secret: env:S}",
            "9:12: a webhook URL is an http(s) URL with a host, e.g. https://example.com/hook",
        ),
        (
            "{url: 'https://u:p@x.example', events: [posts.created], secret: env:S}",
            "9:12: a webhook URL cannot carry a user name or password",
        ),
        (
            "{url: 'http://@x.example/hook', events: [posts.created], secret: env:S}",
            "9:12: a webhook URL cannot carry a user name or password",
        ),
        (
            "{url: env:U, events: [posts.liked], secret: env:S}",
            "9:28: `posts.liked` is not an event: write resource.action (created, updated, "
            "deleted), resource.* or *.*",
        ),
        (
            "{url: env:U, events: [posts.deleted], secret: env:S}",
            "9:3: webhook `h` listens to posts.deleted, but `posts` does not send it: "
            "add `deleted` to its `events`",
        ),
        (
            "{url: env:U, events: [post.created], secret: env:S}",
            "9:3: webhook `h`: unknown resource `post` (did you mean `posts`?)",
        ),
        ("{url: env:U, secret: env:S}", "9:3: webhook `h` needs `events`, e.g. [posts.created]"),
    ],
)
def test_a_bad_webhook_is_an_error_at_its_place(hook, message):
    assert errors(WITH_EVENTS + f"webhooks:\n  h: {hook}\n") == [message]


def test_outbound_allows_private_networks_by_cidr():
    design = load_design_text(HEAD + "outbound: {allow: [127.0.0.1/32, '10.1.2.3/8', '::1']}\n")
    assert design.outbound_allow == ("127.0.0.1/32", "10.0.0.0/8", "::1/128")


def test_a_bad_network_is_an_error():
    assert errors(HEAD + "outbound: {allow: [localhost]}\n") == [
        "7:20: `localhost` is not a network: write 10.0.0.0/8 or ::1/128"
    ]


@pytest.mark.parametrize("name", ["webhooks", "jobs"])
def test_engine_routes_are_reserved_resource_names(name):
    assert any("reserved" in e for e in errors(HEAD.replace("posts", name)))
