"""design.load: the shape of a design, every rule reported with its line and column."""

from __future__ import annotations

import datetime
import decimal

import pytest

from charpente.design.load import design_from_tree
from charpente.design.model import CountSource, Default, Kind, OnDelete, Position
from charpente.design.source import Node
from charpente.errors import DesignError
from charpente.loader import load_design_text

# Fields written after HEAD start on line 6, column 7.
HEAD = "charpente: 1\nname: t\nresources:\n  posts:\n    fields:\n"


def errors(text: str) -> list[str]:
    """Every error of a design, as `line:column: message`."""
    with pytest.raises(DesignError) as info:
        load_design_text(text, "d.yaml")
    return [
        f"{p.line}:{p.column}: {p.message}" for p in info.value.problems if p.severity == "error"
    ]


def field_errors(*lines: str) -> list[str]:
    return errors(HEAD + "".join(f"      {line}\n" for line in lines))


def field(line: str):
    design = load_design_text(HEAD + f"      {line}\n")
    return design.resources["posts"].fields[0]


def at(pos: tuple[int, int], message: str) -> list[str]:
    return [f"{pos[0]}:{pos[1]}: {message}"]


def value_column(line: str, key: str) -> int:
    """The column of the value of `key` in a field line written after HEAD."""
    return 7 + line.index(f"{key}: ") + len(key) + 2


# -- the tree alone ------------------------------------------------------------------


def test_a_tree_built_by_hand_becomes_a_design_without_yaml():
    def scalar(value, line, column):
        return Node.scalar(value, Position("t", line, column))

    fields = Node.mapping([(scalar("title", 5, 7), scalar("string", 5, 14))], Position("t", 5, 7))
    posts = Node.mapping([(scalar("fields", 4, 5), fields)], Position("t", 4, 5))
    root = Node.mapping(
        [
            (scalar("charpente", 1, 1), scalar(1, 1, 12)),
            (scalar("name", 2, 1), scalar("t", 2, 7)),
            (
                scalar("resources", 3, 1),
                Node.mapping([(scalar("posts", 4, 3), posts)], Position("t", 4, 3)),
            ),
        ],
        Position("t", 1, 1),
    )
    design = design_from_tree(root, "t")
    title = design.resources["posts"].fields[0]
    assert (title.name, title.kind, title.pos) == ("title", Kind.STRING, Position("t", 5, 7))


# -- the document --------------------------------------------------------------------


def test_a_minimal_design_loads_with_its_defaults():
    design = load_design_text(HEAD + "      title: string\n", "d.yaml")
    assert (design.name, design.api_version, design.format_version, design.hooks) == (
        "t",
        1,
        1,
        None,
    )
    assert design.source == "d.yaml"
    assert design.warnings == ()


def test_the_required_top_level_keys_are_named_when_missing():
    assert errors("name: t\n") == [
        "1:1: the design needs `charpente`",
        "1:1: the design needs `resources`",
    ]


def test_a_design_that_is_not_a_mapping_is_an_error():
    assert errors("- a\n- b\n") == ["1:1: the design must be a mapping, not a list"]


def test_only_format_version_1_exists():
    assert errors("charpente: 2\nname: t\nresources: {p: {fields: {a: int}}}\n") == at(
        (1, 12), "this version of charpente reads design format 1; this file says `charpente: 2`"
    )


def test_an_unknown_top_level_key_gets_a_suggestion():
    assert errors(HEAD + "      a: int\nhoks: h.py\n") == at(
        (7, 1), "unknown key `hoks` in the design (did you mean `hooks`?)"
    )


def test_flags_is_a_top_level_section_not_a_resource_key():
    assert errors(HEAD + "      a: int\n    flags: {}\n") == at(
        (7, 5), "unknown key `flags` in resource `posts`"
    )


def test_a_duplicate_key_is_reported_where_it_repeats():
    assert errors("charpente: 1\nname: t\nname: u\nresources: {p: {fields: {a: int}}}\n") == at(
        (3, 1), "`name` is given twice (first on line 2)"
    )


def test_a_duplicate_option_inside_a_flow_mapping_is_reported():
    assert field_errors("a: {type: int, type: text}") == at(
        (6, 22), "`type` is given twice (first on line 6)"
    )


