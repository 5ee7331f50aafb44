"""A fault-injecting SMTP server for tests (aiosmtpd, 127.0.0.1, port 0).

Each transaction can be answered with a transient or permanent reply (421, 451, 452,
454, 550, 552), have its connection dropped before or during DATA, stall past the
client's timeout, or be accepted slowly. Which transaction meets which fault is a pure
function of (seed, first recipient, how many times the server has seen that recipient),
so a run reproduces whatever order concurrent connections happen to arrive in, and a
test can predict each recipient's final state from the plan alone
(:meth:`FaultPlan.expected`).

Every accepted (envelope recipient, Message-ID) is recorded with counts, so a test can
compare what the server took with what the ledger says was sent.

The server runs on its own event loop in a thread, so a test can point an in-process
campaign or a ``digest-mail send`` subprocess at ``smtp://127.0.0.1:<port>``. Run it by
hand with ``python tests/faultserver.py --seed 7 --rate 0.1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import ssl
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Stage = Literal["RCPT", "DATA", "END"]
Action = Literal["reply", "drop", "stall", "slow", "accept-drop", "late-accept"]


@dataclass(frozen=True)
class Fault:
    """What the server does to one transaction, and at which stage.

    ``RCPT`` answers the (first) RCPT TO; ``DATA`` acts after the 354 with part of the
    message read; ``END`` acts after the final dot, before the reply.
    """

    name: str
    stage: Stage
    action: Action
    reply: str = ""

    @property
    def permanent(self) -> bool:
        return self.action == "reply" and self.reply.startswith("5")

    @property
    def uncertain(self) -> bool:
        """The client has written the message and its final dot, then hears nothing in
        time (a stall, a drop during or after the message): it cannot know whether the
        message was queued, so a correct client reports the recipient uncertain."""
        return self.action in ("stall", "accept-drop") or (
            self.stage == "DATA" and self.action == "drop"
        )

    @property
    def closes(self) -> bool:
        return self.action in ("drop", "accept-drop") or self.reply.startswith("421")


# The catalogue the chaos tests draw from; replies are worded as Postfix words them.
FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("421-rcpt", "RCPT", "reply", "421 4.3.2 Service shutting down, closing channel"),
        Fault("421-end", "END", "reply", "421 4.3.2 Service shutting down, closing channel"),
        Fault("451-rcpt", "RCPT", "reply", "451 4.3.0 Temporary lookup failure"),
        Fault("451-end", "END", "reply", "451 4.3.0 Error: queue file write error"),
        Fault("452-rcpt", "RCPT", "reply", "452 4.3.1 Insufficient system storage"),
        Fault("454-rcpt", "RCPT", "reply", "454 4.7.1 Relay access temporarily denied"),
        Fault("550-rcpt", "RCPT", "reply", "550 5.1.1 Recipient address rejected: User unknown"),
        Fault("552-end", "END", "reply", "552 5.2.2 Mailbox full, over quota"),
        Fault("drop-before-data", "RCPT", "drop"),
        Fault("drop-during-data", "DATA", "drop"),
        Fault("stall", "END", "stall"),
        Fault("slow", "END", "slow"),
        # The 250 is lost on the wire after the message was queued: the one case
        # where SMTP itself cannot tell the client whether the message went.
        Fault("accept-drop", "END", "accept-drop"),
    )
}

# Every kind except the inherently ambiguous accept-drop; stalls are rarer because each
# costs the client a whole timeout.
CHAOS_MIX: dict[str, float] = {
    name: 0.3 if name == "stall" else 1.0 for name in FAULTS if name != "accept-drop"
}


@dataclass(frozen=True)
class FaultPlan:
    """Which fault meets the ``attempt``-th transaction for ``recipient``.

    ``rate`` of all transactions meet a fault drawn from ``mix`` (name -> weight).
    ``script`` overrides the random draw for named recipients: a list of fault names or
    :class:`Fault` objects (None for "accept") consumed attempt by attempt, then plain
    acceptance.
    """

    seed: int = 0
    rate: float = 0.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(CHAOS_MIX))
    script: Mapping[str, Sequence[str | Fault | None]] = field(default_factory=dict)

    def fault(self, recipient: str, attempt: int) -> Fault | None:
        key = recipient.lower()
        if key in self.script:
            steps = self.script[key]
            step = steps[attempt] if attempt < len(steps) else None
            return FAULTS[step] if isinstance(step, str) else step
        if self.rate <= 0:
            return None
        digest = hashlib.sha256(f"{self.seed}\0{key}\0{attempt}".encode()).digest()
        rng = random.Random(digest)
        if rng.random() >= self.rate:
            return None
        names = sorted(self.mix)
        return FAULTS[rng.choices(names, weights=[self.mix[n] for n in names])[0]]

    def expected(self, recipient: str, *, max_attempts: int = 100) -> tuple[str, str]:
        """('sent', ''), ('failed', reply) or ('uncertain', ''): the end a correct client
        must reach in one run (an uncertain recipient is not tried again in that run)."""
        for attempt in range(max_attempts):
            fault = self.fault(recipient, attempt)
            if fault is None or fault.action == "slow":
                return ("sent", "")
            if fault.permanent:
                return ("failed", fault.reply)
            if fault.uncertain:
                return ("uncertain", "")
        raise AssertionError(f"{recipient}: no decision within {max_attempts} attempts")


@dataclass(frozen=True)
class Accepted:
    recipient: str
    message_id: str
    data: bytes | None


@dataclass(frozen=True)
class Injected:
    recipient: str
    attempt: int
    fault: str


class Recorder:
    """What the server saw; shared between the server thread and the test (locked)."""

    def __init__(self, *, keep_messages: bool) -> None:
        self.keep_messages = keep_messages
        self.lock = threading.Lock()
        self.accepted: list[Accepted] = []
        self.injected: list[Injected] = []
        self.attempts: Counter[str] = Counter()
        self.connections = 0

    def accepted_counts(self) -> Counter[str]:
        with self.lock:
            return Counter(a.recipient.lower() for a in self.accepted)

    def faults_by_kind(self) -> Counter[str]:
        with self.lock:
            return Counter(i.fault for i in self.injected)

    def messages(self) -> list[Accepted]:
        with self.lock:
            return list(self.accepted)


class _FaultSMTP(SMTP):
    """aiosmtpd's SMTP with hooks where a fault can take over the conversation."""

    def __init__(self, server: FaultServer, *, refuse: bool = False, **kwargs: Any) -> None:
        super().__init__(server._handler, **kwargs)
        self.fault_server = server
        self.fault: Fault | None = None
        self.first_rcpt: str | None = None
        self.refuse = refuse

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.refuse:
            # A relay throttling connections: 421 in the greeting, then hang up.
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(b"421 4.7.0 fault.example.net Too many connections, try later\r\n")
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refuse:
            return
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self.refuse:
            return False
        return super().eof_received()  # type: ignore[no-any-return]

    def _drop(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def smtp_MAIL(self, arg: str) -> None:
        self.fault = None
        self.first_rcpt = None
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        address = _rcpt_address(arg)
        if address is not None and self.envelope is not None and self.envelope.mail_from:
            recorder = self.fault_server.recorder
            with recorder.lock:
                attempt = recorder.attempts[address.lower()]
                recorder.attempts[address.lower()] += 1
            if self.first_rcpt is None:
                self.first_rcpt = address
                self.fault = self.fault_server.plan.fault(address, attempt)
                if self.fault is not None:
                    with recorder.lock:
                        recorder.injected.append(Injected(address, attempt, self.fault.name))
            if self.fault is not None and self.fault.stage == "RCPT" and self.first_rcpt == address:
                fault = self.fault
                self.fault = None
                if fault.action == "drop":
                    self._drop()
                    return
                await self.push(fault.reply)
                if fault.closes:
                    self._drop()
                return
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        fault = self.fault
        if fault is not None and fault.stage == "DATA" and self.envelope and self.envelope.rcpt_tos:
            self.fault = None
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            # Read a little of the message so the drop lands in the middle of it.
            for _ in range(3):
                await self._reader.readuntil(b"\r\n")
            self._drop()
            self.transport = None  # stop reading the rest of the message as commands
            return
        if arg or not self.envelope or not self.envelope.rcpt_tos or not self.session.host_name:
            await super().smtp_DATA(arg)  # its error replies
            return
        # aiosmtpd reads DATA line by line, which made the server the bottleneck of the
        # chaos tests; one readuntil of the end marker is several times faster.
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._reader._limit = 1 << 26
        try:
            raw = bytes(await self._reader.readuntil(b"\r\n.\r\n"))
        finally:
            self._reader._limit = self.line_length_limit
        body = raw[:-3]
        if body.startswith(b".."):
            body = body[1:]
        body = body.replace(b"\r\n..", b"\r\n.")
        self.envelope.content = body
        self.envelope.original_content = body
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    def _set_post_data_state(self) -> None:
        self.fault = None
        self.first_rcpt = None
        super()._set_post_data_state()


def _rcpt_address(arg: str | None) -> str | None:
    if not arg or not arg.upper().startswith("TO:"):
        return None
    rest = arg[3:].strip()
    if rest.startswith("<") and ">" in rest:
        return rest[1 : rest.index(">")]
    return rest.split(" ", 1)[0] or None


class _Handler:
    def __init__(self, server: FaultServer) -> None:
        self.server = server

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _FaultSMTP)
        fault = server.fault
        server.fault = None
        data = envelope.original_content or b""
        if fault is not None and fault.stage == "END":
            if fault.action == "reply":
                if fault.closes:
                    asyncio.get_running_loop().call_soon(server._drop)
                return fault.reply
            if fault.action == "stall":
                # A before-queue filter that hangs: the client should give up first. If
                # it is still there afterwards, nothing was queued and it may retry.
                await asyncio.sleep(self.server.stall_seconds)
                return "451 4.4.2 Timeout while filtering, try again"
            if fault.action == "slow":
                await asyncio.sleep(self.server.slow_seconds)
            if fault.action == "accept-drop":
                self._record(envelope, data)
                server._drop()
                return "250 2.0.0 Ok: queued (reply lost)"
            if fault.action == "late-accept":
                # Queued at once, answered late (a loaded relay, or a loaded client that
                # reads its replies late): the 250 may come after the client gave up.
                self._record(envelope, data)
                await asyncio.sleep(self.server.slow_seconds)
                return "250 2.0.0 Ok: queued (late)"
        self._record(envelope, data)
        return "250 2.0.0 Ok: queued"

    def _record(self, envelope: Envelope, data: bytes) -> None:
        headers = BytesHeaderParser(policy=compat32).parsebytes(data)
        message_id = str(headers.get("Message-ID", "")).strip()
        recorder = self.server.recorder
        kept = data if recorder.keep_messages else None
        with recorder.lock:
            for rcpt in envelope.rcpt_tos:
                recorder.accepted.append(Accepted(rcpt, message_id, kept))


