"""DKIM: what arrives verifies with dkimpy against the public key (no DNS)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import dkim
import pytest

from delivery_draft import SAMPLE_DRAFT
from digest_mail.config import find_workspace
from digest_mail.delivery.campaign import run_campaign
from digest_mail.errors import ConfigError
from smtpserver import SmtpServer


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(private PEM, DNS TXT record) of a fresh 2048-bit key."""
    folder = tmp_path_factory.mktemp("dkim")
    pem = folder / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(pem), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(pem), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    return pem.read_bytes(), record


def configure(
    root: Path, server: SmtpServer, monkeypatch: pytest.MonkeyPatch, pem: bytes, mode: int
) -> None:
    key = root / "var" / "dkim.pem"
    key.parent.mkdir(exist_ok=True)
    key.write_bytes(pem)
    key.chmod(mode)
    monkeypatch.setenv("DIGEST_MAIL_SMTP_URL", server.url)
    monkeypatch.setenv("DIGEST_MAIL_SECRET", "dkim-test-secret-0123456789")
    monkeypatch.setenv("DIGEST_MAIL_DKIM_DOMAIN", "example.jp")
    monkeypatch.setenv("DIGEST_MAIL_DKIM_SELECTOR", "digest2026")
    monkeypatch.setenv("DIGEST_MAIL_DKIM_KEY_FILE", "var/dkim.pem")
    (root / "subscribers" / "readers.csv").write_text(
        "email,name\n"
        "yamada.taro@example.jp,山田 太郎\n"
        "suzuki@example.com,\n"
        "佐藤.花子@example.net,佐藤 花子\n",
        encoding="utf-8",
    )


def test_signed_messages_verify_and_cover_both_unsubscribe_headers(
    workspace: Path,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    rsa_key: tuple[bytes, bytes],
) -> None:
    pem, record = rsa_key
    configure(workspace, smtp_server, monkeypatch, pem, 0o600)
    queried: list[bytes] = []

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        queried.append(name)
        return record if name == b"digest2026._domainkey.example.jp." else b""

    report = run_campaign(find_workspace(workspace), SAMPLE_DRAFT, "readers")
    assert report.sent == 3  # one with a non-ASCII local part, over SMTPUTF8
    for item in smtp_server.received:
        assert item.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(item.data, dnsfunc=dnsfunc)
        signature = item.message["DKIM-Signature"]
        tags = dict(
            t.strip().split("=", 1)
            for t in str(signature).replace("\r\n", "").split(";")
            if "=" in t
        )
        signed = {h.strip().lower() for h in tags["h"].replace(" ", "").split(":")}
        assert {
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
        } <= signed
        assert tags["d"] == "example.jp" and tags["s"] == "digest2026"
        # Change the one-click link and the signature no longer holds.
        tampered = item.data.replace(
            b"List-Unsubscribe: <https://", b"List-Unsubscribe: <https://evil.", 1
        )
        assert tampered != item.data
        assert not dkim.verify(tampered, dnsfunc=dnsfunc)
    assert set(queried) == {b"digest2026._domainkey.example.jp."}


def test_a_key_file_others_can_read_is_refused(
    workspace: Path,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    rsa_key: tuple[bytes, bytes],
) -> None:
    configure(workspace, smtp_server, monkeypatch, rsa_key[0], 0o644)
    with pytest.raises(
        ConfigError, match=r"DKIM key file .*dkim.pem is readable by group or others"
    ):
        run_campaign(find_workspace(workspace), SAMPLE_DRAFT, "readers")
    assert smtp_server.received == []
