"""Reading a design: the document tree becomes Design records, every problem collected.

Pure. The shape is read here: top-level keys, names, limits, resources and each field's
type, options and default. Whatever names other fields or resources (unique constraints,
indexes, refs, counters, checks) is read and resolved by design.check.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import PurePosixPath, PureWindowsPath

from charpente.design.auth import ACCOUNTS, accounts_resource, caller_default, read_auth
from charpente.design.cache import read_cache
from charpente.design.check import check_design
from charpente.design.events import read_events, read_outbound, read_webhooks, webhook_problems
from charpente.design.flags import read_flags
from charpente.design.limits import LimitRule, parse_limit
from charpente.design.model import (
    SYSTEM_FIELDS,
    CachePolicy,
    Cors,
    CountSource,
    Default,
    Design,
    Field,
    Kind,
    OnDelete,
    Resource,
)
from charpente.design.patterns import compile_pattern, slow_pattern
from charpente.design.renames import rename_problems, renamed_from
from charpente.design.source import Node, Reader, did_you_mean, literal_value
from charpente.errors import DesignError, Problem

__all__ = [
    "FORMAT_VERSION",
    "MAX_FIELDS",
    "MAX_RESOURCES",
    "RESERVED_RESOURCES",
    "design_from_tree",
]

FORMAT_VERSION = 1
MAX_RESOURCES = 200
MAX_FIELDS = 200
RESERVED_RESOURCES = frozenset(
    {"auth", "graphql", "docs", "healthz", "readyz", "metrics", "openapi", "webhooks", "jobs"}
)

_DESIGN_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_TOP_KEYS = (
    *("charpente", "name", "api_version", "hooks", "auth", "cors", "limits", "resources"),
    *("webhooks", "outbound", "flags", "cache"),
    "graphql",
)
_RESOURCE_KEYS = (
    *("fields", "unique", "indexes", "checks", "require_if_match", "description"),
    *("access", "limits", "events", "cache"),
    "renamed_from",
)
_CORS_KEYS = ("origins", "credentials", "max_age")
_MAX_ORIGINS = 100
_SYSTEM_NAMES = tuple(f.name for f in SYSTEM_FIELDS)
_FIELD_KEYS = (
    *("type", "required", "default", "unique", "readonly", "writeonly", "immutable"),
    *("min", "max", "min_length", "max_length", "pattern", "values", "enum"),
    *("ref", "on_delete", "count", "precision", "scale", "description", "encrypted"),
    "count_hidden",
    "renamed_from",
)
_TYPES = tuple(k.value for k in Kind if k is not Kind.COUNT)
_IMPLIED = {"ref": Kind.REF, "enum": Kind.ENUM, "count": Kind.COUNT}
_LENGTH_KINDS = frozenset({Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.URL})
_RANGE_KINDS = frozenset({Kind.INT, Kind.FLOAT, Kind.DECIMAL})
_OPTION_KINDS = {
    **dict.fromkeys(("min", "max"), _RANGE_KINDS),
    **dict.fromkeys(("min_length", "max_length", "pattern"), _LENGTH_KINDS),
    **dict.fromkeys(("values", "enum"), frozenset({Kind.ENUM})),
    **dict.fromkeys(("ref", "on_delete"), frozenset({Kind.REF})),
    **dict.fromkeys(("precision", "scale"), frozenset({Kind.DECIMAL})),
    "count": frozenset({Kind.COUNT}),
    "count_hidden": frozenset({Kind.COUNT}),
    "encrypted": frozenset({Kind.STRING, Kind.TEXT, Kind.EMAIL, Kind.URL, Kind.JSON}),
}
_VOWEL_KINDS = frozenset({Kind.INT, Kind.ENUM, Kind.EMAIL})
_COUNTER_KEYS = ("count", "count_hidden", "description")
_COUNT_SOURCE = re.compile(r"([a-z][a-z0-9_]{0,62})\.([a-z][a-z0-9_]{0,62})")
_INT_RANGE = 2**63
_MAX_CHOICES = 500
_CALLER = re.compile(r"auth(\.\w+)*")


def design_from_tree(root: Node, file: str) -> Design:
    """The Design a document tree declares.

    Raises DesignError with every problem, sorted by position, when any is an error;
    warnings alone are kept in `Design.warnings`.
    """
    reader = Reader()
    design = _read_design(reader, root, file)
    if design is not None:
        design = check_design(design, root, reader)
    problems = sorted(reader.problems, key=lambda p: (p.line, p.column))
    if design is None or any(p.severity == "error" for p in problems):
        raise DesignError(problems)
    return replace(design, warnings=tuple(str(p) for p in problems))


def _read_design(reader: Reader, root: Node, file: str) -> Design | None:
    top = reader.mapping(root, _TOP_KEYS, "the design")
    if top is None:
        return None
    missing = [key for key in ("charpente", "name", "resources") if key not in top]
    for key in missing:
        reader.error(root, f"the design needs `{key}`")
    version = _format_version(reader, top)
    name = _design_name(reader, top)
    api_version = reader.whole(top, "api_version", low=1, high=1000)
    hooks = _hooks(reader, top)
    auth = read_auth(reader, top.get("auth"))
    resources = _resources(reader, top["resources"]) if "resources" in top else {}
    if ACCOUNTS in resources:
        message = f"`{ACCOUNTS}` is built in: add its fields under `auth: profile:`"
        reader.error(top["resources"], message)
    profile_node = top["auth"].get("profile") if "auth" in top else None
    profile = _fields(reader, profile_node) if profile_node is not None else ()
    resources = {ACCOUNTS: accounts_resource(auth, _profile(reader, profile)), **resources}
    resources = _with_default_cache(resources, read_cache(reader, top.get("cache"), "`cache`"))
    webhooks = read_webhooks(reader, top.get("webhooks"))
    for hook in webhooks:
        for problem in webhook_problems(hook, resources):
            reader.problems.append(Problem(problem, hook.pos.file, hook.pos.line, hook.pos.column))
    return Design(
        name=name or "",
        api_version=api_version or 1,
        resources=resources,
        hooks=hooks,
        format_version=version or FORMAT_VERSION,
        source=file,
        auth=auth,
        cors=_cors(reader, top.get("cors")),
        limits=_limits(reader, top.get("limits"), DESIGN_LIMIT_KEYS, "`limits`"),
        webhooks=webhooks,
        outbound_allow=read_outbound(reader, top.get("outbound")),
        flags=read_flags(reader, top.get("flags"), auth.roles),
        graphql_introspection=_graphql_introspection(reader, top.get("graphql")),
    )


def _graphql_introspection(reader: Reader, node: Node | None) -> bool:
    """`graphql: {introspection: false}` switches GraphQL introspection off (on by default)."""
    if node is None:
        return True
    values = reader.mapping(node, ("introspection",), "`graphql`")
    found = reader.flag(values, "introspection") if values is not None else None
    return True if found is None else found


DESIGN_LIMIT_KEYS = ("all", "auth")
RESOURCE_LIMIT_KEYS = ("read", "write", "list", "get", "create", "update", "delete")


def _limits(
    reader: Reader, node: Node | None, keys: tuple[str, ...], what: str
) -> dict[str, LimitRule]:
    """Rate limits by scope: `30/minute per account` (see design.limits)."""
    if node is None:
        return {}
    rules = {}
    for key, value in (reader.mapping(node, keys, what) or {}).items():
        text = value.text
        if text is None:
            reader.error(
                value, f"a limit is written like `30/minute per ip`, not {value.describe()}"
            )
            continue
        try:
            rules[key] = parse_limit(text)
        except ValueError as error:
            reader.error(value, str(error))
    return rules


def _profile(reader: Reader, fields: tuple[Field, ...]) -> tuple[Field, ...]:
    """Profile fields, without those that would shadow the engine's own account fields."""
    own = ("email", "role", "email_verified", "disabled", "password")
    kept = []
    for field in fields:
        if field.name in own:
            reader.problems.append(
                _problem_at(field, f"`{field.name}` is an account field already")
            )
        else:
            kept.append(field)
    return tuple(kept)


