"""docs/design-reference.md: every complete YAML example loads; every `invalid` one fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from charpente.errors import DesignError
from charpente.loader import load_design_text

PAGE = Path(__file__).resolve().parents[2] / "docs" / "design-reference.md"
BLOCK = re.compile(r"^```yaml( invalid)?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(invalid: bool) -> list[str]:
    found = [(bool(flag), text) for flag, text in BLOCK.findall(PAGE.read_text(encoding="utf-8"))]
    return [text for is_invalid, text in found if is_invalid == invalid]


def test_the_reference_has_examples_of_both_kinds():
    assert len(blocks(invalid=False)) >= 8
    assert len(blocks(invalid=True)) >= 4


@pytest.mark.parametrize("text", blocks(invalid=False))
def test_every_yaml_example_is_a_valid_design(text):
    design = load_design_text(text, "example.yaml")
    assert design.resources
    assert design.warnings == ()


@pytest.mark.parametrize("text", blocks(invalid=True))
def test_every_invalid_example_fails_on_its_commented_line_with_its_commented_error(text):
    lines = text.splitlines()
    (line,) = [n for n, line in enumerate(lines, 1) if "# error: " in line]
    expected = lines[line - 1].split("# error: ")[1]
    with pytest.raises(DesignError) as info:
        load_design_text(text, "example.yaml")
    (problem,) = [p for p in info.value.problems if p.severity == "error"]
    assert problem.line == line
    assert expected in problem.message