class FaultServer:
    """Start with ``with FaultServer(plan) as server:``; ``server.url`` for the client."""

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        keep_messages: bool = False,
        stall_seconds: float = 6.0,
        slow_seconds: float = 0.02,
        pipelining: bool = True,
        smtputf8: bool = False,
        login: tuple[str, str] | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        refuse_every: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.plan = plan or FaultPlan()
        self.recorder = Recorder(keep_messages=keep_messages)
        self.stall_seconds = stall_seconds
        self.slow_seconds = slow_seconds
        self.pipelining = pipelining
        self.smtputf8 = smtputf8
        self.login = login
        self.implicit_tls = implicit_tls
        self.refuse_every = refuse_every
        self.refused = 0
        self.starttls = starttls
        self.logins: list[str] = []
        self.host = host
        self.port = 0
        self._handler = _Handler(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._protocols: set[_FaultSMTP] = set()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def _factory(self) -> _FaultSMTP:
        with self.recorder.lock:
            number = self.recorder.connections
        every = self.refuse_every
        protocol = _FaultSMTP(
            self,
            # Connection 0 is always welcome: a relay refusing the very first one looks
            # like a wrong address, which stops a campaign on purpose.
            refuse=bool(every) and number > 0 and number % every == 0,
            hostname="fault.example.net",
            data_size_limit=0,
            timeout=60,
            enable_SMTPUTF8=self.smtputf8,
            **self._auth_options(),
            **(
                {"tls_context": self.starttls, "require_starttls": True}
                if self.starttls is not None
                else {}
            ),
        )
        self._protocols.add(protocol)
        with self.recorder.lock:
            self.recorder.connections += 1
            self.refused += protocol.refuse
        return protocol

    def _auth_options(self) -> dict[str, Any]:
        if self.login is None:
            return {}

        def authenticate(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and (
                    data.login.decode(),
                    data.password.decode(),
                )
                == self.login
            )
            if ok:
                self.logins.append(data.login.decode())
            return AuthResult(success=ok)

        # Loopback only: the client may log in without TLS here, as it may with dev-smtp.
        return {"authenticator": authenticate, "auth_require_tls": False}

    def start(self) -> FaultServer:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._factory, host=self.host, port=0, ssl=self.implicit_tls)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # surfaced in start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="faultserver", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.close()
        await asyncio.sleep(0)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_against_ledger(
    recorder: Recorder,
    *,
    sent: set[str],
    uncertain: set[str],
    ambiguous: set[str] | None = None,
) -> list[str]:
    """Problems (empty when none) comparing what the server took with the ledger.

    ``sent``: addresses the ledger calls sent. ``uncertain``: those it reported as
    uncertain at some point. ``ambiguous``: addresses whose 250 the server dropped on
    purpose (accept-drop), where SMTP itself allows a second copy.
    """
    counts = recorder.accepted_counts()
    allowed = {a.lower() for a in uncertain | (ambiguous or set())}
    sent_keys = {a.lower() for a in sent}
    problems = []
    for address in sorted(sent_keys - set(counts)):
        problems.append(f"{address}: ledger says sent, server never accepted it")
    for address in sorted(set(counts) - sent_keys - allowed):
        # (An uncertain one may have gone out in the crash, then failed on the resend.)
        problems.append(f"{address}: server accepted it, ledger does not say sent")
    for address, count in sorted(counts.items()):
        if count > 1 and address not in allowed:
            problems.append(f"{address}: accepted {count} times, never reported uncertain")
    return problems


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.1)
    args = parser.parse_args(argv)
    with FaultServer(FaultPlan(seed=args.seed, rate=args.rate)) as server:
        print(f"listening on {server.url} (seed {args.seed}, rate {args.rate})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        print(dict(server.recorder.faults_by_kind()), f"accepted {len(server.recorder.accepted)}")


if __name__ == "__main__":
    main()
