"""`charpente serve` over TLS, and behind a TLS-terminating proxy, as a real process: https
answers carry Strict-Transport-Security; plain http, or forwarded headers from a proxy that
is not trusted, do not."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from charpente.cli.main import app

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
HSTS = "max-age=63072000; includeSubDomains"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(tmp_path: Path, *options: str, environ: dict[str, str] | None = None) -> Iterator[int]:
    """`charpente serve --migrate OPTIONS` on a free port, stopped with SIGTERM."""
    port = free_port()
    env = {
        **os.environ,
        "CHARPENTE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}",
        "CHARPENTE_DESIGN": "template:social",
        **(environ or {}),
    }
    command = [sys.executable, "-c", "from charpente.cli.main import main; main()"]
    process = subprocess.Popen(
        [*command, "serve", "--migrate", "--port", str(port), "--drain-seconds", "0", *options],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(url: str, **options: Any) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=0.5, **options)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer in time")


def test_serve_over_tls_answers_https_with_hsts(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    with serving(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key)) as port:
        health = wait_for(f"https://127.0.0.1:{port}/healthz", verify=trusted)
        assert health.status_code == 200
        assert health.headers["strict-transport-security"] == HSTS
        listed = httpx.get(f"https://127.0.0.1:{port}/v1/posts", verify=trusted)
        assert listed.status_code == 200
        assert listed.headers["strict-transport-security"] == HSTS
        with pytest.raises(httpx.ConnectError):  # not a certificate anyone vouches for
            httpx.get(f"https://127.0.0.1:{port}/healthz")


def test_behind_a_trusted_proxy_forwarded_https_gets_hsts(tmp_path: Path) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    trusted = {"CHARPENTE_TRUSTED_PROXIES": "127.0.0.1"}
    with serving(tmp_path, "--proxy-headers", environ=trusted) as port:
        base = f"http://127.0.0.1:{port}"
        assert "strict-transport-security" not in wait_for(f"{base}/healthz").headers
        forwarded = httpx.get(f"{base}/healthz", headers=https)
        assert forwarded.headers["strict-transport-security"] == HSTS


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tmp_path: Path) -> None:
    https = {"X-Forwarded-Proto": "https"}
    elsewhere = {"CHARPENTE_TRUSTED_PROXIES": "10.0.0.0/8"}
    with serving(tmp_path, "--proxy-headers", environ=elsewhere) as port:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthz")
        assert (
            "strict-transport-security" not in httpx.get(f"{base}/healthz", headers=https).headers
        )


# --- the options, without a server --------------------------------------------------------


@pytest.fixture
def captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `serve` hands to uvicorn (nothing is started)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARPENTE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("CHARPENTE_DESIGN", "template:social")
    monkeypatch.delenv("CHARPENTE_TRUSTED_PROXIES", raising=False)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append(k))
    # nothing listens: the port may be taken on this machine
    monkeypatch.setattr("charpente.cli.commands.serve._check_port", lambda host, port: None)
    return calls


def test_tls_files_go_to_uvicorn_and_the_banner_says_https(
    tmp_path: Path, captured: list[dict[str, Any]]
) -> None:
    cert, key = self_signed(tmp_path)
    args = ["serve", "--migrate", "--tls-cert", str(cert), "--tls-key", str(key)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "at https://127.0.0.1:8000" in result.stdout
    [options] = captured
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == (str(cert), str(key))
    assert options["proxy_headers"] is False


def test_tls_options_go_together_and_proxy_headers_need_trusted_proxies(
    tmp_path: Path, captured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, _ = self_signed(tmp_path)
    alone = CliRunner().invoke(app, ["serve", "--tls-cert", str(cert)])
    assert alone.exit_code == 2
    assert "--tls-cert and --tls-key go together" in alone.stderr
    missing = CliRunner().invoke(app, ["serve", "--tls-cert", "nope.pem", "--tls-key", "k.pem"])
    assert missing.exit_code == 2
    untrusted = CliRunner().invoke(app, ["serve", "--proxy-headers"])
    assert untrusted.exit_code == 2
    assert "--proxy-headers needs CHARPENTE_TRUSTED_PROXIES" in untrusted.stderr
    assert captured == []

    monkeypatch.setenv("CHARPENTE_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    result = CliRunner().invoke(app, ["serve", "--migrate", "--proxy-headers"])
    assert result.exit_code == 0, result.output
    [options] = captured
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == "10.0.0.1, 192.168.0.0/16"


def test_serve_refuses_encrypted_fields_without_keys_in_one_line(
    tmp_path: Path, captured: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHARPENTE_SECRET_KEYS", raising=False)
    design = tmp_path / "design.yaml"
    design.write_text(
        "charpente: 1\nname: vault\napi_version: 1\nresources:\n  notes:\n"
        "    access: {read: true}\n    fields:\n      body: {type: text, encrypted: true}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["serve", "--migrate", "-d", str(design)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"design: {design} (vault)"
    assert "\n".join(result.stderr.splitlines()[1:]) == (
        "error: the design encrypts notes.body: set CHARPENTE_SECRET_KEYS to the keys "
        "that seal them (`kid:base64key`, 32 bytes each)"
    )
    assert captured == []
