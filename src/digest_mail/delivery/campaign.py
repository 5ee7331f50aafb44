"""Campaigns: send one edition to one list, resumable, never doubled.

A campaign is (edition, list). When it first starts, the list is snapshotted into the
ledger (one ``deliveries`` row per recipient, ``queued``); suppressed addresses and
invalid rows are recorded as such. A CLI send writes the snapshot in a forked child
while it already sends the committed rows (:class:`_SnapshotWriter`). Workers pull jobs
from a queue, splice each message from the edition's
:class:`~digest_mail.mail.message.MessageTemplate` and hand the bytes to the transport.

Durability without a commit per message: rows are claimed (``queued`` → ``sending``) in
small batches *before* their messages go out, and results are committed with the next
claim (one transaction), or after 50 ms or 100 results. A crash leaves at most the
claimed-but-unrecorded rows in ``sending``; the next run marks them ``uncertain`` (they
may or may not have been accepted) and does not resend them unless asked to (``resend_uncertain``).

Temporary failures (4xx, drops, timeouts) go to the back of the queue after an
exponential backoff with jitter, until ``[smtp] retry_for`` has passed: then the row is
``deferred`` (a rerun tries it again). 5xx is final (``failed``); 550/551/553 also
suppress the address. A relay that refuses us (AUTH, TLS, sender) stops the campaign;
in-flight rows are released back to ``queued``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from digest_mail import eventloop
from digest_mail.audience.addresses import normalize_address
from digest_mail.audience.csvfiles import check_readable, scan_list
from digest_mail.audience.keyset import SeenKeys
from digest_mail.audience.lists import iter_recipients, require_list, similar_list
from digest_mail.audience.rows import Recipient, RowProblem
from digest_mail.audience.unsubscribe import (
    TokenSigner,
    signing_key,
    unsubscribe_mailto,
    unsubscribe_url,
)
from digest_mail.config import Workspace, parse_duration
from digest_mail.errors import (
    EXIT_COMPLETE,
    EXIT_INCOMPLETE,
    EXIT_STOPPED,
    EXIT_UNCERTAIN,
    ConfigError,
    DigestMailError,
)
from digest_mail.ledger import campaigns
from digest_mail.ledger.campaigns import AlreadyReceived
from digest_mail.ledger.db import Ledger, LedgerError, utcnow
from digest_mail.ledger.suppressions import is_suppressed
from digest_mail.mail.body import BodyEncoding
from digest_mail.mail.message import MessageTemplate, new_message_id
from digest_mail.transport.errors import (
    SMTPUTF8_MISSING,
    PermanentFailure,
    RelayError,
    TemporaryFailure,
)
from digest_mail.transport.factory import open_transport
from digest_mail.transport.protocol import Transport
from digest_mail.transport.ratelimit import Clock, SystemClock
from digest_mail.transport.wire import needs_smtputf8

if TYPE_CHECKING:
    # Only a type: importing edition at start would load rendering for every send.
    from digest_mail.render.draft import HashedDraft

SNAPSHOT_BATCH = 1000
# While this process sends, the snapshot writer commits smaller batches: the claims
# wait for the ledger's write lock no longer than one of them takes.
STREAMED_SNAPSHOT_BATCH = 250
SNAPSHOT_UNFINISHED = "the list snapshot did not finish: run the send again to complete it"
FLUSH_EVERY = 0.05  # seconds
FLUSH_SIZE = 100
BACKOFF_BASE = 30.0  # seconds before the first retry
BACKOFF_CAP = 900.0
# The circuit breaker (docs/relays.md): permanent rejections among the first
# BREAKER_WINDOW answers of a run are held (the rows stay queued, nobody is suppressed)
# until the window closes. It trips, stopping the run and requeueing them, when
# BREAKER_SAME_REPLY of them carry the same reply that neither names the recipient nor
# can be classified, or when at least BREAKER_MIN_REJECTED of them make up
# BREAKER_SHARE of the answers so far: a list where "everyone does not exist" is a
# relay problem.
BREAKER_WINDOW = 50
BREAKER_SAME_REPLY = 5
BREAKER_MIN_REJECTED = 10
BREAKER_SHARE = 0.5

STATES = ("queued", "sending", "sent", "deferred", "failed", "suppressed", "skipped", "uncertain")


class CampaignError(DigestMailError):
    """A campaign cannot start or had to stop; the ledger is intact."""


class BreakerTripped(CampaignError):
    """Too many of the first recipients were refused for a list to be that bad: the run
    stopped, the refused rows went back to queued, nobody was suppressed."""

    exit_code = EXIT_STOPPED


class CampaignInterrupted(CampaignError):
    """Ctrl-C or SIGTERM: in-flight messages were finished or released."""

    exit_code = EXIT_STOPPED


class NothingToSend(CampaignError):
    """The list has nobody to send to (empty, everyone suppressed or invalid). No
    campaign is recorded: once readers are added, the edition goes out."""


def _nobody(
    *,
    lists: Sequence[str],
    kind: str,
    total: int,
    suppressed: int,
    invalid: int,
    suppressed_emails: Sequence[str],
) -> NothingToSend:
    """The one line that says why a send reached nobody, and the way out."""
    list_name = lists[0]
    if kind == "test":
        if suppressed and suppressed == total:
            who = ", ".join(suppressed_emails)
            more = (
                f" (and {suppressed - len(suppressed_emails)} more)"
                if (suppressed > len(suppressed_emails))
                else ""
            )
            verb = "is" if suppressed == 1 else "are"
            return NothingToSend(
                f"nobody to test-send to: {who}{more} {verb} suppressed (unsubscribed or "
                "bounced), so the test reached no one",
                hint=(
                    "if they want mail again: 'digest-mail suppressions remove "
                    f"{suppressed_emails[0]}'; or test-send --to another address"
                ),
            )
        return NothingToSend(
            # "0 sent" would read as success to an editor waiting for the test.
            f"nobody to test-send to: subscribers/{list_name}.csv has no subscribed address",
            hint=f"add yours with 'digest-mail subscribers add {list_name} you@example.jp'",
        )
    add = f"'digest-mail subscribers add {list_name} ADDRESS'"
    check = f"'digest-mail subscribers check {list_name}'"
    where = lists_phrase(lists)
    if total == 0 and invalid == 0:
        has, empty = ("has", "it is empty") if len(lists) == 1 else ("have", "they are empty")
        return NothingToSend(
            f"nothing to send: {where} {has} no subscribed reader ({empty})",
            hint=f"add readers with {add}, then send again",
        )
    if invalid == 0:
        return NothingToSend(
            f"nothing to send: all {suppressed} readers of {where} are suppressed "
            "(unsubscribed or bounced)",
            hint=f"add readers with {add}; see 'digest-mail suppressions list'",
        )
    if total == 0:
        return NothingToSend(
            f"nothing to send: all {invalid} rows of {where} are invalid",
            hint=f"fix them (see {check}) or add readers with {add}",
        )
    return NothingToSend(
        f"nothing to send: {where} has {suppressed} suppressed and {invalid} invalid "
        "rows and no other reader",
        hint=f"fix the invalid rows (see {check}) or add readers with {add}",
    )


@dataclass
class CampaignReport:
    """What a run of a campaign did, and where the campaign stands now."""

    campaign_id: str
    edition: str
    list_name: str
    total: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped_invalid: int = 0
    uncertain: int = 0
    queued: int = 0
    kind: str = "campaign"
    state: str = ""
    sent_this_run: int = 0
    # Recipients this run reached a final answer for (sent, failed or deferred).
    tried_this_run: int = 0
    transport: str = ""
    stopped: str = ""  # why the run stopped early, empty when it ran to the end
    failures: list[dict[str, Any]] = field(default_factory=list)
    uncertain_addresses: list[str] = field(default_factory=list)
    dry_run: bool = False
    # A dry run: recipients left to send whose local part is not ASCII (they need a
    # relay that offers SMTPUTF8), the first few of them, and what to warn about.
    needs_smtputf8: int = 0
    smtputf8_examples: list[str] = field(default_factory=list)
    # Failed for our relay's missing SMTPUTF8 (not the reader's fault, not suppressed);
    # the next run tries them again, through whatever relay is configured then.
    unsent_smtputf8: int = 0
    warnings: list[str] = field(default_factory=list)
    # The campaign's lists (one, or several sent each address once); () means list_name.
    lists: tuple[str, ...] = ()
    # Readers left out because another campaign of this edition already had them.
    already_received: int = 0

    @property
    def list_names(self) -> tuple[str, ...]:
        return self.lists or (self.list_name,)

    @property
    def complete(self) -> bool:
        return (
            not self.stopped
            and self.queued == 0
            and self.deferred == 0
            and self.uncertain == 0
            and self.unsent_smtputf8 == 0
        )

    @property
    def exit_code(self) -> int:
        """The exit status of a run that ended this way (a run the relay or the breaker
        stopped ends on its :class:`DeliveryStop` instead): 0 complete, 5 only uncertain
        rows remain, 4 anything else is left to send."""
        if self.complete:
            return EXIT_COMPLETE
        if self.queued == 0 and self.deferred == 0 and self.uncertain:
            return EXIT_UNCERTAIN
        return EXIT_INCOMPLETE

    def summary(self) -> str:
        text = (
            f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed, "
            f"{self.suppressed} suppressed, {self.skipped_invalid} skipped-invalid"
        )
        if self.uncertain:
            text += f", {self.uncertain} uncertain"
        if self.queued:
            text += f", {self.queued} not yet sent"
        if self.already_received:
            text += f", {self.already_received} had it from another campaign"
        if self.unsent_smtputf8:
            text += f" ({self.unsent_smtputf8} of the failed need a relay with SMTPUTF8)"
        return text

    def resume_command(self) -> str:
        if self.kind == "test":
            return f"digest-mail test-send {self.edition}"
        lists = " ".join(f"--list {name}" for name in self.list_names)
        return f"digest-mail send {self.edition} {lists}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "kind": self.kind,
            "state": self.state,
            "edition": self.edition,
            "list": self.list_name,
            "lists": list(self.list_names),
            "total": self.total,
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "skipped_invalid": self.skipped_invalid,
            "uncertain": self.uncertain,
            "queued": self.queued,
            "already_received": self.already_received,
            "sent_this_run": self.sent_this_run,
            "tried_this_run": self.tried_this_run,
            "stopped": self.stopped,
            "complete": self.complete,
            "dry_run": self.dry_run,
            "transport": self.transport,
            "failures": self.failures,
            "uncertain_addresses": self.uncertain_addresses,
            "unsent_smtputf8": self.unsent_smtputf8,
            "warnings": self.warnings,
            "resume": self.resume_command(),
        }


# --- the ledger side -------------------------------------------------------------------


def campaign_id_for(edition: str, list_name: str | Sequence[str]) -> str:
    """``EDITION/LIST``; for several lists ``EDITION/A+B``, the names sorted: one
    campaign whatever order the lists were named in."""
    return f"{edition}/{'+'.join(list_names_of(list_name))}"


def list_names_of(value: str | Sequence[str]) -> tuple[str, ...]:
    """The lists of a campaign, sorted, each once."""
    names = (value,) if isinstance(value, str) else tuple(value)
    return tuple(sorted(set(names)))


def lists_phrase(lists: Sequence[str]) -> str:
    """``list weekly`` or ``lists news, weekly``, for messages."""
    return f"list {lists[0]}" if len(lists) == 1 else f"lists {', '.join(lists)}"


@dataclass(slots=True)
class _Job:
    seq: int
    address: str
    email: str
    name: str
    attempts: int
    message_id: str
    first_try: float = 0.0


@dataclass(slots=True)
class _Result:
    """One answer for a job, as the ledger records it: ``bounced`` is a failure about
    the reader's mailbox, which also suppresses the address."""

    state: str
    job: _Job
    code: int | None
    reply: str
    bounced: bool = False


