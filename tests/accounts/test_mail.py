"""Account email: the SMTP mailer against a real SMTP server (conftest.py), the log mailer,
templates and their overrides, sends through the job queue, and the settings."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from smtpbox import SmtpServer

from charpente.errors import ConfigError
from charpente.loader import load_design_text
from charpente.outbound.mail import LogMailer, MailError, smtp_target
from charpente.outbound.smtp import SmtpMailer
from charpente.runtime.hooks import Hooks
from charpente.runtime.jobs import JobRunner, RunnerOptions
from charpente.runtime.mail import MAIL_JOB, MailTemplates, Postman, register_mail_job
from charpente.runtime.ports import MailMessage
from charpente.runtime.secrets import Sealer, generate_key_text
from charpente.runtime.service import Service
from charpente.settings import Settings
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.jobstore import SqlJobStore
from charpente.sql.schema import build_metadata
from charpente.wiring import build_mailer, build_postman

pytestmark = pytest.mark.anyio

SENDER = "Notes <no-reply@notes.example>"
DESIGN = """
charpente: 1
name: notes
api_version: 1
auth:
  app_name: Notes & Co
  app_url: https://notes.example/app
resources:
  notes:
    fields:
      text: {type: string, max_length: 100}
"""


def message(to: str, subject: str = "Hello") -> MailMessage:
    return MailMessage(to, subject, "plain body\n", "<p>html body</p>", kind="test")


def mailer(smtp: SmtpServer, url: str) -> SmtpMailer:
    return SmtpMailer(smtp_target(url), SENDER, tls_context=smtp.tls)


# --- the SMTP mailer ------------------------------------------------------------------------


async def test_starttls_with_authentication_delivers_text_and_html(smtp: SmtpServer) -> None:
    await mailer(smtp, smtp.url("starttls")).send(message("ada@starttls.example"))

    [arrived] = smtp.wait_for("ada@starttls.example")
    assert (arrived.listener, arrived.tls, arrived.auth) == ("starttls", True, "mailer")
    mail = arrived.message
    assert mail["From"] == SENDER
    assert mail["To"] == "ada@starttls.example"
    assert mail["Subject"] == "Hello"
    assert mail["Message-ID"].endswith("@notes.example>")
    assert mail["Auto-Submitted"] == "auto-generated"
    assert arrived.part("plain") == "plain body\n"
    assert arrived.part("html").strip() == "<p>html body</p>"


async def test_implicit_tls_delivers(smtp: SmtpServer) -> None:
    await mailer(smtp, smtp.url("implicit")).send(message("ada@implicit.example"))

    [arrived] = smtp.wait_for("ada@implicit.example")
    assert (arrived.listener, arrived.tls, arrived.auth) == ("implicit", True, "mailer")


async def test_a_plain_local_relay_delivers_without_tls(smtp: SmtpServer) -> None:
    url = smtp.url("plain", credentials=False, tls="none")
    await mailer(smtp, url).send(message("ada@plain.example"))

    [arrived] = smtp.wait_for("ada@plain.example")
    assert (arrived.listener, arrived.tls, arrived.auth) == ("plain", False, None)


@pytest.mark.parametrize(
    ("listener", "credentials", "query", "reason"),
    [
        ("starttls", False, {}, "authentication required"),
        ("plain", False, {}, "STARTTLS"),  # required by default: never silently in clear
        ("starttls", False, {"tls": "none"}, "STARTTLS"),  # the server insists on TLS
    ],
)
async def test_a_send_that_cannot_be_made_safely_fails(
    smtp: SmtpServer, listener: str, credentials: bool, query: dict[str, str], reason: str
) -> None:
    url = smtp.url(listener, credentials=credentials, **query)
    with pytest.raises(MailError) as caught:
        await mailer(smtp, url).send(message("nobody@refused.example"))
    assert reason.lower() in str(caught.value).lower()
    assert smtp.arrived("nobody@refused.example") == []


async def test_a_wrong_password_fails_and_is_never_echoed(smtp: SmtpServer) -> None:
    url = smtp.url("starttls").replace("s3cret%20pass", "guessed-wrong")
    with pytest.raises(MailError) as caught:
        await mailer(smtp, url).send(message("nobody@wrong.example"))
    assert "guessed-wrong" not in str(caught.value)
    assert "s3cret" not in repr(smtp_target(smtp.url("starttls")))


async def test_an_untrusted_certificate_is_refused(smtp: SmtpServer) -> None:
    default = SmtpMailer(smtp_target(smtp.url("implicit")), SENDER)  # the system's CAs only
    with pytest.raises(MailError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        await default.send(message("nobody@untrusted.example"))


async def test_a_silent_server_times_out(smtp: SmtpServer) -> None:
    url = f"smtp://127.0.0.1:{smtp.ports['stall']}?timeout=0.5"
    started = time.monotonic()
    with pytest.raises(MailError, match="did not take the message"):
        await mailer(smtp, url).send(message("nobody@stall.example"))
    assert time.monotonic() - started < 5


async def test_a_refused_recipient_fails_for_a_later_retry(smtp: SmtpServer) -> None:
    with pytest.raises(MailError, match=r"451|busy|refused"):
        await mailer(smtp, smtp.url("starttls")).send(message("busy@later.example"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example", "must look like smtp://"),
        ("smtp://mail.example?tls=maybe", "tls is"),
        ("smtps://mail.example?tls=none", "tls is"),
        ("smtp://mail.example?timeout=0", "timeout"),
        ("smtp://mail.example?retries=3", "unknown option"),
        ("smtp://u:hunter22@mail.example?tls=none", "never sent without TLS"),
    ],
)
def test_smtp_urls_are_checked(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        smtp_target(url)
    assert "hunter22" not in str(caught.value)


def test_smtp_url_defaults() -> None:
    assert smtp_target("smtp://mail.example").port == 587
    assert smtp_target("smtps://mail.example").port == 465
    assert smtp_target("smtps://mail.example").tls == "implicit"
    target = smtp_target("smtp://me%40x.example:p%40ss@mail.example:2525?timeout=3")
    assert (target.username, target.password, target.port, target.timeout) == (
        "me@x.example",
        "p@ss",
        2525,
        3.0,
    )


# --- the log mailer -------------------------------------------------------------------------


async def test_the_log_mailer_logs_and_writes_each_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_mailer = LogMailer(tmp_path / "outbox", SENDER)
    with caplog.at_level(logging.WARNING, "charpente.mail"):
        await log_mailer.send(message("ada@example.com", "Reset"))

    [written] = (tmp_path / "outbox").glob("*.eml")
    assert written.name.endswith("-test.eml")
    text = written.read_text()
    assert "To: ada@example.com" in text
    assert "Subject: Reset" in text
    assert "mail NOT sent" in caplog.text
    assert "plain body" in caplog.text


# --- templates ------------------------------------------------------------------------------


def test_templates_escape_values_in_html_and_keep_the_subject_on_one_line() -> None:
    templates = MailTemplates()
    values = {
        "app_name": "<b>Notes</b>\nBcc: x@evil.example",
        "app_url": "https://notes.example",
        "link": "https://notes.example/verify-email?token=abc&x=1",
        "expires": "24 hours",
    }
    rendered = templates.render("verify_email", "ada@example.com", values)

    assert "\n" not in rendered.subject
    assert rendered.subject.endswith("Bcc: x@evil.example")  # one line: just text
    assert "https://notes.example/verify-email?token=abc&x=1" in rendered.text
    assert rendered.html is not None
    assert "&lt;b&gt;Notes&lt;/b&gt;" in rendered.html
    assert 'href="https://notes.example/verify-email?token=abc&amp;x=1"' in rendered.html
    assert rendered.kind == "verify_email"


def test_a_design_replaces_a_template_and_mistakes_are_caught() -> None:
    mine = {"reset_password.txt": "Subject: ${app_name}: new password\n\nGo to ${link}\n"}
    rendered = MailTemplates(mine).render(
        "reset_password",
        "a@b.example",
        {"app_name": "N", "app_url": "", "link": "L", "expires": ""},
    )
    assert (rendered.subject, rendered.text) == ("N: new password", "Go to L\n")
    assert rendered.html is not None  # the shipped HTML stays

    with pytest.raises(ValueError, match=r"unknown placeholder \$\{token\}"):
        MailTemplates({"reset_password.txt": "Subject: x\n\n${token}\n"})
    with pytest.raises(ValueError, match="Subject"):
        MailTemplates({"reset_password.txt": "Hello\n"})
    with pytest.raises(ValueError, match=r"\$\$"):
        MailTemplates({"email_taken.html": "costs $5"})


def test_a_design_folder_of_templates_is_read_beside_the_design(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "email_taken.txt").write_text("Subject: Hi from ${app_name}\n\nSomeone tried.\n")
    design_file = tmp_path / "design.yaml"
    design_file.write_text(DESIGN.replace("app_url:", "mail_templates: mail\n  app_url:"))
    settings = Settings(design_path=design_file)
    design = load_design_text(design_file.read_text(), str(design_file))
    postman = build_postman(settings, design, Service(design, _NoDatabase()))  # type: ignore[arg-type]
    taken = postman.templates.render(
        "email_taken", "a@b.example", {"app_name": "Notes", "app_url": ""}
    )
    assert taken.subject == "Hi from Notes"

    (folder / "welcome.txt").write_text("Subject: x\n\ny\n")
    with pytest.raises(ConfigError, match=r"welcome\.txt: not a mail template"):
        build_postman(settings, design, Service(design, _NoDatabase()))  # type: ignore[arg-type]


class _NoDatabase:
    """A Service needs a database; these tests never reach it."""


def test_design_app_url_must_be_safe() -> None:
    from charpente.errors import DesignError

    for bad, problem in [
        ("http://notes.example", "https"),
        ("https://notes.example/?next=x", "without [?]query"),
    ]:
        with pytest.raises(DesignError, match=problem):
            load_design_text(DESIGN.replace("https://notes.example/app", bad))
    with pytest.raises(DesignError, match="needs `app_url`"):
        load_design_text(
            DESIGN.replace("app_url: https://notes.example/app", "verify_email: required")
        )


# --- through the job queue ------------------------------------------------------------------


async def _queue(target: Any, hooks: Hooks) -> tuple[Service, SqlDatabase]:
    design = load_design_text(DESIGN)
    engine = create_engine(target.url, schema=target.schema)
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(design).create_all)
    database = SqlDatabase(engine, design)
    return Service(design, database, hooks=hooks), database


async def test_a_send_is_a_job_that_outlives_its_process_and_is_retried(
    smtp: SmtpServer, db_target: Any
) -> None:
    domain = f"@{db_target.dialect}.queue.example"  # the server lives for the session
    ada, busy = f"ada{domain}", f"busy{domain}"
    sealer = Sealer.from_env_value(generate_key_text("k1"))
    # The process that queues the message stops before anything is sent.
    hooks = Hooks()
    register_mail_job(hooks, mailer(smtp, smtp.url("starttls")), sealer)
    service, database = await _queue(db_target, hooks)
    postman = Postman(
        service, MailTemplates(), app_name="Notes", app_url="https://notes.example", sealer=sealer
    )
    link = postman.link("reset-password", "tok3n")
    assert link == "https://notes.example/reset-password?token=tok3n"
    await postman.send("reset_password", ada, {"link": link, "expires": "30 minutes"})
    await postman.send("email_taken", busy)
    stored = [job.args for job in await SqlJobStore(database).jobs(None, 10)]
    assert all("tok3n" not in args and domain not in args for args in stored)
    await database.close()
    assert smtp.arrived(ada) == []

    # Another process (a worker) sends it.
    hooks = Hooks()
    register_mail_job(hooks, mailer(smtp, smtp.url("starttls")), sealer)
    service, database = await _queue(db_target, hooks)
    store = SqlJobStore(database)
    runner = JobRunner(service, store, RunnerOptions())
    assert await runner.run_due() == 2

    [arrived] = smtp.wait_for(ada)
    assert "https://notes.example/reset-password?token=tok3n" in arrived.part("plain")
    assert arrived.message["Subject"] == "Reset your Notes password"
    waiting = {job.name: job for job in await store.jobs("queued", 10)}[MAIL_JOB]
    assert waiting.attempts == 1
    assert waiting.last_error is not None
    assert "451" in waiting.last_error
    await database.close()


async def test_wiring_picks_smtp_or_the_log_and_serve_says_so(
    smtp: SmtpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(build_mailer(Settings()), LogMailer)
    settings = Settings(smtp_url=smtp.url("starttls"), mail_from=SENDER)
    smtp_mailer = build_mailer(settings)
    assert smtp_mailer.name == f"smtp://127.0.0.1:{smtp.ports['starttls']}"

    from charpente.wiring import mail_warning, with_mail_job

    assert MAIL_JOB in with_mail_job(Settings(), None).jobs
    with caplog.at_level(logging.WARNING, "charpente"):
        await mail_warning(Settings(mail_dir=tmp_path))()
    assert "CHARPENTE_SMTP_URL is not set" in caplog.text
    assert str(tmp_path) in caplog.text


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"CHARPENTE_SMTP_URL": "smtp://mail.example"}, "CHARPENTE_MAIL_FROM too"),
        ({"CHARPENTE_SMTP_URL": "smtp:/mail", "CHARPENTE_MAIL_FROM": "a@b.c"}, "smtp://"),
        ({"CHARPENTE_MAIL_FROM": "not an address"}, "CHARPENTE_MAIL_FROM"),
    ],
)
def test_mail_settings_are_checked(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Settings.from_env(environ)


def test_mail_settings_round_trip_without_showing_the_password() -> None:
    environ = {
        "CHARPENTE_SMTP_URL": "smtps://u:hunter22@mail.example",
        "CHARPENTE_MAIL_FROM": "Notes <no-reply@notes.example>",
        "CHARPENTE_MAIL_DIR": "outbox",
    }
    settings = Settings.from_env(environ)
    assert settings.smtp_url == environ["CHARPENTE_SMTP_URL"]
    assert settings.mail_dir == Path("outbox")
    assert "hunter22" not in repr(settings)
    from charpente.settings import to_environ

    assert Settings.from_env(to_environ(settings)) == settings
