"""Account email: templates rendered into messages, sent through the job queue.

The engine's messages (verify an address, reset a password, ...) are templates shipped with
the package (`runtime/data/mail/<name>.txt` and `.html`), which a design may replace one by
one (`auth.mail_templates`: a folder beside the design). A `.txt` template starts with a
`Subject:` line and an empty line; placeholders are `${name}`, and each template may use
only the names listed in TEMPLATES (a typo stops the start, not a send). Values are
escaped in the HTML part and the subject is kept to one line.

`Postman.send` renders a message and queues the job `charpente.mail` (in the caller's
transaction when it gives one), so a send never blocks a request, survives a restart and is
retried with the job queue's backoff; the worker's job hands it to the `Mailer` port. With
CHARPENTE_SECRET_KEYS set, the queued message is sealed: its links carry one-time tokens.
Every link points under the design's `app_url`, never at an address a request named.
"""

from __future__ import annotations

import html
import json
import logging
import string
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from charpente.runtime.hooks import Hooks
from charpente.runtime.jobs import JobContext, JobService, checked_job
from charpente.runtime.ports import Mailer, MailMessage, Transaction
from charpente.runtime.secrets import Sealer

__all__ = [
    "MAIL_JOB",
    "TEMPLATES",
    "MailTemplates",
    "Postman",
    "register_mail_job",
    "template_folder",
]

log = logging.getLogger("charpente.mail")

MAIL_JOB = "charpente.mail"
MAIL_RETRIES = 8  # with the queue's backoff: retried for about four hours, then dead
MAIL_TIMEOUT = 60.0
_COMMON = frozenset({"app_name", "app_url", "email"})
_LINKED = _COMMON | {"link", "expires"}
TEMPLATES: Mapping[str, frozenset[str]] = {
    "verify_email": _LINKED,  # signup: prove the address
    "email_taken": _COMMON,  # signup with an address that has an account: tell its owner
    "reset_password": _LINKED,
    "password_changed": _COMMON,  # after a reset: tell the owner
    "change_email": _LINKED,  # to the new address: confirm it
    "email_changing": _COMMON,  # to the old address: someone asked to move the account
}
"""Each template and the placeholders it may use."""
_SEAL_CONTEXT = b"charpente.mail"
_MAX_TEMPLATE = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Template:
    subject: string.Template
    text: string.Template
    html: string.Template | None


