"""`charpente graphql schema` prints the SDL that /v1/graphql/schema.graphql serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from charpente.cli.main import app
from charpente.templates import template_text


def test_graphql_schema_prints_a_schema_graphql_core_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "social.yaml").write_text(template_text("social"))
    result = CliRunner().invoke(app, ["graphql", "schema", "social.yaml"])
    assert result.exit_code == 0, result.output
    assert "type Post {" in result.stdout
    assert "  posts(first: Int, after: String, where: String, orderBy: String)" in result.stdout
    graphql = pytest.importorskip("graphql")
    schema = graphql.build_schema(result.stdout)
    assert schema.query_type is not None
    assert "author" in schema.type_map["Post"].fields  # type: ignore[attr-defined]
