"""A real Postfix of the test suite's own: configuration, queue and Maildirs under one
temporary folder, SMTP on loopback ports only, nothing delivered anywhere else.

``PostfixInstance(root).start()`` writes ``root/etc/main.cf`` and ``master.cf`` and runs
``postfix -c root/etc start``; ``stop()`` ends it. Everything goes through ``-c``: the
system's /etc/postfix is never read for configuration nor written. Safety:

- ``inet_interfaces = 127.0.0.1`` and every smtpd service binds 127.0.0.1:PORT;
- ``default_transport``/``relay_transport = error``, ``relayhost`` empty: no mail leaves;
- the only domain delivered is the virtual ``example.jp``, into ``root/mail``; local
  delivery (``mydestination``) is the instance's own host name, aliased nowhere.

Services (each its own port, ``ports[name]``):

- ``open``: accepts the virtual mailboxes; unknown users are rejected at RCPT (5.1.1);
  ``recipient_access`` answers per recipient (e.g. ``later@example.jp 450 4.2.0 …``).
- ``sender``: also checks the envelope sender against ``sender_access`` under the default
  ``smtpd_delay_reject = yes``, so a sender refusal is reported at RCPT.

- ``tls``: requires STARTTLS, with a self-signed certificate (``certificate``), as a
  relay whose certificate a private CA signed.
- ``inner``: a second hop on loopback (its own host name, so no mail loop is seen) that
  knows no mailbox of ``inner_vmailbox`` unless listed and answers ``inner_access``.

:meth:`after_acceptance` routes an address (``transport``) to the inner hop: the front
accepts it at RCPT, then Postfix's own delivery fails (5.1.1 from the inner hop: a DSN
of Postfix) or is deferred (an ``inner_access`` 4xx: delay warnings, then expiry after
``maximal_queue_lifetime``). DSNs go to the envelope sender, itself a virtual mailbox.
Maps are ``texthash`` (no postmap); after :meth:`write_map`, :meth:`reload`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

POSTFIX = Path("/usr/sbin/postfix")
DOMAIN = "example.jp"
MAPS = (
    "vmailbox",
    "recipient_access",
    "sender_access",
    "transport",
    "inner_vmailbox",
    "inner_access",
)


def unavailable() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if not POSTFIX.exists():
        return f"{POSTFIX} is not installed (make system-deps installs Debian's postfix)"
    if os.geteuid() != 0:
        return "starting Postfix needs root (CI runs the suite as root)"
    if shutil.which("openssl") is None:
        return "openssl is not installed (the TLS service needs a certificate)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no 'postfix' user: the Debian package is not fully installed"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostfixInstance:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc"
        self.mail = root / "mail"
        self.ports = {
            "open": _free_port(),
            "sender": _free_port(),
            "inner": _free_port(),
            "tls": _free_port(),
        }
        # The TLS service's self-signed certificate: its own CA, as a private CA's would be.
        self.certificate = self.etc / "tls-cert.pem"
        self.running = False

    def url(self, service: str = "open") -> str:
        return f"smtp://127.0.0.1:{self.ports[service]}"

    def maildir(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.mail / domain / local

    def delivered(self, address: str) -> list[Path]:
        new = self.maildir(address) / "new"
        return sorted(new.iterdir()) if new.is_dir() else []

    # -- configuration -----------------------------------------------------------------

    def _main_cf(self) -> str:
        uid = pwd.getpwnam("postfix").pw_uid
        gid = pwd.getpwnam("postfix").pw_gid
        etc = self.etc
        return f"""\
compatibility_level = 3.6
queue_directory = {self.root / "spool"}
data_directory = {self.root / "data"}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.root / "maillog"}
maillog_file_prefixes = {self.root}
myhostname = mta.postfix-test.invalid
mydomain = postfix-test.invalid
myorigin = $myhostname
mydestination = $myhostname
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
relayhost =
default_transport = error:5.7.1 this test instance delivers nowhere
relay_transport = error:5.7.1 this test instance delivers nowhere
local_transport = error:5.7.1 this test instance delivers no local mail
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
smtpd_banner = $myhostname ESMTP test
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{etc / "vmailbox"}
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
transport_maps = texthash:{etc / "transport"}
smtpd_recipient_restrictions =
    check_recipient_access texthash:{etc / "recipient_access"},
    permit_mynetworks, reject_unauth_destination
