"""The served app of a design with flags: the admin API is mounted, flags follow the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.testclient import TestClient

from charpente.runtime.flags import in_rollout
from charpente.settings import Settings
from charpente.wiring import apply_database_migration, build_application, load_configured_design

DESIGN = """
charpente: 1
name: feed
flags:
  reposts: {rollout: 10%}
resources:
  posts:
    fields: {body: text}
    access:
      read: flag("reposts")
"""


def test_a_design_with_flags_serves_the_flag_admin_api(tmp_path: Path):
    (tmp_path / "app.yaml").write_text(DESIGN)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        design_path=tmp_path / "app.yaml",
    )
    design = load_configured_design(settings)
    asyncio.run(apply_database_migration(settings, design))
    with TestClient(build_application(settings, design)) as client:
        assert client.get("/v1/_flags").status_code == 401
        assert client.get("/v1/posts").status_code in (401, 403)  # outside the 10%
        inside = next(f"c-{n}" for n in range(1000) if in_rollout(10, "reposts", f"c-{n}"))
        assert client.get("/v1/posts", headers={"X-Client-ID": inside}).status_code == 200
