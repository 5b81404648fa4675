"""Resolved expressions evaluated on one row with SQL's three-valued logic."""

from __future__ import annotations

import datetime
import decimal

import pytest

from charpente.design.evaluate import evaluate
from charpente.design.expr import Call, Compare, Expr, Literal, Name
from charpente.design.model import Design, Field, Kind, Resource
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.errors import ExprError

UUID = "0190a7c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"
OTHER = "0190a7c4-5b6e-7f00-8a1b-000000000000"
UTC = datetime.UTC

ITEMS = Resource(
    "items",
    (
        Field("s", Kind.STRING),
        Field("t", Kind.TEXT),
        Field("n", Kind.INT),
        Field("f", Kind.FLOAT),
        Field("p", Kind.DECIMAL),
        Field("b", Kind.BOOL),
        Field("d", Kind.DATE),
        Field("dt", Kind.DATETIME),
        Field("e", Kind.ENUM, choices=("low", "high")),
        Field("owner", Kind.UUID),
        Field("meta", Kind.JSON),
    ),
)
DESIGN = Design("toy", 1, {"items": ITEMS})

ROW: dict[str, object] = {
    "id": UUID,
    "s": "Hello wörld 😀",
    "t": "",
    "n": 5,
    "f": 2.5,
    "p": decimal.Decimal("1.10"),
    "b": True,
    "d": datetime.date(2026, 3, 1),
    "dt": datetime.datetime(2026, 3, 1, 12, tzinfo=UTC),
    "e": "low",
    "owner": None,
    "meta": {"k": 1},
    "created_at": datetime.datetime(2026, 1, 1, tzinfo=UTC),
    "updated_at": datetime.datetime(2026, 1, 2, tzinfo=UTC),
    "version": 1,
}


def check(
    text: str,
    row: dict[str, object] | None = None,
    *,
    allow_auth: bool = False,
    auth: dict[str, object] | None = None,
) -> bool | None:
    tree = resolve_expr(parse_expr(text), ITEMS, DESIGN, allow_auth=allow_auth)
    return evaluate(tree, ROW if row is None else row, auth)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n == 5", True),
        ("n != 5", False),
        ("n < 6 and n >= 5", True),
        ("4 < n", True),
        ("f > 2", True),
        ("p == 1.1", True),
        ("p < n", True),
        ("n > f", True),
        ("b == true", True),
        ("b != true", False),
        ('d >= "2026-03-01"', True),
        ('dt == "2026-03-01T13:00:00+01:00"', True),
        ('dt > "2026-03-01"', True),
        ('s ~ "wörld"', True),
        ('s ~ "World"', False),
        ('s ~ ""', True),
        ('t ~ ""', True),
        ('t == ""', True),
        ('e in ["low", "high"]', True),
        ('e not in ["high"]', True),
        ("n in []", False),
        ("n not in []", True),
        ('s < "a"', True),  # "H" (U+0048) sorts before "a"
        ('"é" > s', True),
        ('s < "\\uff61"', True),
        ('s > "Hello wörld \\uff61"', True),  # code-point order: U+1F600 > U+FF61
        ("meta != null", True),
        ("meta == null", False),
        ("owner == null", True),
        ("id != null", True),
        ("not n == 5", False),
        ("created_at < updated_at", True),
    ],
)
def test_an_expression_on_a_full_row(text: str, expected: bool) -> None:
    assert check(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f'owner == "{UUID}"', None),
        (f'owner != "{UUID}"', None),
        ('owner in ["' + UUID + '"]', None),
        ('owner not in ["' + UUID + '"]', None),
        ("owner in []", False),
        ("owner not in []", True),
        ("owner == null", True),
        ("owner != null", False),
        ("null == owner", True),
        ("owner == id", None),
        ("not owner == id", None),
        ("owner == id and n == 5", None),
        ("owner == id and n == 4", False),
        ("owner == id or n == 5", True),
        ("owner == id or n == 4", None),
        ("not (owner == id or n == 4)", None),
    ],
)
def test_a_null_operand_makes_a_comparison_unknown(text: str, expected: bool | None) -> None:
    assert check(text) is expected


@pytest.mark.parametrize(
    "text", ['s ~ "x"', "n < 1", "f >= 0", "b == false", 'd < "2026-01-01"', 'e == "low"']
)
def test_every_comparison_with_a_null_field_is_unknown(text: str) -> None:
    row = {**ROW, "s": None, "n": None, "f": None, "b": None, "d": None, "e": None}
    assert check(text, row) is None


def test_kleene_logic_over_every_pair_of_truth_values() -> None:
    values = {"true": True, "false": False, "unknown": None}
    conditions = {"true": "n == 5", "false": "n == 4", "unknown": "owner == id"}
    for a, x in values.items():
        for b, y in values.items():
            both = check(f"{conditions[a]} and {conditions[b]}")
            either = check(f"{conditions[a]} or {conditions[b]}")
            assert both is (False if False in (x, y) else None if None in (x, y) else True)
            assert either is (True if True in (x, y) else None if None in (x, y) else False)
        assert check(f"not {conditions[a]}") is (None if x is None else not x)


def test_auth_names_read_the_caller() -> None:
    row = {**ROW, "owner": UUID}
    assert check("owner == auth.id", row, allow_auth=True, auth={"id": UUID}) is True
    assert check("owner == auth.id", row, allow_auth=True, auth={"id": OTHER}) is False
    assert check("owner == auth.id", row, allow_auth=True, auth=None) is None
    assert check("auth.id == null", row, allow_auth=True, auth=None) is True
    assert check('auth.role == "admin"', row, allow_auth=True, auth={"role": "admin"}) is True


def test_a_missing_field_counts_as_null() -> None:
    assert check("n == 1", {"s": "x"}) is None
    assert check("n == null", {"s": "x"}) is True
    assert check("n in []", {}) is False


@pytest.mark.parametrize(
    "tree",
    [
        Call("exists", (Name(("items",)),), 3),
        Name(("n",), 3),
        Compare("==", Call("f", ()), Literal(1), 3),
    ],
)
def test_an_unresolvable_tree_is_refused(tree: Expr) -> None:
    with pytest.raises(ExprError) as caught:
        evaluate(tree, ROW)
    assert caught.value.offset in (0, 3)
