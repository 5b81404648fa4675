"""Resolved expressions compiled to SQL: bound parameters only, and the same answers as evaluate."""

from __future__ import annotations

import asyncio
import datetime
import decimal
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from charpente.design.evaluate import evaluate
from charpente.design.expr import And, Call, Compare, Expr, ListOf, Literal, Name, Not, Or
from charpente.design.model import Design, Field, Kind, Resource
from charpente.design.parse import parse_expr
from charpente.design.resolve import FAMILY_OPS, family_of, resolve_expr
from charpente.errors import ExprError
from charpente.sql.expr import expr_to_sql
from charpente.sql.schema import build_metadata

UTC = datetime.UTC
ITEMS = Resource(
    "items",
    (
        Field("s", Kind.STRING),
        Field("t", Kind.TEXT),
        Field("n", Kind.INT),
        Field("f", Kind.FLOAT),
        Field("p", Kind.DECIMAL, precision=12, scale=2),
        Field("b", Kind.BOOL),
        Field("d", Kind.DATE),
        Field("dt", Kind.DATETIME),
        Field("e", Kind.ENUM, choices=("low", "high", "é")),
        Field("u", Kind.UUID),
        Field("meta", Kind.JSON),
    ),
)
DESIGN = Design("toy", 1, {"items": ITEMS})
TABLE = build_metadata(DESIGN).tables["items"]
PG = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
DIALECTS = [sqlite.dialect(), PG]


def compile_where(text: str, dialect: sa.Dialect) -> sa.engine.Compiled:
    tree = resolve_expr(parse_expr(text), ITEMS, DESIGN)
    return sa.select(TABLE.c.id).where(expr_to_sql(tree, TABLE)).compile(dialect=dialect)


# --- compilation -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('s == "\' OR 1=1 --"', "' OR 1=1 --"),
        ('t ~ "x\'; DROP TABLE items; --"', "x'; DROP TABLE items; --"),
        ('s in ["a\\"b", "c"]', 'a"b'),
        ('"zz_secret_zz" < s', "zz_secret_zz"),
        ("n >= 4242424242", 4242424242),
        ("f < 0.123456", 0.123456),
        ('dt > "2031-07-08T09:10:11Z"', datetime.datetime(2031, 7, 8, 9, 10, 11, tzinfo=UTC)),
        ('u == "0190A7C4-5B6E-7F00-8A1B-2C3D4E5F6A7B"', "0190a7c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"),
        ("p == 98765.43", decimal.Decimal("98765.43")),
        ('e == "high"', "high"),
    ],
)
def test_values_reach_the_sql_only_as_bound_parameters(
    dialect: sa.Dialect, text: str, value: object
) -> None:
    compiled = compile_where(text, dialect)
    sql = str(compiled)
    params = list(compiled.params.values())
    assert value in params or any(isinstance(p, list) and value in p for p in params)
    for shown in {str(value), str(value).split(" ")[0], "4242", "0.123", "2031", "98765", "high"}:
        assert shown not in sql
    assert "DROP" not in sql
    assert "OR 1" not in sql


@pytest.mark.parametrize(
    ("dialect", "fragment"),
    [
        (sqlite.dialect(), "(instr(items.s, ?) > 0)"),
        (PG, "(strpos(items.s, $1::VARCHAR"),
    ],
    ids=["sqlite", "postgresql"],
)
def test_contains_is_a_substring_test_without_like(dialect: sa.Dialect, fragment: str) -> None:
    sql = str(compile_where('s ~ "50%_off"', dialect))
    assert fragment in sql
    assert "LIKE" not in sql.upper()


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_null_comparisons_become_is_null(dialect: sa.Dialect) -> None:
    sql = str(compile_where("s == null and null != n and meta == null", dialect))
    assert "items.s IS NULL" in sql
    assert "items.n IS NOT NULL" in sql
    assert "items.meta IS NULL" in sql


def test_a_bool_literal_is_a_parameter_too() -> None:
    compiled = compile_where("b == false", sqlite.dialect())
    assert str(compiled).endswith("items.b = ?")
    assert list(compiled.params.values()) == [False]