class _MessageIds:
    """:func:`new_message_id` for a domain, with the 128 random bits taken from one read
    of the system's CSPRNG a few hundred messages, not one read a message."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self._random = b""
        self._used = 0

    def __call__(self) -> str:
        if self._used == len(self._random):
            self._random, self._used = os.urandom(16 * 256), 0
        bits = self._random[self._used : self._used + 16]
        self._used += 16
        return new_message_id(self.domain, bits)


def _counts(ledger: Ledger, campaign_id: str) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    counts.update(campaigns.count_states(ledger, campaign_id))
    return counts


def _nothing_to_send(ledger: Ledger, campaign_id: str, kind: str) -> NothingToSend:
    """The error for a campaign that reached nobody, from its rows."""
    counts = _counts(ledger, campaign_id)
    return _nobody(
        lists=campaigns.campaign_lists(ledger, campaign_id)
        or (campaigns.campaign_row(ledger, campaign_id)["list_name"],),
        kind=kind,
        total=sum(counts.values()) - counts["skipped"],
        suppressed=counts["suppressed"],
        invalid=counts["skipped"],
        suppressed_emails=campaigns.delivery_emails(ledger, campaign_id, ["suppressed"], limit=3),
    )


def _snapshot(
    ledger: Ledger,
    campaign_id: str,
    items: Iterator[Recipient | RowProblem | tuple[Recipient, str]],
    *,
    after_seq: int = 0,
    batch_size: int = SNAPSHOT_BATCH,
    on_commit: Callable[[], None] | None = None,
) -> None:
    """Insert every row: queued recipients, suppressed ones, skipped problems; then
    mark the campaign ``sending``. Rows are numbered from ``after_seq + 1``; an
    address that already has a row keeps it (see
    :func:`~digest_mail.ledger.campaigns.restart_snapshot`).
    ``on_commit`` runs after each committed batch.

    With several lists, an address on two of them has one row (the first); a reader
    another campaign of the same edition already has is left out and counted in
    ``already_received``, so nobody gets one edition twice."""
    now = utcnow()
    batch: list[tuple[Any, ...]] = []
    several = len(campaigns.campaign_lists(ledger, campaign_id)) > 1
    row = campaigns.campaign_row(ledger, campaign_id)
    received = AlreadyReceived(
        ledger, campaign_id, row["edition"] if row["kind"] == "campaign" else None
    )
    skipped_received = 0
    # An address on two lists: the second row is dropped here, before it is counted.
    seen = SeenKeys() if several else None

    def flush() -> None:
        campaigns.insert_deliveries(ledger, campaign_id, batch)
        batch.clear()
        if on_commit is not None:
            on_commit()

    for seq, item in enumerate(items, start=after_seq + 1):
        if isinstance(item, RowProblem):
            # Each list has its own line numbers.
            where = f"#{item.path.stem}:line {item.line}" if several else f"#line {item.line}"
            batch.append((campaign_id, seq, where, item.value, "", "skipped", str(item), now))
        else:
            recipient = item[0] if isinstance(item, tuple) else item
            if seen is not None and seen.add(recipient.key, 0) is not None:
                pass
            elif received(recipient.key):
                skipped_received += 1
            else:
                state, reason = (
                    ("suppressed", item[1]) if isinstance(item, tuple) else ("queued", "")
                )
                batch.append(
                    (
                        campaign_id,
                        seq,
                        recipient.key,
                        recipient.email,
                        recipient.name,
                        state,
                        reason,
                        now,
                    )
                )
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    campaigns.complete_snapshot(ledger, campaign_id, already_received=skipped_received)


def _report(ledger: Ledger, campaign_id: str, *, sender_alive: bool = True) -> CampaignReport:
    """Where the campaign stands. With ``sender_alive`` False (no process holds the
    campaign's lock), rows left ``sending`` by a run that died are counted and listed
    as uncertain, as the next run will mark them."""
    row = campaigns.campaign_row(ledger, campaign_id)
    counts = _counts(ledger, campaign_id)
    in_flight = 0 if sender_alive else counts["sending"]
    counts["uncertain"] += in_flight
    counts["sending"] -= in_flight
    uncertain_states = ("uncertain", "uncertain" if sender_alive else "sending")
    return CampaignReport(
        campaign_id=campaign_id,
        edition=row["edition"],
        list_name=row["list_name"],
        lists=campaigns.campaign_lists(ledger, campaign_id),
        unsent_smtputf8=(
            campaigns.count_unanswered_failures(ledger, campaign_id, SMTPUTF8_MISSING)
            if counts["failed"]
            else 0
        ),
        already_received=row["already_received"],
        kind=row["kind"],
        state=row["state"],
        # An unfinished snapshot has no total yet: the recipients written so far.
        total=(
            sum(counts.values()) - counts["skipped"]
            if row["state"] == "snapshotting"
            else row["total"]
        ),
        sent=counts["sent"],
        deferred=counts["deferred"],
        failed=counts["failed"],
        suppressed=counts["suppressed"],
        skipped_invalid=counts["skipped"],
        uncertain=counts["uncertain"],
        queued=counts["queued"] + counts["sending"],
        failures=campaigns.failures(ledger, campaign_id, limit=1000),
        uncertain_addresses=campaigns.delivery_emails(ledger, campaign_id, uncertain_states),
        stopped=(
            row["note"]
            if row["state"] == "stopped"
            else SNAPSHOT_UNFINISHED
            if row["state"] == "snapshotting"
            else f"no sender is running: {in_flight} were in flight when it died"
            if in_flight
            else ""
        ),
    )


def _lock_path(workspace: Workspace, campaign_id: str) -> Path:
    return workspace.var_dir / "locks" / (re.sub(r"[^A-Za-z0-9._-]", "_", campaign_id) + ".lock")


def _sender_alive(workspace: Workspace, campaign_id: str) -> bool:
    """Whether a process holds the campaign's lock now (it sends, or writes its snapshot)."""
    path = _lock_path(workspace, campaign_id)
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def _lock(workspace: Workspace, campaign_id: str) -> Iterator[None]:
    """One sender per campaign at a time (a lock the kernel drops if the process dies)."""
    path = _lock_path(workspace, campaign_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CampaignError(
                f"campaign {campaign_id} is being sent by another process",
                hint="wait for it to finish, or check 'digest-mail status'",
            ) from None
        yield
    finally:
        handle.close()


@contextlib.contextmanager
def _snapshot_turn(workspace: Workspace, edition: str) -> Iterator[None]:
    """The snapshots of one edition's campaigns take turns, so that each sees every row
    the others wrote and leaves out their readers (:class:`AlreadyReceived`): two sends
    of one edition at once (a scheduled run, a manual one) never both take an address.
    A blocking lock the kernel drops with its last holder; a forked snapshot writer
    inherits it and holds it until it exits."""
    directory = workspace.var_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (re.sub(r"[^A-Za-z0-9._-]", "_", edition) + ".snapshot.lock")
    handle: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()


# --- the snapshot, written while the first messages go out ----------------------------


class SnapshotFailed(CampaignError):
    """The snapshot writer stopped before the whole list was in the ledger."""


class _SnapshotWriter:
    """The list's snapshot, written into the ledger by a forked child process while this
    one already sends the rows committed so far.

    Written first, a 50,000-row snapshot kept the relay idle for a second or more (issue
    6); the child takes the parsing and the inserts off the sending process. The list is
    read once through before the fork (:func:`check_readable`), so an unreadable list
    still fails before any message goes out. The child commits batches of
    :data:`STREAMED_SNAPSHOT_BATCH` rows in seq order and writes a byte to a pipe after
    each; the feeder claims from what is committed and counts the queue as empty only
    once the child has finished. The child marks the campaign ``sending`` at the end, as
    a snapshot always did; until then :func:`~digest_mail.ledger.campaigns.finish_campaign`
    leaves it ``snapshotting`` and the next run completes it
    (:func:`~digest_mail.ledger.campaigns.restart_snapshot`).

    The child ignores SIGINT and SIGTERM (the parent decides how a run stops), leaves if
    the parent is gone, and is killed when the parent stops early.
    """

    def __init__(
        self,
        workspace: Workspace,
        campaign_id: str,
        items: Callable[[Ledger], Iterator[Recipient | RowProblem | tuple[Recipient, str]]],
        after_seq: int,
    ) -> None:
        read_end, write_end = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child (measured through the CLI tests)
            os.close(read_end)
            _write_snapshot(workspace, campaign_id, items, after_seq, write_end, parent)
        os.close(write_end)
        self.pid = pid
        self.fd = read_end
        self.done = False
        self.error: SnapshotFailed | None = None
        self._failing = False
        self._report = bytearray()

    def on_readable(self, wake: Callable[[], None]) -> None:
        """The event loop's reader callback: progress wakes the feeder; EOF ends it."""
        chunk = os.read(self.fd, 1 << 16)
        if chunk:
            # Dots are progress; a failing child writes '!' and its message last.
            if self._failing or b"!" in chunk:
                self._report += chunk if self._failing else chunk.partition(b"!")[2]
                self._failing = True
            wake()
            return
        asyncio.get_running_loop().remove_reader(self.fd)
        self._reap(os.waitpid(self.pid, 0)[1])
        wake()

    def _reap(self, status: int) -> None:
        self.done = True
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            return
        message, _, hint = bytes(self._report).decode("utf-8", "replace").partition("\0")
        self.error = SnapshotFailed(
            message or f"the list snapshot stopped (exit status {code})",
            hint=hint or "fix what the message names, then run the send again to continue",
        )

    def close(self) -> None:
        """Stop the child if it still runs (the send stopped early) and reap it."""
        if not self.done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap(os.waitpid(self.pid, 0)[1])
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _write_snapshot(  # pragma: no cover - runs in the forked child
    workspace: Workspace,
    campaign_id: str,
    items: Callable[[Ledger], Iterator[Recipient | RowProblem | tuple[Recipient, str]]],
    after_seq: int,
    pipe: int,
    parent: int,
) -> None:
    """The child's whole life; it never returns (os._exit: no atexit handlers, no
    finalizers for the parent's objects, its ledger connection included)."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

        def committed() -> None:
            if os.getppid() != parent:
                os._exit(1)  # the sender died: the next run completes the snapshot
            os.write(pipe, b".")

        with Ledger(workspace.ledger_path) as ledger:
            _snapshot(
                ledger,
                campaign_id,
                items(ledger),
                after_seq=after_seq,
                batch_size=STREAMED_SNAPSHOT_BATCH,
                on_commit=committed,
            )
        code = 0
    except BaseException as exc:
        if isinstance(exc, DigestMailError):
            report = f"{exc}\0{exc.hint or ''}"
        else:
            report = f"the list snapshot failed: {exc!r}"
        with contextlib.suppress(OSError):
            os.write(pipe, b"!" + report.encode("utf-8", "replace"))
    finally:
        os._exit(code)


def _can_stream() -> bool:
    """Fork only where it is safe: POSIX, and no other thread whose locks a child could
    inherit mid-use (the CLI, not a test process running an SMTP server thread). The
    ledger's connection is closed across the fork (:meth:`Ledger.disconnected`)."""
    return hasattr(os, "fork") and threading.active_count() == 1


# --- the sender ------------------------------------------------------------------------


class _DateCache:
    """RFC 5322 Date for 'now', formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = format_datetime(datetime.fromtimestamp(now, UTC))
        return self._value


Progress = Callable[[CampaignReport], None]


class _Wake:
    """Like :class:`asyncio.Event` for the feeder, whose wait has a timeout: one future
    and one timer a wait, where ``asyncio.wait_for(event.wait(), …)`` made a Task."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self, timeout: float) -> None:
        """Until :meth:`set` is called or ``timeout`` seconds have passed."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _wake_up, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Breaker:
    """Judges the permanent rejections among the first answers of a run (see
    :data:`BREAKER_WINDOW`): ``trip`` is the reason it tripped, once it has."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.answers = 0
        self.rejected = 0
        self.replies: dict[str, int] = {}
        self.trip = ""

    @property
    def judging(self) -> bool:
        return self.enabled and (bool(self.trip) or self.answers < BREAKER_WINDOW)

    def accepted(self) -> None:
        self.answers += 1

    def refused(self, failure: PermanentFailure) -> None:
        self.answers += 1
        if failure.about == "ours" or self.trip:
            return
        self.rejected += 1
        reply = f"{failure.code or ''} {failure.message}".strip()
        recipient = (failure.recipient or "").lower()
        if failure.about == "unknown" and (not recipient or recipient not in reply.lower()):
            self.replies[reply] = self.replies.get(reply, 0) + 1
            if self.replies[reply] >= BREAKER_SAME_REPLY:
                self.trip = (
                    f"the relay gave the same reply to {self.replies[reply]} of the first "
                    f"recipients: {reply}"
                )
                return
        if self.rejected >= BREAKER_MIN_REJECTED and (
            self.rejected >= BREAKER_SHARE * self.answers
        ):
            self.trip = (
                f"{self.rejected} of the first {self.answers} recipients were refused "
                f"(last: {reply})"
            )


@dataclass
class _Options:
    concurrency: int
    retry_for: float
    clock: Clock
    progress: Progress | None
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    random: Callable[[], float] = random.random
    breaker: bool = True


class _Sender:
    def __init__(
        self,
        *,
        ledger: Ledger,
        campaign_id: str,
        transport: Transport,
        template: MessageTemplate,
        workspace: Workspace,
        list_name: str,
        report: CampaignReport,
        options: _Options,
        sign: Callable[[bytes], bytes] | None,
        snapshot: _SnapshotWriter | None = None,
    ) -> None:
        self.ledger = ledger
        self.campaign_id = campaign_id
        self.snapshot = snapshot
        self.snapshot_counted = False
        self.transport = transport
        self.template = template
        self.settings = workspace.settings
        self.list_name = list_name
        self.report = report
        self.options = options
        self.sign = sign
        # A test mail's links are test tokens: following them changes nothing.
        self.sign_token = TokenSigner(signing_key(workspace), list_name, test=report.kind == "test")
        # Both links end with the token: their prefixes are built once per send.
        self.url_prefix = unsubscribe_url(self.settings, "")
        self.mailto_prefix = unsubscribe_mailto(self.settings, "")
        self.domain = template.domain
        self.envelope_from = template.envelope_from
        self.message_ids = _MessageIds(template.domain)
        self.date = _DateCache()
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.retries: list[tuple[float, int, _Job]] = []
        self.results: list[_Result] = []
        self.last_flush = time.monotonic()
        self.inflight = 0
        self.wake = _Wake()
        # The feeder claims more rows when the queue runs this low.
        self.low_water = max(4, options.concurrency * 2)
        self.stopping = False
        self.stop_error: CampaignError | None = None
        self.workers: list[asyncio.Task[None]] = []
        self._source = f"campaign {campaign_id}"
        self.breaker = _Breaker(enabled=options.breaker)
        # Rejections the breaker still judges: their rows are queued until it decides.
        self.held: list[_Result] = []

    # Workers pull jobs; the feeder claims rows, schedules retries and flushes results.

    def force_stop(self) -> None:
        """A second Ctrl-C: abandon in-flight messages (a relay that does not answer); their
        rows become ``uncertain``: they may or may not have been accepted."""
        self.stopping = True
        for worker in self.workers:
            worker.cancel()
        self.wake.set()

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.options.concurrency)]
        self.workers = workers
        snapshot = self.snapshot
        if snapshot is not None and not snapshot.done:
            asyncio.get_running_loop().add_reader(snapshot.fd, snapshot.on_readable, self.wake.set)
        try:
            await self._feed()
        finally:
            if snapshot is not None and not snapshot.done:
                asyncio.get_running_loop().remove_reader(snapshot.fd)
            self.stopping = True
            for _ in workers:
                self.queue.put_nowait(_STOP)
            await asyncio.gather(*workers, return_exceptions=True)
            # Claimed but never attempted, or waiting for a retry: back to queued.
            leftovers = [job for _, _, job in self.retries]
            while not self.queue.empty():
                job = self.queue.get_nowait()
                if job is not _STOP:
                    leftovers.append(job)
            self.retries.clear()
            self.results.extend(_Result("queued", job, None, "") for job in leftovers)
            if self.breaker.trip:
                self._requeue_held()
            else:
                self._release_held()
            self._flush(force=True)

    async def _feed(self) -> None:
        clock = self.options.clock
        cursor = 0
        exhausted = False
        low_water = self.low_water
        # All of a claim may be in doubt after a SIGKILL, so it stays small.
        claim_size = low_water * 2
        # A relay that defers (4xx) everyone is throttling us: stop taking new rows while
        # this many wait for a retry. Bounds memory, and spares the relay.
        retry_cap = max(100, self.options.concurrency * 20)
        while not self.stopping:
            now = clock.monotonic()
            due: list[_Job] = []
            while self.retries and self.retries[0][0] <= now:
                due.append(heapq.heappop(self.retries)[2])
            if due:
                # Their 'queued' results must be written before they are claimed again,
                # or a late flush would mark an in-flight message 'queued'.
                self._flush(force=True)
                campaigns.claim_retries(self.ledger, self.campaign_id, due)
                for job in due:
                    self.queue.put_nowait(job)
            if not exhausted and self.queue.qsize() < low_water and len(self.retries) < retry_cap:
                # The results so far ride in the claim's transaction (one commit, not two).
                results, self.results = self.results, []
                claimed, last = campaigns.claim(
                    self.ledger,
                    self.campaign_id,
                    cursor,
                    claim_size,
                    message_ids=self.message_ids,
                    results=results,
                    source=self._source,
                )
                self.last_flush = time.monotonic()
                if last is None:
                    # With a snapshot still being written, more rows are on their way.
                    exhausted = self._snapshot_complete()
                else:
                    cursor = last
                for row in claimed:
                    job = _Job(*row, first_try=now)
                    self.queue.put_nowait(job)
            self._flush()
            if exhausted and not self.retries and self.inflight == 0 and self.queue.empty():
                return
            if self.queue.empty() and self.inflight == 0 and self.retries:
                # Nothing to do until the next retry is due.
                self._flush(force=True)
                await clock.sleep(max(0.0, self.retries[0][0] - clock.monotonic()))
                continue
            self.wake.clear()
            await self.wake.wait(FLUSH_EVERY)

    def _snapshot_complete(self) -> bool:
        snapshot = self.snapshot
        if snapshot is None:
            return True
        if snapshot.error is not None:
            if self.stop_error is None:
                self.stop_error = snapshot.error
            self.stopping = True
            return True
        if snapshot.done and not self.snapshot_counted:
            # The whole list is in: the progress total becomes exact.
            self.snapshot_counted = True
            counts = _counts(self.ledger, self.campaign_id)
            self.report.queued = self.report.sent_this_run + counts["queued"] + counts["sending"]
        return snapshot.done

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            if job is _STOP:
                return
            if self.stopping:
                self.queue.put_nowait(job)
                return
            self.inflight += 1
            try:
                await self._send(job)
            except ConfigError as exc:  # e.g. the DKIM key cannot sign: stop, keep the job
                self.results.append(_Result("queued", job, None, ""))
                if self.stop_error is None:
                    self.stop_error = DeliveryStop(RelayError(exc.message, hint=exc.hint))
                self.stopping = True
            except Exception as exc:  # never lose a job to a bug: record it, keep working
                self.results.append(_Result("failed", job, None, f"internal error: {exc!r}"))
            except asyncio.CancelledError:  # force_stop: it may or may not have gone out
                self.results.append(
                    _Result("uncertain", job, None, "abandoned in flight (stopped twice)")
                )
                raise
            finally:
                self.inflight -= 1
                # Wake the feeder only when it has something to do: it used to wake
                # after every message (profile 04).
                if (
                    self.queue.qsize() < self.low_water
                    or self.inflight == 0
                    or self.stopping
                    or len(self.results) >= FLUSH_SIZE
                ):
                    self.wake.set()

    async def _send(self, job: _Job) -> None:
        try:
            token = self.sign_token(job.email)
            data = self.template.render(
                to_address=job.email,
                to_name=job.name,
                unsubscribe_url=self.url_prefix + token,
                unsubscribe_mailto=self.mailto_prefix + token,
                message_id=job.message_id,
                date=self.date(),
            )
        except DigestMailError as exc:  # a value we refuse to put in a header
            self.report.tried_this_run += 1
            self.results.append(_Result("failed", job, None, exc.message))
            return
        if self.sign is not None:
            data = self.sign(data)
        job.attempts += 1
        try:
            await self.transport.send(self.envelope_from, [job.email], data)
        except TemporaryFailure as exc:
            self._retry(job, exc)
        except PermanentFailure as exc:
            self._refused(job, exc)
        except RelayError as exc:
            job.attempts -= 1
            self.results.append(_Result("queued", job, exc.code, exc.message))
            if self.stop_error is None:
                self.stop_error = DeliveryStop(exc)
            self.stopping = True
        except DigestMailError as exc:  # a header value we refuse to write
            self.report.tried_this_run += 1
            self.results.append(_Result("failed", job, None, exc.message))
        else:
            self.results.append(_Result("sent", job, 250, ""))
            self.report.sent_this_run += 1
            self.report.tried_this_run += 1
            judging = self.breaker.judging
            self.breaker.accepted()
            if judging and not self.breaker.judging:
                self._release_held()
            if self.options.progress is not None and self.report.sent_this_run % 50 == 0:
                self.options.progress(self.report)

    def _refused(self, job: _Job, exc: PermanentFailure) -> None:
        """A permanent refusal about the reader (or nobody knows whom): failed, and
        suppressed when about the mailbox; held while the breaker judges."""
        result = _Result("failed", job, exc.code, exc.message, bounced=exc.bounced)
        judging = self.breaker.judging
        self.breaker.refused(exc)
        if not judging:
            self.report.tried_this_run += 1
            self.results.append(result)
            return
        # Queued in the ledger while held: a crash now leaves it to be sent again.
        self.results.append(_Result("queued", job, exc.code, exc.message))
        self.held.append(result)
        if self.breaker.trip:
            if self.stop_error is None:
                self.stop_error = BreakerTripped(
                    f"circuit breaker: {self.breaker.trip}",
                    hint=(
                        "nobody was suppressed and every recipient is queued: a relay "
                        "problem is more likely than that many dead mailboxes; check the "
                        "relay's log and policy (if the list really is that stale, rerun "
                        "with --no-breaker)"
                    ),
                )
            self.stopping = True
        elif not self.breaker.judging:
            self._release_held()

    def _release_held(self) -> None:
        """The breaker let them through: the held rejections become final."""
        self.report.tried_this_run += len(self.held)
        self.results.extend(self.held)
        self.held.clear()

    def _requeue_held(self) -> None:
        """The breaker tripped: the held rejections are tried again on the next run."""
        for held in self.held:
            held.job.attempts -= 1
            self.results.append(_Result("queued", held.job, held.code, held.reply))
        self.held.clear()

    def _retry(self, job: _Job, exc: TemporaryFailure) -> None:
        options = self.options
        now = options.clock.monotonic()
        delay = min(options.backoff_cap, options.backoff_base * 2 ** max(0, job.attempts - 1))
        delay *= 0.5 + options.random()  # jitter: retries of many recipients spread out
        if now + delay - job.first_try > options.retry_for:
            self.report.tried_this_run += 1
            self.results.append(_Result("deferred", job, exc.code, exc.message))
            return
        self.results.append(_Result("queued", job, exc.code, exc.message))
        heapq.heappush(self.retries, (now + delay, job.seq, job))

    def _flush(self, *, force: bool = False) -> None:
        if not self.results:
            return
        now = time.monotonic()
        if not force and len(self.results) < FLUSH_SIZE and now - self.last_flush < FLUSH_EVERY:
            return
        results, self.results = self.results, []
        campaigns.record_results(self.ledger, self.campaign_id, results, source=self._source)
        self.last_flush = now