@pytest.mark.parametrize("name", ["Social", "9lives", "a" * 64, "so cial"])
def test_the_design_name_follows_its_pattern(name):
    problems = errors(f"charpente: 1\nname: '{name}'\nresources: {{p: {{fields: {{a: int}}}}}}\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"2:7: `{name}` is not a valid design name")


def test_a_design_name_may_use_dashes():
    text = "charpente: 1\nname: my-app_2\nresources: {p: {fields: {a: int}}}\n"
    assert load_design_text(text).name == "my-app_2"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "`api_version` must be at least 1"),
        ("'1'", "`api_version` must be a whole number, not a string"),
        ("true", "`api_version` must be a whole number, not true/false"),
    ],
)
def test_api_version_is_a_whole_number_from_1(value, message):
    assert errors(
        f"charpente: 1\nname: t\napi_version: {value}\nresources: {{p: {{fields: {{a: int}}}}}}\n"
    ) == at((3, 14), message)


def test_api_version_and_hooks_are_kept():
    text = "charpente: 1\nname: t\napi_version: 3\nhooks: hooks.py\n"
    text += "resources: {p: {fields: {a: int}}}\n"
    design = load_design_text(text)
    assert (design.api_version, design.hooks) == (3, "hooks.py")


def test_hooks_may_be_a_file_in_a_subfolder():
    text = "charpente: 1\nname: t\nhooks: app/hooks.py\nresources: {p: {fields: {a: int}}}\n"
    assert load_design_text(text).hooks == "app/hooks.py"


ESCAPING_HOOKS = "`hooks` must be a path inside the design's folder (no `..`, not absolute)"


def test_hooks_may_be_a_dotted_module_name():
    text = "charpente: 1\nname: t\nhooks: app.hooks\nresources: {p: {fields: {a: int}}}\n"
    assert load_design_text(text).hooks == "app.hooks"


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ("/etc/hooks.py", ESCAPING_HOOKS),
        ("../../elsewhere.py", ESCAPING_HOOKS),
        ("app/../../elsewhere.py", ESCAPING_HOOKS),
        ("'..\\elsewhere.py'", ESCAPING_HOOKS),
        ("C:hooks.py", ESCAPING_HOOKS),
        ("my hooks", "`hooks` must be a .py file next to the design or a dotted module name"),
    ],
)
def test_hooks_must_be_a_file_inside_the_design_folder_or_a_module(hooks, message):
    text = f"charpente: 1\nname: t\nhooks: {hooks}\nresources: {{p: {{fields: {{a: int}}}}}}\n"
    assert errors(text) == at((3, 8), message)


# -- resources -----------------------------------------------------------------------


def test_resources_must_be_a_mapping():
    assert errors("charpente: 1\nname: t\nresources: [posts]\n") == at(
        (3, 12), "`resources` must be a mapping, not a list"
    )


def test_a_design_needs_at_least_one_resource():
    assert errors("charpente: 1\nname: t\nresources: {}\n") == at(
        (3, 12), "`resources` needs at least one resource"
    )


@pytest.mark.parametrize(
    "name", ["auth", "graphql", "docs", "healthz", "readyz", "metrics", "openapi", "charpente_x"]
)
def test_reserved_resource_names_are_refused(name):
    text = f"charpente: 1\nname: t\nresources:\n  {name}:\n    fields: {{a: int}}\n"
    assert errors(text) == at(
        (4, 3), f"`{name}` is a reserved name: charpente uses it, choose another"
    )


def test_a_resource_name_follows_its_pattern():
    text = "charpente: 1\nname: t\nresources:\n  my-posts:\n    fields: {a: int}\n"
    assert errors(text)[0].startswith("4:3: `my-posts` is not a valid resource name")


def test_a_resource_declared_twice_is_an_error():
    text = HEAD + "      a: int\n  posts:\n    fields: {b: int}\n"
    assert errors(text) == at((7, 3), "`posts` is given twice (first on line 4)")


def test_a_resource_needs_fields():
    text = "charpente: 1\nname: t\nresources:\n  posts:\n    require_if_match: true\n"
    assert errors(text) == at((4, 3), "resource `posts` needs `fields`")


