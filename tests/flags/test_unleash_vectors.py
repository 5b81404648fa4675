"""Unleash's client-specification vectors (tests/flags/data): the same buckets and variants.

Each Unleash strategy used by these files is mapped onto charpente's bucketing: the
strategy's own preconditions (an id it needs) stay Unleash's, the hashing is ours. Cases
that depend on a random id (no id at all, under a partial rollout) are not deterministic
and are left out; every other case runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charpente.design.model import FlagVariant
from charpente.runtime.flags import in_rollout, pick_variant

DATA = Path(__file__).parent / "data"
ROLLOUTS = (
    "03-gradual-rollout-user-id-strategy",
    "04-gradual-rollout-session-id-strategy",
    "10-flexible-rollout-strategy",
)
_RANDOM = object()


def _spec(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def _sticky(context: dict, stickiness: str) -> object:
    if stickiness == "default":
        return context.get("userId") or context.get("sessionId") or _RANDOM
    return context.get(stickiness)


def _strategy_on(strategy: dict, context: dict) -> object:
    """True/False, or _RANDOM when Unleash would draw a random id."""
    params = strategy.get("parameters") or {}
    match strategy["name"]:
        case "default":
            return True
        case "gradualRolloutUserId" | "gradualRolloutSessionId":
            key = context.get("userId" if "User" in strategy["name"] else "sessionId")
            return key is not None and in_rollout(int(params["percentage"]), params["groupId"], key)
        case "flexibleRollout":
            percent = int(params["rollout"])
            key = _sticky(context, params.get("stickiness", "default"))
            if key is _RANDOM:
                return True if percent >= 100 else (False if percent <= 0 else _RANDOM)
            return key is not None and in_rollout(percent, params["groupId"], key)
    raise AssertionError(f"strategy not covered: {strategy['name']}")


def _enabled(feature: dict | None, context: dict) -> object:
    if feature is None or not feature["enabled"]:
        return False
    if not feature["strategies"]:
        return True
    answers = [_strategy_on(s, context) for s in feature["strategies"]]
    if True in answers:
        return True
    return _RANDOM if _RANDOM in answers else False


def _cases(names: tuple[str, ...], key: str) -> list[tuple[dict, dict]]:
    found = []
    for name in names:
        spec = _spec(name)
        features = {f["name"]: f for f in spec["state"]["features"]}
        found += [(features.get(case["toggleName"]), case) for case in spec.get(key, [])]
    return found


def _described(value: object) -> str:
    return value.get("description", "") if isinstance(value, dict) else "missing"


ROLLOUT_CASES = _cases(ROLLOUTS, "tests")
VARIANT_CASES = _cases(("08-variants",), "variantTests")


@pytest.mark.parametrize(("feature", "case"), ROLLOUT_CASES, ids=_described)
def test_gradual_rollout_vectors(feature, case):
    answer = _enabled(feature, case["context"])
    if answer is _RANDOM:
        pytest.skip("Unleash draws a random id here: not deterministic")
    assert answer is case["expectedResult"]


@pytest.mark.parametrize(("feature", "case"), VARIANT_CASES, ids=_described)
def test_variant_vectors(feature, case):
    context, expected = case["context"], case["expectedResult"]
    enabled = _enabled(feature, context)
    assert enabled is not _RANDOM
    name = "disabled"
    if enabled and feature.get("variants"):
        name = _override(feature["variants"], context) or _variant(feature, context)
    assert name == expected["name"]


def _override(variants: list[dict], context: dict) -> str | None:
    for variant in variants:
        for override in variant.get("overrides", []):
            if context.get(override["contextName"]) in override["values"]:
                return variant["name"]
    return None


def _variant(feature: dict, context: dict) -> str:
    variants = [FlagVariant(v["name"], v["weight"]) for v in feature["variants"]]
    key = _sticky(context, feature["variants"][0].get("stickiness", "default"))
    assert key is not _RANDOM
    found = pick_variant(variants, feature["name"], str(key))
    assert found is not None
    return found


def test_every_vector_file_has_cases():
    assert len(ROLLOUT_CASES) == 22
    assert len(VARIANT_CASES) == 17
