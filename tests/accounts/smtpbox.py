"""The SMTP server of the account tests (smtp_server.py, aiosmtpd in a process of its own):
starting it with a self-signed certificate its clients trust, and reading back what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email
import email.policy
import ipaddress
import json
import select
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class Arrived:
    """A message the server accepted: the listener, TLS, the login, the parsed message."""

    listener: str
    tls: bool
    auth: str | None
    rcpt_tos: list[str]
    message: EmailMessage

    def part(self, subtype: str) -> str:
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None, f"no text/{subtype} part"
        return str(found.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SmtpServer:
    folder: Path
    ports: dict[str, int]
    tls: ssl.SSLContext  # trusts the server's certificate

    def url(self, listener: str, credentials: bool = True, **query: str) -> str:
        scheme = "smtps" if listener == "implicit" else "smtp"
        login = "mailer:s3cret%20pass@" if credentials else ""
        options = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{scheme}://{login}127.0.0.1:{self.ports[listener]}" + (
            f"?{options}" if options else ""
        )

    def arrived(self, to: str) -> list[Arrived]:
        found = []
        for path in sorted(self.folder.glob("*.json")):
            record: dict[str, Any] = json.loads(path.read_text())
            if to in record["rcpt_tos"]:
                parsed = email.message_from_string(record["data"], policy=email.policy.default)
                assert isinstance(parsed, EmailMessage)
                found.append(
                    Arrived(record["listener"], record["tls"], record["auth"],
                            record["rcpt_tos"], parsed)
                )  # fmt: skip
        return found

    async def arrival(self, to: str, count: int = 1, timeout: float = 10.0) -> list[Arrived]:
        """wait_for, letting the event loop run (the backend's worker sends meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.arrived(to)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} messages for {to}"
                return found
            await asyncio.sleep(0.05)

    def wait_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list[Arrived]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.arrived(to)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} of {count} messages for {to}"
                return found
            time.sleep(0.02)


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def running_smtp_server(base: Path) -> Iterator[SmtpServer]:
    folder = base / "messages"
    folder.mkdir()
    cert, key = _certificate(base)
    with open(base / "server.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "smtp_server.py"), str(folder), str(cert), str(key)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
            line = process.stdout.readline() if ready else ""
            if not line.startswith("READY "):
                raise RuntimeError(f"the SMTP server did not start (see {log.name})")
            ports = {k: int(v) for k, v in (pair.split("=") for pair in line.split()[1:])}
            tls = ssl.create_default_context(cafile=str(cert))
            yield SmtpServer(folder, ports, tls)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