_STOP = _Job(-1, "", "", "", 0, "")


class DeliveryStop(CampaignError):
    """The relay refused us; carries the transport's one-line reason."""

    exit_code = EXIT_STOPPED

    def __init__(self, cause: RelayError) -> None:
        super().__init__(cause.message, hint=cause.hint)
        self.cause = cause


# --- entry points ----------------------------------------------------------------------


def _recipients_snapshot(
    workspace: Workspace, list_name: str, ledger: Ledger
) -> Iterator[Recipient | RowProblem | tuple[Recipient, str]]:
    excluded: list[tuple[Recipient, str]] = []

    def on_excluded(recipient: Recipient, reason: str) -> None:
        if reason == "suppressed":
            excluded.append((recipient, reason))

    for item in iter_recipients(workspace, list_name, ledger, on_excluded=on_excluded):
        yield from excluded
        excluded.clear()
        yield item
    yield from excluded


def _make_signer(workspace: Workspace) -> Callable[[bytes], bytes] | None:
    from digest_mail.mail.dkim import load_signer

    return load_signer(workspace)


async def _choose_encoding(transport: Transport) -> BodyEncoding:
    return "8bit" if await transport.supports_8bit() else "base64"


def _options(
    workspace: Workspace,
    concurrency: int | None,
    clock: Clock | None,
    progress: Progress | None,
    *,
    breaker: bool = True,
) -> _Options:
    smtp = workspace.settings.smtp
    return _Options(
        concurrency=max(1, concurrency or smtp.concurrency),
        retry_for=parse_duration(smtp.retry_for, key="smtp.retry_for"),
        backoff_base=parse_duration(smtp.retry_backoff, key="smtp.retry_backoff"),
        clock=clock or SystemClock(),
        progress=progress,
        breaker=breaker,
    )