def test_fields_compare_column_to_column() -> None:
    sql = str(compile_where("n < f and created_at <= dt", sqlite.dialect()))
    assert "items.n < items.f AND items.created_at <= items.dt" in sql


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        (Compare("==", Name(("u",)), Name(("auth", "id")), 5), "auth.id"),
        (Call("exists", (Name(("items",)),), 5), "exists()"),
        (Name(("s",), 5), "not a condition"),
        (Compare("==", Name(("nope",)), Literal(1), 5), "unknown field"),
    ],
)
def test_what_sql_cannot_express_is_refused(tree: Expr, message: str) -> None:
    with pytest.raises(ExprError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expr_to_sql(tree, TABLE)


# --- agreement with evaluate, on every dialect -------------------------------------------------

UUIDS = [
    "0190a7c4-5b6e-7f00-8a1b-2c3d4e5f6a7b",
    "0190a7c4-5b6e-7f00-8a1b-000000000001",
    "ffffffff-0000-4000-8000-000000000000",
]
STRINGS = [
    "",
    "a",
    "A",
    "ab",
    "b",
    "B",
    "é",
    "e\u0301",
    "😀",
    "a😀b",
    "\uff61",
    "Z",
    " ",
    "%",
    "_",
    "a%b",
    "'",
]
ALPHABET = "aAbBé😀\uff61%_ '"
DATES = [datetime.date(2025, 12, 31), datetime.date(2026, 1, 1), datetime.date(2026, 3, 1)]
MOMENTS = [
    datetime.datetime(2026, 1, 1, tzinfo=UTC),
    datetime.datetime(2026, 3, 1, 12, tzinfo=UTC),
    datetime.datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC),
    datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
]
DECIMALS = [decimal.Decimal(x) for x in ("0.10", "1.00", "-2.50", "2.25", "5", "1234.56")]

_text_values = st.sampled_from(STRINGS) | st.text(alphabet=ALPHABET, max_size=3)
ROW_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "s": _text_values,
    "t": _text_values,
    "n": st.sampled_from([-3, 0, 1, 2, 5, 2**62]),
    "f": st.sampled_from([-1.5, 0.0, 0.5, 1.0, 2.25, 5.0, 1e300]),
    "p": st.sampled_from(DECIMALS),
    "b": st.booleans(),
    "d": st.sampled_from(DATES),
    "dt": st.sampled_from(MOMENTS),
    "e": st.sampled_from(["low", "high", "é"]),
    "u": st.sampled_from(UUIDS),
}
# Literals as written in an expression (before resolve coerces them).
LITERALS: dict[str, st.SearchStrategy[Any]] = {
    "s": _text_values,
    "t": _text_values,
    "n": st.sampled_from([-3, 0, 1, 2, 5, 2**62, -(2**63)]),
    "f": st.sampled_from([-1.5, 0, 0.5, 1, 2.25, 5.0, 1e300, -1e-300]),
    "p": st.sampled_from([0.1, 1, -2.5, 2.25, 5, 3, 1234.56, 0]),
    "b": st.booleans(),
    "d": st.sampled_from([d.isoformat() for d in DATES]),
    "dt": st.sampled_from(
        [
            "2026-03-01T13:00:00+01:00",
            "2026-01-01",
            "2026-03-01T12:00:00.5Z",
            "1999-12-31T23:59:59Z",
        ]
    ),
    "e": st.sampled_from(["low", "high", "é"]),
    "u": st.sampled_from([*UUIDS, UUIDS[0].upper()]),
}
# json documents: arrays of scalars, objects with a few known keys (one nested), scalars
JSON_VALUES = st.sampled_from(
    ["fr", "en", "", "é", "1", "a😀", 0, 1, -2, 2.5, 1.0, 2**62, True, False]
)
JSON_SCALARS = JSON_VALUES | st.none()
JSON_DOCS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.lists(JSON_SCALARS, max_size=4),
    st.fixed_dictionaries(
        {},
        optional={
            "lang": JSON_SCALARS,
            "n": JSON_SCALARS,
            "sub": st.fixed_dictionaries({}, optional={"lang": JSON_SCALARS}) | JSON_SCALARS,
        },
    ),
    JSON_VALUES,
)
JSON_LITERALS: list[st.SearchStrategy[Any]] = [
    st.sampled_from(["fr", "en", "", "é", "1", "e", "a😀"]),
    st.sampled_from([0, 1, -2, 2.5, 2**62, -1.5]),
    st.booleans(),
]
JSON_PATHS = [("meta", "lang"), ("meta", "n"), ("meta", "sub", "lang"), ("meta", "sub")]
PAIRS = [
    ("s", "t"),
    ("s", "e"),
    ("t", "e"),
    ("n", "f"),
    ("n", "p"),
    ("d", "d"),
    ("dt", "created_at"),
    ("u", "id"),
    ("b", "b"),
    ("s", "s"),
]


def _kind(name: str) -> Kind:
    field = ITEMS.field(name)
    assert field is not None
    return field.kind


def _ops(name: str) -> list[str]:
    return sorted(FAMILY_OPS[family_of(_kind(name))])


