"""A real SMTP server for the mail tests (aiosmtpd), run as a process of its own.

    python smtp_server.py <folder> <cert.pem> <key.pem>

Listens on four loopback ports and prints `READY plain=<port> starttls=<port>
implicit=<port> stall=<port>` once they all answer:

- plain: no TLS, no authentication (a local relay);
- starttls: STARTTLS required, then AUTH (user `mailer`, password `s3cret pass`) required;
- implicit: TLS from the first byte (smtps), AUTH accepted;
- stall: accepts connections and never says a word (for timeouts).

Every accepted message becomes `<folder>/<n>.json`: the envelope, the raw message, which
listener took it, whether it came over TLS and who authenticated. A recipient whose name
starts with `busy` is refused with a temporary failure (451), so senders retry.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = b"mailer", b"s3cret pass"
_count = itertools.count(1)


class Handler:
    def __init__(self, folder: Path, listener: str) -> None:
        self.folder, self.listener = folder, listener

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.split("@")[0].startswith("busy"):
            return "451 4.3.0 mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        login = session.auth_data if session.authenticated else None
        record = {
            "listener": self.listener,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "auth": login.decode() if isinstance(login, bytes) else login,
        }
        path = self.folder / f"{next(_count):06d}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(path)
        return "250 2.0.0 accepted"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    if isinstance(data, LoginPassword) and (data.login, data.password) == (USER, PASSWORD):
        return AuthResult(success=True, auth_data=data.login)
    return AuthResult(success=False, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


async def main(folder: Path, cert: str, key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    ports = {name: free_port() for name in ("plain", "starttls", "implicit")}
    controllers = [
        Controller(Handler(folder, "plain"), hostname="127.0.0.1", port=ports["plain"]),
        Controller(
            Handler(folder, "starttls"),
            hostname="127.0.0.1",
            port=ports["starttls"],
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            authenticator=authenticator,
        ),
        Controller(
            Handler(folder, "implicit"),
            hostname="127.0.0.1",
            port=ports["implicit"],
            server_hostname="localhost",
            ssl_context=context,
            authenticator=authenticator,
            auth_require_tls=False,  # the whole session is TLS already
        ),
    ]
    for controller in controllers:
        controller.start()
    silent = await asyncio.start_server(stall, "127.0.0.1", 0)
    ports["stall"] = silent.sockets[0].getsockname()[1]
    print("READY " + " ".join(f"{k}={v}" for k, v in ports.items()), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for controller in controllers:
            controller.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
