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


CLASH = """\
charpente: 1
name: clash
api_version: 1
resources:
  posts:
    fields: {title: string}
  post_connections:
    fields: {note: string}
"""


def test_check_reports_a_graphql_name_clash_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "design.yaml").write_text(CLASH)
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output  # REST is still served
    assert "design.yaml:7:3: warning: GraphQL:" in result.stderr
    assert "PostConnection" in result.stderr
