"""The pipelining SMTP client against real servers on 127.0.0.1.

aiosmtpd does not advertise PIPELINING: it covers the lock-step path, and a handler
that adds PIPELINING to its EHLO reply covers the pipelined path on the same server.
A small scripted server proves the pipelining (it answers nothing until the whole
command group has arrived) and injects dropped connections. Postfix's smtp-sink, where
installed, is the pipelining server of the benchmark.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from digest_mail.errors import DigestMailError
from digest_mail.transport.smtpclient import (
    SmtpAuthError,
    SmtpConnection,
    SmtpConnectionLost,
    SmtpPermanentError,
    SmtpRecipientsRefused,
    SmtpTemporaryError,
    SmtpTimeout,
    SmtpTlsError,
)
from digest_mail.transport.wire import prepare_data, unstuff_data

SENDER = "digest@example.jp"


def japanese_message(to: str, *, with_dots: bool = True) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "菊ダイジェスト <digest@example.jp>"
    msg["To"] = to
    msg["Subject"] = "今週の注目記事: トランプ再選で変わる世界?"
    text = "山田 太郎 様\n\n2025年トランプ再選で世界はどう変わる?\n"
    if with_dots:
        text += ".先頭がドットの行\n..二つ\n.\n"
    msg.set_content(text * 20, subtype="plain", cte="8bit")
    msg.add_alternative("<p>結論! 💡 関税と同盟</p>\n.<b>ドット</b>\n", subtype="html", cte="8bit")
    return msg.as_bytes()


# --- prepare_data ----------------------------------------------------------------------


def test_prepare_data_normalises_line_endings_and_stuffs_dots() -> None:
    assert prepare_data(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd\r\n"
    assert prepare_data(b".x\r\n..y\r\n.\r\nz") == b"..x\r\n...y\r\n..\r\nz\r\n"
    assert prepare_data(b"") == b"\r\n"


def test_prepare_data_returns_clean_bytes_unchanged() -> None:
    clean = "件名\r\n\r\n本文です。\r\n".encode()
    assert prepare_data(clean) is clean


def test_prepare_then_unstuff_is_the_crlf_message() -> None:
    raw = japanese_message("taro@example.jp")  # policy.SMTP: CRLF already
    assert b"\r\n.." in prepare_data(raw)
    assert unstuff_data(prepare_data(raw)) == raw
    assert unstuff_data(prepare_data(raw.replace(b"\r\n", b"\n"))) == raw


# --- servers -----------------------------------------------------------------------------


@dataclass
class Recorder:
    """aiosmtpd handler: records envelopes; refuses recipients listed in ``refuse``."""

    pipelining: bool = False
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_sender: str | None = None
    received: list[Envelope] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 2.0.0 queued"


@dataclass
class Server:
    host: str
    port: int
    handler: Recorder


async def start_aiosmtpd(
    handler: Recorder, sessions: list[SMTP], **smtp_options: Any
) -> tuple[asyncio.Server, Server]:
    loop = asyncio.get_running_loop()
    ssl_context = smtp_options.pop("ssl", None)

    def session() -> SMTP:
        smtp = SMTP(handler, hostname="sink.example.jp", loop=loop, **smtp_options)
        sessions.append(smtp)
        return smtp

    server = await loop.create_server(session, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    return server, Server("127.0.0.1", port, handler)


@pytest.fixture
async def aiosmtpd_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[asyncio.Server] = []
    sessions: list[SMTP] = []

    async def start(handler: Recorder | None = None, **options: Any) -> Server:
        server, info = await start_aiosmtpd(handler or Recorder(), sessions, **options)
        servers.append(server)
        return info

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
    # Server.close() leaves accepted connections open: close what the client left.
    for smtp in sessions:
        if smtp.transport is not None:
            smtp.transport.close()
    await asyncio.sleep(0)


class ScriptedServer:
    """A minimal pipelining SMTP server. It answers a MAIL/RCPT/DATA group only once the
    group is complete (a lock-step client would wait forever), and can drop the
    connection part-way through a message body."""

    def __init__(
        self, *, drop_after_body_bytes: int | None = None, silent_after_body: bool = False
    ) -> None:
        self.drop_after_body_bytes = drop_after_body_bytes
        self.silent_after_body = silent_after_body
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.writes_per_group: list[int] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        # Sessions end when the client goes: wait for them so no socket outlives the loop.
        await asyncio.wait_for(asyncio.gather(*self._sessions), 5)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        writer.write(b"220 scripted ESMTP\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(
                        b"250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n"
                    )
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                elif verb == b"RSET":
                    writer.write(b"250 reset\r\n")
                elif verb == b"MAIL":
                    sender = line.split(b"<")[1].split(b">")[0].decode()
                    recipients: list[str] = []
                    while True:  # the group: RCPT… then DATA, before any reply
                        command = await reader.readline()
                        if command.upper().startswith(b"DATA"):
                            break
                        recipients.append(command.split(b"<")[1].split(b">")[0].decode())
                    writer.write(b"250 ok\r\n" + b"250 ok\r\n" * len(recipients) + b"354 go\r\n")
                    await writer.drain()
                    body = bytearray()
                    while True:
                        chunk = await reader.readline()
                        if (
                            self.drop_after_body_bytes is not None
                            and len(body) >= self.drop_after_body_bytes
                        ):
                            writer.transport.abort()
                            return
                        if chunk == b".\r\n":
                            break
                        body += chunk
                    self.messages.append((sender, recipients, unstuff_data(bytes(body))))
                    if self.silent_after_body:  # never answer the body; wait for the close
                        await reader.read()
                        return
                    writer.write(b"250 2.0.0 accepted\r\n")
                else:
                    writer.write(b"502 unknown\r\n")
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()


# --- lock-step against aiosmtpd -------------------------------------------------------------


async def test_lockstep_delivers_byte_identical_messages(aiosmtpd_server: Any) -> None:
    server = await aiosmtpd_server()
    connection = await SmtpConnection.open(server.host, server.port, timeout=5)
    assert not connection.pipelining and "8BITMIME" in connection.extensions
    sent = []
    for index in range(3):
        raw = japanese_message(f"reader{index}@example.jp")
        sent.append(raw)
        assert await connection.send(SENDER, [f"reader{index}@example.jp"], raw) == {}
    await connection.quit()
    received = server.handler.received
    assert [env.rcpt_tos for env in received] == [[f"reader{i}@example.jp"] for i in range(3)]
    assert [env.original_content for env in received] == [raw for raw in sent]
    assert received[0].mail_options[:1] == [f"SIZE={len(prepare_data(sent[0]))}"]
    assert "BODY=8BITMIME" in received[0].mail_options
    parsed = message_from_bytes(received[0].original_content or b"", policy=policy.default)
    assert str(parsed["Subject"]) == "今週の注目記事: トランプ再選で変わる世界?"


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
async def test_per_recipient_refusals_are_typed(aiosmtpd_server: Any, pipelining: bool) -> None:
    handler = Recorder(
        pipelining=pipelining,
        refuse={
            "busy@example.jp": "451 4.3.0 try again later",
            "gone@example.jp": "550 5.1.1 no such user",
        },
    )
    server = await aiosmtpd_server(handler)
    connection = await SmtpConnection.open(server.host, server.port, timeout=5)
    assert connection.pipelining is pipelining
    raw = japanese_message("ok@example.jp")
    refused = await connection.send(
        SENDER, ["ok@example.jp", "busy@example.jp", "gone@example.jp"], raw
    )
    assert set(refused) == {"busy@example.jp", "gone@example.jp"}
    busy, gone = refused["busy@example.jp"], refused["gone@example.jp"]
    assert isinstance(busy, SmtpTemporaryError) and busy.code == 451 and busy.temporary
    assert busy.recipient == "busy@example.jp" and "try again later" in busy.reply
    assert isinstance(gone, SmtpPermanentError) and gone.code == 550 and not gone.temporary
    assert str(gone) == "gone@example.jp: recipient refused: 550 5.1.1 no such user"
    assert isinstance(gone, DigestMailError)

    with pytest.raises(SmtpPermanentError) as single:
        await connection.send(SENDER, ["gone@example.jp"], raw)
    assert single.value.recipient == "gone@example.jp" and single.value.code == 550
    with pytest.raises(SmtpRecipientsRefused) as both:
        await connection.send(SENDER, ["busy@example.jp", "gone@example.jp"], raw)
    assert (
        set(both.value.errors) == {"busy@example.jp", "gone@example.jp"}
        and not both.value.temporary
    )

    # After the failed transactions (RSET) the same connection still delivers.
    assert await connection.send(SENDER, ["ok@example.jp"], raw) == {}
    await connection.quit()
    assert [env.rcpt_tos for env in handler.received] == [["ok@example.jp"], ["ok@example.jp"]]
    assert handler.received[1].original_content == raw


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
async def test_refused_sender_is_a_transaction_error(
    aiosmtpd_server: Any, pipelining: bool
) -> None:
    handler = Recorder(pipelining=pipelining, refuse_sender="421 4.7.0 slow down")
    server = await aiosmtpd_server(handler)
    connection = await SmtpConnection.open(server.host, server.port, timeout=5)
    with pytest.raises(SmtpTemporaryError) as caught:
        await connection.send(SENDER, ["ok@example.jp"], japanese_message("ok@example.jp"))
    assert caught.value.code == 421 and caught.value.recipient is None
    await connection.quit()
    assert handler.received == []


async def test_pipelined_path_on_aiosmtpd_delivers_many(aiosmtpd_server: Any) -> None:
    handler = Recorder(pipelining=True)
    server = await aiosmtpd_server(handler)
    connection = await SmtpConnection.open(server.host, server.port, timeout=5)
    assert connection.pipelining
    raws = [japanese_message(f"r{i}@example.jp", with_dots=i % 2 == 0) for i in range(20)]
    for index, raw in enumerate(raws):
        await connection.send(SENDER, [f"r{index}@example.jp"], raw)
    await connection.quit()
    assert [env.original_content for env in handler.received] == [r for r in raws]


# --- pipelining proven, dropped connections ----------------------------------------------------


async def test_pipelining_sends_the_group_in_one_go() -> None:
    server = ScriptedServer()
    await server.start()
    try:
        connection = await SmtpConnection.open("127.0.0.1", server.port, timeout=5)
        assert connection.pipelining
        raw = japanese_message("a@example.jp")
        await connection.send(SENDER, ["a@example.jp", "b@example.jp"], raw)
        await connection.send(SENDER, ["c@example.jp"], raw)
        await connection.quit()
    finally:
        await server.stop()
    assert [(s, r) for s, r, _ in server.messages] == [
        (SENDER, ["a@example.jp", "b@example.jp"]),
        (SENDER, ["c@example.jp"]),
    ]
    assert server.messages[0][2] == raw


async def test_dropped_connection_mid_data_is_surfaced() -> None:
    server = ScriptedServer(drop_after_body_bytes=100)
    await server.start()
    try:
        connection = await SmtpConnection.open("127.0.0.1", server.port, timeout=5)
        with pytest.raises(SmtpConnectionLost) as caught:
            await connection.send(SENDER, ["a@example.jp"], japanese_message("a@example.jp"))
        assert caught.value.temporary and caught.value.code is None
        assert isinstance(caught.value, ConnectionError)
        assert not connection.is_connected
        with pytest.raises(SmtpConnectionLost):
            await connection.send(SENDER, ["a@example.jp"], b"x\r\n")
        await connection.quit()
    finally:
        await server.stop()
    assert server.messages == []


async def test_a_body_without_a_reply_times_out() -> None:
    # The body is written by the read callback on the 354; the reply to it still has a
    # timeout of its own, and the connection is closed after it.
    server = ScriptedServer(silent_after_body=True)
    await server.start()
    try:
        connection = await SmtpConnection.open("127.0.0.1", server.port, timeout=0.3)
        raw = japanese_message("a@example.jp")
        with pytest.raises(SmtpTimeout) as caught:
            await connection.send(SENDER, ["a@example.jp"], raw)
        assert caught.value.temporary
    finally:
        # The session ends only when the client closes the connection: stop() waits.
        await server.stop()
    assert server.messages == [(SENDER, ["a@example.jp"], raw)]


async def test_silent_server_times_out() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SmtpTimeout) as caught:
            await SmtpConnection.open("127.0.0.1", port, timeout=0.05)
        assert isinstance(caught.value, SmtpConnectionLost) and caught.value.temporary
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_connection_is_connection_lost() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SmtpConnectionLost, match=f"127.0.0.1:{port}: cannot connect"):
        await SmtpConnection.open("127.0.0.1", port, timeout=5)


# --- TLS and AUTH --------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    """A throwaway CA and a certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    base = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=base, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (base / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    )
    yield Pki(base / "ca.pem", base / "server.pem", base / "server.key")


