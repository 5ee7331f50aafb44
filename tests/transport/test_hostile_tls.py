"""TLS verification is on by default, for both SMTP clients and both TLS modes.

A relay on 127.0.0.1 presents a self-signed certificate (made at test time with the
openssl command). Without the explicit, loud ``insecure_skip_verify`` the send stops with
one line naming the TLS failure, before any message or credential goes out; trusted
through ``SSL_CERT_FILE``, the same certificate works. The CLI runs as a real subprocess:
a client that crashes inside its event loop must not disturb the test process.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Runner
from digest_mail.config import SmtpSettings
from faultserver import FaultServer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
CLIENTS = (
    ["pipelining", "aiosmtplib"]
    if "client" in {f.name for f in dataclasses.fields(SmtpSettings)}
    else ["default"]
)
PASSWORD = "marker-tls-password-91ab"
DIGEST_MAIL = Path(sys.executable).with_name("digest-mail")


@pytest.fixture(scope="module")
def server_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.cert_file = str(cert)  # type: ignore[attr-defined]
    return context


def _send(
    workspace: Path,
    run: Runner,
    url: str,
    client: str,
    *,
    insecure: bool = False,
    trust: str | None = None,
) -> tuple[int, str]:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")}
    env.update(
        DIGEST_MAIL_WORKSPACE=str(workspace),
        DIGEST_MAIL_SMTP_URL=url,
        DIGEST_MAIL_SMTP_PASSWORD=PASSWORD,
        DIGEST_MAIL_SMTP_TIMEOUT="3",
    )
    if client != "default":
        env["DIGEST_MAIL_SMTP_CLIENT"] = client
    if insecure:
        env["DIGEST_MAIL_SMTP_INSECURE_SKIP_VERIFY"] = "true"
    if trust:
        env["SSL_CERT_FILE"] = trust
    done = subprocess.run(
        [str(DIGEST_MAIL), "test-send"], env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("mode", "client"),
    [(mode, c) for mode in ("smtps", "starttls") for c in CLIENTS],
)
def test_a_self_signed_relay_is_refused(
    workspace: Path, run: Runner, server_context: ssl.SSLContext, client: str, mode: str
) -> None:
    options = {"implicit_tls": server_context} if mode == "smtps" else {"starttls": server_context}
    with FaultServer(login=("digest", PASSWORD), **options) as server:  # type: ignore[arg-type]
        url = (
            f"smtps://digest@127.0.0.1:{server.port}"
            if mode == "smtps"
            else f"smtp://digest@127.0.0.1:{server.port}?tls=starttls"
        )
        code, output = _send(workspace, run, url, client)
        accepted = server.recorder.messages()
    assert code == 3, output  # stopped: the relay cannot be used as configured
    assert "Traceback" not in output
    error = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and "TLS" in error[0] and "certificate" in error[0].lower(), output
    assert accepted == [] and server.logins == []
    assert PASSWORD not in output


@pytest.mark.parametrize("client", CLIENTS)
def test_a_trusted_certificate_works(
    workspace: Path, run: Runner, server_context: ssl.SSLContext, client: str
) -> None:
    trust = server_context.cert_file  # type: ignore[attr-defined]
    with FaultServer(login=("digest", PASSWORD), implicit_tls=server_context) as server:
        url = f"smtps://digest@127.0.0.1:{server.port}"
        code, output = _send(workspace, run, url, client, trust=trust)
        accepted = server.recorder.messages()
    assert code == 0, output
    assert "WARNING" not in output
    assert len(accepted) == 3 and server.logins


@pytest.mark.parametrize("client", CLIENTS)
def test_skipping_verification_is_explicit_and_loud(
    workspace: Path, run: Runner, server_context: ssl.SSLContext, client: str
) -> None:
    with FaultServer(login=("digest", PASSWORD), implicit_tls=server_context) as server:
        url = f"smtps://digest@127.0.0.1:{server.port}"
        code, output = _send(workspace, run, url, client, insecure=True)
        accepted = server.recorder.messages()
    assert code == 0, output
    assert "WARNING" in output and "NOT" in output
    assert len(accepted) == 3  # the sample staff list
    assert server.logins == ["digest"] * len(server.logins) and server.logins