def _against_value(name: str) -> st.SearchStrategy[Expr]:
    def build(op: str, value: object, flip: bool) -> Expr:
        field, literal = Name((name,)), Literal(value)  # type: ignore[arg-type]
        return Compare(op, literal, field) if flip and op != "~" else Compare(op, field, literal)

    ops = [op for op in _ops(name) if op not in ("in", "not in")]
    return st.builds(build, st.sampled_from(ops), LITERALS[name], st.booleans())


def _against_list(name: str) -> st.SearchStrategy[Expr]:
    def build(op: str, values: list[object]) -> Expr:
        items = tuple(Literal(v) for v in values)  # type: ignore[arg-type]
        return Compare(op, Name((name,)), ListOf(items))

    return st.builds(build, st.sampled_from(["in", "not in"]), st.lists(LITERALS[name], max_size=3))


def _against_field(pair: tuple[str, str]) -> st.SearchStrategy[Expr]:
    ops = [op for op in _ops(pair[0]) if op not in ("in", "not in", "~")]
    return st.builds(
        lambda op: Compare(op, Name((pair[0],)), Name((pair[1],))), st.sampled_from(ops)
    )


def _against_null(name: str) -> st.SearchStrategy[Expr]:
    return st.builds(
        lambda op, flip: Compare(
            op, *((Literal(None), Name((name,))) if flip else (Name((name,)), Literal(None)))
        ),
        st.sampled_from(["==", "!="]),
        st.booleans(),
    )


def _contains(name: str) -> st.SearchStrategy[Expr]:
    return st.builds(lambda v: Compare("~", Name((name,)), Literal(v)), _text_values)


def _json_member(
    path: tuple[str, ...], literals: st.SearchStrategy[Any]
) -> st.SearchStrategy[Expr]:
    def build(value: object, op: str, flip: bool) -> Expr:
        family = (
            "bool" if isinstance(value, bool) else "text" if isinstance(value, str) else "number"
        )
        if op not in FAMILY_OPS[family]:
            op = "=="
        field, literal = Name(path), Literal(value)  # type: ignore[arg-type]
        return Compare(op, literal, field) if flip and op != "~" else Compare(op, field, literal)

    ops = sorted(FAMILY_OPS["text"] - {"in", "not in"})
    return st.builds(build, literals, st.sampled_from(ops), st.booleans())


def _json_member_list(
    path: tuple[str, ...], literals: st.SearchStrategy[Any]
) -> st.SearchStrategy[Expr]:
    def build(op: str, values: list[object]) -> Expr:
        items = tuple(Literal(v) for v in values)  # type: ignore[arg-type]
        return Compare(op, Name(path), ListOf(items))

    return st.builds(build, st.sampled_from(["in", "not in"]), st.lists(literals, max_size=3))


def _json_holds(literals: st.SearchStrategy[Any]) -> st.SearchStrategy[Expr]:
    return st.builds(
        lambda op, value: Compare(op, Literal(value), Name(("meta",))),
        st.sampled_from(["in", "not in"]),
        literals,
    )


_JSON_COMPARISONS = st.one_of(
    st.builds(
        lambda path, lit: (path, lit), st.sampled_from(JSON_PATHS), st.sampled_from(JSON_LITERALS)
    ).flatmap(lambda pair: _json_member(*pair)),
    st.builds(
        lambda path, lit: (path, lit),
        st.sampled_from(JSON_PATHS),
        st.sampled_from(JSON_LITERALS[:2]),
    ).flatmap(
        lambda pair: _json_member_list(*pair)  # bools take == and != only, as bool fields
    ),
    st.sampled_from(JSON_PATHS).flatmap(lambda path: _against_null_path(path)),
    st.sampled_from(JSON_LITERALS).flatmap(_json_holds),
    st.builds(
        lambda op, n: Compare(op, Name(("meta", "length")), Literal(n)),
        st.sampled_from(sorted(FAMILY_OPS["number"] - {"in", "not in"})),
        st.integers(min_value=-1, max_value=4),
    ),
)


def _against_null_path(path: tuple[str, ...]) -> st.SearchStrategy[Expr]:
    return st.builds(
        lambda op: Compare(op, Name(path), Literal(None)), st.sampled_from(["==", "!="])
    )


_NAMES = sorted(LITERALS)
_COMPARISONS = st.one_of(
    _JSON_COMPARISONS,
    st.sampled_from(_NAMES).flatmap(_against_value),
    st.sampled_from(["s", "t", "e"]).flatmap(_contains),
    st.sampled_from([n for n in _NAMES if n != "b"]).flatmap(_against_list),
    st.sampled_from(PAIRS).flatmap(_against_field),
    st.sampled_from([*_NAMES, "meta"]).flatmap(_against_null),
)
CONDITIONS = st.recursive(
    _COMPARISONS,
    lambda c: st.one_of(st.builds(And, c, c), st.builds(Or, c, c), st.builds(Not, c)),
    max_leaves=5,
)


