"""OFREP: one flag and all of them, with an ETag; the OpenFeature SDK's OFREP provider reads
the same values as the rules, against a running server."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from openfeature import api as openfeature
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import Reason
from tests.changes.support import serve, stop

from charpente.runtime.caller import Caller
from charpente.runtime.flags import in_rollout, pick_variant

DESIGN = """
charpente: 1
name: feed
auth: {roles: [member, moderator, admin]}
flags:
  reposts: {rollout: 50%, allow: [moderator]}
  dark: {default: true}
  layout: {default: true, variants: {a: 50%, b: 50%}}
  beta_layout: {variants: {x: 50%, y: 50%}}
resources:
  posts:
    fields: {body: text}
    access: {read: flag("reposts")}
"""
CLIENTS = [str(uuid.UUID(int=n + 1)) for n in range(200)]
INSIDE = next(c for c in CLIENTS if in_rollout(50, "reposts", c))
OUTSIDE = next(c for c in CLIENTS if not in_rollout(50, "reposts", c))

pytestmark = pytest.mark.anyio


async def _evaluate(api, key: str, context: object = None, headers=None):
    body = {} if context is None else {"context": context}
    return await api.client.post(f"/ofrep/v1/evaluate/flags/{key}", json=body, headers=headers)


async def test_one_flag_for_a_targeting_key(make_api):
    api = await make_api(DESIGN)
    inside = await _evaluate(api, "reposts", {"targetingKey": INSIDE})
    assert inside.status_code == 200
    assert inside.json() == {
        "key": "reposts",
        "reason": "SPLIT",
        "metadata": {},
        "value": True,
        "variant": "on",
    }
    outside = (await _evaluate(api, "reposts", {"targetingKey": OUTSIDE})).json()
    assert (outside["value"], outside["reason"]) == (False, "DEFAULT")
    anonymous = (await _evaluate(api, "reposts")).json()
    assert (anonymous["value"], anonymous["reason"]) == (False, "DEFAULT")


async def test_roles_come_from_the_token_never_from_the_context(make_api):
    api = await make_api(DESIGN)
    moderator = await api.sign_in("mo@example.com", "moderator")
    found = (await _evaluate(api, "reposts", {"targetingKey": OUTSIDE}, moderator)).json()
    assert (found["value"], found["reason"]) == (True, "TARGETING_MATCH")
    claimed = await _evaluate(api, "reposts", {"targetingKey": OUTSIDE, "role": "moderator"})
    assert claimed.json()["value"] is False


async def test_a_signed_in_caller_is_bucketed_by_its_account(make_api):
    api = await make_api(DESIGN)
    member = await api.sign_in("ann@example.com", "member")
    found = (await _evaluate(api, "reposts", {"targetingKey": INSIDE}, member)).json()
    expected = in_rollout(50, "reposts", api.ids["ann@example.com"])
    assert found["value"] is expected


async def test_a_multivariate_flag_gives_its_variant_or_nothing_when_off(make_api):
    api = await make_api(DESIGN)
    found = (await _evaluate(api, "layout", {"targetingKey": INSIDE})).json()
    variants = api.design.flags["layout"].variants
    assert found["value"] == found["variant"] == pick_variant(variants, "layout", INSIDE)
    off = (await _evaluate(api, "beta_layout", {"targetingKey": INSIDE})).json()
    assert off == {"key": "beta_layout", "reason": "DISABLED", "metadata": {}, "variant": None}


async def test_errors_name_the_flag_and_the_ofrep_code(make_api):
    api = await make_api(DESIGN)
    missing = await _evaluate(api, "nope")
    assert missing.status_code == 404
    assert missing.json()["errorCode"] == "FLAG_NOT_FOUND"
    bad = await _evaluate(api, "dark", [1, 2])
    assert bad.status_code == 400
    assert bad.json() == {
        "key": "dark",
        "errorCode": "INVALID_CONTEXT",
        "errorDetails": "the context must be a JSON object",
    }


async def test_bulk_evaluation_has_an_etag_and_answers_304_while_unchanged(make_api):
    api = await make_api(DESIGN)
    url, body = "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": INSIDE}}
    first = await api.client.post(url, json=body)
    assert first.status_code == 200
    assert [f["key"] for f in first.json()["flags"]] == ["beta_layout", "dark", "layout", "reposts"]
    etag = first.headers["ETag"]
    again = await api.client.post(url, json=body, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["ETag"] == etag
    other = await api.client.post(
        url, json={"context": {"targetingKey": OUTSIDE}}, headers={"If-None-Match": etag}
    )
    assert other.status_code == 200
    assert other.headers["ETag"] != etag


async def test_the_openfeature_sdk_reads_the_values_the_rules_read(make_api):
    api = await make_api(DESIGN)
    app = api.client._transport.app  # the app make_api built, served on a real port
    server, task, url = await serve(app)
    try:
        values = await asyncio.to_thread(_read_with_openfeature, url)
    finally:
        await stop(server, task)
    board = api.service.flags
    expected = dict(board.values_for(Caller(), INSIDE))
    assert values["reposts"] == (expected["reposts"], Reason.SPLIT)
    assert values["dark"] == (True, Reason.STATIC)
    assert values["layout"][0] == expected["layout"]
    assert values["beta_layout"] == ("fallback", Reason.DISABLED)
    assert values["outside"] == (False, Reason.DEFAULT)
    assert values["missing"] == "FLAG_NOT_FOUND"


def _read_with_openfeature(url: str) -> dict[str, object]:
    openfeature.set_provider(OFREPProvider(url, timeout=5))
    client = openfeature.get_client()
    inside = EvaluationContext(targeting_key=INSIDE)
    found: dict[str, object] = {}
    for name, read, default in (
        ("reposts", client.get_boolean_details, False),
        ("dark", client.get_boolean_details, False),
        ("layout", client.get_string_details, "fallback"),
        ("beta_layout", client.get_string_details, "fallback"),
    ):
        details = read(name, default, inside)
        found[name] = (details.value, details.reason)
    outside = client.get_boolean_details("reposts", True, EvaluationContext(OUTSIDE))
    found["outside"] = (outside.value, outside.reason)
    missing = client.get_boolean_details("nope", False, inside)
    found["missing"] = missing.error_code
    return found
