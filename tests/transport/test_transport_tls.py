"""TLS to the relay: certificates are verified; STARTTLS and smtps both work; AUTH only
after TLS. The server is aiosmtpd on 127.0.0.1 with a throwaway self-signed certificate."""

from __future__ import annotations

import gc
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest_mail.transport.aiosmtp import AiosmtpConnection
from digest_mail.transport.errors import RelayError
from digest_mail.transport.pool import SmtpTransport
from digest_mail.transport.relay import parse_relay_url
from smtpserver import SmtpServer

MESSAGE = "From: digest@example.jp\r\nTo: taro@example.jp\r\nSubject: TLS\r\n\r\n本文\r\n".encode()


@pytest.fixture(autouse=True)
def _collect_failed_handshakes() -> Iterator[None]:
    """A TLS handshake that fails leaves its socket to the garbage collector (asyncio's
    and aiosmtpd's error paths, both sides of the test): collect it here, quietly, so its
    ResourceWarning cannot surface in whatever test happens to run next."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the throwaway certificate (as if a CA had signed it)."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    server = SmtpServer(
        auth={"digest": "correct horse"}, starttls=server_context(certificate)
    ).start()
    yield server
    server.stop()


@pytest.fixture
def smtps_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    server = SmtpServer(
        auth={"digest": "correct horse"}, implicit_tls=server_context(certificate)
    ).start()
    yield server
    server.stop()


async def test_an_untrusted_certificate_stops_before_any_credentials(
    starttls_server: SmtpServer,
) -> None:
    relay = parse_relay_url(f"smtp://digest@127.0.0.1:{starttls_server.port}?tls=starttls")
    transport = SmtpTransport(relay, connection=AiosmtpConnection, password="correct horse", size=1)
    with pytest.raises(RelayError) as info:
        await transport.send("digest@example.jp", ["taro@example.jp"], MESSAGE)
    assert "TLS failed" in str(info.value) and "certificate verify failed" in str(info.value)
    await transport.close()
    assert starttls_server.received == []


async def test_starttls_then_auth_then_send(
    starttls_server: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    relay = parse_relay_url(f"smtp://digest@127.0.0.1:{starttls_server.port}?tls=starttls")
    transport = SmtpTransport(
        relay,
        connection=AiosmtpConnection,
        password="correct horse",
        size=1,
        tls_context=trusting(certificate),
    )
    await transport.send("digest@example.jp", ["taro@example.jp"], MESSAGE)
    await transport.close()
    (item,) = starttls_server.received
    assert item.data == MESSAGE and item.recipients == ("taro@example.jp",)


async def test_wrong_password_over_tls_is_a_relay_error(
    starttls_server: SmtpServer, certificate: tuple[Path, Path]
) -> None:
    relay = parse_relay_url(f"smtp://digest@127.0.0.1:{starttls_server.port}?tls=starttls")
    transport = SmtpTransport(
        relay,
        connection=AiosmtpConnection,
        password="wrong",
        size=1,
        tls_context=trusting(certificate),
    )
    with pytest.raises(RelayError, match="refused the login for 'digest': 535"):
        await transport.send("digest@example.jp", ["taro@example.jp"], MESSAGE)
    await transport.close()


async def test_implicit_tls(smtps_server: SmtpServer, certificate: tuple[Path, Path]) -> None:
    untrusted = SmtpTransport(
        parse_relay_url(f"smtps://digest@127.0.0.1:{smtps_server.port}"),
        connection=AiosmtpConnection,
        password="x",
    )
    with pytest.raises(RelayError, match="certificate verify failed"):
        await untrusted.send("digest@example.jp", ["taro@example.jp"], MESSAGE)
    await untrusted.close()
    relay = parse_relay_url(f"smtps://digest@127.0.0.1:{smtps_server.port}")
    transport = SmtpTransport(
        relay,
        connection=AiosmtpConnection,
        password="correct horse",
        size=2,
        tls_context=trusting(certificate),
    )
    await transport.send("digest@example.jp", ["taro@example.jp"], MESSAGE)
    await transport.close()
    assert [item.data for item in smtps_server.received] == [MESSAGE]
