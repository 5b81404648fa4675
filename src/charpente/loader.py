"""Reading design files: YAML text becomes a position-carrying tree, then a Design.

The only module that parses YAML. It composes nodes with PyYAML's safe loader (no
arbitrary tags, no object construction), refuses anchors and aliases, and bounds the
size and nesting of the text; design.load does the rest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from charpente.design.load import design_from_tree
from charpente.design.model import Design, Position
from charpente.design.source import Node, Scalar
from charpente.errors import DesignError, Problem

__all__ = ["MAX_DEPTH", "MAX_DESIGN_BYTES", "load_design", "load_design_text"]

MAX_DESIGN_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 32  # nesting of lists and mappings

_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = {_TAG + "seq", _TAG + "map"}
_STRING_TAGS = {_TAG + "str", _TAG + "timestamp"}  # dates stay text; design.load reads them


def load_design_text(text: str, file: str = "<design>") -> Design:
    """Read a design from YAML text; `file` names it in problems.

    Raises DesignError listing every problem (with file, line and column).
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DESIGN_BYTES:
        raise DesignError([Problem(_too_large(), file, 1, 1)])
    return design_from_tree(_compose(text, file), file)


def load_design(path: str | os.PathLike[str]) -> Design:
    """Read the design file at `path`. Raises DesignError (also when it cannot be read)."""
    file = os.fspath(path)
    try:
        with Path(file).open("rb") as stream:
            data = stream.read(MAX_DESIGN_BYTES + 1)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise DesignError([Problem(f"cannot read the design file: {reason}", file)]) from None
    if len(data) > MAX_DESIGN_BYTES:
        raise DesignError([Problem(_too_large(), file, 1, 1)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"the design file is not UTF-8 text (byte {error.start + 1})"
        raise DesignError([Problem(message, file, 1, 1)]) from None
    return load_design_text(text, file)


def _too_large() -> str:
    return f"the design is larger than {MAX_DESIGN_BYTES // 1024} KiB"


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a design may not use (anchors, aliases, deep nesting)."""


class _DesignLoader(yaml.SafeLoader):
    """The safe loader, refusing anchors and aliases and bounding the nesting depth."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            message = "anchors and aliases (&name, *name) are not supported: write the value out"
            raise _Refused(problem=message, problem_mark=event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            message = f"the design is nested more than {MAX_DEPTH} levels deep"
            raise _Refused(problem=message, problem_mark=event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _compose(text: str, file: str) -> Node:
    """The document's tree; raises DesignError on a syntax error or an unsupported value."""
    try:
        loader = _DesignLoader(text)
    except yaml.YAMLError as error:
        raise DesignError([_syntax_problem(error, text, file)]) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise DesignError([Problem("the design is empty", file, 1, 1)])
        problems: list[Problem] = []
        tree = _Converter(text, file, loader, problems).node(root)
    except yaml.YAMLError as error:
        raise DesignError([_syntax_problem(error, text, file)]) from None
    finally:
        loader.dispose()
    if problems:
        raise DesignError(problems)
    return tree


def _syntax_problem(error: yaml.YAMLError, text: str, file: str) -> Problem:
    """A Problem at the position PyYAML gives for `error`."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        detail = _detail(error.problem or "", error.context or "")
        message = detail if isinstance(error, _Refused) else f"YAML syntax error: {detail}"
        return Problem(message, file, mark.line + 1, mark.column + 1)
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        char = error.character
        code = char if isinstance(char, int) else ord(char[:1] or "\0")
        message = f"the design contains a character YAML does not allow (U+{code:04X})"
        return Problem(message, file, line, column)
    return Problem(f"YAML syntax error: {error}", file, 1, 1)


def _detail(problem: str, context: str) -> str:
    """PyYAML's problem and context as one phrase."""
    if not context:
        return problem
    if problem.startswith("but "):
        return f"{context}, {problem}"
    return f"{problem} ({context})"


class _Converter:
    """Turns PyYAML nodes into design.source Nodes, keeping positions and raw text."""

    def __init__(
        self, text: str, file: str, loader: yaml.SafeLoader, problems: list[Problem]
    ) -> None:
        self.text, self.file, self.loader, self.problems = text, file, loader, problems

    def node(self, node: yaml.Node) -> Node:
        pos = self.position(node)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            self.refuse(node.tag, pos)
        if isinstance(node, yaml.SequenceNode):
            return Node.list_of((self.node(item) for item in node.value), pos)
        if isinstance(node, yaml.ScalarNode):
            raw = self.text[node.start_mark.index : node.end_mark.index]
            return Node.scalar(self.scalar(node, pos), pos, node.style or "", raw)
        return Node.mapping(((self.key(k), self.node(v)) for k, v in node.value), pos)

    def key(self, node: yaml.Node) -> Node:
        pos = self.position(node)
        if not isinstance(node, yaml.ScalarNode):
            self.problems.append(Problem("a key must be a plain name", *_where(pos)))
            return Node.scalar(None, pos)
        return Node.scalar(str(node.value), pos, node.style or "", str(node.value))

    def scalar(self, node: yaml.ScalarNode, pos: Position) -> Scalar:
        tag = node.tag
        if tag in _STRING_TAGS:
            return str(node.value)
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool":
            return bool(self.loader.construct_yaml_bool(node))
        if tag == _TAG + "int":
            return int(self.loader.construct_yaml_int(node))
        if tag == _TAG + "float":
            return float(self.loader.construct_yaml_float(node))
        self.refuse(tag, pos)
        return None

    def refuse(self, tag: str, pos: Position) -> None:
        message = f"the YAML tag {tag} is not supported in a design"
        self.problems.append(Problem(message, *_where(pos)))

    def position(self, node: yaml.Node) -> Position:
        mark = node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)


def _where(pos: Position) -> tuple[str, int, int]:
    return pos.file, pos.line, pos.column
