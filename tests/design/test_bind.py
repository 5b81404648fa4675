"""Access rules bound to a caller: what folds to a constant, what stays a condition on the row."""

from __future__ import annotations

import pytest

from charpente.design.bind import FALSE, TRUE, UNKNOWN, bind_caller, can_hold, uses_exists
from charpente.design.evaluate import evaluate
from charpente.design.expr import And, Call, Compare, Expr, Literal, Name, Not, Or
from charpente.design.model import Design
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.loader import load_design_text
from charpente.templates import template_text

DESIGN: Design = load_design_text(template_text("social"))
ADA = "0190a7c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"
BOB = "0190a7c4-5b6e-7f00-8a1b-000000000002"
ANONYMOUS: dict[str, object] = {"id": None, "role": None}
MEMBER: dict[str, object] = {"id": ADA, "role": "member"}
MODERATOR: dict[str, object] = {"id": BOB, "role": "moderator"}


def rule(text: str, resource: str = "posts") -> Expr:
    found = DESIGN.resource(resource)
    assert found is not None
    return resolve_expr(parse_expr(text), found, DESIGN, allow_auth=True, allow_exists=True)


def bound(text: str, auth: dict[str, object], resource: str = "posts") -> Expr:
    return bind_caller(rule(text, resource), auth)


def author_is(value: str) -> Compare:
    return Compare("==", Name(("author",)), Literal(value))


# --- what needs no row folds to a constant ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "auth", "expected"),
    [
        ("auth != null", MEMBER, TRUE),
        ("auth != null", ANONYMOUS, FALSE),
        ("auth == null", ANONYMOUS, TRUE),
        ("auth.id != null", ANONYMOUS, FALSE),
        ('auth.role in ["moderator", "admin"]', MODERATOR, TRUE),
        ('auth.role in ["moderator", "admin"]', MEMBER, FALSE),
        ('auth.role in ["moderator", "admin"]', ANONYMOUS, UNKNOWN),
        ('auth.role not in ["moderator", "admin"]', ANONYMOUS, UNKNOWN),
        ('auth.role == "member"', MEMBER, TRUE),
        ('auth.role != "member"', ANONYMOUS, UNKNOWN),
        ('not (auth.role == "member")', MEMBER, FALSE),
        ('not (auth.role == "member")', ANONYMOUS, UNKNOWN),
        ('auth != null and auth.role == "admin"', MEMBER, FALSE),
        ('auth == null or auth.role == "admin"', MEMBER, FALSE),
        ('auth.role == "admin" or auth != null', MEMBER, TRUE),
        ('auth.role == "admin" and auth.role == "member"', ANONYMOUS, UNKNOWN),
    ],
)
def test_what_does_not_depend_on_the_row_folds_to_a_constant(
    text: str, auth: dict[str, object], expected: Literal
) -> None:
    assert bound(text, auth) == expected
    assert bound(text, auth).value is expected.value  # type: ignore[union-attr]


def test_folding_keeps_what_evaluate_would_answer_for_every_caller() -> None:
    texts = [
        "auth != null",
        'auth.role in ["moderator", "admin"]',
        'not (auth.role == "member") or auth == null',
        'auth.role == "admin" and auth != null',
    ]
    for text in texts:
        for auth in (ANONYMOUS, MEMBER, MODERATOR):
            folded = bound(text, auth)
            assert isinstance(folded, Literal)
            assert folded.value is evaluate(rule(text), {}, auth), (text, auth)


# --- the caller's id: a value for members, unknown (never IS NULL) for the anonymous ----------


def test_a_members_id_becomes_a_value_compared_with_the_row() -> None:
    assert bound("author == auth.id", MEMBER) == author_is(ADA)
    assert bound("auth.id == author", MEMBER) == Compare("==", Literal(ADA), Name(("author",)))
    assert bound("author == auth", MEMBER) == author_is(ADA)


def test_an_anonymous_callers_id_is_unknown_not_a_null_to_match() -> None:
    folded = bound("author == auth.id", ANONYMOUS)
    assert folded == UNKNOWN
    assert folded != Compare("==", Name(("author",)), Literal(None))  # that would be IS NULL
    # A row without an author is still not the anonymous caller's.
    assert evaluate(folded, {"author": None}) is None


@pytest.mark.parametrize(
    "text", ["not (author == auth.id)", "author != auth.id", "not (auth.id == author)"]
)
def test_negating_an_unknown_keeps_it_unknown(text: str) -> None:
    assert bound(text, ANONYMOUS) == UNKNOWN
    assert not can_hold(bound(text, ANONYMOUS))