def test_fields_needs_at_least_one_field():
    assert errors(HEAD.replace("fields:\n", "fields: {}\n")) == at(
        (5, 13), "`fields` needs at least one field"
    )


def test_an_unknown_resource_key_gets_a_suggestion():
    assert errors(HEAD + "      a: int\n    indexs: [[a]]\n") == at(
        (7, 5), "unknown key `indexs` in resource `posts` (did you mean `indexes`?)"
    )


def test_a_list_where_a_mapping_is_expected_is_an_error():
    text = "charpente: 1\nname: t\nresources:\n  posts: [title]\n"
    assert errors(text) == at((4, 10), "resource `posts` must be a mapping, not a list")


def test_require_if_match_and_description_are_read():
    text = HEAD + "      a: int\n    require_if_match: true\n    description: Things people post.\n"
    posts = load_design_text(text).resources["posts"]
    assert (posts.require_if_match, posts.description) == (True, "Things people post.")


def test_a_resource_description_is_at_most_500_characters():
    text = HEAD + "      a: int\n    description: " + "x" * 501 + "\n"
    assert errors(text) == at((7, 18), "`description` is longer than 500 characters")


def test_a_design_has_at_most_200_resources():
    body = "".join(f"  r{i}:\n    fields: {{a: int}}\n" for i in range(201))
    assert errors("charpente: 1\nname: t\nresources:\n" + body) == at(
        (4, 3), "a design has at most 200 resources, this one has 201"
    )


def test_a_resource_has_at_most_200_fields():
    assert field_errors(*(f"f{i}: int" for i in range(201))) == at(
        (6, 7), "a resource has at most 200 fields, this one has 201"
    )


# -- field names and types -----------------------------------------------------------


@pytest.mark.parametrize("name", ["id", "created_at", "updated_at", "version"])
def test_system_field_names_are_refused(name):
    assert field_errors(f"{name}: string") == at(
        (6, 7), f"`{name}` is a system field: every record has it already, choose another name"
    )


def test_a_field_name_follows_its_pattern():
    assert field_errors("Title: string")[0].startswith("6:7: `Title` is not a valid field name")


def test_a_field_declared_twice_is_an_error():
    assert field_errors("title: string", "title: text") == at(
        (7, 7), "`title` is given twice (first on line 6)"
    )


def test_the_shorthand_is_the_type_alone():
    assert field("title: string").kind is Kind.STRING


@pytest.mark.parametrize(
    "kind", [k.value for k in Kind if k not in (Kind.COUNT, Kind.REF, Kind.ENUM)]
)
def test_every_plain_type_is_accepted(kind):
    assert field(f"a: {kind}").kind is Kind(kind)


def test_an_unknown_type_gets_a_suggestion():
    assert field_errors("title: {type: strng}") == at(
        (6, 21), "unknown type `strng` (did you mean `string`?)"
    )


def test_an_unknown_shorthand_type_gets_a_suggestion():
    assert field_errors("title: txt") == at((6, 14), "unknown type `txt` (did you mean `text`?)")


def test_a_field_without_a_type_is_an_error():
    assert field_errors("title: {required: true}") == at(
        (6, 7), "field `title` needs a type: add `type: string` (or another)"
    )


def test_a_field_given_as_a_list_is_an_error():
    assert field_errors("title: [string]") == at(
        (6, 7), "field `title` needs a type: write `title: string` or a mapping of options"
    )


def test_an_unknown_field_option_gets_a_suggestion():
    assert field_errors("title: {type: string, requird: true}") == at(
        (6, 29), "unknown key `requird` in field `title` (did you mean `required`?)"
    )


def test_a_flag_must_be_true_or_false():
    assert field_errors("title: {type: string, required: maybe}") == at(
        (6, 39), "`required` must be true or false, not a string"
    )


def test_type_count_is_written_with_count():
    assert field_errors("n: {type: count}") == at(
        (6, 17), "a counter is written `count: resource.field`, e.g. `count: likes.post`"
    )


def test_ref_implies_the_ref_type_and_contradicting_it_is_an_error():
    assert field_errors("a: {type: string, ref: posts}") == at(
        (6, 17), "`ref` makes this a ref field, but `type` says string"
    )


