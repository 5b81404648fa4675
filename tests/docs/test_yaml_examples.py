"""Every YAML example of the documentation loads as the page says: valid, invalid or warned."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from examples import DOCS, ROOT, Block, commented_line, yaml_blocks

from charpente.errors import DesignError
from charpente.loader import load_design_text

PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def examples(tag: str) -> list[tuple[Path, Block]]:
    return [(page, block) for page in PAGES for block in yaml_blocks(page, tag)]


def name(example: tuple[Path, Block]) -> str:
    page, block = example
    return f"{page.name}:{block.line}"


@pytest.mark.parametrize("example", examples(""), ids=name)
def test_every_yaml_example_is_a_valid_design(example: tuple[Path, Block]) -> None:
    design = load_design_text(example[1].text, "example.yaml")
    assert design.resources
    assert design.warnings == ()


@pytest.mark.parametrize("example", examples("invalid"), ids=name)
def test_every_invalid_example_fails_on_its_commented_line_with_its_commented_error(
    example: tuple[Path, Block],
) -> None:
    line, expected = commented_line(example[1].text, "error")
    with pytest.raises(DesignError) as info:
        load_design_text(example[1].text, "example.yaml")
    (problem,) = [p for p in info.value.problems if p.severity == "error"]
    assert problem.line == line
    assert expected in problem.message


@pytest.mark.parametrize("example", examples("warning"), ids=name)
def test_every_warned_example_loads_with_its_commented_warning_on_its_line(
    example: tuple[Path, Block],
) -> None:
    line, expected = commented_line(example[1].text, "warning")
    design = load_design_text(example[1].text, "example.yaml")
    (warning,) = design.warnings
    assert warning.startswith(f"example.yaml:{line}:")
    assert expected in warning


@pytest.mark.parametrize("example", examples("fragment"), ids=name)
def test_every_fragment_is_well_formed_yaml(example: tuple[Path, Block]) -> None:
    assert isinstance(yaml.safe_load(example[1].text), dict)


def test_the_guides_have_examples_of_every_kind() -> None:
    assert len(examples("")) >= 20
    assert len(examples("invalid")) >= 6
    assert len(examples("warning")) >= 2
