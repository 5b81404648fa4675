"""The Mailer port without a mail server: each message goes to the log and, when a folder is
configured (CHARPENTE_MAIL_DIR), into it as an `.eml` file. For development and tests: serve
warns loudly when it is what sends the engine's email.

`build_email` turns a MailMessage into the RFC 5322 message both mailers send.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from charpente.errors import CharpenteError, ConfigError
from charpente.runtime.ids import new_id
from charpente.runtime.ports import MailMessage

__all__ = ["LogMailer", "MailError", "SmtpTarget", "build_email", "smtp_target"]

log = logging.getLogger("charpente.mail")

DEFAULT_SENDER = "charpente@localhost"
_SAFE = re.compile(r"[^a-z0-9_-]")
DEFAULT_TIMEOUT = 10.0
_MAX_TIMEOUT = 300.0


class MailError(CharpenteError):
    """The SMTP server could not be reached, or did not accept the message."""


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect: host, port, `tls` (`implicit`, `starttls` or `none`),
    credentials and the timeout in seconds."""

    host: str
    port: int
    tls: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def label(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        return f"{scheme}://{self.host}:{self.port}"


def smtp_target(url: str) -> SmtpTarget:
    """CHARPENTE_SMTP_URL read: `smtp[s]://[user:password@]host[:port][?tls=none&timeout=10]`.
    Raises ConfigError (never echoing the password)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("CHARPENTE_SMTP_URL must look like smtp://user:password@host:587")
    query = dict(urllib.parse.parse_qsl(parts.query))
    unknown = sorted(set(query) - {"tls", "timeout"})
    if unknown:
        raise ConfigError(f"CHARPENTE_SMTP_URL: unknown option {unknown[0]!r} (tls, timeout)")
    tls = "implicit" if parts.scheme == "smtps" else query.get("tls", "starttls")
    if tls not in ("implicit", "starttls", "none") or (parts.scheme == "smtps" and "tls" in query):
        raise ConfigError("CHARPENTE_SMTP_URL: tls is `starttls` (the default) or `none`")
    try:
        port = parts.port or (465 if tls == "implicit" else 587)
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        raise ConfigError("CHARPENTE_SMTP_URL: a port or a timeout is not a number") from None
    if not 0 < timeout <= _MAX_TIMEOUT:
        raise ConfigError(f"CHARPENTE_SMTP_URL: timeout is over 0 and at most {_MAX_TIMEOUT:g} s")
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    if tls == "none" and username is not None and not _loopback(parts.hostname):
        raise ConfigError(
            "CHARPENTE_SMTP_URL: a password is never sent without TLS (drop ?tls=none)"
        )
    return SmtpTarget(parts.hostname, port, tls, username, password, timeout)


def build_email(message: MailMessage, sender: str) -> EmailMessage:
    """The message as sent: From, To, Subject, Date, Message-ID, a text part and, when the
    template has one, an HTML alternative."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    mail["Message-ID"] = email.utils.make_msgid(domain=domain)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
    return mail


class LogMailer:
    """Writes each message to the log (and to `folder`), sends nothing."""

    def __init__(self, folder: Path | None = None, sender: str | None = None) -> None:
        self.folder = folder
        self.sender = sender or DEFAULT_SENDER

    @property
    def name(self) -> str:
        return "log" if self.folder is None else f"log and {self.folder}"

    async def send(self, message: MailMessage) -> None:
        mail = build_email(message, self.sender)
        log.warning(
            "mail NOT sent (no CHARPENTE_SMTP_URL): to %s, %r\n%s",
            message.to,
            message.subject,
            message.text,
        )
        if self.folder is not None:
            await asyncio.to_thread(self._write, mail, message.kind)

    def _write(self, mail: EmailMessage, kind: str) -> None:
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{new_id()}-{_SAFE.sub('_', kind.lower())[:40]}.eml"
        temporary = self.folder / f".{name}.tmp"
        temporary.write_bytes(mail.as_bytes())
        temporary.replace(self.folder / name)  # readers never see half a message


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
