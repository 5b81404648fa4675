"""Design patterns: `$` is the end of the value, and slow patterns are recognized."""

from __future__ import annotations

import pytest

from charpente.design.patterns import compile_pattern, end_anchored, slow_pattern


@pytest.mark.parametrize("pattern", [r"^[a-z0-9_]{3,30}$", r"^(ada|bob)$", r"a$|b$"])
def test_dollar_does_not_match_before_a_final_newline(pattern):
    assert compile_pattern(pattern).search("ada")
    assert not compile_pattern(pattern).search("ada\n")


@pytest.mark.parametrize(
    ("pattern", "anchored"),
    [
        (r"^a$", r"^a\Z"),
        (r"[$]x", r"[$]x"),
        (r"[^$]$", r"[^$]\Z"),
        (r"[]$]$", r"[]$]\Z"),
        (r"[^]$]$", r"[^]$]\Z"),
        (r"[a[]$", r"[a[]\Z"),
        (r"\$", r"\$"),
        (r"a\\$", r"a\\\Z"),
        (r"[\]$]$", r"[\]$]\Z"),
    ],
)
def test_only_an_unescaped_dollar_outside_a_class_becomes_the_end(pattern, anchored):
    assert end_anchored(pattern) == anchored


def test_a_dollar_in_a_class_or_escaped_stays_a_literal_dollar():
    assert compile_pattern(r"^[$]\d+$").search("$12")
    assert compile_pattern(r"^\$\d+$").search("$12")
    assert not compile_pattern(r"^\$\d+$").search("$12\n")


def test_search_semantics_are_kept():
    assert compile_pattern("b").search("abc")
    assert compile_pattern("c$").search("abc")


@pytest.mark.parametrize(
    "pattern",
    [
        r"^([a-z]+)+$",
        r"([a-z]+)*",
        r"(\w+\s?)+",
        r"(a|aa)+",
        r"(a*)*b",
        r"(a+){2,}",
        r"(?:(a|ab)c?)+",
        r"(?=(a+)+)",
        r"(?>(a+)+)",
        r"(a)?(?(1)(b+)+|c)",
        r"(\.[a-z.]+)*",
        r"(-?[a-z]+)+",
    ],
)
def test_a_repeated_group_that_repeats_inside_is_slow(pattern):
    assert slow_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[a-z0-9_]{3,30}$",
        r"^\d{4}-\d{2}$",
        r"^(https?)://",
        r"^([a-z]{2})(-[A-Z]{2})?$",
        r"^(com|org)+$",
        r"^(ab){2,5}$",
        r"^[a-z]+@[a-z]+\.[a-z]{2,}$",
        r"^[a-z]+(\.[a-z]+)*$",
        r"^\d+(,\d{3})*$",
        r"^[a-z0-9]+(-[a-z0-9]+)*$",
    ],
)
def test_ordinary_patterns_are_not_slow(pattern):
    assert not slow_pattern(pattern)
