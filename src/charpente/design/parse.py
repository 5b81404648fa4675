"""Text of the expression language to its tree (`parse_expr`) and back (`to_text`).

Pure. The grammar is in design.expr; errors carry the 0-based offset where the text goes wrong.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
from dataclasses import dataclass

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
    Value,
)
from charpente.errors import ExprError

__all__ = ["KEYWORDS", "MAX_LIST_ITEMS", "parse_expr", "to_text"]

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null"})
MAX_LIST_ITEMS = 100

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SPACE = re.compile(r"[ \t\r\n]*")
_SYMBOLS = ("==", "!=", "<=", ">=", "<", ">", "~", "(", ")", "[", "]", ",")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n"}
_ESCAPES |= {"r": "\r", "t": "\t"}
_CONSTANTS: dict[str, Value] = {"true": True, "false": False, "null": None}

# Binding strength, loosest first: what an operand must at least be to print without parentheses.
_OR, _AND, _NOT, _COMPARE, _ATOM = range(5)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "keyword", "string", "number", "symbol", "end"
    text: str
    pos: int
    value: Value = None
    path: tuple[str, ...] = ()


def parse_expr(text: str, *, max_length: int = 4096, max_depth: int = 32) -> Expr:
    """Parse one expression; raise ExprError(message, offset, text) when it is not valid.

    `max_depth` bounds the height of the tree and the nesting of parentheses alike.
    """
    if len(text) > max_length:
        raise ExprError(f"the expression is longer than {max_length} characters", max_length, text)
    if not text.strip():
        raise ExprError("the expression is empty", 0, text)
    return _Parser(text, _tokenize(text), max_depth).parse()


def to_text(expr: Expr) -> str:
    """The canonical text of `expr`: parsing it gives back an equal tree.

    Raises ValueError for a tree no text can express (a bad name, a non-finite number).
    """
    return _print(expr, _OR)


# --- lexer -------------------------------------------------------------------------------------


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = _skip_space(text, 0)
    while pos < len(text):
        token = _next_token(text, pos)
        tokens.append(token)
        pos = _skip_space(text, pos + len(token.text))
    tokens.append(_Token("end", "", pos))
    return tokens


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _next_token(text: str, pos: int) -> _Token:
    char = text[pos]
    if char in "\"'":
        return _string(text, pos)
    if char.isascii() and (char.isdigit() or char == "-"):
        return _number(text, pos)
    if _IDENT.match(text, pos):
        return _word(text, pos)
    for symbol in _SYMBOLS:
        if text.startswith(symbol, pos):
            return _Token("symbol", symbol, pos)
    if char == "!":
        raise ExprError("'!' is not an operator: write 'not' or '!='", pos, text)
    if char == "=":
        raise ExprError("'=' is not an operator: write '=='", pos, text)
    raise ExprError(f"unexpected character {char!r}", pos, text)


def _word(text: str, pos: int) -> _Token:
    parts: list[str] = []
    end = pos
    while True:
        match = _IDENT.match(text, end)
        if match is None:
            raise ExprError("expected a name after '.'", end, text)
        if match.group() in KEYWORDS and (parts or text.startswith(".", match.end())):
            raise ExprError(f"{match.group()!r} is a reserved word, not a name", end, text)
        parts.append(match.group())
        end = match.end()
        if not text.startswith(".", end):
            break
        end += 1
    word = text[pos:end]
    if word in KEYWORDS:
        return _Token("keyword", word, pos, _CONSTANTS.get(word))
    return _Token("name", word, pos, path=tuple(parts))


def _number(text: str, pos: int) -> _Token:
    match = _NUMBER.match(text, pos)
    if match is None:
        raise ExprError("'-' must be followed by digits: it only starts a number", pos, text)
    end = match.end()
    if end < len(text) and (text[end].isalnum() or text[end] in "._"):
        raise ExprError("malformed number", pos, text)
    literal = match.group()
    if match.group(1) is None and match.group(2) is None:
        return _Token("number", literal, pos, int(literal))
    number = float(literal)
    if not math.isfinite(number):
        raise ExprError("number out of range", pos, text)
    return _Token("number", literal, pos, number)


def _string(text: str, start: int) -> _Token:
    quote = text[start]
    chars: list[str] = []
    pos = start + 1
    while pos < len(text) and text[pos] != quote:
        char = text[pos]
        if char == "\\":
            decoded, pos = _escape(text, pos)
            chars.append(decoded)
            continue
        if char < " ":
            raise ExprError("control character in a string: use an escape like \\n", pos, text)
        if _is_surrogate(char):
            raise ExprError("invalid character in a string", pos, text)
        chars.append(char)
        pos += 1
    if pos >= len(text):
        raise ExprError("unterminated string", start, text)
    return _Token("string", text[start : pos + 1], start, "".join(chars))


def _escape(text: str, pos: int) -> tuple[str, int]:
    """Decode the escape starting at the backslash `pos`; return it and the position after it."""
    code = text[pos + 1 : pos + 2]
    if code in _ESCAPES:
        return _ESCAPES[code], pos + 2
    if code != "u":
        raise ExprError("bad escape in a string", pos, text)
    high = _hex4(text, pos)
    if 0xDC00 <= high <= 0xDFFF:
        raise ExprError("unpaired surrogate in a \\u escape", pos, text)
    if not 0xD800 <= high <= 0xDBFF:
        return chr(high), pos + 6
    if text[pos + 6 : pos + 8] != "\\u":
        raise ExprError("unpaired surrogate in a \\u escape", pos, text)
    low = _hex4(text, pos + 6)
    if not 0xDC00 <= low <= 0xDFFF:
        raise ExprError("unpaired surrogate in a \\u escape", pos, text)
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)), pos + 12


def _hex4(text: str, pos: int) -> int:
    digits = text[pos + 2 : pos + 6]
    if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ExprError("bad \\u escape: four hex digits expected", pos, text)
    return int(digits, 16)


def _is_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list; each rule returns (tree, height)."""

    def __init__(self, text: str, tokens: list[_Token], max_depth: int) -> None:
        self.text = text
        self.tokens = tokens
        self.index = 0
        self.nesting = 0
        self.max_depth = max_depth

    def parse(self) -> Expr:
        expr, _ = self.expr()
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {_describe(token)} after the end of the expression")
        return expr

    # token helpers

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def accept(self, text: str) -> _Token | None:
        token = self.peek()
        if token.kind in ("symbol", "keyword") and token.text == text:
            return self.advance()
        return None

    def expect(self, text: str, what: str) -> _Token:
        token = self.accept(text)
        if token is None:
            raise self.error(f"expected {what}, found {_describe(self.peek())}")
        return token

    def error(self, message: str, pos: int | None = None) -> ExprError:
        return ExprError(message, self.peek().pos if pos is None else pos, self.text)

    def check_height(self, height: int, pos: int) -> int:
        if height > self.max_depth:
            raise self.error(f"the expression is nested too deeply (over {self.max_depth})", pos)
        return height

    def enter(self, pos: int) -> None:
        self.nesting += 1
        self.check_height(self.nesting, pos)

    # grammar rules

    def expr(self) -> tuple[Expr, int]:
        left, height = self.conjunction()
        while (token := self.accept("or")) is not None:
            right, right_height = self.conjunction()
            height = self.check_height(max(height, right_height) + 1, token.pos)
            left = Or(left, right, token.pos)
        return left, height

    def conjunction(self) -> tuple[Expr, int]:
        left, height = self.negation()
        while (token := self.accept("and")) is not None:
            right, right_height = self.negation()
            height = self.check_height(max(height, right_height) + 1, token.pos)
            left = And(left, right, token.pos)
        return left, height

    def negation(self) -> tuple[Expr, int]:
        token = self.accept("not")
        if token is None:
            return self.comparison()
        self.enter(token.pos)
        operand, height = self.negation()
        self.nesting -= 1
        return Not(operand, token.pos), self.check_height(height + 1, token.pos)

    def comparison(self) -> tuple[Expr, int]:
        left, height = self.operand()
        op = self.operator()
        if op is None:
            return left, height
        right, right_height = self.operand()
        height = self.check_height(max(height, right_height) + 1, op.pos)
        if self.operator() is not None:
            raise self.error("comparisons cannot be chained: join them with 'and'", op.pos)
        return Compare(op.text, left, right, op.pos), height

    def operator(self) -> _Token | None:
        """Consume a comparison operator (`not in` is one), restoring nothing on failure."""
        token = self.peek()
        if token.kind == "symbol" and token.text in COMPARE_OPS:
            return self.advance()
        if token.kind == "keyword" and token.text == "in":
            return self.advance()
        if token.kind == "keyword" and token.text == "not" and self.peek(1).text == "in":
            self.index += 2
            return _Token("symbol", "not in", token.pos)
        return None

    def operand(self) -> tuple[Expr, int]:
        token = self.peek()
        if _is_literal(token):
            self.advance()
            return Literal(token.value, token.pos), 1
        if token.kind == "name":
            self.advance()
            if self.peek().text == "(" and self.peek().kind == "symbol":
                return self.call(token)
            return Name(token.path, token.pos), 1
        if self.accept("(") is not None:
            return self.group(token.pos)
        if self.accept("[") is not None:
            return self.list_of(token.pos)
        raise self.error(f"expected a value, a field or '(', found {_describe(token)}")

    def group(self, pos: int) -> tuple[Expr, int]:
        self.enter(pos)
        inner = self.expr()
        self.expect(")", "')' to close the '(' opened earlier")
        self.nesting -= 1
        return inner

    def call(self, name: _Token) -> tuple[Expr, int]:
        if len(name.path) > 1:
            raise self.error("only a plain name can be called", name.pos)
        self.advance()  # "("
        self.enter(name.pos)
        args: list[Expr] = []
        height = 1
        if self.accept(")") is None:
            while True:
                arg, arg_height = self.expr()
                args.append(arg)
                height = max(height, arg_height + 1)
                if self.accept(")") is not None:
                    break
                self.expect(",", "',' or ')' in the arguments")
        self.nesting -= 1
        return Call(name.text, tuple(args), name.pos), self.check_height(height, name.pos)

    def list_of(self, pos: int) -> tuple[Expr, int]:
        items: list[Literal] = []
        if self.accept("]") is None:
            while True:
                if len(items) == MAX_LIST_ITEMS:
                    raise self.error(f"a list holds at most {MAX_LIST_ITEMS} values")
                items.append(self.list_item())
                if self.accept("]") is not None:
                    break
                self.expect(",", "',' or ']' in the list")
        return ListOf(tuple(items), pos), self.check_height(2, pos)

    def list_item(self) -> Literal:
        token = self.peek()
        if not _is_literal(token):
            raise self.error(f"a list holds only literal values, found {_describe(token)}")
        self.advance()
        return Literal(token.value, token.pos)