async def _deliver(
    *,
    workspace: Workspace,
    ledger: Ledger,
    campaign_id: str,
    draft: HashedDraft,
    list_name: str,
    report: CampaignReport,
    options: _Options,
    transport: Transport,
    subject_prefix: str,
    snapshot: _SnapshotWriter | None = None,
) -> None:
    sign = _make_signer(workspace)
    try:
        try:
            encoding = await _choose_encoding(transport)
        except RelayError as exc:
            raise DeliveryStop(exc) from None
        template = MessageTemplate(
            draft,
            settings=workspace.settings,
            list_name=list_name,
            subject_prefix=subject_prefix,
            test_send=bool(subject_prefix),  # only a test send marks its subject
            body_encoding=encoding,
            # Bytes in SMTP DATA form straight from the builder, for a client that takes
            # them (the pipelining connection); a signer needs the plain message.
            dot_stuffed=sign is None and transport.takes_dot_stuffed,
        )
        sender = _Sender(
            ledger=ledger,
            campaign_id=campaign_id,
            transport=transport,
            template=template,
            workspace=workspace,
            list_name=list_name,
            report=report,
            options=options,
            sign=sign,
            snapshot=snapshot,
        )
        loop = asyncio.get_running_loop()
        interrupted = False

        def on_signal() -> None:
            nonlocal interrupted
            if interrupted:
                sender.force_stop()
                return
            interrupted = True
            sender.stopping = True
            sender.wake.set()

        handled = []
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
                handled.append(sig)
            except (RuntimeError, ValueError):  # not the main thread
                pass
        try:
            await sender.run()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
                # remove_signal_handler leaves the default; a caller (the schedule
                # daemon) gets its own handler back.
                signal.signal(sig, previous[sig])
        if sender.stop_error is not None:
            raise sender.stop_error
        if interrupted and any(w.cancelled() for w in sender.workers):
            raise CampaignInterrupted(
                "interrupted twice: messages in flight were abandoned and are now uncertain"
            )
        if interrupted:
            raise CampaignInterrupted(
                "interrupted: in-flight messages were finished, the rest is queued"
            )
    finally:
        await transport.close()