def test_unknown_parts_stay_inside_a_condition_that_still_depends_on_the_row() -> None:
    text = 'visibility == "public" or author == auth.id'
    public = Compare("==", Name(("visibility",)), Literal("public"))
    assert bound(text, ANONYMOUS) == Or(public, UNKNOWN)
    assert bound(text, MEMBER) == Or(public, author_is(ADA))
    negated = bound(f"not ({text})", ANONYMOUS)
    assert negated == Not(Or(public, UNKNOWN))
    for row in ({"visibility": "public"}, {"visibility": "private", "author": ADA}):
        # unknown or false: a private post is never shown, and never "not shown" either
        assert evaluate(bound(text, ANONYMOUS), row) is (True if "author" not in row else None)


def test_and_with_false_and_or_with_true_fold_whatever_the_row() -> None:
    assert bound('author == auth.id and auth.role == "admin"', MEMBER) == FALSE
    assert bound('author == auth.id or auth.role == "member"', MEMBER) == TRUE
    assert bound('author == auth.id and auth.role == "member"', MEMBER) == author_is(ADA)
    assert bound('author == auth.id or auth.role == "admin"', MEMBER) == author_is(ADA)


def test_the_engines_own_rules_bind_like_the_designs() -> None:
    accounts = DESIGN.resource("accounts")
    assert accounts is not None
    assert accounts.access is not None
    update = accounts.access.rules["update"].expr
    own = Compare("==", Name(("id",)), Literal(ADA))
    assert bind_caller(update, MEMBER) == own
    assert bind_caller(update, {"id": ADA, "role": "admin"}) == TRUE
    assert bind_caller(update, ANONYMOUS) == UNKNOWN


# --- exists() ---------------------------------------------------------------------------------

FOLLOWERS = "exists(follows, follower == auth.id and followee == author)"


def test_exists_keeps_its_correlated_condition_with_the_callers_id_in_place() -> None:
    folded = bound(FOLLOWERS, MEMBER)
    expected_inner = And(
        Compare("==", Name(("follower",)), Literal(ADA)),
        Compare("==", Name(("followee",)), Name(("posts", "author"))),
    )
    assert folded == Call("exists", (Name(("follows",)), expected_inner))
    assert uses_exists(folded)
    assert uses_exists(Or(FALSE, Not(folded)))
    assert not uses_exists(bound("author == auth.id", MEMBER))


@pytest.mark.parametrize(
    "text",
    [
        "exists(follows, follower == auth.id)",
        FOLLOWERS,  # unknown and a condition: no row can make it true
        "exists(follows, followee == author and auth.id == follower)",
        'exists(follows, auth.role == "admin" and followee == author)',
    ],
)
def test_an_exists_no_row_can_satisfy_folds_to_false_for_the_anonymous(text: str) -> None:
    folded = bound(text, ANONYMOUS)
    assert folded == FALSE
    assert bound(f"not {text}", ANONYMOUS) == TRUE
    assert not uses_exists(folded)


def test_an_exists_whose_condition_is_always_true_asks_only_for_a_row() -> None:
    folded = bound("exists(follows, auth != null)", MEMBER)
    assert folded == Call("exists", (Name(("follows",)), TRUE))
    assert bound("exists(follows, auth != null)", ANONYMOUS) == FALSE


def test_the_templates_post_rule_binds_to_public_or_own_or_followed() -> None:
    posts = DESIGN.resource("posts")
    assert posts is not None
    assert posts.access is not None
    read = posts.access.rules["get"].expr
    anonymous = bind_caller(read, ANONYMOUS)
    assert not uses_exists(anonymous)
    assert evaluate(anonymous, {"visibility": "public"}) is True
    assert evaluate(anonymous, {"visibility": "followers", "author": ADA}) is not True
    assert uses_exists(bind_caller(read, MEMBER))


# --- can_hold: whether a bound rule may grant anything --------------------------------------


@pytest.mark.parametrize(
    ("expr", "holds"),
    [
        (TRUE, True),
        (FALSE, False),
        (UNKNOWN, False),
        (author_is(ADA), True),
        (And(UNKNOWN, author_is(ADA)), False),
        (Or(UNKNOWN, author_is(ADA)), True),
        (Or(UNKNOWN, FALSE), False),
        (Not(author_is(ADA)), True),
    ],
)
def test_can_hold_says_whether_some_row_may_pass(expr: Expr, holds: bool) -> None:
    assert can_hold(expr) is holds