class MailTemplates:
    """The shipped templates, with a design's replacements (file name → text) on top.
    Raises ValueError naming the file for a template it cannot use."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        texts = {**_shipped(), **(overrides or {})}
        self._templates = {name: _parse(name, texts) for name in TEMPLATES}

    def render(self, name: str, to: str, values: Mapping[str, str]) -> MailMessage:
        """The message `name` for `to` with `values` (the template's placeholders)."""
        template = self._templates[name]
        values = {**values, "email": to}
        subject = " ".join(template.subject.substitute(values).split())
        text = template.text.substitute(values)
        escaped = {key: html.escape(value, quote=True) for key, value in values.items()}
        body = None if template.html is None else template.html.substitute(escaped)
        return MailMessage(to, subject[:250], text, body, kind=name)


def template_folder(folder: Path) -> dict[str, str]:
    """A design's template folder: `<template>.txt` and `<template>.html` files. Raises
    ValueError for a file that names no template, or one too large."""
    found: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        stem, _, suffix = path.name.rpartition(".")
        if stem not in TEMPLATES or suffix not in ("txt", "html"):
            names = ", ".join(sorted(TEMPLATES))
            raise ValueError(f"{path}: not a mail template (<name>.txt or .html; names: {names})")
        if path.stat().st_size > _MAX_TEMPLATE:
            raise ValueError(f"{path}: a template is at most {_MAX_TEMPLATE // 1024} KiB")
        found[path.name] = path.read_text(encoding="utf-8")
    return found


class Postman:
    """Renders account email and queues it (job `charpente.mail`)."""

    def __init__(
        self,
        queue: JobService,
        templates: MailTemplates,
        *,
        app_name: str,
        app_url: str | None,
        sealer: Sealer | None = None,
    ) -> None:
        self.queue = queue
        self.templates = templates
        self.app_name = app_name
        self.app_url = app_url
        self.sealer = sealer

    @property
    def links(self) -> bool:
        """Whether messages can carry links (the design names its `app_url`)."""
        return self.app_url is not None

    def link(self, page: str, token: str) -> str:
        """`<app_url>/<page>?token=<token>`: the only kind of link a message carries."""
        if self.app_url is None:
            raise ValueError("the design names no app_url for email links")
        return f"{self.app_url}/{page}?{urllib.parse.urlencode({'token': token})}"

    async def send(
        self,
        name: str,
        to: str,
        values: Mapping[str, str] | None = None,
        tx: Transaction | None = None,
    ) -> None:
        """Queue the message `name` for `to`: in `tx` when given (sent only if it commits),
        else on its own."""
        common = {"app_name": self.app_name, "app_url": self.app_url or ""}
        message = self.templates.render(name, to, {**common, **(values or {})})
        args = _encode(message, self.sealer)
        if tx is None:
            await self.queue.enqueue_job(MAIL_JOB, args, 0)
            return
        job = checked_job(self.queue.hooks, MAIL_JOB, args, 0, self.queue.clock.now())
        await tx.enqueue_job(job)


def register_mail_job(hooks: Hooks, mailer: Mailer, sealer: Sealer | None = None) -> None:
    """Teach `hooks` the job that sends queued messages through `mailer`."""

    @hooks.job(MAIL_JOB, retries=MAIL_RETRIES, timeout=MAIL_TIMEOUT)
    async def send_mail(ctx: JobContext, args: dict[str, Any]) -> None:
        message = _decode(args, sealer)
        await mailer.send(message)
        log.info("sent %s mail (job %s) through %s", message.kind, ctx.id, mailer.name)


def _encode(message: MailMessage, sealer: Sealer | None) -> dict[str, Any]:
    fields: dict[str, str | None] = {"to": message.to, "subject": message.subject}
    fields |= {"text": message.text, "html": message.html, "kind": message.kind}
    if sealer is None:
        return fields
    text = json.dumps(fields, separators=(",", ":")).encode()
    return {"sealed": sealer.seal(text, context=_SEAL_CONTEXT), "kind": message.kind}


def _decode(args: Mapping[str, Any], sealer: Sealer | None) -> MailMessage:
    fields = dict(args)
    if "sealed" in fields:
        if sealer is None:
            raise ValueError("a sealed message and no CHARPENTE_SECRET_KEYS to open it")
        fields = json.loads(sealer.open(str(fields["sealed"]), context=_SEAL_CONTEXT))
    html_body = fields.get("html")
    return MailMessage(
        str(fields["to"]),
        str(fields["subject"]),
        str(fields["text"]),
        None if html_body is None else str(html_body),
        kind=str(fields.get("kind") or "mail"),
    )


def _shipped() -> dict[str, str]:
    folder = resources.files("charpente.runtime").joinpath("data/mail")
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith((".txt", ".html"))
    }


def _parse(name: str, texts: Mapping[str, str]) -> _Template:
    allowed = TEMPLATES[name]
    text = texts.get(f"{name}.txt")
    if text is None:
        raise ValueError(f"{name}.txt: the template is missing")
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject:") or not rest.startswith("\n"):
        raise ValueError(f"{name}.txt: start with a `Subject: ...` line, then an empty line")
    subject = _checked(f"{name}.txt", first.removeprefix("Subject:").strip(), allowed)
    body = _checked(f"{name}.txt", rest[1:], allowed)
    markup = texts.get(f"{name}.html")
    return _Template(
        subject, body, None if markup is None else _checked(f"{name}.html", markup, allowed)
    )


def _checked(where: str, text: str, allowed: frozenset[str]) -> string.Template:
    template = string.Template(text)
    if not template.is_valid():
        raise ValueError(f"{where}: a `$` that is not a ${{placeholder}} (write $$ for a dollar)")
    unknown = sorted(set(template.get_identifiers()) - allowed)
    if unknown:
        names = ", ".join(f"${{{n}}}" for n in sorted(allowed))
        raise ValueError(f"{where}: unknown placeholder ${{{unknown[0]}}} (this one has {names})")
    return template