def _row_id(index: int) -> str:
    return f"00000000-0000-4000-8000-{index:012d}"


@st.composite
def _rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = []
    for index in range(draw(st.integers(min_value=20, max_value=40))):
        row: dict[str, Any] = {
            name: draw(st.none() | values) for name, values in ROW_VALUES.items()
        }
        moment = draw(st.sampled_from(MOMENTS))
        row |= {
            "id": _row_id(index),
            "meta": draw(JSON_DOCS),
            "created_at": moment,
            "updated_at": moment,
            "version": 1,
        }
        rows.append(row)
    return rows


@pytest.fixture
def toy_table(db_target: Any) -> Iterator[tuple[asyncio.Runner, AsyncEngine]]:
    """The items table on the target's dialect, with a loop to drive it from sync code."""
    connect_args: dict[str, Any] = {}
    if db_target.dialect == "postgres":
        connect_args = {"server_settings": {"search_path": db_target.schema}}
    runner = asyncio.Runner()
    engine = create_async_engine(db_target.url, connect_args=connect_args)

    async def create() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(build_metadata(DESIGN).create_all)

    runner.run(create())
    try:
        yield runner, engine
    finally:
        runner.run(engine.dispose())
        runner.close()


async def _answers(
    engine: AsyncEngine, rows: list[dict[str, Any]], trees: list[Expr]
) -> list[tuple[set[str], set[str]]]:
    answers = []
    async with engine.begin() as conn:
        await conn.execute(TABLE.delete())
        await conn.execute(
            TABLE.insert(),
            [{**row, "meta": sa.null() if row["meta"] is None else row["meta"]} for row in rows],
        )
        for tree in trees:
            condition = expr_to_sql(tree, TABLE)
            true = await conn.execute(sa.select(TABLE.c.id).where(condition))
            false = await conn.execute(sa.select(TABLE.c.id).where(sa.not_(condition)))
            answers.append(({str(r[0]) for r in true}, {str(r[0]) for r in false}))
    return answers


@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink costs minutes of queries
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(rows=_rows(), conditions=st.lists(CONDITIONS, min_size=6, max_size=8))
def test_sql_and_evaluate_pick_the_same_rows(
    toy_table: tuple[asyncio.Runner, AsyncEngine],
    rows: list[dict[str, Any]],
    conditions: list[Expr],
) -> None:
    runner, engine = toy_table
    trees = [resolve_expr(c, ITEMS, DESIGN) for c in conditions]
    answers = runner.run(_answers(engine, rows, trees))
    for tree, (true_ids, false_ids) in zip(trees, answers, strict=True):
        verdicts = {row["id"]: evaluate(tree, row) for row in rows}
        assert true_ids == {i for i, v in verdicts.items() if v is True}, tree
        assert false_ids == {i for i, v in verdicts.items() if v is False}, tree


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('s ~ "%"', {1}),
        ('s ~ "_"', {2}),
        ('s ~ "A"', {3}),
        ('s ~ ""', {0, 1, 2, 3, 4}),
        ('s < "a"', {0, 1, 3}),
        ('s > "\\uff61"', {4}),
        ("s in []", set()),
        ("s not in []", {0, 1, 2, 3, 4, 5}),
        ('s not in ["%"]', {0, 1, 2, 3, 4}),
    ],
)
def test_edge_cases_answer_the_same_on_every_dialect(
    toy_table: tuple[asyncio.Runner, AsyncEngine], text: str, expected: set[int]
) -> None:
    runner, engine = toy_table
    values = ["", "50%", "a_b", "ABC", "😀", None]
    _assert_one_column_answers(runner, engine, "s", values, text, expected)


