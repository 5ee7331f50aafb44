"""Setting up a relay: how it is shown (never with a password), test-send's one
connection, and hints that name the fix (?tls=starttls, [smtp] ca_file, the login)."""

from __future__ import annotations

import gc
import os
import shutil
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos_helpers import env_for
from conftest import Runner
from delivery_draft import write_draft_folder
from digest_mail.config import mask_url
from digest_mail.transport.relay import parse_relay_url
from faultserver import FaultServer
from smtpserver import SmtpServer

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(autouse=True)
def _collect_failed_handshakes() -> Iterator[None]:
    """A failed TLS handshake leaves its socket to the garbage collector (asyncio's and
    aiosmtpd's error paths): collect it here, quietly, as test_transport_tls.py does."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    folder = tmp_path_factory.mktemp("ca")
    cert, key = folder / "relay-ca.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("stmp://user:hunter2@relay.example.jp", "stmp://user:***@relay.example.jp"),
        ("smtp://user:hun@ter2@relay.example.jp:587", "smtp://user:***@relay.example.jp:587"),
        ("smtp://relay.example.jp:587", "smtp://relay.example.jp:587"),
        ("smtp://digest@example.jp@relay:587", "smtp://digest@example.jp@relay:587"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "stmp://user:hunter2@relay.example.jp",
            "Error: smtp.url: the SMTP URL 'stmp://user:***@relay.example.jp' must not "
            "contain a password",
        ),
        (
            "smtp://user:hunter2@relay.example.jp:587",
            "Error: smtp.url: the SMTP URL 'smtp://user:***@relay.example.jp:587' must not "
            "contain a password",
        ),
        (
            "smtp://user:hunter2@relay.example.jp:99999",
            "Error: smtp.url: bad port in 'smtp://user:***@relay.example.jp:99999'",
        ),
        (
            "smtps://user:hunter2@relay.example.jp?tls=none",
            "Error: smtp.url: the SMTP URL 'smtps://user:***@relay.example.jp?tls=none' must "
            "not contain a password",
        ),
    ],
)
def test_a_password_in_the_url_is_never_shown(
    workspace: Path, run: Runner, url: str, error: str
) -> None:
    write_draft_folder(workspace)
    env = {"DIGEST_MAIL_SMTP_URL": url, "DIGEST_MAIL_SECRET": "relay-secret-0123456789"}
    for args in (
        ("send", "2026-W48", "--list", "weekly", "--dry-run"),
        ("test-send", "2026-W48"),
    ):
        result = run(*args, env=env)
        assert result.exit_code == 1, result.output
        assert "hunter2" not in result.output
        assert result.output.splitlines()[0] == error


def test_a_relay_is_shown_with_its_login_apart_from_the_url() -> None:
    relay = parse_relay_url("smtps://127.0.0.1:465", username="digest@example.jp")
    assert relay.display == "smtps://127.0.0.1:465 (user digest@example.jp)"
    relay = parse_relay_url("smtp://digest%40example.jp@relay.example.jp")
    assert relay.display == "smtp://relay.example.jp:587 (user digest@example.jp)"
    assert parse_relay_url("smtp://[::1]:2525").display == "smtp://[::1]:2525"


def test_dry_run_names_the_relay_and_its_user(workspace: Path, run: Runner) -> None:
    write_draft_folder(workspace)
    env = {
        "DIGEST_MAIL_SMTP_URL": "smtps://127.0.0.1:465",
        "DIGEST_MAIL_SMTP_USERNAME": "digest@example.jp",
        "DIGEST_MAIL_SECRET": "relay-secret-0123456789",
    }
    result = run("send", "2026-W48", "--list", "weekly", "--dry-run", env=env)
    assert result.exit_code == 0, result.output
    assert " via SMTP relay smtps://127.0.0.1:465 (user digest@example.jp) (" in result.output


@pytest.mark.parametrize("client", ["pipelining", "aiosmtplib"])
@pytest.mark.parametrize("to", [(), ("--to", "guest@example.net")])
def test_test_send_uses_one_connection(
    workspace: Path, run: Runner, client: str, to: tuple[str, ...]
) -> None:
    write_draft_folder(workspace)
    with FaultServer() as server:
        env = {**env_for(server.url), "DIGEST_MAIL_SMTP_CLIENT": client}
        result = run("test-send", "2026-W48", *to, env=env)
        connections = server.recorder.connections
        received = len(server.recorder.messages())
    assert result.exit_code == 0, result.output
    assert received == (1 if to else 3)
    assert connections == 1


@pytest.mark.parametrize("client", ["pipelining", "aiosmtplib"])
def test_auth_only_after_starttls_hints_at_tls_starttls(
    workspace: Path, run: Runner, certificate: tuple[Path, Path], client: str
) -> None:
    write_draft_folder(workspace)
    server = SmtpServer(auth={"digest": "pw"}, starttls=server_context(certificate)).start()
    try:
        env = {
            "DIGEST_MAIL_SMTP_URL": f"smtp://digest@127.0.0.1:{server.port}",
            "DIGEST_MAIL_SMTP_PASSWORD": "pw",
            "DIGEST_MAIL_SMTP_CLIENT": client,
            "DIGEST_MAIL_SECRET": "relay-secret-0123456789",
        }
        result = run("test-send", "2026-W48", env=env)
    finally:
        server.stop()
    assert result.exit_code == 3, result.output
    error, hint = result.output.splitlines()[-2:]
    assert error.startswith(f"Error: smtp://127.0.0.1:{server.port} (user digest): ")
    assert hint.startswith(
        "Hint: the relay offers AUTH only after STARTTLS: add ?tls=starttls to [smtp] url "
        "(smtp://USER@host:PORT?tls=starttls)"
    )


def _cli(workspace: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process: a TLS session's teardown may outlive the event loop
    (uvloop warns at shutdown), which must not disturb this test process."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("digest-mail")), *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")},
            **env,
            "DIGEST_MAIL_WORKSPACE": str(workspace),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_openssl
@pytest.mark.parametrize("client", ["pipelining", "aiosmtplib"])
def test_a_private_ca_is_trusted_through_ca_file(
    workspace: Path, certificate: tuple[Path, Path], client: str
) -> None:
    write_draft_folder(workspace)
    shutil.copy(certificate[0], workspace / "relay-ca.pem")
    server = SmtpServer(implicit_tls=server_context(certificate)).start()
    try:
        env = {
            "DIGEST_MAIL_SMTP_URL": server.url,
            "DIGEST_MAIL_SMTP_CLIENT": client,
            "DIGEST_MAIL_SECRET": "relay-secret-0123456789",
        }
        untrusted = _cli(workspace, env, "test-send", "2026-W48")
        trusted = _cli(
            workspace, {**env, "DIGEST_MAIL_SMTP_CA_FILE": "relay-ca.pem"}, "test-send", "2026-W48"
        )
    finally:
        server.stop()
    assert untrusted.returncode == 3, untrusted.stdout + untrusted.stderr
    assert "certificate verify failed" in untrusted.stderr.splitlines()[-2]
    assert untrusted.stderr.splitlines()[-1].startswith(
        "Hint: the relay's certificate is not trusted here: if a private CA signed it, set "
        "[smtp] ca_file to that CA's PEM file (or SSL_CERT_FILE)"
    )
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert len(server.received) == 3


def test_ca_file_is_checked_with_the_settings(workspace: Path, run: Runner) -> None:
    write_draft_folder(workspace)
    (workspace / "not-a-ca.pem").write_text("hello\n", encoding="utf-8")
    env = {"DIGEST_MAIL_SMTP_URL": "smtps://127.0.0.1:465", "DIGEST_MAIL_SMTP_CA_FILE": "nope.pem"}
    missing = run("send", "2026-W48", "--list", "weekly", "--dry-run", env=env)
    assert missing.exit_code == 1
    assert missing.output == (
        f"Error: {workspace / 'digest-mail.toml'}: smtp.ca_file: {workspace / 'nope.pem'} does "
        "not exist\nHint: give the PEM file of the CA that signed the relay's certificate\n"
    )
    garbage = run("test-send", "2026-W48", env={**env, "DIGEST_MAIL_SMTP_CA_FILE": "not-a-ca.pem"})
    assert garbage.exit_code == 1
    assert garbage.output.startswith(
        f"Error: smtp.ca_file: {workspace / 'not-a-ca.pem'} is not a PEM file of CA certificates"
    )


def test_authentication_required_at_rcpt_hints_at_the_login(
    workspace: Path, run: Runner, smtp_server: SmtpServer
) -> None:
    write_draft_folder(workspace)
    smtp_server.reply_for("guest@example.net", "530 5.7.0 Authentication required", times=None)
    env = {"DIGEST_MAIL_SMTP_URL": smtp_server.url, "DIGEST_MAIL_SECRET": "relay-0123456789"}
    result = run("test-send", "2026-W48", "--to", "guest@example.net", env=env)
    assert result.exit_code == 3
    assert result.output.splitlines()[1:] == [
        f"Error: {smtp_server.url} refused us at RCPT TO: 530 5.7.0 Authentication required",
        "Hint: the relay wants a login: put the user in the URL (smtp://USER@host:587) or "
        "[smtp] username, and set DIGEST_MAIL_SMTP_PASSWORD; then rerun 'digest-mail "
        "test-send 2026-W48' to resume",
    ]


@pytest.mark.parametrize(
    ("feed", "error"),
    [
        (
            "http://editor:hunter2@127.0.0.1:9/feed.xml",
            "Error: http://editor:***@127.0.0.1:9/feed.xml: a feed is fetched over https only",
        ),
        (
            "https://editor:hunter2@127.0.0.1:9/feed.xml",
            "Error: https://editor:***@127.0.0.1:9/feed.xml: cannot fetch the feed (",
        ),
    ],
)
def test_a_password_in_a_feed_address_is_never_shown(
    workspace: Path, run: Runner, feed: str, error: str
) -> None:
    result = run("articles", "import", feed)
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert result.output.startswith(error), result.output
