"""The ```sh mail examples of docs/authentication.md, run in order against the backend of its
email section's design, with a real SMTP server: `$TOKEN` is the token of the link the last
message to the account carries, as the person would click it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from backend import running_backend
from smtpbox import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "docs"))

from examples import Request, Step, _steps, blocks, run_steps  # noqa: E402

PAGE = ROOT / "docs" / "authentication.md"
pytestmark = pytest.mark.anyio


def mail_steps() -> tuple[str, list[Step]]:
    """The email section's design and the page's ```sh mail steps, answers attached."""
    design, steps, pending = None, [], None
    for block in blocks(PAGE):
        if block.kind == "yaml" and "app_url:" in block.text and design is None:
            design = block.text
        if block.kind == "http" and pending is not None:
            pending.answer = block.text
        pending = None
        if block.kind == "sh" and block.tag == "mail":
            found = _steps(block)
            steps += found
            pending = found[-1] if found and found[-1].assign is None else None
    assert design is not None
    return design, steps


async def test_the_account_email_examples_answer_what_the_page_shows(
    db_target: Any, smtp: SmtpServer, tmp_path: Path
) -> None:
    design, steps = mail_steps()
    assert len(steps) >= 6
    (tmp_path / "mail").mkdir()  # the design's `mail_templates` folder, with nothing replaced
    async with running_backend(db_target, smtp, tmp_path, design) as backend:
        variables: dict[str, str] = {}

        async def send(request: Request) -> Any:
            return await backend.client.request(
                request.method, request.target, headers=request.headers, content=request.body
            )

        links = 0
        for step in steps:
            before = len(smtp.arrived("ada@example.com"))
            await run_steps([step], send, variables)
            await backend.accounts.settle()
            if "/signup" in step.command or "/forgot" in step.command:
                await smtp.arrival("ada@example.com", before + 1)  # the worker sends it
            for mail in smtp.arrived("ada@example.com")[before:]:
                token = backend.token(mail)
                if token is not None:
                    variables["TOKEN"], links = token, links + 1
        assert links == 2  # the verification link, the reset link
