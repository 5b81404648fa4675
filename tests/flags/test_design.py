"""The `flags` section of a design and `flag("name")` in access rules, checked at load."""

from __future__ import annotations

import datetime

import pytest

from charpente.design.bind import bind_caller
from charpente.design.flags import flag_key
from charpente.design.model import Flag, FlagVariant, Position
from charpente.errors import DesignError
from charpente.loader import load_design_text

HEAD = "charpente: 1\nname: t\nauth: {roles: [member, moderator, admin]}\nflags:\n"
POSTS = "resources:\n  posts:\n    fields: {body: text, shared: bool}\n"


def design(flags: str, access: str = ""):
    return load_design_text(HEAD + flags + POSTS + access, "d.yaml")


def errors(flags: str, access: str = "") -> list[str]:
    with pytest.raises(DesignError) as info:
        design(flags, access)
    return [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems]


def test_a_flag_declares_its_rollout_group_roles_expiry_and_owner():
    found = design(
        "  reposts: {default: false, rollout: 10%, by: account, group: feed,\n"
        '            allow: [moderator, admin], expires: 2027-03-01, owner: "feed team"}\n'
    ).flags["reposts"]
    assert found == Flag(
        name="reposts",
        rollout=10,
        group="feed",
        allow=("moderator", "admin"),
        expires=datetime.date(2027, 3, 1),
        owner="feed team",
        pos=Position("d.yaml", 5, 3),
    )
    assert found.bucket_group == "feed"


def test_a_multivariate_flag_has_shares_that_add_up_to_100():
    found = design("  layout: {default: true, variants: {a: 50%, b: 30, c: 20%}}\n").flags["layout"]
    assert found.variants == (FlagVariant("a", 50), FlagVariant("b", 30), FlagVariant("c", 20))
    assert found.bucket_group == "layout"


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        ("  reposts: {rollout: 110%}\n", "5:22: `rollout` must be a percent from 0% to 100%"),
        ("  reposts: {rollout: ten}\n", "5:22: `rollout` must be a percent from 0% to 100%"),
        ("  reposts: {by: user}\n", "5:17: `by` is one of account, client"),
        ("  reposts: {allow: [boss]}\n", "5:21: `allow` names a role the design has not"),
        ("  reposts: {expires: 2027-13-01}\n", "5:22: `expires` is a date like 2027-03-01"),
        ("  reposts: {default: maybe}\n", "5:22: `default` must be true or false"),
        ("  reposts: {rollot: 5%}\n", "5:13: unknown key `rollot` in flag `reposts`"),
        ("  Reposts: {}\n", "5:3: flag name `Reposts` must match"),
        ("  l: {variants: {a: 50%, b: 40%}}\n", "5:17: the variants' shares must add up to 100%"),
        ("  l: {variants: {a: 100%}}\n", "5:17: a flag has from 2 to 20 variants"),
    ],
)
def test_a_wrong_setting_is_an_error_at_its_line_and_column(flags, problem):
    (found,) = errors(flags)
    assert found.startswith(problem), found


RULES = '    access:\n      read: flag("reposts") or shared == false\n'


def test_a_rule_reads_a_flag_as_a_value_of_the_caller():
    rule = design("  reposts: {rollout: 10%}\n", RULES).resources["posts"].access.rules["list"]
    on = bind_caller(rule.expr, {"id": None, "role": None, flag_key("reposts"): True})
    off = bind_caller(rule.expr, {"id": None, "role": None, flag_key("reposts"): False})
    assert on.value is True  # folded: the flag is the caller's, never a column
    assert str(off.left.path) == "('shared',)"


def test_a_variant_is_compared_with_one_of_its_names():
    access = '    access:\n      create: flag("layout") == "b"\n'
    rule = design("  layout: {variants: {a: 50%, b: 50%}}\n", access).resources["posts"]
    expr = rule.access.rules["create"].expr
    assert bind_caller(expr, {flag_key("layout"): "b"}).value is True
    assert bind_caller(expr, {flag_key("layout"): "a"}).value is False


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ('flag("repost")', "11:13: unknown flag 'repost': declare it under `flags`; did you mean"),
        ('shared == true and flag("nope")', "11:32: unknown flag 'nope'"),
        ('flag("layout")', "11:13: flag 'layout' has variants: compare it"),
        ('flag("layout") == "c"', "11:31: flag(\"layout\"): 'c' is not one of a, b"),
        ("flag(reposts)", '11:13: write flag("name") with the name of a declared flag'),
    ],
)
def test_an_undeclared_or_misused_flag_in_a_rule_is_an_error_at_load(rule, problem):
    flags = "  reposts: {}\n  layout: {variants: {a: 50%, b: 50%}}\n"
    (found,) = errors(flags, f"    access:\n      read: {rule}\n")
    assert found.startswith(problem), found


def test_a_flag_in_a_check_is_refused_there_is_no_caller():
    (found,) = errors("  reposts: {}\n", "    checks: ['flag(\"reposts\")']\n")
    assert "flag() is only for access rules" in found


def test_field_rules_read_flags_too():
    access = '    access:\n      fields: {body: {read: flag("reposts")}}\n'
    found = design("  reposts: {}\n", access).resources["posts"].access.fields_read["body"]
    assert bind_caller(found.expr, {flag_key("reposts"): False}).value is False


def test_a_write_that_a_flag_opens_to_anonymous_callers_is_warned_about():
    found = design("  open_posting: {}\n", '    access:\n      create: flag("open_posting")\n')
    assert any("anonymous callers may create `posts`" in w for w in found.warnings)