def _problem_at(field: Field, message: str) -> Problem:
    return Problem(message, field.pos.file, field.pos.line, field.pos.column)


def _cors(reader: Reader, node: Node | None) -> Cors:
    if node is None:
        return Cors()
    options = reader.mapping(node, _CORS_KEYS, "`cors`") or {}
    origins = _origins(reader, options.get("origins"))
    credentials = bool(reader.flag(options, "credentials"))
    if credentials and "*" in origins:
        reader.error(options["credentials"], "`credentials: true` needs a list of origins, not `*`")
        credentials = False
    max_age = reader.whole(options, "max_age", high=86400)
    return Cors(origins, credentials, 600 if max_age is None else max_age)


def _origins(reader: Reader, node: Node | None) -> tuple[str, ...]:
    if node is None:
        return ()
    if not node.is_list:
        reader.error(node, "`origins` must be a list, e.g. [https://app.example.com]")
        return ()
    origins = []
    for item in node.items[:_MAX_ORIGINS]:
        text = item.text or ""
        if text == "*" or _ORIGIN.fullmatch(text):
            origins.append(text)
        else:
            message = "an origin is scheme://host[:port] (no path), or `*` for any origin"
            reader.error(item, message)
    return tuple(origins)


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9a-fA-F:]+\](:\d{1,5})?")


