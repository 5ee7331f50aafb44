"""Secrets never leak: not into drafts, outbox, var/ (the ledger), archive, mail or output.

compose, test-send and send run with DIGEST_MAIL_SMTP_PASSWORD and DIGEST_MAIL_SECRET set
to marker strings and DIGEST_MAIL_DKIM_KEY to a fresh private key, against a real SMTP
server that requires that password. Afterwards every file the workspace holds, every
message the server received and everything the commands printed is searched for the
markers (as text, base64 and hex).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Runner
from faultserver import FaultServer

PASSWORD = "marker-smtp-password-7f3a9c"
SECRET = "marker-unsubscribe-secret-5d2e8b1c"


def _dkim_key() -> str:
    """A fresh RSA key (PEM) for DKIM_KEY; its base64 lines are the markers to look for."""
    done = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


DKIM_KEY = _dkim_key() if shutil.which("openssl") else ""
# Any 40-character run of the key's base64 would be a leak.
DKIM_MARKERS = [line[:40] for line in DKIM_KEY.splitlines()[1:-1] if len(line) >= 40]


def _forms(marker: str) -> list[bytes]:
    raw = marker.encode()
    return [
        raw,
        base64.b64encode(raw)[:16],
        base64.urlsafe_b64encode(raw)[:16],
        raw.hex().encode(),
        f"\0digest\0{marker}".encode(),
        base64.b64encode(f"\0digest\0{marker}".encode()),  # AUTH PLAIN
    ]


def _leaks(data: bytes) -> list[str]:
    found = [
        f"{marker[:14]}… as {form[:12]!r}"
        for marker in (PASSWORD, SECRET)
        for form in _forms(marker)
        if form in data
    ]
    return found + [f"DKIM key line {m[:10]}…" for m in DKIM_MARKERS if m.encode() in data]


@pytest.mark.parametrize("transport", ["smtp", "capture"])
def test_secrets_reach_no_file_no_message_no_output(
    workspace: Path, run: Runner, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    with FaultServer(keep_messages=True, login=("digest", PASSWORD)) as server:
        env = {"DIGEST_MAIL_SMTP_PASSWORD": PASSWORD, "DIGEST_MAIL_SECRET": SECRET}
        if DKIM_KEY:
            env.update(
                DIGEST_MAIL_DKIM_KEY=DKIM_KEY,
                DIGEST_MAIL_DKIM_DOMAIN="example.jp",
                DIGEST_MAIL_DKIM_SELECTOR="digest",
            )
        if transport == "smtp":
            env["DIGEST_MAIL_SMTP_URL"] = f"smtp://digest@127.0.0.1:{server.port}"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        outputs = [
            run("compose", "articles/kyoto-crafts-successors.md"),
            run("check"),
            run("test-send"),
            run("send", "--list", "weekly", "--yes"),
            run("send", "--list", "weekly", "--yes"),  # the rerun: nothing more, same secrecy
            run("status"),
            run("status", "--json"),
        ]
    for result in outputs[:1] + outputs[2:4]:
        assert result.exit_code == 0, result.output
    if transport == "smtp":
        assert server.logins and set(server.logins) == {"digest"}  # the password was used
        assert server.recorder.messages()
        if DKIM_KEY:  # the key was used: every message is signed
            assert all(
                m.data is not None and m.data.startswith(b"DKIM-Signature:")
                for m in server.recorder.messages()
            )
    leaks = []
    for result in outputs:
        leaks += [f"output of a command: {leak}" for leak in _leaks(result.output.encode())]
    for message in server.recorder.messages():
        assert message.data is not None
        leaks += [f"mail to {message.recipient}: {leak}" for leak in _leaks(message.data)]
    files = [p for p in workspace.rglob("*") if p.is_file()]
    assert any(p.parts[-3:-1] == ("var",) or "var" in p.parts for p in files)  # the ledger
    for path in files:
        leaks += [f"{path.relative_to(workspace)}: {leak}" for leak in _leaks(path.read_bytes())]
    assert leaks == []


def test_the_ledger_is_owner_only(workspace: Path, run: Runner) -> None:
    """It holds every subscriber's address and name: other local users must not read it."""
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    assert run("send", "--list", "weekly", "--yes").exit_code == 0
    for path in (workspace / "var").glob("ledger.sqlite3*"):
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    assert (workspace / "var" / "unsubscribe.key").stat().st_mode & 0o077 == 0
