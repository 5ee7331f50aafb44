"""Transports: relay URLs and TLS rules, the rate limiter, capture, the SMTP pool."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from conftest import FakeClock
from digest_mail.config import find_workspace
from digest_mail.errors import ConfigError
from digest_mail.transport.aiosmtp import AiosmtpConnection
from digest_mail.transport.capture import CaptureTransport
from digest_mail.transport.errors import (
    PermanentFailure,
    RelayError,
    TemporaryFailure,
    UncertainFailure,
)
from digest_mail.transport.factory import open_transport
from digest_mail.transport.pool import SmtpTransport, WeightedTransport
from digest_mail.transport.ratelimit import RateLimiter
from digest_mail.transport.relay import parse_relay_url
from smtpserver import SmtpServer


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit", "starttls", "user"),
    [
        ("smtp://digest@relay.example.jp:587", "relay.example.jp", 587, False, True, "digest"),
        ("smtp://relay.example.jp", "relay.example.jp", 587, False, True, ""),
        ("smtps://relay.example.jp", "relay.example.jp", 465, True, False, ""),
        ("smtp://127.0.0.1:1025", "127.0.0.1", 1025, False, False, ""),
        ("smtp://localhost:25", "localhost", 25, False, False, ""),
        ("smtp://[::1]:2525", "::1", 2525, False, False, ""),
        ("smtp://127.0.0.1:1025?tls=starttls", "127.0.0.1", 1025, False, True, ""),
        (
            "smtp://user%40example.jp@relay.example.jp:587",
            *("relay.example.jp", 587, False, True, "user@example.jp"),
        ),
    ],
)
def test_relay_urls_require_tls_except_on_loopback(
    url: str, host: str, port: int, implicit: bool, starttls: bool, user: str
) -> None:
    relay = parse_relay_url(url)
    assert (relay.host, relay.port, relay.implicit_tls, relay.starttls, relay.username) == (
        host,
        port,
        implicit,
        starttls,
        user,
    )
    # Anything not on this machine is always encrypted, so credentials never go in clear.
    assert relay.encrypted or host in {"127.0.0.1", "localhost", "::1"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "smtp://digest:hunter2@relay.example.jp:587",
            "the SMTP URL 'smtp://digest:***@relay.example.jp:587' must not contain a password",
        ),
        ("http://relay.example.jp", "'http://relay.example.jp' is not an SMTP relay URL"),
        ("smtp://relay.example.jp?tls=none", "tls='none': the only option is tls=starttls"),
        ("smtp://relay.example.jp?verify=no", "unknown URL option 'verify'"),
        ("smtp://relay.example.jp:99999", "bad port in 'smtp://relay.example.jp:99999'"),
    ],
)
def test_bad_relay_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_relay_url(url)
    assert message in str(info.value)
    assert str(info.value).startswith("smtp.url: ")


def test_open_transport_defaults_to_capture(workspace: Path) -> None:
    transport = open_transport(find_workspace(workspace))
    assert isinstance(transport, CaptureTransport)
    assert transport.directory == workspace / "outbox"
    asyncio.run(transport.close())


def test_several_relays_share_by_weight(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DIGEST_MAIL_SMTP_URL", "smtps://a.example.jp:465?weight=3, smtp://b.example.jp:587"
    )
    monkeypatch.setenv("DIGEST_MAIL_SMTP_CONCURRENCY", "8")
    transport = open_transport(find_workspace(workspace))
    assert isinstance(transport, WeightedTransport)
    assert [t.relay.host for t in transport._cycle] == ["a.example.jp"] * 3 + ["b.example.jp"]
    assert [t.relay.weight for t in transport.transports] == [3, 1]


def test_insecure_skip_verify_warns_loudly(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIGEST_MAIL_SMTP_URL", "smtps://relay.example.jp:465")
    monkeypatch.setenv("DIGEST_MAIL_SMTP_INSECURE_SKIP_VERIFY", "true")
    transport = open_transport(find_workspace(workspace))
    assert isinstance(transport, SmtpTransport)
    assert "WARNING: [smtp] insecure_skip_verify is on" in capsys.readouterr().err


def test_password_file_must_be_owner_only(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = workspace / "smtp-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    monkeypatch.setenv("DIGEST_MAIL_SMTP_URL", "smtp://digest@relay.example.jp:587")
    monkeypatch.setenv("DIGEST_MAIL_SMTP_PASSWORD_FILE", str(secret))
    with pytest.raises(ConfigError, match="readable by group or others"):
        open_transport(find_workspace(workspace))


async def test_rate_limiter_spaces_messages_on_the_injected_clock() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(per_second=10, clock=clock)
    for _ in range(30):
        await limiter.acquire()
    # A burst of one second's worth, then one every 0.1 s.
    assert clock.now == pytest.approx(2.0)
    hourly = RateLimiter(per_hour=120, clock=FakeClock(start=0.0))
    for _ in range(5):
        await hourly.acquire()
    assert hourly.clock.monotonic() == pytest.approx(3 * 30.0)


async def test_capture_keeps_exact_bytes_and_the_envelope(tmp_path: Path) -> None:
    transport = CaptureTransport(tmp_path / "outbox")
    data = b"Subject: =?utf-8?b?5Lu26ZCN?=\r\n\r\n.dot line\r\n"
    await transport.send("digest@example.jp", ["taro@example.jp"], data)
    await transport.close()
    (name,) = os.listdir(tmp_path / "outbox" / "new")
    assert (tmp_path / "outbox" / "new" / name).read_bytes() == data
    envelope = json.loads((tmp_path / "outbox" / "envelopes.jsonl").read_text())
    assert envelope == {"file": name, "from": "digest@example.jp", "to": ["taro@example.jp"]}


async def test_pool_reuses_connections_and_classifies_replies(smtp_server: SmtpServer) -> None:
    relay = parse_relay_url(smtp_server.url)
    transport = SmtpTransport(relay, connection=AiosmtpConnection, size=2)
    assert await transport.supports_8bit()
    message = b"From: digest@example.jp\r\nTo: a@example.jp\r\nSubject: x\r\n\r\nbody\r\n"
    for i in range(6):
        await transport.send("digest@example.jp", [f"r{i}@example.jp"], message)
    smtp_server.reply_for("t@example.jp", "451 4.7.1 later")
    smtp_server.reply_for("p@example.jp", "550 5.1.1 unknown user")
    with pytest.raises(TemporaryFailure) as temporary:
        await transport.send("digest@example.jp", ["t@example.jp"], message)
    assert (temporary.value.code, temporary.value.message) == (451, "4.7.1 later")
    with pytest.raises(PermanentFailure) as permanent:
        await transport.send("digest@example.jp", ["p@example.jp"], message)
    assert permanent.value.bounced and permanent.value.recipient == "p@example.jp"
    smtp_server.drop_during_data()  # after the final dot: it may have been queued
    with pytest.raises(UncertainFailure, match="connection lost after the message"):
        await transport.send("digest@example.jp", ["d@example.jp"], message)
    await transport.send("digest@example.jp", ["d@example.jp"], message)  # reconnects
    await transport.close()
    assert len(smtp_server.received) == 7
    assert smtp_server.received[0].data == message


async def test_unreachable_relay_is_a_relay_error() -> None:
    relay = parse_relay_url("smtp://127.0.0.1:9")  # discard port: nothing listens
    transport = SmtpTransport(relay, connection=AiosmtpConnection, size=1, timeout=5)
    with pytest.raises(RelayError, match=r"Error connecting to 127\.0\.0\.1 on port 9"):
        await transport.send("digest@example.jp", ["a@example.jp"], b"Subject: x\r\n\r\nx\r\n")
    await transport.close()
