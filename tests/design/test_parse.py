"""The expression language's parser and printer: trees, errors with offsets, limits, round trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from charpente.design.expr import (
    COMPARE_OPS,
    And,
    Call,
    Compare,
    Expr,
    ListOf,
    Literal,
    Name,
    Not,
    Or,
)
from charpente.design.parse import KEYWORDS, MAX_LIST_ITEMS, parse_expr, to_text
from charpente.errors import ExprError

DOC = Path(__file__).resolve().parents[2] / "docs" / "expressions.md"


def n(*path: str) -> Name:
    return Name(path)


def lit(value: object) -> Literal:
    return Literal(value)  # type: ignore[arg-type]


# --- trees -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a == 1", Compare("==", n("a"), lit(1))),
        ("a != 'x'", Compare("!=", n("a"), lit("x"))),
        ("a<=-2.5e3", Compare("<=", n("a"), lit(-2500.0))),
        ('a ~ "b"', Compare("~", n("a"), lit("b"))),
        (
            "a in [1, 'x', true, null]",
            Compare("in", n("a"), ListOf((lit(1), lit("x"), lit(True), lit(None)))),
        ),
        ("a not in []", Compare("not in", n("a"), ListOf(()))),
        ("auth.id == owner", Compare("==", n("auth", "id"), n("owner"))),
        ("5 < age", Compare("<", lit(5), n("age"))),
        ("not a == 1", Not(Compare("==", n("a"), lit(1)))),
        ("a or b and c", Or(n("a"), And(n("b"), n("c")))),
        ("a and b or c", Or(And(n("a"), n("b")), n("c"))),
        ("a and b and c", And(And(n("a"), n("b")), n("c"))),
        ("a and (b and c)", And(n("a"), And(n("b"), n("c")))),
        ("(a or b) and c", And(Or(n("a"), n("b")), n("c"))),
        ("not not a", Not(Not(n("a")))),
        (
            "exists(follows, follower == auth.id)",
            Call("exists", (n("follows"), Compare("==", n("follower"), n("auth", "id")))),
        ),
        ("f()", Call("f", ())),
        ("\t a\n==\r1 ", Compare("==", n("a"), lit(1))),
    ],
)
def test_text_parses_to_the_expected_tree(text: str, tree: Expr) -> None:
    assert parse_expr(text) == tree


def test_nodes_remember_where_they_start() -> None:
    tree = parse_expr("not size >= 10 and x")
    assert isinstance(tree, And)
    assert tree.pos == 15
    assert isinstance(tree.left, Not)
    assert tree.left.pos == 0
    compare = tree.left.operand
    assert isinstance(compare, Compare)
    assert (compare.pos, compare.left.pos, compare.right.pos) == (9, 4, 12)


def test_integers_stay_exact_even_when_huge() -> None:
    tree = parse_expr("a == 123456789012345678901234567890")
    assert isinstance(tree, Compare)
    assert isinstance(tree.right, Literal)
    assert tree.right.value == 123456789012345678901234567890
    assert type(tree.right.value) is int


@pytest.mark.parametrize(("text", "value"), [("1.5", 1.5), ("2e3", 2000.0), ("-0.25E-2", -0.0025)])
def test_decimals_and_exponents_parse_as_floats(text: str, value: float) -> None:
    tree = parse_expr(f"a == {text}")
    assert isinstance(tree, Compare)
    assert isinstance(tree.right, Literal)
    assert tree.right.value == value
    assert type(tree.right.value) is float


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r"'it\'s'", "it's"),
        (r'"\\ \/ \b \f \n \r \t"', "\\ / \b \f \n \r \t"),
        (r'"\u00e9\u4e2d"', "é中"),
        (r'"\ud83d\ude00"', "😀"),
        ('"😀 raw"', "😀 raw"),
        ("'say \"hi\"'", 'say "hi"'),
        ('""', ""),
    ],
)
def test_strings_take_json_escapes_in_either_quote(text: str, value: str) -> None:
    tree = parse_expr(f"a == {text}")
    assert isinstance(tree, Compare)
    assert tree.right == Literal(value)


@pytest.mark.parametrize("word", sorted(KEYWORDS - {"true", "false", "null"}))
def test_a_reserved_word_is_not_a_name(word: str) -> None:
    with pytest.raises(ExprError):
        parse_expr(f"{word} == 1")


@pytest.mark.parametrize("text", ["a.in == 1", "null.x == 1", "auth.not == 1"])
def test_a_reserved_word_is_not_part_of_a_dotted_name(text: str) -> None:
    with pytest.raises(ExprError, match="reserved word"):
        parse_expr(text)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("a ==", 4, "expected a value"),
        ("== 1", 0, "expected a value"),
        ("a == 1 b", 7, "after the end"),
        ("a == 1)", 6, "after the end"),
        ("(a == 1", 7, "')'"),
        ("a == 'abc", 5, "unterminated string"),
        ('a == "abc\\"', 5, "unterminated string"),
        ('a == "x\\q"', 7, "bad escape"),
        ('a == "\\u12g4"', 6, "four hex digits"),
        ('a == "\\ud800"', 6, "surrogate"),
        ('a == "\\udc00x"', 6, "surrogate"),
        ('a == "\n"', 6, "control character"),
        ("a = 1", 2, "'=='"),
        ("!a", 0, "not an operator"),
        ("a ! = 1", 2, "not an operator"),
        ("a == b == c", 2, "chained"),
        ("a == 01", 5, "malformed number"),
        ("a == 1.", 5, "malformed number"),
        ("a == 1x", 5, "malformed number"),
        ("a == .5", 5, "unexpected character"),
        ("a == - 1", 5, "'-'"),
        ("a == -b", 5, "'-'"),
        ("a == 1e400", 5, "out of range"),
        ("a. == 1", 2, "name after '.'"),
        ("a.b.(1)", 4, "name after '.'"),
        ("a.b(1)", 0, "plain name"),
        ("a in [b]", 6, "literal values"),
        ("a in [1, [2]]", 9, "literal values"),
        ("a in [1 2]", 8, "',' or ']'"),
        ("a in [1,", 8, "literal values"),
        ("f(a b)", 4, "',' or ')'"),
        ("a == 1 and", 10, "expected a value"),
        ("not", 3, "expected a value"),
        ("a not == 1", 2, "after the end"),
        ("a $ 1", 2, "unexpected character"),
        ("café == 1", 3, "unexpected character"),
        ("a AND b", 2, "after the end"),
    ],
)
def test_a_malformed_expression_reports_where_it_goes_wrong(
    text: str, offset: int, message: str
) -> None:
    with pytest.raises(ExprError) as caught:
        parse_expr(text)
    assert caught.value.offset == offset, caught.value.message
    assert message in caught.value.message
    assert caught.value.source == text


def test_an_expression_longer_than_the_limit_is_refused_at_the_limit() -> None:
    text = "a == " + "1" * 30
    assert isinstance(parse_expr(text, max_length=len(text)), Compare)
    with pytest.raises(ExprError, match="longer than") as caught:
        parse_expr(text, max_length=len(text) - 1)
    assert caught.value.offset == len(text) - 1
    with pytest.raises(ExprError, match="longer than 4096"):
        parse_expr("a == '" + "x" * 5000 + "'")


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    assert parse_expr("(" * 10 + "a" + ")" * 10, max_depth=10) == n("a")
    with pytest.raises(ExprError, match="too deeply") as caught:
        parse_expr("(" * 11 + "a" + ")" * 11, max_depth=10)
    assert caught.value.offset == 10
    with pytest.raises(ExprError, match="too deeply"):
        parse_expr("not " * 40 + "a")
    with pytest.raises(ExprError, match="too deeply"):
        parse_expr("(" * 4000 + "a" + ")" * 4000, max_length=9000)


def test_a_long_chain_of_and_counts_towards_the_depth() -> None:
    assert isinstance(parse_expr(" and ".join(["a == 1"] * 31)), And)
    with pytest.raises(ExprError, match="too deeply"):
        parse_expr(" and ".join(["a == 1"] * 32))
    with pytest.raises(ExprError, match="too deeply"):
        parse_expr(" or ".join(["a"] * 800))


def test_a_list_holds_at_most_a_hundred_values() -> None:
    items = ", ".join(str(i) for i in range(MAX_LIST_ITEMS))
    tree = parse_expr(f"a in [{items}]")
    assert isinstance(tree, Compare)
    assert isinstance(tree.right, ListOf)
    assert len(tree.right.items) == MAX_LIST_ITEMS
    with pytest.raises(ExprError, match="at most 100") as caught:
        parse_expr(f"a in [{items}, 100]")
    assert caught.value.offset == len(f"a in [{items}, ")


def test_the_error_message_counts_characters_from_one() -> None:
    with pytest.raises(ExprError, match=r"\(at character 6\)"):
        parse_expr("a == 'x")


# --- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "' OR 1=1 --",
        "title == '' OR 1=1 --",
        "title == 'x'; DROP TABLE posts",
        "; DROP TABLE posts",
        'ti"tle == 1',
        "title` == 1",
        "title == 1 -- comment",
        "title == 1 /* c */",
        "title == x'00'",
    ],
)
def test_sql_looking_input_is_refused(text: str) -> None:
    with pytest.raises(ExprError):
        parse_expr(text)


def test_sql_inside_a_string_stays_a_plain_value() -> None:
    text = 'title == "\' OR 1=1 --; DROP TABLE posts"'
    assert parse_expr(text) == Compare("==", n("title"), lit("' OR 1=1 --; DROP TABLE posts"))


# --- printer -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "text"),
    [
        (And(n("a"), And(n("b"), n("c"))), "a and (b and c)"),
        (And(And(n("a"), n("b")), n("c")), "a and b and c"),
        (Or(n("a"), Or(n("b"), n("c"))), "a or (b or c)"),
        (And(Or(n("a"), n("b")), n("c")), "(a or b) and c"),
        (Or(And(n("a"), n("b")), n("c")), "a and b or c"),
        (Not(And(n("a"), n("b"))), "not (a and b)"),
        (Not(Compare("==", n("a"), lit(1))), "not a == 1"),
        (Compare("==", Not(n("a")), n("b")), "(not a) == b"),
        (Compare("==", Compare("<", n("a"), lit(1)), lit(True)), "(a < 1) == true"),
        (
            Compare("not in", n("a"), ListOf((lit(1.0), lit(None), lit("é\n")))),
            'a not in [1.0, null, "é\\n"]',
        ),
        (Call("exists", (n("r"), Or(n("a"), n("b")))), "exists(r, a or b)"),
        (Compare("<", lit(-1), n("x", "y")), "-1 < x.y"),
        (Compare("==", n("x"), lit(1e16)), "x == 1e+16"),
    ],
)
def test_the_printer_parenthesizes_only_where_needed(tree: Expr, text: str) -> None:
    assert to_text(tree) == text
    assert parse_expr(text) == tree


@pytest.mark.parametrize(
    "tree",
    [
        Name(()),
        Name(("in",)),
        Name(("a-b",)),
        Call("not", ()),
        Compare("=", n("a"), lit(1)),
        Compare("==", n("a"), lit(float("inf"))),
        Compare("==", n("a"), lit(float("nan"))),
    ],
)
def test_a_tree_no_text_can_express_is_refused_by_the_printer(tree: Expr) -> None:
    with pytest.raises(ValueError, match=r"cannot be written|unknown operator|at least one part"):
        to_text(tree)


_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in KEYWORDS
)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_LITERALS = st.builds(Literal, _VALUES)
_LEAVES = st.one_of(
    _LITERALS,
    st.builds(Name, st.lists(_NAMES, min_size=1, max_size=3).map(tuple)),
    st.builds(ListOf, st.lists(_LITERALS, max_size=4).map(tuple)),
)


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(Compare, st.sampled_from(COMPARE_OPS), children, children),
        st.builds(And, children, children),
        st.builds(Or, children, children),
        st.builds(Not, children),
        st.builds(Call, _NAMES, st.lists(children, max_size=3).map(tuple)),
    )


TREES = st.recursive(_LEAVES, _extend, max_leaves=12)


def _height(expr: Expr) -> int:
    match expr:
        case Compare(_, left, right) | And(left, right) | Or(left, right):
            return 1 + max(_height(left), _height(right))
        case Not(operand):
            return 1 + _height(operand)
        case Call(_, args):
            return 1 + max((_height(a) for a in args), default=0)
        case ListOf():
            return 2
    return 1


@settings(max_examples=300)
@given(TREES)
def test_printing_then_parsing_gives_back_the_same_tree(tree: Expr) -> None:
    if _height(tree) > 32:
        return
    text = to_text(tree)
    again = parse_expr(text)
    assert again == tree
    assert to_text(again) == text


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_any_text_either_parses_or_raises_an_expression_error(text: str) -> None:
    offset = None
    try:
        tree = parse_expr(text)
    except ExprError as error:
        offset = error.offset
    if offset is None:
        assert parse_expr(to_text(tree)) == tree
    else:
        assert 0 <= offset <= len(text)


# --- the reference document --------------------------------------------------------------------


def _doc_examples() -> list[str]:
    return re.findall(r"```expr\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_reference_has_examples() -> None:
    assert len(_doc_examples()) >= 8


@pytest.mark.parametrize("example", _doc_examples() if DOC.exists() else [])
def test_every_example_of_the_reference_parses(example: str) -> None:
    tree = parse_expr(example.strip())
    assert parse_expr(to_text(tree)) == tree
