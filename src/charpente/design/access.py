"""The `access` blocks of a design: one rule per action, field rules, and safe defaults.

Pure. A rule is `true`, `false` or an expression of the one language, resolved against the
resource with `auth` and `exists(...)` allowed. What the design leaves out is reserved to
admins: a resource without an `access` block, and an action a block does not name. The
built-in `accounts` resource has its own defaults, which `auth: access:` may override.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from charpente.design.auth import ACCOUNTS
from charpente.design.bind import FALSE, TRUE, bind_caller, can_hold
from charpente.design.flags import flag_key
from charpente.design.model import (
    ACTIONS,
    ADMIN_ROLE,
    Access,
    Design,
    Flag,
    Kind,
    Resource,
    Rule,
)
from charpente.design.parse import parse_expr
from charpente.design.resolve import resolve_expr
from charpente.design.source import Node, Reader, offset_position
from charpente.errors import ExprError, Problem

__all__ = ["ACCESS_KEYS", "read_access"]

ACCESS_KEYS = ("read", *ACTIONS, "fields")
_FIELD_RULE_KEYS = ("read", "write")
_ADMIN = f'auth.role == "{ADMIN_ROLE}"'
_SELF_OR_ADMIN = f'id == auth.id or auth.role == "{ADMIN_ROLE}"'
_ACCOUNT_RULES = {
    "list": "auth != null",
    "get": "auth != null",
    "create": _ADMIN,
    "update": _SELF_OR_ADMIN,
    "delete": _SELF_OR_ADMIN,
}
_ACCOUNT_FIELDS_READ = {"email": _SELF_OR_ADMIN, "disabled": _SELF_OR_ADMIN}
_ACCOUNT_FIELDS_WRITE = {"email": _ADMIN, "role": _ADMIN, "disabled": _ADMIN}

Report = Callable[[Node, int, str], None]


def read_access(design: Design, resource: Resource, node: Node | None, reader: Reader) -> Access:
    """The Access of `resource` from its `access` node (None when the design has none)."""
    report = _reporter(reader)
    builtin = resource.name == ACCOUNTS
    defaults = _ACCOUNT_RULES if builtin else dict.fromkeys(ACTIONS, _ADMIN)
    rules = {action: _fixed(design, resource, text) for action, text in defaults.items()}
    fields_read = _fixed_fields(design, resource, _ACCOUNT_FIELDS_READ if builtin else {})
    fields_write = _fixed_fields(design, resource, _ACCOUNT_FIELDS_WRITE if builtin else {})
    if node is None:
        return Access(rules, fields_read, fields_write, declared=builtin)
    options = reader.mapping(node, ACCESS_KEYS, f"`access` of `{resource.name}`") or {}
    for key, value in options.items():
        if key == "fields":
            _field_rules(design, resource, value, reader, (fields_read, fields_write))
            continue
        rule = _rule(design, resource, value, report, allow_exists=True)
        for action in ("list", "get") if key == "read" else (key,):
            if rule is not None and not (key == "read" and action in options):
                rules[action] = rule
    access = Access(rules, fields_read, fields_write)
    _warn_anonymous_writes(resource, access, node, reader, design.flags)
    return access


def _fixed(design: Design, resource: Resource, text: str) -> Rule:
    expr = resolve_expr(parse_expr(text), resource, design, allow_auth=True)
    return Rule(text, expr)


def _fixed_fields(design: Design, resource: Resource, texts: Mapping[str, str]) -> dict[str, Rule]:
    return {name: _fixed(design, resource, text) for name, text in texts.items()}


def _rule(
    design: Design, resource: Resource, node: Node, report: Report, *, allow_exists: bool
) -> Rule | None:
    if isinstance(node.value, bool):
        text = "true" if node.value else "false"
        return Rule(text, TRUE if node.value else FALSE, node.pos)
    if node.text is None:
        report(node, 0, f"a rule is true, false or an expression, not {node.describe()}")
        return None
    try:
        parsed = parse_expr(node.text)
        expr = resolve_expr(parsed, resource, design, allow_auth=True, allow_exists=allow_exists)
    except ExprError as error:
        report(node, error.offset, error.message)
        return None
    return Rule(node.text, expr, node.pos)


def _field_rules(
    design: Design,
    resource: Resource,
    node: Node,
    reader: Reader,
    into: tuple[dict[str, Rule], dict[str, Rule]],
) -> None:
    report = _reporter(reader)
    for key, value in reader.pairs(node, "`fields` of `access`"):
        name = str(key.value)
        field = resource.field(name)
        if field is None or field.system:
            reader.error(key, f"`{resource.name}` has no field `{name}` that a rule can guard")
            continue
        options = reader.mapping(value, _FIELD_RULE_KEYS, f"the rules of field `{name}`") or {}
        for which, target in zip(_FIELD_RULE_KEYS, into, strict=True):
            if which in options:
                rule = _rule(design, resource, options[which], report, allow_exists=False)
                if rule is not None:
                    target[name] = rule
        if "write" in options and not field.is_client_writable:
            reader.error(options["write"], f"clients never write `{name}`: a write rule is moot")
        if field.kind is Kind.COUNT and "read" in options:
            reader.error(options["read"], "a counter is as visible as its record")


def _warn_anonymous_writes(
    resource: Resource, access: Access, node: Node, reader: Reader, flags: Mapping[str, Flag]
) -> None:
    """Warn about each write that callers without an account may make (with flags on)."""
    flags_on = {flag_key(name): True for name, flag in flags.items() if not flag.variants}
    for action in ("create", "update", "delete"):
        if can_hold(bind_caller(access.rules[action].expr, flags_on)):
            reader.warn(node, f"anonymous callers may {action} `{resource.name}` records")


def _reporter(reader: Reader) -> Report:
    def report(node: Node, offset: int, message: str) -> None:
        line, column = offset_position(node, offset)
        reader.problems.append(Problem(message, node.pos.file, line, column))

    return report
