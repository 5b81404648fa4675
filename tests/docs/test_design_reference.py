"""docs/design-reference.md: examples of every kind (test_yaml_examples loads each of them)."""

from __future__ import annotations

from examples import DOCS, yaml_blocks

PAGE = DOCS / "design-reference.md"


def test_the_reference_has_examples_of_every_kind() -> None:
    assert len(yaml_blocks(PAGE, "")) >= 12
    assert len(yaml_blocks(PAGE, "invalid")) >= 6
    assert len(yaml_blocks(PAGE, "warning")) >= 1
