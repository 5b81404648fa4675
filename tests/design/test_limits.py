"""Rate limit policies: the grammar, its bounds, and the RateLimit-Policy item."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from charpente.design.limits import LimitRule, parse_limit, sf_string


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("30/minute per account", LimitRule(30, 60.0, "account")),
        ("5/second per ip", LimitRule(5, 1.0, "ip")),
        ("1000/hour per route", LimitRule(1000, 3600.0, "route")),
        ("100/min", LimitRule(100, 60.0, "ip")),
        ("10/10s per ip", LimitRule(10, 10.0, "ip")),
        ("10/5min burst 20", LimitRule(10, 300.0, "ip", 20)),
        ("7/d per account burst 1", LimitRule(7, 86_400.0, "account", 1)),
        ("2/24h", LimitRule(2, 86_400.0)),
        ("3/seconds", LimitRule(3, 1.0)),
        ("  30 / Minute  PER  Account ", LimitRule(30, 60.0, "account")),
        ("4/h burst 8 per route", LimitRule(4, 3600.0, "route", 8)),
    ],
)
def test_policies_parse_to_rules(text, rule):
    assert parse_limit(text) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot be empty"),
        ("30", "expected <count>/<period>"),
        ("30/", "unknown period ''"),
        ("30/fortnight", "unknown period 'fortnight'"),
        ("30/m", "unknown period 'm'"),
        ("x/minute", "expected <count>/<period>"),
        ("-1/minute", "expected <count>/<period>"),
        ("0/minute", "count must be between 1 and 1_000_000, not 0"),
        ("1000001/day", "count must be between 1 and 1_000_000"),
        ("1/0s", "period must be between 1 second and 1 day"),
        ("1/2d", "period must be between 1 second and 1 day"),
        ("1/minute per planet", "unknown scope 'planet'"),
        ("1/minute per", "'per' needs a value"),
        ("1/minute per ip per ip", "'per' is given twice"),
        ("1/minute every ip", "unexpected 'every'"),
        ("1/minute burst lots", "the burst must be a whole number, not 'lots'"),
        ("1/minute burst 0", "the burst must be between 1 and"),
        ("1/minute burst \u0663", "the burst must be a whole number"),
        ("\u0661/minute", "expected <count>/<period>"),
        ("1/minute " + "x" * 200, "at most 100 characters"),
    ],
)
def test_malformed_policies_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_limit(text)


def test_the_error_quotes_the_policy():
    with pytest.raises(ValueError, match=r"^rate limit '30/fortnight per ip': unknown period"):
        parse_limit("30/fortnight per ip")


def test_rules_built_directly_are_checked_too():
    with pytest.raises(ValueError, match="whole number of seconds"):
        LimitRule(5, 1.5)
    with pytest.raises(ValueError, match="unknown scope"):
        LimitRule(5, 1.0, "user")


def test_the_policy_header_item_is_a_structured_field_string_with_q_and_w():
    assert parse_limit("30/minute per account").policy_header_item("posts.create") == (
        '"posts.create";q=30;w=60'
    )
    assert parse_limit("10/10s").policy_header_item('a"b\\c') == r'"a\"b\\c";q=10;w=10'


def test_names_outside_printable_ascii_cannot_be_header_strings():
    with pytest.raises(ValueError, match="printable ASCII"):
        sf_string("caf\u00e9")
    with pytest.raises(ValueError, match="printable ASCII"):
        sf_string("a\nb")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("30/minute per account", "30/minute per account"),
        ("10/10s", "10/10s per ip"),
        ("1/90s", "1/90s per ip"),
        ("1/120s", "1/2min per ip"),
        ("1/7200s burst 3", "1/2h per ip burst 3"),
        ("1/86400s", "1/day per ip"),
    ],
)
def test_a_rule_reads_back_as_its_canonical_policy(text, canonical):
    assert str(parse_limit(text)) == canonical


@given(
    count=st.integers(1, 1_000_000),
    period=st.integers(1, 86_400),
    per=st.sampled_from(["ip", "account", "route"]),
    burst=st.none() | st.integers(1, 1_000_000),
)
def test_every_rule_parses_back_from_its_text(count, period, per, burst):
    rule = LimitRule(count, float(period), per, burst)
    assert parse_limit(str(rule)) == rule
