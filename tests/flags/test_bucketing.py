"""Bucketing properties: rollouts only grow, shares are what they say, groups independent;
and a flag's value for a caller (roles, default, anonymous callers, variants)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings, strategies as st

from charpente.design.model import Flag, FlagVariant
from charpente.runtime.caller import ANONYMOUS, SYSTEM, Caller, rule_auth
from charpente.runtime.flags import (
    FlagBoard,
    FlagSetting,
    bucket,
    flag_value,
    in_rollout,
    pick_variant,
    valid_client_id,
)

IDS = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(100_000)]
percents = st.integers(min_value=0, max_value=100)
groups = st.text(alphabet="abcdefghij_", min_size=1, max_size=12)


@given(st.text(min_size=1, max_size=40), groups, percents, percents)
def test_raising_a_rollout_keeps_everyone_who_had_it(key, group, low, high):
    low, high = min(low, high), max(low, high)
    if in_rollout(low, group, key):
        assert in_rollout(high, group, key)


@given(st.text(min_size=1, max_size=40), groups)
def test_a_bucket_is_one_to_a_hundred(key, group):
    assert 1 <= bucket(group, key) <= 100


@settings(max_examples=8, deadline=None)
@given(groups, st.integers(min_value=1, max_value=99))
def test_over_100_000_ids_the_share_is_within_one_point(group, percent):
    share = sum(in_rollout(percent, group, key) for key in IDS) / len(IDS) * 100
    assert abs(share - percent) <= 1


@settings(max_examples=5, deadline=None)
@given(groups, groups)
def test_flags_in_different_groups_are_uncorrelated(one, other):
    if one == other:
        return
    both = sum(in_rollout(50, one, key) and in_rollout(50, other, key) for key in IDS)
    assert abs(both / len(IDS) * 100 - 25) <= 1


def test_variants_share_callers_by_their_weights():
    variants = (FlagVariant("a", 20), FlagVariant("b", 80))
    picks = [pick_variant(variants, "layout", key) for key in IDS[:20_000]]
    assert abs(picks.count("a") / len(picks) * 100 - 20) <= 1.5


def test_the_variant_does_not_follow_the_rollout_bucket():
    variants = (FlagVariant("a", 50), FlagVariant("b", 50))
    inside = [k for k in IDS[:20_000] if in_rollout(50, "g", k)]
    share = sum(pick_variant(variants, "g", k) == "a" for k in inside) / len(inside)
    assert abs(share - 0.5) <= 0.02  # its own seed: half of the rolled-out callers get each


REPOSTS = Flag("reposts", rollout=50, allow=("moderator",))
MEMBER_IN, MEMBER_OUT = (
    next(k for k in IDS if in_rollout(50, "reposts", k) is want) for want in (True, False)
)


def test_a_caller_in_the_rollout_has_it_and_one_outside_has_the_default():
    setting = FlagSetting.of(REPOSTS)
    assert flag_value(REPOSTS, setting, Caller(MEMBER_IN, "member"), None) is True
    assert flag_value(REPOSTS, setting, Caller(MEMBER_OUT, "member"), None) is False
    on = FlagSetting(default=True, rollout=50)
    assert flag_value(REPOSTS, on, Caller(MEMBER_OUT, "member"), None) is True


def test_an_allowed_role_always_has_it():
    setting = FlagSetting.of(REPOSTS)
    assert flag_value(REPOSTS, setting, Caller(MEMBER_OUT, "moderator"), None) is True


def test_an_anonymous_caller_is_outside_a_partial_rollout_unless_it_sends_a_client_id():
    setting = FlagSetting.of(REPOSTS)
    assert flag_value(REPOSTS, setting, ANONYMOUS, None) is False
    assert flag_value(REPOSTS, setting, ANONYMOUS, MEMBER_IN) is True
    assert flag_value(REPOSTS, FlagSetting(rollout=100), ANONYMOUS, None) is True


def test_by_client_buckets_signed_in_callers_by_their_client_id_too():
    flag = Flag("reposts", rollout=50, by="client")
    caller = Caller(MEMBER_OUT, "member")
    assert flag_value(flag, FlagSetting.of(flag), caller, MEMBER_IN) is True
    assert flag_value(flag, FlagSetting.of(flag), caller, None) is False


def test_a_multivariate_flag_is_a_variant_when_on_and_none_when_off():
    flag = Flag("layout", rollout=50, variants=(FlagVariant("a", 50), FlagVariant("b", 50)))
    setting = FlagSetting.of(flag)
    assert flag_value(flag, setting, Caller(MEMBER_OUT), None) in (None, "a", "b")
    values = {flag_value(flag, setting, Caller(key), None) for key in IDS[:200]}
    assert values == {None, "a", "b"}


def test_the_board_gives_a_caller_every_flag_and_rules_read_them():
    board = FlagBoard({"reposts": REPOSTS, "dark": Flag("dark", default=True)})
    caller = board.with_flags(Caller(MEMBER_IN, "member"))
    assert caller.flags == (("dark", True), ("reposts", True))
    assert rule_auth(caller) == {
        "id": MEMBER_IN,
        "role": "member",
        "mfa": False,
        "flag:dark": True,
        "flag:reposts": True,
    }
    assert board.with_flags(SYSTEM) is SYSTEM


def test_a_client_id_is_printable_ascii_of_at_most_200_characters():
    assert valid_client_id("device-42") == "device-42"
    for bad in (None, "", "x" * 201, "é", "a\nb"):
        assert valid_client_id(bad) is None