def _format_version(reader: Reader, top: dict[str, Node]) -> int | None:
    version = reader.whole(top, "charpente", low=1)
    if version is not None and version != FORMAT_VERSION:
        message = (
            f"this version of charpente reads design format {FORMAT_VERSION}; "
            f"this file says `charpente: {version}`"
        )
        reader.error(top["charpente"], message)
        return None
    return version


def _design_name(reader: Reader, top: dict[str, Node]) -> str | None:
    name = reader.string(top, "name")
    if name is not None and not _DESIGN_NAME.fullmatch(name):
        message = (
            f"`{name}` is not a valid design name: use lowercase letters, digits, `_` and `-`, "
            "starting with a letter (at most 63 characters)"
        )
        reader.error(top["name"], message)
        return None
    return name


def _hooks(reader: Reader, top: dict[str, Node]) -> str | None:
    hooks = reader.string(top, "hooks", limit=500)
    if hooks is None:
        return None
    if hooks.endswith(".py"):
        if _escapes(hooks):
            message = "`hooks` must be a path inside the design's folder (no `..`, not absolute)"
            reader.error(top["hooks"], message)
            return None
        return hooks
    if not _MODULE.fullmatch(hooks):
        message = "`hooks` must be a .py file next to the design or a dotted module name"
        reader.error(top["hooks"], message)
        return None
    return hooks


def _escapes(path: str) -> bool:
    """Whether a relative path is absolute or climbs out of its folder with `..`."""
    windows = PureWindowsPath(path)
    rooted = PurePosixPath(path).is_absolute() or windows.is_absolute() or bool(windows.drive)
    return rooted or ".." in windows.parts


def _resources(reader: Reader, node: Node) -> dict[str, Resource]:
    pairs = reader.pairs(node, "`resources`")
    if node.is_map and not pairs:
        reader.error(node, "`resources` needs at least one resource")
    if len(pairs) > MAX_RESOURCES:
        reader.error(
            node, f"a design has at most {MAX_RESOURCES} resources, this one has {len(pairs)}"
        )
    resources = {}
    for key, value in pairs[:MAX_RESOURCES]:
        resource = _resource(reader, key, value)
        if resource is not None:
            resources[resource.name] = resource
    reader.problems.extend(rename_problems(resources))
    return resources


def _resource(reader: Reader, key: Node, node: Node) -> Resource | None:
    name = str(key.value)
    valid = _resource_name(reader, key, name)
    options = reader.mapping(node, _RESOURCE_KEYS, f"resource `{name}`")
    if options is None or not valid:
        return None
    if "fields" not in options:
        reader.error(key, f"resource `{name}` needs `fields`")
    fields = _fields(reader, options["fields"]) if "fields" in options else ()
    limits = _limits(reader, options.get("limits"), RESOURCE_LIMIT_KEYS, f"`limits` of `{name}`")
    return Resource(
        name=name,
        fields=fields,
        limits=limits,
        events=read_events(reader, options.get("events"), name),
        cache=read_cache(reader, options.get("cache"), f"`cache` of `{name}`"),
        require_if_match=bool(reader.flag(options, "require_if_match")),
        description=reader.string(options, "description", limit=500),
        renamed_from=renamed_from(reader, options, name, "resource"),
        pos=key.pos,
    )


def _resource_name(reader: Reader, key: Node, name: str) -> bool:
    if not _NAME.fullmatch(name):
        message = (
            f"`{name}` is not a valid resource name: use lowercase letters, digits and `_`, "
            "starting with a letter (at most 63 characters)"
        )
    elif name in RESERVED_RESOURCES or name.startswith("charpente_"):
        message = f"`{name}` is a reserved name: charpente uses it, choose another"
    else:
        return True
    reader.error(key, message)
    return False