def _run(
    workspace: Workspace,
    draft: HashedDraft,
    list_name: str,
    *,
    campaign_id: str,
    kind: str,
    items: Callable[[Ledger], Iterator[Recipient | RowProblem | tuple[Recipient, str]]],
    subject_prefix: str,
    concurrency: int | None,
    rate: float | None,
    resend_uncertain: bool,
    progress: Progress | None,
    clock: Clock | None,
    dry_run: bool = False,
    transport: Transport | None = None,
    lists: Sequence[str] = (),
    list_paths: Sequence[Path] = (),
    breaker: bool = True,
) -> CampaignReport:
    """Create or resume a campaign and send. With ``list_paths`` (subscriber lists, not
    a test send), a new snapshot is written while the first messages already go out
    (:class:`_SnapshotWriter`), where the process can fork."""
    from digest_mail.render.draft import verify_content

    # Every send (run-due included) hashes the strings its messages are built from: an
    # approval, or a campaign already under way, pins that hash and nothing else.
    verify_content(draft)
    if not dry_run:
        from digest_mail.delivery.identity import refuse_sample_identity

        refuse_sample_identity(workspace)
    with (
        _lock(workspace, campaign_id),
        Ledger(workspace.ledger_path) as ledger,
        contextlib.ExitStack() as turn,
    ):
        row = campaigns.campaign_row(ledger, campaign_id)
        if row is not None and row["content_hash"] != draft.content_hash:
            counts = _counts(ledger, campaign_id)
            started = counts["sent"] + counts["sending"] + counts["uncertain"] + counts["failed"]
            if started:
                raise CampaignError(
                    f"draft {draft.id} changed after campaign {campaign_id} started "
                    f"({counts['sent']} already sent)",
                    # Whether or not it was ever approved: what went out is what was sent.
                    hint=(
                        "send the changed draft as a new edition (compose --edition NEW), "
                        "or restore the draft that was sent"
                    ),
                )
        if (
            row is not None
            and row["state"] != "snapshotting"
            and not campaigns.claimed_any(ledger, campaign_id)
        ):
            # It never sent a message (it found nobody, and older versions recorded that
            # as finished): no sent campaign, so the list as it is now gets the edition.
            if dry_run:
                row = None
            else:
                campaigns.discard_campaign(ledger, campaign_id)
                row = campaigns.campaign_row(ledger, campaign_id)
        if dry_run:
            return _dry_run_report(
                ledger,
                campaign_id,
                draft,
                lists or (list_name,),
                kind,
                items(ledger),
                existing=row is not None,
                label=list_name,
            )
        if row is None:
            campaigns.create_campaign(
                ledger,
                campaign_id,
                edition=draft.id,
                list_name=list_name,
                kind=kind,
                content_hash=draft.content_hash,
                lists=lists,
            )
            row = campaigns.campaign_row(ledger, campaign_id)
        elif row["content_hash"] != draft.content_hash:
            campaigns.set_content_hash(ledger, campaign_id, draft.content_hash)
        writer: _SnapshotWriter | None = None
        expected = after_seq = 0
        if row["state"] == "snapshotting":
            if kind == "campaign":
                turn.enter_context(_snapshot_turn(workspace, draft.id))
            after_seq = campaigns.restart_snapshot(ledger, campaign_id)
            try:
                if list_paths and _can_stream():
                    expected = sum(check_readable(path) for path in list_paths)
                if not expected:
                    _snapshot(ledger, campaign_id, items(ledger), after_seq=after_seq)
            except DigestMailError:
                # An unreadable list (missing, bad encoding): nothing was sent, so leave no
                # half-made campaign behind; the error names the file and the fix.
                if not campaigns.claimed_any(ledger, campaign_id):
                    campaigns.discard_campaign(ledger, campaign_id)
                raise
        try:
            if expected:
                campaigns.mark_started(ledger, campaign_id)
                with ledger.disconnected():
                    writer = _SnapshotWriter(workspace, campaign_id, items, after_seq)
            # Our copy of the turn goes; a snapshot writer's copy lasts until it exits.
            turn.close()
            campaigns.mark_uncertain(ledger, campaign_id)
            campaigns.requeue(
                ledger, campaign_id, uncertain=resend_uncertain, unanswered_reply=SMTPUTF8_MISSING
            )
            campaigns.apply_suppressions(ledger, campaign_id)
            report = _report(ledger, campaign_id)
            options = _options(workspace, concurrency, clock, progress, breaker=breaker)
            if writer is not None:
                # Until the snapshot is complete, the list's data rows are the progress total.
                report.queued = max(report.queued, expected)
                report.stopped = ""
            elif report.queued == 0:
                if not campaigns.claimed_any(ledger, campaign_id) and not report.already_received:
                    raise _discard_nobody(ledger, campaign_id, kind)
                campaigns.finish_campaign(
                    ledger,
                    campaign_id,
                    "finished" if report.uncertain == 0 else "stopped",
                    _uncertain_note(report),
                )
                final = _report(ledger, campaign_id)
                final.transport = "nothing to send"
                return final
            the_transport = transport or open_transport(
                workspace, concurrency=options.concurrency, rate=rate, clock=options.clock
            )
            report.transport = the_transport.description
            with _status_on_exit(ledger, campaign_id):
                try:
                    eventloop.run(
                        _deliver(
                            workspace=workspace,
                            ledger=ledger,
                            campaign_id=campaign_id,
                            draft=draft,
                            list_name=list_name,
                            report=report,
                            options=options,
                            transport=the_transport,
                            subject_prefix=subject_prefix,
                            snapshot=writer,
                        )
                    )
                except (CampaignError, LedgerError) as exc:
                    if isinstance(exc, LedgerError):  # it refused a batch of results
                        exc = CampaignError(exc.message, hint=exc.hint)
                    campaigns.finish_campaign(ledger, campaign_id, "stopped", exc.message)
                    final = _report(ledger, campaign_id)
                    raise _with_report(exc, final, report) from None
            final = _report(ledger, campaign_id)
            if (
                final.complete
                and not campaigns.claimed_any(ledger, campaign_id)
                and not final.already_received
            ):
                # The streamed snapshot found only suppressed or invalid rows.
                raise _discard_nobody(ledger, campaign_id, kind)
            final.sent_this_run = report.sent_this_run
            final.tried_this_run = report.tried_this_run
            final.transport = report.transport
            # The row may still carry an earlier run's stop reason; this run decides anew.
            final.stopped = ""
            final.state = "finished" if final.complete else "stopped"
            campaigns.finish_campaign(ledger, campaign_id, final.state, _uncertain_note(final))
            final.stopped = "" if final.complete else _uncertain_note(final)
            return final
        finally:
            if writer is not None:
                writer.close()