class Authenticator:
    def __init__(self) -> None:
        self.mechanisms: list[str] = []

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == "菊の秘密".encode()
        return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize(
    ("mode", "mechanism"), [("starttls", "PLAIN"), ("implicit", "PLAIN"), ("starttls", "LOGIN")]
)
async def test_tls_verified_then_auth(
    aiosmtpd_server: Any, pki: Pki, mode: str, mechanism: str
) -> None:
    handler = Recorder()
    # The client prefers PLAIN; a server without it gets LOGIN.
    excluded = ["PLAIN"] if mechanism == "LOGIN" else []
    authenticator = Authenticator()
    options: dict[str, Any] = {"authenticator": authenticator, "auth_exclude_mechanism": excluded}
    if mode == "starttls":
        options.update(tls_context=pki.server_context(), require_starttls=True, auth_required=True)
    else:
        # aiosmtpd cannot tell that the socket itself is TLS: let it offer AUTH anyway.
        options.update(ssl=pki.server_context(), auth_require_tls=False)
    server = await aiosmtpd_server(handler, **options)
    connection = await SmtpConnection.open(
        server.host,
        server.port,
        tls=mode,
        ssl_context=pki.client_context(),  # type: ignore[arg-type]
        username="editor",
        password="菊の秘密",
        timeout=5,
    )
    assert connection.tls
    await connection.send(SENDER, ["ok@example.jp"], japanese_message("ok@example.jp"))
    await connection.quit()
    assert len(handler.received) == 1
    assert authenticator.mechanisms == [mechanism]

    with pytest.raises(SmtpAuthError, match="login as 'editor' refused: 535"):
        await SmtpConnection.open(
            server.host,
            server.port,
            tls=mode,
            ssl_context=pki.client_context(),  # type: ignore[arg-type]
            username="editor",
            password="wrong",
            timeout=5,
        )