def _fields(reader: Reader, node: Node) -> tuple[Field, ...]:
    pairs = reader.pairs(node, "`fields`")
    if node.is_map and not pairs:
        reader.error(node, "`fields` needs at least one field")
    if len(pairs) > MAX_FIELDS:
        reader.error(node, f"a resource has at most {MAX_FIELDS} fields, this one has {len(pairs)}")
    fields = []
    for key, value in pairs[:MAX_FIELDS]:
        if _field_name(reader, key):
            field = _field(reader, key, value)
            if field is not None:
                fields.append(field)
    return tuple(fields)


def _field_name(reader: Reader, key: Node) -> bool:
    name = str(key.value)
    if name in _SYSTEM_NAMES:
        message = f"`{name}` is a system field: every record has it already, choose another name"
    elif not _NAME.fullmatch(name):
        message = (
            f"`{name}` is not a valid field name: use lowercase letters, digits and `_`, "
            "starting with a letter (at most 63 characters)"
        )
    else:
        return True
    reader.error(key, message)
    return False


def _field(reader: Reader, key: Node, node: Node) -> Field | None:
    options = _field_options(reader, key, node)
    kind = _kind(reader, key, options) if options is not None else None
    if options is None or kind is None:
        return None
    _drop_misfits(reader, kind, options)
    precision, scale = _digits(reader, options)
    field = Field(
        name=str(key.value),
        kind=kind,
        required=bool(reader.flag(options, "required")),
        unique=bool(reader.flag(options, "unique")),
        readonly=bool(reader.flag(options, "readonly")),
        writeonly=bool(reader.flag(options, "writeonly")),
        immutable=bool(reader.flag(options, "immutable")),
        encrypted=bool(reader.flag(options, "encrypted")),
        minimum=_bound(reader, kind, options, "min"),
        maximum=_bound(reader, kind, options, "max"),
        min_length=reader.whole(options, "min_length"),
        max_length=reader.whole(options, "max_length"),
        pattern=_pattern(reader, options),
        choices=_choices(reader, kind, key, options),
        ref=_reference(reader, kind, key, options),
        on_delete=_on_delete(reader, options),
        count=_count(reader, options),
        precision=precision,
        scale=scale,
        description=reader.string(options, "description", limit=500),
        renamed_from=renamed_from(reader, options, str(key.value), "field"),
        pos=key.pos,
    )
    _check_combinations(reader, field, options)
    return replace(field, default=_default(reader, field, options.get("default")))


def _field_options(reader: Reader, key: Node, node: Node) -> dict[str, Node] | None:
    """A field's options; the shorthand `title: string` stands for `{type: string}`."""
    if node.text is not None:
        return {"type": node}
    if node.is_map:
        return reader.mapping(node, _FIELD_KEYS, f"field `{key.value}`")
    message = (
        f"field `{key.value}` needs a type: write `{key.value}: string` or a mapping of options"
    )
    reader.error(node if node.value is not None else key, message)
    return None


def _kind(reader: Reader, key: Node, options: dict[str, Node]) -> Kind | None:
    implied = [(option, kind) for option, kind in _IMPLIED.items() if option in options]
    if len(implied) > 1:
        first, second = implied[0][0], implied[1][0]
        reader.error(options[second], f"`{first}` and `{second}` cannot be used together")
        return None
    declared = _declared_kind(reader, options.get("type"))
    if declared is None and "type" in options:
        return None
    if implied and declared not in (None, implied[0][1]):
        option, kind = implied[0]
        message = f"`{option}` makes this a {kind} field, but `type` says {declared}"
        reader.error(options["type"], message)
        return None
    if declared is None and not implied:
        reader.error(key, f"field `{key.value}` needs a type: add `type: string` (or another)")
        return None
    return declared or implied[0][1]


def _declared_kind(reader: Reader, node: Node | None) -> Kind | None:
    if node is None:
        return None
    name = node.text
    if name is None:
        reader.error(node, f"`type` must be a type name, not {node.describe()}")
    elif name == Kind.COUNT.value:
        reader.error(node, "a counter is written `count: resource.field`, e.g. `count: likes.post`")
    elif name not in _TYPES:
        reader.error(node, f"unknown type `{name}`{did_you_mean(name, _TYPES)}")
    else:
        return Kind(name)
    return None