def test_ref_and_enum_together_are_an_error():
    assert field_errors("a: {ref: posts, enum: [x]}") == at(
        (6, 29), "`ref` and `enum` cannot be used together"
    )


def test_a_ref_field_needs_its_target():
    assert field_errors("a: ref") == at(
        (6, 7), "ref field `a` needs its target: write `ref: <resource>`"
    )


def test_a_ref_field_is_read_with_its_options():
    a = field("a: {ref: posts, on_delete: set_null, immutable: true}")
    assert (a.kind, a.ref, a.on_delete, a.immutable) == (Kind.REF, "posts", OnDelete.SET_NULL, True)


def test_on_delete_defaults_to_restrict():
    assert field("a: {ref: posts}").on_delete is OnDelete.RESTRICT


def test_an_unknown_on_delete_gets_a_suggestion():
    assert field_errors("a: {ref: posts, on_delete: cascde}") == at(
        (6, 34),
        "`on_delete` must be restrict, cascade or set_null, not `cascde` (did you mean `cascade`?)",
    )


def test_enum_implies_the_enum_type():
    e = field("v: {enum: [public, private]}")
    assert (e.kind, e.choices) == (Kind.ENUM, ("public", "private"))


def test_type_enum_takes_values():
    assert field("v: {type: enum, values: [a, b]}").choices == ("a", "b")


def test_a_counter_is_read():
    design = load_design_text(HEAD + "      n: {count: posts.a}\n      a: {ref: posts}\n")
    n = design.resources["posts"].fields[0]
    assert (n.kind, n.count, n.is_client_writable) == (Kind.COUNT, CountSource("posts", "a"), False)


def test_a_malformed_count_is_an_error():
    assert field_errors("n: {count: likes}") == at(
        (6, 18), "`count` is written `resource.field`, e.g. `count: likes.post`"
    )


def test_a_field_description_is_kept():
    assert field("a: {type: int, description: How many.}").description == "How many."


# -- options that do not fit ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        (
            "a: {type: string, min: 1}",
            "min",
            "`min` does not apply to a string field (only to decimal, float, int)",
        ),
        (
            "a: {type: int, max_length: 3}",
            "max_length",
            "`max_length` does not apply to an int field (only to email, string, text, url)",
        ),
        (
            "a: {type: bool, pattern: x}",
            "pattern",
            "`pattern` does not apply to a bool field (only to email, string, text, url)",
        ),
        (
            "a: {type: float, precision: 3}",
            "precision",
            "`precision` does not apply to a float field (only to decimal)",
        ),
        (
            "a: {type: string, values: [x]}",
            "values",
            "`values` does not apply to a string field (only to enum)",
        ),
        (
            "a: {type: string, on_delete: cascade}",
            "on_delete",
            "`on_delete` does not apply to a string field (only to ref)",
        ),
        (
            "a: {count: posts.b, required: true}",
            "required",
            "`required` does not apply to a counter: the engine keeps it, clients never set it",
        ),
    ],
)
def test_options_that_do_not_fit_the_type_are_errors(line, key, message):
    assert field_errors(line, "b: {ref: posts}") == at((6, value_column(line, key)), message)


def test_min_above_max_is_an_error():
    assert field_errors("n: {type: int, min: 5, max: 1}") == at(
        (6, 27), "`min` (5) is larger than `max` (1)"
    )


def test_min_length_above_max_length_is_an_error():
    assert field_errors("s: {type: string, min_length: 5, max_length: 1}") == at(
        (6, 37), "`min_length` (5) is larger than `max_length` (1)"
    )


def test_a_negative_length_is_an_error():
    assert field_errors("s: {type: string, max_length: -1}") == at(
        (6, 37), "`max_length` cannot be negative"
    )


def test_an_int_bound_must_be_whole():
    assert field_errors("n: {type: int, min: 0.5}") == at(
        (6, 27), "`min` must be a whole number, not a number"
    )


def test_a_float_bound_must_be_finite():
    assert field_errors("n: {type: float, max: .inf}") == at(
        (6, 29), "`max` must be a number, not a number"
    )