def _assert_one_column_answers(
    runner: asyncio.Runner,
    engine: AsyncEngine,
    column: str,
    values: list[Any],
    text: str,
    expected: set[int],
) -> None:
    """Rows that differ in `column` only: SQL picks those of `expected`, and so does evaluate."""
    rows = [
        {
            **dict.fromkeys(ROW_VALUES),
            "meta": None,
            column: v,
            "id": _row_id(i),
            "created_at": MOMENTS[0],
            "updated_at": MOMENTS[0],
            "version": 1,
        }
        for i, v in enumerate(values)
    ]
    tree = resolve_expr(parse_expr(text), ITEMS, DESIGN)
    [(true_ids, _)] = runner.run(_answers(engine, rows, [tree]))
    assert true_ids == {_row_id(i) for i in expected}
    assert true_ids == {row["id"] for row in rows if evaluate(tree, row) is True}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("meta.length == 2", {1}),
        ("meta.length >= 0", {0, 1, 2}),
        ("meta.length < 1", {0}),
        ("not (meta.length > 1)", {0, 2}),
        ("meta.length == null", {3, 4, 5}),
    ],
)
def test_json_array_length_answers_the_same_on_every_dialect(
    toy_table: tuple[asyncio.Runner, AsyncEngine], text: str, expected: set[int]
) -> None:
    runner, engine = toy_table
    values: list[Any] = [[], ["a", "b"], [1], {"a": 1}, "ab", None]

    async def answers(tree: Expr) -> set[str]:
        async with engine.begin() as conn:
            await conn.execute(TABLE.delete())
            rows = [
                {
                    **dict.fromkeys(ROW_VALUES),
                    "id": _row_id(i),
                    "meta": sa.null() if v is None else v,
                    "created_at": MOMENTS[0],
                    "updated_at": MOMENTS[0],
                    "version": 1,
                }
                for i, v in enumerate(values)
            ]
            await conn.execute(TABLE.insert(), rows)
            found = await conn.execute(sa.select(TABLE.c.id).where(expr_to_sql(tree, TABLE)))
            return {str(r[0]) for r in found}

    tree = resolve_expr(parse_expr(text), ITEMS, DESIGN)
    true_ids = runner.run(answers(tree))
    assert true_ids == {_row_id(i) for i in expected}
    evaluated = {_row_id(i) for i, v in enumerate(values) if evaluate(tree, {"meta": v}) is True}
    assert true_ids == evaluated


@pytest.mark.parametrize(
    ("text", "message", "pos"),
    [
        ("s.length == 1", "applies to a json field", 0),
        ('n == 1 and meta.length == "x"', "expected an integer", 26),
        ("s.lang == 1", "is not a field", 0),
        ("meta.lang == meta.n", "cannot be compared with each other", 10),
        ("meta.lang > true", "does not apply to meta.lang", 10),
        ('meta.lang in ["a", 1]', "expected a string", 19),
        ('meta == "fr"', "can only be compared with null; compare a value inside it", 8),
        ('meta in ["fr"]', "does not apply to field 'meta'", 5),
        ("null in meta", "null cannot be looked for", 0),
        ('"x" in s', "must be followed by a list", 7),
        ("meta.a.b.c.d.e.f.g.h.i == 1", "at most 8 keys", 0),
    ],
)
def test_json_misuse_is_refused_at_its_position(text: str, message: str, pos: int) -> None:
    with pytest.raises(ExprError, match=message) as caught:
        resolve_expr(parse_expr(text), ITEMS, DESIGN)
    assert caught.value.offset == pos


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('meta.lang == "fr"', {0}),
        ('meta.lang != "fr"', {1}),
        ('meta.lang in ["fr", "de"]', {0}),
        ('meta.lang ~ "r"', {0}),
        ("meta.lang == null", {2, 3, 4, 5, 6, 7}),
        ("meta.lang != null", {0, 1, 8}),
        ("meta.n >= 2", {1}),
        ("meta.n < 2", {0}),
        ("meta.n == 1", {0}),
        ("meta.sub.lang == true", {2}),
        ('"x" in meta', {3}),
        ('"x" not in meta', {0, 1, 2, 4, 5, 6, 7, 8}),
        ("1 in meta", {4}),
        ("true in meta", {5}),
        ('"1" in meta', set()),
    ],
)
def test_json_members_and_elements_answer_the_same_on_every_dialect(
    toy_table: tuple[asyncio.Runner, AsyncEngine], text: str, expected: set[int]
) -> None:
    runner, engine = toy_table
    values: list[Any] = [
        {"lang": "fr", "n": 1.0},
        {"lang": "en", "n": 2},
        {"sub": {"lang": True}, "n": "2"},
        ["x", "y"],
        [1.0, [1], {"a": 1}],
        [True],
        "x",
        None,
        {"lang": ["fr"], "n": False},
    ]
    _assert_one_column_answers(runner, engine, "meta", values, text, expected)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_json_paths_and_needles_reach_the_sql_only_as_parameters(dialect: sa.Dialect) -> None:
    compiled = compile_where('meta.lang == "it\'s" and "a\'b" in meta', dialect)
    sql = str(compiled)
    assert "it's" not in sql
    assert "a'b" not in sql
    assert sorted(map(str, compiled.params.values())) == ['["a\'b"]', "it's"]
