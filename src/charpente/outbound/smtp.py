"""The Mailer port over SMTP (aiosmtplib): implicit TLS (`smtps://`, port 465) or STARTTLS
(`smtp://`, port 587, required unless the URL says `?tls=none`), authentication with the
URL's user and password, and a timeout on every step. A refused or failed send raises
MailError; the mail job retries it later. Imported only when CHARPENTE_SMTP_URL is set
(the `mail` extra installs aiosmtplib).
"""

from __future__ import annotations

import ssl

import aiosmtplib

from charpente.outbound.mail import MailError, SmtpTarget, build_email
from charpente.runtime.ports import MailMessage

__all__ = ["SmtpMailer"]


class SmtpMailer:
    """Sends each message in one SMTP session (connect, TLS, AUTH, MAIL, QUIT)."""

    def __init__(
        self, target: SmtpTarget, sender: str, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.target = target
        self.sender = sender
        self.tls_context = tls_context or ssl.create_default_context()

    @property
    def name(self) -> str:
        return self.target.label

    async def send(self, message: MailMessage) -> None:
        target = self.target
        try:
            await aiosmtplib.send(
                build_email(message, self.sender),
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                use_tls=target.tls == "implicit",
                start_tls=target.tls == "starttls",  # False: never, not "if offered"
                tls_context=None if target.tls == "none" else self.tls_context,
                timeout=target.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise MailError(f"{target.label} did not take the message: {reason}") from None