def test_a_pattern_that_does_not_compile_is_an_error():
    assert field_errors('s: {type: string, pattern: "a(b"}') == at(
        (6, 34),
        "`pattern` is not a valid regular expression: "
        "missing ), unterminated subpattern (at character 2)",
    )


@pytest.mark.parametrize(
    "pattern", [r"^([a-z]+)+$", r"([a-z]+)*", r"^(\\w+\\s?)+$", r"^(a|aa)+$", r"(x(a+b?)*)+"]
)
def test_a_pattern_that_can_take_exponential_time_is_an_error(pattern):
    assert field_errors(f's: {{type: string, pattern: "{pattern}"}}') == at(
        (6, 34),
        "this pattern can take exponential time on some inputs (a repeated group that repeats "
        "inside); repeat the group or its contents, not both, e.g. `^[a-z]+$` for `^([a-z]+)+$`",
    )


@pytest.mark.parametrize(
    "pattern",
    [r"^[a-z0-9_]{3,30}$", r"^\\d{4}-\\d{2}$", r"^(https?)://", r"^([a-z]{2})(-[A-Z]{2})?$"],
)
def test_ordinary_patterns_are_accepted(pattern):
    assert field(f's: {{type: string, pattern: "{pattern}"}}').pattern == pattern.replace(
        "\\\\", "\\"
    )


def test_a_default_with_a_trailing_newline_does_not_match_a_pattern_ending_in_dollar():
    assert field_errors('a: {type: string, pattern: "^[a-z]+$", default: "ab\\n"}') == at(
        (6, 55), "the default `ab\n` does not match `pattern`"
    )


def test_readonly_and_writeonly_together_are_an_error():
    assert field_errors("s: {type: string, readonly: true, writeonly: true}") == at(
        (6, 52), "a field cannot be both readonly and writeonly"
    )


def test_a_required_readonly_field_needs_a_default():
    assert field_errors("s: {type: string, readonly: true, required: true}") == at(
        (6, 51), "a readonly field that is required needs a default: clients can never set it"
    )


def test_a_required_readonly_field_with_a_default_is_fine():
    s = field("s: {type: string, readonly: true, required: true, default: x}")
    assert (s.readonly, s.required, s.default) == (True, True, Default(value="x"))


def test_a_json_field_cannot_be_unique():
    assert field_errors("j: {type: json, unique: true}") == at(
        (6, 31), "a json field cannot be unique"
    )


def test_set_null_on_a_required_ref_is_an_error():
    assert field_errors("a: {ref: posts, required: true, on_delete: set_null}") == at(
        (6, 50), "`on_delete: set_null` needs a field that is not required"
    )


def test_an_enum_needs_values():
    assert field_errors("e: {type: enum}") == at(
        (6, 7), "enum field `e` needs its values: write `enum: [a, b]`"
    )


def test_an_enum_with_an_empty_list_is_an_error():
    assert field_errors("e: {enum: []}") == at(
        (6, 17), "the enum values must be a non-empty list of strings"
    )


def test_a_duplicate_enum_value_is_an_error():
    assert field_errors("e: {enum: [a, b, a]}") == at(
        (6, 24), "`a` is listed twice in the enum values"
    )


def test_enum_values_are_strings():
    assert field_errors("e: {enum: [a, 2]}") == at(
        (6, 21), "an enum value must be a string of 1 to 200 characters, not a number"
    )


def test_enum_and_values_together_are_an_error():
    assert field_errors("e: {enum: [a], values: [a]}") == at(
        (6, 30), "give the enum values once: in `enum` or in `values`"
    )


def test_decimal_digits_default_to_18_and_2():
    d = field("d: decimal")
    assert (d.precision, d.scale) == (18, 2)


def test_a_scale_above_the_precision_is_an_error():
    assert field_errors("d: {type: decimal, precision: 4, scale: 5}") == at(
        (6, 47), "`scale` (5) cannot be larger than `precision` (4)"
    )


