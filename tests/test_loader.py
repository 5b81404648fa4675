"""charpente.loader: YAML text and files to a Design, refusing what a design may not use."""

from __future__ import annotations

import pytest

from charpente.errors import DesignError
from charpente.loader import MAX_DEPTH, MAX_DESIGN_BYTES, load_design, load_design_text

MINIMAL = "charpente: 1\nname: t\nresources:\n  posts:\n    fields: {title: string}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(DesignError) as info:
        load_design_text(text, "d.yaml")
    return [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems]


def test_a_design_file_is_loaded_and_named_in_the_design(tmp_path):
    path = tmp_path / "social.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    design = load_design(path)
    assert (design.name, design.source) == ("t", str(path))
    assert design.resources["posts"].fields[0].pos.file == str(path)


def test_a_yaml_syntax_error_is_reported_at_the_yaml_mark():
    assert problems("charpente: 1\nname: [t\nresources: {}\n") == [
        "3:10: YAML syntax error: expected ',' or ']', but got ':' (while parsing a flow sequence)"
    ]


def test_a_tab_indentation_error_is_a_syntax_error():
    (problem,) = problems("charpente: 1\n\tname: t\n")
    assert problem.startswith("2:1: YAML syntax error: found character '\\t'")


def test_aliases_are_refused():
    text = MINIMAL + "  likes:\n    fields: *f\n"
    assert problems(text) == [
        "7:13: anchors and aliases (&name, *name) are not supported: write the value out"
    ]


def test_anchors_are_refused():
    text = "charpente: 1\nname: t\nresources:\n  posts:\n    fields: &f {title: string}\n"
    assert problems(text) == [
        "5:13: anchors and aliases (&name, *name) are not supported: write the value out"
    ]


def test_a_billion_laughs_document_is_refused_before_it_grows():
    text = 'a: &a ["x", "x"]\nb: &b [*a, *a]\nc: &c [*b, *b]\n'
    assert problems(text) == [
        "1:4: anchors and aliases (&name, *name) are not supported: write the value out"
    ]


def test_tags_other_than_the_plain_yaml_ones_are_refused():
    assert problems(MINIMAL + "hooks: !!python/name:os.system x\n") == [
        "6:8: the YAML tag tag:yaml.org,2002:python/name:os.system is not supported in a design"
    ]


def test_a_tagged_mapping_is_refused():
    assert problems(MINIMAL + "hooks: !custom {a: 1}\n") == [
        "6:8: the YAML tag !custom is not supported in a design"
    ]


def test_deep_nesting_is_refused():
    text = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    (problem,) = problems(text)
    assert problem.endswith(f"the design is nested more than {MAX_DEPTH} levels deep")


def test_an_empty_design_is_an_error():
    assert problems("# nothing\n") == ["1:1: the design is empty"]


def test_several_documents_are_a_syntax_error():
    (problem,) = problems(MINIMAL + "---\n" + MINIMAL)
    assert problem == (
        "6:1: YAML syntax error: "
        "expected a single document in the stream, but found another document"
    )


def test_a_non_scalar_key_is_an_error():
    assert problems(MINIMAL + "? [a, b]\n: 1\n") == ["6:3: a key must be a plain name"]


def test_keys_are_text_even_when_yaml_would_read_a_boolean():
    text = "charpente: 1\nname: t\nresources:\n  posts:\n    fields: {on: string, no: int}\n"
    assert [f.name for f in load_design_text(text).resources["posts"].fields] == ["on", "no"]


def test_a_design_over_1_mib_is_refused():
    text = MINIMAL + "#" * MAX_DESIGN_BYTES
    assert problems(text) == ["1:1: the design is larger than 1024 KiB"]


def test_a_file_over_1_mib_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(MINIMAL + "#" * MAX_DESIGN_BYTES, encoding="utf-8")
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:1:1: error: the design is larger than 1024 KiB"
    ]


def test_a_missing_file_is_one_problem(tmp_path):
    path = tmp_path / "missing.yaml"
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}: error: cannot read the design file: No such file or directory"
    ]


def test_a_file_that_is_not_utf8_is_one_problem(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.encode() + b"# caf\xe9\n")
    with pytest.raises(DesignError) as info:
        load_design(path)
    (problem,) = info.value.problems
    assert problem.message == f"the design file is not UTF-8 text (byte {len(MINIMAL) + 6})"


def test_a_control_character_is_reported_where_it_is():
    assert problems(MINIMAL + "name2: a\x07b\n") == [
        "6:9: the design contains a character YAML does not allow (U+0007)"
    ]


def test_the_error_text_is_one_line_per_error_and_leaves_warnings_out():
    text = MINIMAL.replace("{title: string}", "{title: {type: string, unique: true}, Bad: int}")
    text += "    indexes: [[title]]\n    flags: {}\n"
    with pytest.raises(DesignError) as info:
        load_design_text(text, "d.yaml")
    assert str(info.value).splitlines() == [
        "d.yaml:5:51: error: `Bad` is not a valid field name: "
        "use lowercase letters, digits and `_`, starting with a letter (at most 63 characters)",
        "d.yaml:7:5: error: unknown key `flags` in resource `posts`",
    ]
    assert [p.severity for p in info.value.problems] == ["error", "warning", "error"]