async def test_unverifiable_certificate_is_refused(aiosmtpd_server: Any, pki: Pki) -> None:
    server = await aiosmtpd_server(Recorder(), tls_context=pki.server_context())
    with pytest.raises(SmtpTlsError, match="TLS failed"):
        # The default context trusts only the system's CAs, not our throwaway one.
        await SmtpConnection.open(server.host, server.port, tls="starttls", timeout=5)


async def test_starttls_required_but_not_offered(aiosmtpd_server: Any) -> None:
    server = await aiosmtpd_server(Recorder())
    with pytest.raises(SmtpTlsError, match="does not offer STARTTLS"):
        await SmtpConnection.open(server.host, server.port, tls="starttls", timeout=5)


async def test_no_password_over_plain_text_to_a_remote_host() -> None:
    server = ScriptedServer()
    await server.start()
    try:
        connection = await SmtpConnection.open("127.0.0.1", server.port, timeout=5)
        connection.host = "relay.example.net"  # as if it were remote, without leaving the machine
        with pytest.raises(SmtpAuthError, match="unencrypted"):
            await connection._login("editor", "secret", port=server.port)
        await connection.quit()
    finally:
        await server.stop()


# --- Postfix smtp-sink -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_sink() -> Iterator[tuple[int, Path]]:
    if not os.access("/usr/sbin/smtp-sink", os.X_OK):
        pytest.skip("Postfix smtp-sink is not installed (make system-deps)")
    # Not under tmp_path: as root smtp-sink runs as nobody, who cannot enter pytest's 0700 folders.
    dump = Path(tempfile.mkdtemp(prefix="digest-mail-sink-"))
    dump.chmod(0o777)
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        ["/usr/sbin/smtp-sink", *user, "-d", f"{dump}/%M.", f"127.0.0.1:{port}", "64"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                pytest.fail(
                    f"smtp-sink did not start: {process.stderr.read() if process.stderr else ''!r}"
                )
            time.sleep(0.01)
        yield port, dump
    finally:
        process.terminate()
        process.wait(5)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(dump, ignore_errors=True)


async def test_pipelined_against_smtp_sink(smtp_sink: tuple[int, Path]) -> None:
    port, dump = smtp_sink
    connection = await SmtpConnection.open("127.0.0.1", port, timeout=5)
    assert connection.pipelining
    raws = [japanese_message(f"r{i}@example.jp") for i in range(10)]
    for index, raw in enumerate(raws):
        assert await connection.send(SENDER, [f"r{index}@example.jp"], raw) == {}
    await connection.quit()
    dumped = sorted(path.read_bytes() for path in dump.iterdir())
    assert len(dumped) == 10
    # smtp-sink writes its own headers, then the message as received (un-stuffed, LF).
    for index, raw in enumerate(raws):
        matching = [d for d in dumped if f"X-Rcpt-Args: <r{index}@example.jp>".encode() in d]
        assert len(matching) == 1
        assert raw.replace(b"\r\n", b"\n") in matching[0]