# -- defaults ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("a: {type: string, default: hello}", "hello"),
        ("a: {type: int, default: 3}", 3),
        ("a: {type: float, default: 2}", 2.0),
        ("a: {type: decimal, default: 9.99}", decimal.Decimal("9.99")),
        ("a: {type: bool, default: false}", False),
        ("a: {type: date, default: 2026-01-31}", datetime.date(2026, 1, 31)),
        (
            "a: {type: datetime, default: 2026-01-31T10:00:00+02:00}",
            datetime.datetime(2026, 1, 31, 8, tzinfo=datetime.UTC),
        ),
        ("a: {enum: [x, y], default: y}", "y"),
        ("a: {type: json, default: {k: [1, 2]}}", {"k": [1, 2]}),
        (
            "a: {type: uuid, default: 0190A0B0-0000-7000-8000-000000000001}",
            "0190a0b0-0000-7000-8000-000000000001",
        ),
        ("a: {type: email, default: a@example.com}", "a@example.com"),
        ("a: {type: url, default: 'https://example.com/x'}", "https://example.com/x"),
        ("a: {type: string, default: 'now'}", "now"),
    ],
)
def test_a_literal_default_becomes_a_value_of_the_field_kind(line, value):
    default = field(line).default
    assert default == Default(value=value)
    assert type(default.value) is type(value)


@pytest.mark.parametrize("kind", ["date", "datetime"])
def test_now_is_a_default_for_dates(kind):
    assert field(f"a: {{type: {kind}, default: now}}").default == Default(now=True)


def test_now_is_not_a_default_for_other_types():
    assert field_errors("a: {type: string, default: now}") == at(
        (6, 34), "`now` is a default only for date and datetime fields"
    )


def test_the_caller_is_a_default_only_of_a_ref_to_accounts():
    assert field_errors("a: {ref: posts, default: auth.id}") == at(
        (6, 32), "`auth.id` is a default of a `ref: accounts` (or uuid) field"
    )


def test_a_ref_to_accounts_defaulting_to_the_caller_is_not_client_writable():
    author = field("a: {ref: accounts, default: auth.id}")
    assert author.default is not None
    assert author.default.expr is not None
    assert not author.is_client_writable


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        ("a: {enum: [x, y], default: z}", 34, "the default `z` is not one of the values x, y"),
        ("a: {type: int, min: 0, default: -1}", 39, "the default -1 is less than `min` (0)"),
        ("a: {type: float, max: 1, default: 1.5}", 41, "the default 1.5 is more than `max` (1)"),
        (
            "a: {type: string, max_length: 3, default: abcd}",
            49,
            "the default is longer than `max_length` (3)",
        ),
        (
            "a: {type: string, min_length: 3, default: ab}",
            49,
            "the default is shorter than `min_length` (3)",
        ),
        (
            'a: {type: string, pattern: "^[a-z]+$", default: A1}',
            55,
            "the default `A1` does not match `pattern`",
        ),
        (
            "a: {type: date, default: 2026-02-30}",
            32,
            "the default `2026-02-30` is not a valid date",
        ),
        (
            "a: {type: date, default: 2026/01/31}",
            32,
            "the default `2026/01/31` is not a date written YYYY-MM-DD",
        ),
        (
            "a: {type: datetime, default: '2026-01-31 10:00'}",
            36,
            "the default `2026-01-31 10:00` is not an RFC 3339 date-time "
            "such as 2026-01-31T09:30:00Z",
        ),
        ("a: {type: uuid, default: nope}", 32, "the default `nope` is not a UUID"),
        ("a: {type: int, default: '3'}", 31, "the default must be a whole number, not a string"),
        ("a: {type: bool, default: 1}", 32, "the default must be true or false, not a number"),
        (
            "a: {type: string, default: 3}",
            34,
            "the default must be a string, not a number (quote it)",
        ),
        ("a: {type: email, default: nobody}", 33, "the default `nobody` is not an email address"),
        (
            "a: {type: url, default: 'ftp://x'}",
            31,
            "the default `ftp://x` is not an http or https URL",
        ),
        (
            "a: {type: int, default: null}",
            31,
            "the default cannot be null: leave `default` out instead",
        ),
        (
            "a: {type: decimal, default: 1.234}",
            35,
            "the default 1.234 does not fit precision 18 and scale 2",
        ),
    ],
)
def test_a_default_is_checked_against_the_type_and_constraints(line, column, message):
    assert field_errors(line) == at((6, column), message)
