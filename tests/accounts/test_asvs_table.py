"""docs/authentication.md's ASVS table names tests: each of them exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "authentication.md"
_NAMED = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def test_every_test_the_asvs_table_names_exists() -> None:
    text = PAGE.read_text(encoding="utf-8")
    table = text.split("## OWASP ASVS 5.0", 1)[1].split("\n## ", 1)[0]
    named = _NAMED.findall(table)
    assert len(named) >= 25
    for path, function in named:
        source = (ROOT / path).read_text(encoding="utf-8")
        if function:
            assert re.search(rf"^(async )?def {function}\(", source, re.MULTILINE), (path, function)
