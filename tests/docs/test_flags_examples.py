"""docs/flags.md: its curl session, run in order against an app with the flag admin API and
OFREP (an admin account made first, as for the other pages), answers checked; and its hooks
example reads only declared flags."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from examples import BASE_URL, DOCS, Request, run_steps, session

from charpente.bus.memory import MemoryBus
from charpente.design.flags import hook_flag_problems
from charpente.http.app import build_app
from charpente.loader import load_design_text
from charpente.runtime.flag_control import FlagControl
from charpente.runtime.ratelimit import MemoryLimiter
from charpente.sql.flagstore import SqlFlagStore

PAGE = DOCS / "flags.md"
ADMIN_PASSWORD = "keys to the whole house"


@pytest.mark.anyio
async def test_the_flags_page_answers_what_it_shows(make_api: Any) -> None:
    found = session(PAGE)
    (first,) = found.designs
    api = await make_api(found.designs[first], limiter=MemoryLimiter(), base_url=BASE_URL)
    await api.accounts.create_account("admin@example.com", "admin", ADMIN_PASSWORD, {})
    store = SqlFlagStore(api.service.database)
    control = FlagControl(api.design, api.service.flags, store, bus=MemoryBus())
    app = build_app(api.service, api.design, accounts=api.accounts, flags=control)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=BASE_URL
    )

    async def send(request: Request) -> Any:
        return await client.request(
            request.method, request.target, headers=request.headers, content=request.body
        )

    try:
        ran = await run_steps(found.steps[first:], send, {"ADMIN_PASSWORD": ADMIN_PASSWORD})
    finally:
        await client.aclose()
    assert ran >= 8


def test_the_hooks_example_reads_declared_flags() -> None:
    text = PAGE.read_text(encoding="utf-8")
    (hooks,) = re.findall(r"```python\n(from charpente.runtime.hooks.*?)```", text, re.DOTALL)
    designs = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    design = load_design_text(next(d for d in designs if "reposts" in d))
    assert hook_flag_problems(hooks, "hooks.py", design.flags) == []
    assert "ctx.flag(" in hooks
