"""The `flags` section of a design: feature flags with their rollout, as design defaults.

Pure. `read_flags` reads each flag and reports every wrong setting at its line and column;
`flag_name` is how a flag appears in a resolved expression: a name of the caller
(`auth.flag:reposts`), bound per request like `auth.id`, so a rule never hashes per row.

```yaml
flags:
  reposts: {default: false, rollout: 10%, by: account, group: reposts,
            allow: [moderator, admin], expires: 2027-03-01, owner: "feed team"}
  layout: {default: true, variants: {a: 50%, b: 50%}}
```
"""

from __future__ import annotations

import ast
import datetime
import difflib
import re
from collections.abc import Iterable, Iterator

from charpente.design.expr import And, Call, Compare, Expr, Name, Not, Or
from charpente.design.model import Design, Flag, FlagVariant
from charpente.design.source import Node, Reader, did_you_mean
from charpente.errors import Problem

__all__ = [
    "BY_CHOICES",
    "FLAG_KEYS",
    "FLAG_NAME",
    "MAX_FLAGS",
    "flag_key",
    "flag_name",
    "flags_read",
    "hook_flag_problems",
    "hook_flags_read",
    "parse_percent",
    "read_flags",
    "rules_reading",
]

FLAG_KEYS = (
    *("default", "rollout", "by", "group", "allow", "expires", "owner", "variants"),
    "description",
)
BY_CHOICES = ("account", "client")
FLAG_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_FLAGS = 200
MAX_VARIANTS = 20
_PERCENT = re.compile(r"(\d{1,3})\s*%?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PREFIX = "flag:"


def flag_key(name: str) -> str:
    """The key of flag `name` in the caller's mapping that rules read (`auth`)."""
    return _PREFIX + name


def flag_name(name: str, pos: int = 0) -> Name:
    """Flag `name` as a caller's name in a resolved expression (never a field: `:`)."""
    return Name(("auth", flag_key(name)), pos)


def parse_percent(value: object) -> int | None:
    """A whole percent 0..100 from `10%`, `"10%"` or `10`; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value.strip())
        value = int(match.group(1)) if match else None
    if isinstance(value, int) and 0 <= value <= 100:
        return value
    return None


def read_flags(reader: Reader, node: Node | None, roles: tuple[str, ...]) -> dict[str, Flag]:
    """The flags a `flags` node declares, by name (problems go to `reader`)."""
    if node is None:
        return {}
    flags: dict[str, Flag] = {}
    pairs = reader.pairs(node, "`flags`")
    if len(pairs) > MAX_FLAGS:
        reader.error(node, f"at most {MAX_FLAGS} flags")
    for key, value in pairs[:MAX_FLAGS]:
        name = str(key.value)
        if not FLAG_NAME.fullmatch(name):
            reader.error(key, f"flag name `{name}` must match [a-z][a-z0-9_]* (at most 63)")
            continue
        flag = _flag(reader, key, value, roles)
        if flag is not None:
            flags[name] = flag
    return flags


def _flag(reader: Reader, key: Node, node: Node, roles: tuple[str, ...]) -> Flag | None:
    name = str(key.value)
    options = reader.mapping(node, FLAG_KEYS, f"flag `{name}`")
    if options is None:
        return None
    before = len(reader.problems)
    default = reader.flag(options, "default")
    flag = Flag(
        name=name,
        default=bool(default),
        rollout=_percent(reader, options.get("rollout"), "rollout"),
        by=_by(reader, options.get("by")),
        group=_group(reader, options.get("group")),
        allow=_allow(reader, options.get("allow"), roles),
        expires=_expires(reader, options.get("expires")),
        owner=reader.string(options, "owner"),
        variants=_variants(reader, options.get("variants")),
        description=reader.string(options, "description", limit=1000),
        pos=key.pos,
    )
    return flag if len(reader.problems) == before else None


def _percent(reader: Reader, node: Node | None, what: str) -> int | None:
    if node is None:
        return None
    found = parse_percent(node.value)
    if found is None:
        shown = repr(node.text) if node.text is not None else node.describe()
        reader.error(node, f"`{what}` must be a percent from 0% to 100%, not {shown}")
    return found


def _by(reader: Reader, node: Node | None) -> str:
    if node is None:
        return "account"
    if node.text not in BY_CHOICES:
        hint = did_you_mean(str(node.text), BY_CHOICES) if node.text else ""
        reader.error(node, f"`by` is one of {', '.join(BY_CHOICES)}, not {node.describe()}{hint}")
        return "account"
    return node.text


def _group(reader: Reader, node: Node | None) -> str:
    if node is None:
        return ""
    text = node.text
    if not text or len(text) > 100 or ":" in text:
        reader.error(node, "`group` is a name of 1 to 100 characters, without `:`")
        return ""
    return text


def _allow(reader: Reader, node: Node | None, roles: tuple[str, ...]) -> tuple[str, ...]:
    if node is None:
        return ()
    if not node.is_list:
        reader.error(node, f"`allow` is a list of roles, not {node.describe()}")
        return ()
    allowed: list[str] = []
    for item in node.items:
        if item.text not in roles:
            known = ", ".join(roles)
            reader.error(item, f"`allow` names a role the design has not ({known})")
        elif item.text not in allowed:
            allowed.append(item.text)
    return tuple(allowed)


def _expires(reader: Reader, node: Node | None) -> datetime.date | None:
    if node is None:
        return None
    text = node.text
    if text is not None and _DATE.fullmatch(text):
        try:
            return datetime.date.fromisoformat(text)
        except ValueError:
            pass
    reader.error(node, f"`expires` is a date like 2027-03-01, not {node.describe()}")
    return None


def _variants(reader: Reader, node: Node | None) -> tuple[FlagVariant, ...]:
    if node is None:
        return ()
    variants = []
    pairs = reader.pairs(node, "`variants`")
    for key, value in pairs:
        weight = _percent(reader, value, f"variant {key.value}")
        if not FLAG_NAME.fullmatch(str(key.value)):
            reader.error(key, f"variant name `{key.value}` must match [a-z][a-z0-9_]*")
        elif weight is not None:
            variants.append(FlagVariant(str(key.value), weight))
    if node.is_map and not 2 <= len(pairs) <= MAX_VARIANTS:
        reader.error(node, f"a flag has from 2 to {MAX_VARIANTS} variants")
    elif len(variants) == len(pairs) and sum(v.weight for v in variants) != 100:
        reader.error(node, "the variants' shares must add up to 100%")
    return tuple(variants)


def hook_flag_problems(source: str, file: str, declared: Iterable[str]) -> list[Problem]:
    """Each `….flag("name")` call of a hooks module's source naming an undeclared flag,
    at its line and column (a name that is not a literal string is only checked when
    the hook runs)."""
    try:
        tree = ast.parse(source, file)
    except SyntaxError:
        return []  # reported when the module is imported
    known = list(declared)
    problems = []
    for node, name in _flag_calls(tree):
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown flag {name!r} in a hook: declare it under `flags`{hint}"
            problems.append(Problem(message, file, node.lineno, node.col_offset + 1))
    return problems


def hook_flags_read(source: str) -> set[str]:
    """The flags a hooks module's source reads with `….flag("name")`."""
    try:
        return {name for _, name in _flag_calls(ast.parse(source))}
    except SyntaxError:
        return set()


def _flag_calls(tree: ast.AST) -> Iterator[tuple[ast.Call, str]]:
    for node in ast.walk(tree):
        name = _flag_call_name(node)
        if name is not None:
            assert isinstance(node, ast.Call)
            yield node, name


def _flag_call_name(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    if node.func.attr != "flag" or len(node.args) != 1:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def flags_read(expr: Expr) -> set[str]:
    """The flags a resolved expression reads."""
    match expr:
        case Name(("auth", key)) if key.startswith(_PREFIX):
            return {key.removeprefix(_PREFIX)}
        case Compare(_, left, right) | And(left, right) | Or(left, right):
            return flags_read(left) | flags_read(right)
        case Not(operand):
            return flags_read(operand)
        case Call(_, args):
            return set().union(*(flags_read(arg) for arg in args))
    return set()


def rules_reading(design: Design) -> dict[str, set[str]]:
    """For each resource, the flags its access rules (row and field rules) read."""
    found: dict[str, set[str]] = {}
    for resource in design.resources.values():
        access = resource.access
        if access is None:
            continue
        rules = [
            *access.rules.values(),
            *access.fields_read.values(),
            *access.fields_write.values(),
        ]
        names = set().union(*(flags_read(rule.expr) for rule in rules))
        if names:
            found[resource.name] = names
    return found