smtpd_sender_restrictions =
notify_classes =
# Delay warnings and expiry within seconds, so a test sees them: the queue is scanned
# every second and a deferred message gives up after a few.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
delay_warning_time = 1s
maximal_queue_lifetime = 4s
bounce_queue_lifetime = 4s
"""

    def _master_cf(self) -> str:
        sender_access = self.etc / "sender_access"
        inner_access = self.etc / "inner_access"
        return f"""\
127.0.0.1:{self.ports["open"]} inet n - n - - smtpd
127.0.0.1:{self.ports["sender"]} inet n - n - - smtpd
  -o smtpd_sender_restrictions=check_sender_access,texthash:{sender_access}
127.0.0.1:{self.ports["inner"]} inet n - n - - smtpd
  -o myhostname=inner.postfix-test.invalid
  -o virtual_mailbox_maps=texthash:{self.etc / "inner_vmailbox"}
  -o smtpd_recipient_restrictions=check_recipient_access,texthash:{inner_access},permit
127.0.0.1:{self.ports["tls"]} inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_loglevel=1
  -o smtpd_tls_cert_file={self.certificate}
  -o smtpd_tls_key_file={self.etc / "tls-key.pem"}
smtp      unix  -       -       n       -       -       smtp
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
virtual   unix  -       n       n       -       -       virtual
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

    def write_map(self, name: str, lines: list[str]) -> None:
        assert name in MAPS
        (self.etc / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")

    def after_acceptance(self, addresses: list[str]) -> None:
        """Deliver ``addresses`` through the inner hop (see the module's docstring)."""
        self.write_map(
            "transport", [f"{a} smtp:[127.0.0.1]:{self.ports['inner']}" for a in addresses]
        )

    def mailboxes(self, addresses: list[str]) -> None:
        """Make ``addresses`` virtual mailboxes (their Maildirs appear on delivery)."""
        self.write_map("vmailbox", [f"{a} {DOMAIN}/{a.partition('@')[0]}/" for a in addresses])

    # -- running -----------------------------------------------------------------------

    def _postfix(self, *args: str) -> None:
        done = subprocess.run(
            [str(POSTFIX), "-c", str(self.etc), *args], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)}: {done.stdout}{done.stderr}{self.log()}")

    def start(self) -> PostfixInstance:
        self.etc.mkdir(parents=True)
        self.mail.mkdir()
        shutil.chown(self.mail, "postfix", "postfix")
        (self.root / "spool").mkdir()  # Postfix makes its queues inside (owned by root)
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", "postfix", "postfix")
        (self.etc / "main.cf").write_text(self._main_cf(), encoding="utf-8")
        (self.etc / "master.cf").write_text(self._master_cf(), encoding="utf-8")
        for name in MAPS:
            self.write_map(name, [])
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"),
                *("-keyout", str(self.etc / "tls-key.pem"), "-out", str(self.certificate)),
            ],
            check=True,
            capture_output=True,
        )
        self._postfix("start")
        self.running = True
        deadline = time.monotonic() + 30
        for port in self.ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"Postfix did not listen:\n{self.log()}"
                    time.sleep(0.05)  # polling a real process
        return self

    def reload(self) -> None:
        self._postfix("reload")

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._postfix("stop")

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def accepts(self, service: str, sender: str, recipient: str) -> bool:
        """Whether ``service`` accepts ``recipient`` from ``sender`` now (MAIL and RCPT,
        then RSET: nothing is sent). After a reload, old smtpd processes may answer for
        a moment with the old maps: poll this until the new ones answer."""
        import smtplib

        with smtplib.SMTP("127.0.0.1", self.ports[service], timeout=10) as client:
            client.ehlo("probe.postfix-test.invalid")
            client.mail(sender)
            code, _ = client.rcpt(recipient)
            client.rset()
        return code == 250

    def wait(self, condition: object, *, timeout: float = 60, what: str = "") -> None:
        """Poll ``condition()`` until true (a real MTA delivers in its own time)."""
        assert callable(condition)
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"Postfix never {what}:\n{self.log()[-4000:]}"
            time.sleep(0.05)  # polling a real process; nothing under test waits on this