def _is_literal(token: _Token) -> bool:
    return token.kind in ("string", "number") or (
        token.kind == "keyword" and token.text in _CONSTANTS
    )


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "name":
        return f"name {token.text!r}"
    return repr(token.text)


# --- printer -----------------------------------------------------------------------------------


def _print(expr: Expr, context: int) -> str:
    """Print `expr` where the surroundings need at least binding strength `context`."""
    text, strength = _print_bare(expr)
    return f"({text})" if strength < context else text


def _print_bare(expr: Expr) -> tuple[str, int]:
    match expr:
        case Or(left, right):
            return f"{_print(left, _OR)} or {_print(right, _AND)}", _OR
        case And(left, right):
            return f"{_print(left, _AND)} and {_print(right, _NOT)}", _AND
        case Not(operand):
            return f"not {_print(operand, _NOT)}", _NOT
        case Compare(op, left, right):
            if op not in COMPARE_OPS:
                raise ValueError(f"unknown operator {op!r}")
            return f"{_print(left, _ATOM)} {op} {_print(right, _ATOM)}", _COMPARE
        case Call(name, args):
            _check_name(name)
            return f"{name}({', '.join(_print(a, _OR) for a in args)})", _ATOM
        case ListOf(items):
            return f"[{', '.join(_print_value(i.value) for i in items)}]", _ATOM
        case Name(path):
            if not path:
                raise ValueError("a name has at least one part")
            for part in path:
                _check_name(part)
            return ".".join(path), _ATOM
        case Literal(value):
            return _print_value(value), _ATOM
    raise ValueError(f"not an expression: {expr!r}")


def _check_name(name: str) -> None:
    if not _IDENT.fullmatch(name) or name in KEYWORDS:
        raise ValueError(f"{name!r} cannot be written as a name")


def _print_value(value: Value) -> str:
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be written as a number")
        return repr(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be written as a number")
        return str(value)
    if isinstance(value, datetime.date):  # datetimes too, after type-checking
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False)