def _discard_nobody(ledger: Ledger, campaign_id: str, kind: str) -> NothingToSend:
    """A campaign that found nobody to send to is not recorded: a finished campaign
    would keep the edition from the readers added later."""
    error = _nothing_to_send(ledger, campaign_id, kind)
    campaigns.discard_campaign(ledger, campaign_id)
    return error


def _uncertain_note(report: CampaignReport) -> str:
    if report.unsent_smtputf8:
        return (
            f"{report.unsent_smtputf8} with a non-ASCII local part need a relay that offers "
            "SMTPUTF8: not sent, not suppressed; rerun through such a relay"
        )
    if report.uncertain:
        return (
            f"{report.uncertain} uncertain (in flight when a run died): resend with "
            f"--resend-uncertain"
        )
    if report.deferred:
        return f"{report.deferred} deferred after retrying: rerun to try them again"
    return ""


@contextlib.contextmanager
def _status_on_exit(ledger: Ledger, campaign_id: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:  # a second Ctrl-C: whatever was claimed stays 'sending'
        campaigns.finish_campaign(ledger, campaign_id, "stopped", "killed while sending")
        raise


def _with_report(exc: CampaignError, final: CampaignReport, run: CampaignReport) -> CampaignError:
    final.sent_this_run = run.sent_this_run
    final.tried_this_run = run.tried_this_run
    final.transport = run.transport
    final.stopped = exc.message
    exc.report = final  # type: ignore[attr-defined]
    resume = final.resume_command()
    exc.hint = (exc.hint + "; then " if exc.hint else "") + f"rerun '{resume}' to resume"
    return exc


def _dry_run_report(
    ledger: Ledger,
    campaign_id: str,
    draft: HashedDraft,
    lists: Sequence[str],
    kind: str,
    items: Iterator[Recipient | RowProblem | tuple[Recipient, str]],
    *,
    existing: bool,
    label: str,
) -> CampaignReport:
    """What a send would do now, changing nothing; :class:`NothingToSend` as the send
    would raise it. Counts as the snapshot would: each address once, readers another
    campaign of the edition has left out."""
    if existing:
        report = _report(ledger, campaign_id)
        report.dry_run = True
        report.transport = "dry run"
        for email in campaigns.delivery_emails(
            ledger, campaign_id, ["queued", "deferred", "sending", "uncertain"]
        ):
            _count_smtputf8(report, email)
        return report
    report = CampaignReport(
        campaign_id=campaign_id,
        edition=draft.id,
        list_name=label,
        lists=tuple(lists) if len(lists) > 1 else (),
        kind=kind,
        dry_run=True,
    )
    received = AlreadyReceived(ledger, campaign_id, draft.id if kind == "campaign" else None)
    seen = SeenKeys() if len(lists) > 1 else None
    suppressed_emails: list[str] = []
    for item in items:
        if isinstance(item, RowProblem):
            report.skipped_invalid += 1
            continue
        key = item[0].key if isinstance(item, tuple) else item.key
        if seen is not None and seen.add(key, 0) is not None:
            continue
        if received(key):
            report.already_received += 1
        elif isinstance(item, tuple):
            report.total += 1
            report.suppressed += 1
            if len(suppressed_emails) < 3:
                suppressed_emails.append(item[0].email)
        else:
            report.total += 1
            report.queued += 1
            _count_smtputf8(report, item.email)
    if report.queued == 0 and not report.already_received:
        raise _nobody(
            lists=lists,
            kind=kind,
            total=report.total,
            suppressed=report.suppressed,
            invalid=report.skipped_invalid,
            suppressed_emails=suppressed_emails,
        )
    report.transport = "dry run"
    return report


def _count_smtputf8(report: CampaignReport, email: str) -> None:
    if needs_smtputf8(email):
        report.needs_smtputf8 += 1
        if len(report.smtputf8_examples) < 3:
            report.smtputf8_examples.append(email)


def warn_before_sending(workspace: Workspace, report: CampaignReport) -> None:
    """Add to a dry run's ``warnings`` what will fail for a gap of the configured relay:
    recipients with a non-ASCII local part and a relay without SMTPUTF8."""
    warning = smtputf8_warning(workspace, report.needs_smtputf8, report.smtputf8_examples)
    if warning:
        report.warnings.append(warning)


def list_smtputf8_warning(workspace: Workspace, list_path: Path) -> str | None:
    """:func:`smtputf8_warning` for the subscribed readers of a list (for ``check``)."""
    if workspace.settings.smtp.url.strip() in {"", "capture"}:
        return None
    count = 0
    examples: list[str] = []
    for item in scan_list(list_path):
        if not isinstance(item, Recipient) or item.status != "subscribed":
            continue
        if needs_smtputf8(item.email):
            count += 1
            if len(examples) < 3:
                examples.append(item.email)
    return smtputf8_warning(workspace, count, examples)


def smtputf8_warning(workspace: Workspace, count: int, examples: Sequence[str]) -> str | None:
    """What to warn about ``count`` recipients with a non-ASCII local part when the
    configured relay does not offer SMTPUTF8; None when it does, or nobody needs it, or
    mail is captured. Asks the relay (one connection, one EHLO, nothing sent) only when
    such recipients exist."""
    if not count or workspace.settings.smtp.url.strip() in {"", "capture"}:
        return None
    transport = open_transport(workspace, concurrency=1)
    where = transport.description

    async def ask() -> bool:
        try:
            return await transport.offers("SMTPUTF8")
        finally:
            await transport.close()

    who = (
        f"{count} recipient{'s' if count != 1 else ''} with a non-ASCII local part "
        f"({', '.join(examples)}{', …' if count > len(examples) else ''})"
    )
    try:
        offered = eventloop.run(ask())
    except DigestMailError as exc:
        return f"{who} need SMTPUTF8; could not ask {where}: {exc.message}"
    if offered:
        return None
    return (
        f"{who} will fail: {where} does not offer SMTPUTF8 (they are not suppressed; "
        "send them through a relay that offers it)"
    )


def count_recipients(
    workspace: Workspace, draft: HashedDraft, list_name: str | Sequence[str]
) -> CampaignReport:
    """How many a send would reach now (for the confirmation prompt); changes nothing."""
    return run_campaign(workspace, draft, list_name, dry_run=True)


def run_campaign(
    workspace: Workspace,
    draft: HashedDraft,
    list_name: str | Sequence[str],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    resend_uncertain: bool = False,
    progress: Progress | None = None,
    clock: Clock | None = None,
    dry_run: bool = False,
    transport: Transport | None = None,
    breaker: bool = True,
) -> CampaignReport:
    """Create or resume the campaign (draft's edition, ``list_name``) and send what is left.
    ``list_name`` may be several lists: one campaign, each address once.
    ``breaker=False`` turns the circuit breaker off (a list known to be stale)."""
    lists = list_names_of(list_name)
    if not lists:
        raise CampaignError("no list to send to", hint="name one with --list")
    paths = [require_list(workspace, name) for name in lists]
    label = "+".join(lists)
    if len(lists) > 1 and (any("+" in name for name in lists) or _is_list(workspace, label)):
        # 'a+b' names the campaign of lists a and b: it must not be a list of its own.
        raise CampaignError(
            f"lists {', '.join(lists)} cannot be sent together: '+' joins list names in a "
            "campaign's name",
            hint="rename the list whose name contains '+', or send the lists one at a time",
        )

    def items(ledger: Ledger) -> Iterator[Recipient | RowProblem | tuple[Recipient, str]]:
        for name in lists:
            yield from _recipients_snapshot(workspace, name, ledger)

    return _run(
        workspace,
        draft,
        label,
        campaign_id=campaign_id_for(draft.id, lists),
        kind="campaign",
        items=items,
        lists=lists,
        list_paths=paths,
        subject_prefix="",
        concurrency=concurrency,
        rate=rate,
        resend_uncertain=resend_uncertain,
        progress=progress,
        clock=clock,
        dry_run=dry_run,
        transport=transport,
        breaker=breaker,
    )


def _is_list(workspace: Workspace, name: str) -> bool:
    try:
        return workspace.list_path(name).is_file()
    except ConfigError:
        return False


def send_test(
    workspace: Workspace,
    draft: HashedDraft,
    *,
    to: Sequence[str] | None = None,
    clock: Clock | None = None,
    transport: Transport | None = None,
) -> CampaignReport:
    """A test send: the staff list, or explicit addresses; subject ``[TEST] …``.

    Never a subscriber list: a list name other than ``[lists] staff`` is refused.
    Every test send is its own campaign (kind ``test``), so tests may repeat.
    """
    staff = workspace.settings.lists.staff
    lists = [t for t in (to or [staff]) if "@" not in t]
    addresses = [t for t in (to or []) if "@" in t]
    for name in lists:
        if name == staff:
            continue
        if _is_list(workspace, name):
            hint = f"use 'digest-mail send {draft.id} --list {name}' to send to a subscriber list"
        elif similar_list(name, [staff]):
            hint = f"Did you mean {staff!r}?"
        else:
            # A misspelt name is never offered to 'send': name what --to takes.
            hint = f"give --to {staff} or an address (there is no list {name!r})"
        raise CampaignError(
            f"test-send only goes to the staff list {staff!r}, not {name!r}", hint=hint
        )
    checked = []
    for address in addresses:
        try:
            email, key = normalize_address(address)
        except DigestMailError as exc:
            raise CampaignError(f"--to {address!r}: {exc.message}") from None
        checked.append(
            Recipient(email=email, key=key, name="", status="subscribed", attrs={}, line=0)
        )
    if lists:
        require_list(workspace, staff)  # a misspelt [lists] staff gets 'Did you mean'
    label = staff if lists else "addresses"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    campaign_id = f"{draft.id}/test/{stamp}"

    def items(ledger: Ledger) -> Iterator[Recipient | RowProblem | tuple[Recipient, str]]:
        if lists:
            yield from _recipients_snapshot(workspace, staff, ledger)
        for recipient in checked:
            yield (recipient, "suppressed") if is_suppressed(ledger, recipient.key) else recipient

    report = _run(
        workspace,
        draft,
        label,
        campaign_id=campaign_id,
        kind="test",
        items=items,
        subject_prefix="[TEST] ",
        concurrency=1,  # a few staff addresses: one connection is enough
        rate=None,
        resend_uncertain=False,
        progress=None,
        clock=clock,
        transport=transport,
    )
    return report


# --- status ----------------------------------------------------------------------------


def campaign_status(
    workspace: Workspace, ref: str | None = None, *, include_tests: bool = False
) -> list[CampaignReport]:
    """Reports for ``ref`` (a campaign id like 2026-W48/weekly, or an edition id), or for
    the most recent campaign when ``ref`` is None. Test sends only by their id, or with
    ``include_tests`` (then every campaign when ``ref`` is None)."""
    if not workspace.ledger_path.exists():
        raise CampaignError(
            "no campaigns yet (the ledger is empty)",
            hint="run 'digest-mail send DRAFT --list NAME'",
        )
    with Ledger(workspace.ledger_path) as ledger:
        if ref is not None and not include_tests:
            edition, slash, tail = ref.partition("/")
            if slash and "+" in tail and not tail.startswith("test/"):
                # The lists in any order name the one campaign (2026-W48/weekly+news).
                ref = campaign_id_for(edition, tail.split("+"))
        ids = campaigns.find_campaign_ids(ledger, ref, include_tests=include_tests)
        # Test sends are not campaigns to readers: never shown as "the" campaign.
        if not ids and ref is None and (tests := campaigns.count_campaigns(ledger)):
            raise CampaignError(
                f"no campaigns yet, only {tests} test send{'s' if tests != 1 else ''}",
                hint="see them with 'digest-mail status --all'",
            )
        if not ids:
            raise CampaignError(
                f"no campaign {ref!r}" if ref else "no campaigns yet",
                hint="campaigns are named EDITION/LIST, e.g. 2026-W48/weekly",
            )
        return [_report(ledger, id_, sender_alive=_sender_alive(workspace, id_)) for id_ in ids]