def _drop_misfits(reader: Reader, kind: Kind, options: dict[str, Node]) -> None:
    """Report and remove the options that do not apply to `kind`."""
    for key in list(options):
        kinds = _OPTION_KINDS.get(key)
        if kind is Kind.COUNT and key not in _COUNTER_KEYS:
            message = (
                f"`{key}` does not apply to a counter: the engine keeps it, clients never set it"
            )
        elif kinds is not None and kind not in kinds:
            names = ", ".join(sorted(k.value for k in kinds))
            article = "an" if kind in _VOWEL_KINDS else "a"
            message = f"`{key}` does not apply to {article} {kind} field (only to {names})"
        else:
            continue
        reader.error(options.pop(key), message)


def _bound(reader: Reader, kind: Kind, options: dict[str, Node], key: str) -> int | float | None:
    if kind is Kind.INT:
        return reader.whole(options, key, low=-_INT_RANGE, high=_INT_RANGE - 1)
    return reader.number(options, key)


def _pattern(reader: Reader, options: dict[str, Node]) -> str | None:
    pattern = reader.string(options, "pattern", limit=1000)
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as error:
        where = f" (at character {error.pos + 1})" if error.pos is not None else ""
        reader.error(
            options["pattern"], f"`pattern` is not a valid regular expression: {error.msg}{where}"
        )
        return None
    if slow_pattern(pattern):
        reader.error(options["pattern"], _SLOW_PATTERN)
        return None
    return pattern


_SLOW_PATTERN = (
    "this pattern can take exponential time on some inputs (a repeated group that repeats "
    "inside); repeat the group or its contents, not both, e.g. `^[a-z]+$` for `^([a-z]+)+$`"
)


def _choices(reader: Reader, kind: Kind, key: Node, options: dict[str, Node]) -> tuple[str, ...]:
    if "enum" in options and "values" in options:
        reader.error(options["values"], "give the enum values once: in `enum` or in `values`")
    node = options.get("enum") or options.get("values")
    if kind is Kind.ENUM and node is None:
        reader.error(key, f"enum field `{key.value}` needs its values: write `enum: [a, b]`")
    if node is None:
        return ()
    if not node.is_list or not node.items:
        reader.error(node, "the enum values must be a non-empty list of strings")
        return ()
    if len(node.items) > _MAX_CHOICES:
        reader.error(node, f"an enum has at most {_MAX_CHOICES} values")
    return _distinct_choices(reader, node.items[:_MAX_CHOICES])


def _distinct_choices(reader: Reader, items: tuple[Node, ...]) -> tuple[str, ...]:
    choices: list[str] = []
    for item in items:
        text = item.text
        if not text or len(text) > 200:
            reader.error(
                item,
                f"an enum value must be a string of 1 to 200 characters, not {item.describe()}",
            )
        elif text in choices:
            reader.error(item, f"`{text}` is listed twice in the enum values")
        else:
            choices.append(text)
    return tuple(choices)


def _reference(reader: Reader, kind: Kind, key: Node, options: dict[str, Node]) -> str | None:
    if kind is Kind.REF and "ref" not in options:
        reader.error(key, f"ref field `{key.value}` needs its target: write `ref: <resource>`")
    return reader.string(options, "ref", limit=63)


def _on_delete(reader: Reader, options: dict[str, Node]) -> OnDelete:
    text = reader.string(options, "on_delete")
    choices = [choice.value for choice in OnDelete]
    if text is None or text in choices:
        return OnDelete(text or OnDelete.RESTRICT)
    message = f"`on_delete` must be restrict, cascade or set_null, not `{text}`"
    reader.error(options["on_delete"], message + did_you_mean(text, choices))
    return OnDelete.RESTRICT


def _count(reader: Reader, options: dict[str, Node]) -> CountSource | None:
    text = reader.string(options, "count")
    if text is None:
        return None
    match = _COUNT_SOURCE.fullmatch(text)
    if match is None:
        reader.error(
            options["count"], "`count` is written `resource.field`, e.g. `count: likes.post`"
        )
        return None
    return CountSource(match[1], match[2], hidden=bool(reader.flag(options, "count_hidden")))


