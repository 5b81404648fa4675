"""The one expression language: its syntax tree.

`?filter=`, declared `checks` and (later) access rules are all written in it. This module
holds the tree only (frozen records); parsing, printing, checking and evaluating live in
design.parse, design.resolve and design.evaluate; the compiler to SQL lives in sql/.

    expr     := or
    or       := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | compare
    compare  := operand (op operand)?          op: == != < <= > >= in "not in" ~
    operand  := literal | list | name | call | "(" expr ")"
    name     := IDENT ("." IDENT)*              a field, auth.id / auth.role, or inside json
    call     := IDENT "(" [expr ("," expr)*] ")"   exists(resource, expr)
    literal  := STRING | NUMBER | true | false | null
    list     := "[" [literal ("," literal)*] "]"

Pure: standard library only. Positions (`pos`, a 0-based character offset) do not take
part in equality, so a parsed tree equals the same tree built by hand.
"""

from __future__ import annotations

import datetime
import decimal
from dataclasses import dataclass, field

__all__ = [
    "COMPARE_OPS",
    "And",
    "Call",
    "Compare",
    "Expr",
    "ListOf",
    "Literal",
    "Name",
    "Not",
    "Or",
    "Value",
]

Value = None | bool | int | float | str | decimal.Decimal | datetime.date | datetime.datetime

COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "~")


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: string, number, true, false or null (after type-checking, also a
    Decimal, date or datetime coerced to the field it is compared with)."""

    value: Value
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of literals, the right side of `in` / `not in`."""

    items: tuple[Literal, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Name:
    """A dotted name: a field of the row (`body`) or of the caller (`auth.id`)."""

    path: tuple[str, ...]
    pos: int = field(default=0, compare=False)

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Compare:
    """`left op right` with op one of COMPARE_OPS."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    """`left and right`."""

    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    """`left or right`."""

    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    """`not operand`."""

    operand: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call: `exists(follows, follower == auth.id)`."""

    name: str
    args: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)


Expr = Literal | ListOf | Name | Compare | And | Or | Not | Call