def _digits(reader: Reader, options: dict[str, Node]) -> tuple[int, int]:
    """`precision` and `scale` of a decimal (18 and 2 unless given)."""
    precision = reader.whole(options, "precision", low=1, high=1000) or 18
    scale = reader.whole(options, "scale", high=1000)
    if scale is None:
        return precision, min(2, precision)
    if scale > precision:
        message = f"`scale` ({scale}) cannot be larger than `precision` ({precision})"
        reader.error(options["scale"], message)
        return precision, precision
    return precision, scale


def _check_combinations(reader: Reader, field: Field, options: dict[str, Node]) -> None:
    """Options that are each fine but contradict one another."""
    if field.readonly and field.writeonly:
        reader.error(options["writeonly"], "a field cannot be both readonly and writeonly")
    if field.readonly and field.required and "default" not in options:
        message = "a readonly field that is required needs a default: clients can never set it"
        reader.error(options["required"], message)
    if field.unique and field.kind is Kind.JSON:
        reader.error(options["unique"], "a json field cannot be unique")
    if field.unique and field.encrypted:
        message = "an encrypted field cannot be unique: its stored values never repeat"
        reader.error(options["unique"], message)
    if field.on_delete is OnDelete.SET_NULL and field.required:
        reader.error(
            options["on_delete"], "`on_delete: set_null` needs a field that is not required"
        )
    _check_order(reader, options, field.minimum, field.maximum, ("min", "max"))
    _check_order(reader, options, field.min_length, field.max_length, ("min_length", "max_length"))


def _check_order(
    reader: Reader,
    options: dict[str, Node],
    low: float | None,
    high: float | None,
    keys: tuple[str, str],
) -> None:
    if low is not None and high is not None and low > high:
        reader.error(options[keys[0]], f"`{keys[0]}` ({low}) is larger than `{keys[1]}` ({high})")


def _default(reader: Reader, field: Field, node: Node | None) -> Default | None:
    """The field's default: `now`, or a literal checked against the type and constraints."""
    if node is None:
        return None
    plain = node.text if node.style == "" else None
    if plain == "now":
        if field.kind in (Kind.DATE, Kind.DATETIME):
            return Default(now=True)
        reader.error(node, "`now` is a default only for date and datetime fields")
        return None
    if plain is not None and _CALLER.fullmatch(plain):
        if plain != "auth.id":
            reader.error(node, f"`{plain}` cannot be a default: only `auth.id` (the caller)")
            return None
        if field.kind not in (Kind.REF, Kind.UUID) or field.ref not in (None, ACCOUNTS):
            reader.error(node, "`auth.id` is a default of a `ref: accounts` (or uuid) field")
            return None
        return caller_default()
    try:
        value = literal_value(field, node)
        _check_value(field, value)
    except ValueError as error:
        reader.error(node, f"the default {error}")
        return None
    return Default(value=value)


def _check_value(field: Field, value: object) -> None:
    """Raise ValueError when a literal breaks the field's constraints."""
    if field.choices and value not in field.choices:
        raise ValueError(f"`{value}` is not one of the values {', '.join(field.choices)}")
    if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
        if field.minimum is not None and value < field.minimum:
            raise ValueError(f"{value} is less than `min` ({field.minimum})")
        if field.maximum is not None and value > field.maximum:
            raise ValueError(f"{value} is more than `max` ({field.maximum})")
    if isinstance(value, str) and field.kind in _LENGTH_KINDS:
        _check_text(field, value)


def _check_text(field: Field, value: str) -> None:
    if field.min_length is not None and len(value) < field.min_length:
        raise ValueError(f"is shorter than `min_length` ({field.min_length})")
    if field.max_length is not None and len(value) > field.max_length:
        raise ValueError(f"is longer than `max_length` ({field.max_length})")
    if field.pattern is not None and not compile_pattern(field.pattern).search(value):
        raise ValueError(f"`{value}` does not match `pattern`")


def _with_default_cache(
    resources: Mapping[str, Resource], default: CachePolicy | None
) -> dict[str, Resource]:
    """Each resource with its cache policy: its own, else the design's; `false` is none."""
    found = {}
    for name, resource in resources.items():
        policy = resource.cache or default
        if policy is not None and policy.ttl <= 0:
            policy = None
        found[name] = resource if policy is resource.cache else replace(resource, cache=policy)
    return found
