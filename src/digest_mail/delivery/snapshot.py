"""The list's snapshot: one ledger row per recipient, written while the first messages go out.

A campaign starts by copying its lists into the ledger (:func:`write_snapshot`): one
``deliveries`` row per reader, queued, with suppressed readers and invalid rows recorded
as such, each address once, and readers another campaign of the edition already has left
out. A CLI send writes it in a forked child (:class:`SnapshotWriter`) while the parent
already sends the rows committed so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest_mail.audience.csvfiles import check_readable
from digest_mail.audience.keyset import SeenKeys
from digest_mail.audience.lists import iter_recipients
from digest_mail.audience.rows import Recipient, RowProblem
from digest_mail.config import Workspace
from digest_mail.delivery.lock import SnapshotTurn, snapshot_being_written, snapshot_writer
from digest_mail.delivery.report import DeliveryState, SnapshotFailed
from digest_mail.errors import DigestMailError
from digest_mail.ledger import campaigns
from digest_mail.ledger.campaigns import AlreadyReceived
from digest_mail.ledger.db import Ledger, open_ledger, utcnow

SNAPSHOT_BATCH = 1000
# While this process sends, the snapshot writer commits smaller batches: the claims
# wait for the ledger's write lock no longer than one of them takes.
STREAMED_SNAPSHOT_BATCH = 250
# Looked up once, not once a row.
_QUEUED, _SUPPRESSED, _SKIPPED = (
    DeliveryState.QUEUED,
    DeliveryState.SUPPRESSED,
    DeliveryState.SKIPPED,
)

# One row of a list as the snapshot takes it: a reader, a problem, or (reader, reason)
# for a reader who is not sent to.
Item = Recipient | RowProblem | tuple[Recipient, str]
# A campaign's rows, read through a ledger connection (the forked writer opens its own).
Items = Callable[[Ledger], Iterator[Item]]


def list_items(workspace: Workspace, list_name: str, ledger: Ledger) -> Iterator[Item]:
    """A list's rows for the snapshot: its readers, its problems, and each suppressed
    reader as (reader, "suppressed") where the list reader left it out."""
    excluded: list[tuple[Recipient, str]] = []

    def on_excluded(recipient: Recipient, reason: str) -> None:
        if reason == "suppressed":
            excluded.append((recipient, reason))

    for item in iter_recipients(workspace, list_name, ledger, on_excluded=on_excluded):
        yield from excluded
        excluded.clear()
        yield item
    yield from excluded


def write_snapshot(
    ledger: Ledger,
    campaign_id: str,
    items: Iterator[Item],
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

    first = True

    def flush() -> None:
        nonlocal first
        campaigns.insert_deliveries(ledger, campaign_id, batch)
        batch.clear()
        if first:
            # The claims start now: planned with the table's real size, not an empty one.
            campaigns.refresh_statistics(ledger)
            first = False
        if on_commit is not None:
            on_commit()

    for seq, item in enumerate(items, start=after_seq + 1):
        if isinstance(item, RowProblem):
            # Each list has its own line numbers.
            where = f"#{item.path.stem}:line {item.line}" if several else f"#line {item.line}"
            batch.append((campaign_id, seq, where, item.value, "", _SKIPPED, str(item), now))
        else:
            recipient = item[0] if isinstance(item, tuple) else item
            if seen is not None and seen.add(recipient.key, 0) is not None:
                pass
            elif received(recipient.key):
                skipped_received += 1
            else:
                state, reason = (_SUPPRESSED, item[1]) if isinstance(item, tuple) else (_QUEUED, "")
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
    if not first:
        campaigns.refresh_statistics(ledger)


class SnapshotWriter:
    """The list's snapshot, written into the ledger by a forked child process while this
    one already sends the rows committed so far.

    Written first, a 50,000-row snapshot kept the relay idle for a second or more (issue
    6); the child takes the parsing and the inserts off the sending process. The list is
    read once through before the fork (:func:`~digest_mail.audience.csvfiles.check_readable`),
    so an unreadable list still fails before any message goes out. The child commits batches of
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
        items: Items,
        after_seq: int,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._on_done = on_done
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

    def check(self) -> None:
        """Nothing to poll: the pipe wakes the feeder (see :class:`SnapshotFollower`)."""

    def _reap(self, status: int) -> None:
        self.done = True
        if self._on_done is not None:
            self._on_done()
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


class SnapshotFollower:
    """A snapshot another sender is writing (a shared ledger): this one sends the rows
    as they are committed and knows the list is all in once the campaign is
    ``sending``. If the writer dies first, the run stops: the next run completes the
    snapshot. Polled by the feeder when it finds nothing to claim (:meth:`check`)."""

    fd = None

    def __init__(self, ledger: Ledger, campaign_id: str, being_written: Callable[[], bool]):
        self.ledger = ledger
        self.campaign_id = campaign_id
        self.being_written = being_written
        self.done = False
        self.error: SnapshotFailed | None = None

    def check(self) -> None:
        if self.done:
            return
        if campaigns.campaign_row(self.ledger, self.campaign_id)["state"] != "snapshotting":
            self.done = True
        elif not self.being_written():
            # Read once more: the writer may have completed it and left since.
            if campaigns.campaign_row(self.ledger, self.campaign_id)["state"] != "snapshotting":
                self.done = True
                return
            self.done = True
            self.error = SnapshotFailed(
                "the sender writing the list snapshot stopped before it was complete",
                hint="run the send again: it completes the snapshot and sends the rest",
            )

    def close(self) -> None:
        pass


@dataclass
class SnapshotStart:
    """How this run's snapshot begins: rows a forked writer will stream (``expected``,
    after ``after_seq``) under this run's ``turn`` (held only then), or a ``follower`` of
    the snapshot another sender writes, or nothing to do (the snapshot is complete, or
    was written here)."""

    expected: int = 0
    after_seq: int = 0
    turn: SnapshotTurn | None = None
    follower: SnapshotFollower | None = None


def begin_snapshot(
    ledger: Ledger,
    campaign_id: str,
    *,
    edition: str | None,
    snapshotting: bool,
    items: Items,
    list_paths: Sequence[Path],
) -> SnapshotStart:
    """The snapshot is written once: by this run if it takes the snapshot's lock first
    (with ``edition``, in turn with the edition's other campaigns), else it follows the
    sender that writes it. The caller releases the turn when the run ends; a forked
    writer releases it sooner, when the list is all in."""
    if not snapshotting:
        return SnapshotStart()
    turn = snapshot_writer(
        ledger,
        campaign_id,
        edition,
        lambda: campaigns.campaign_row(ledger, campaign_id)["state"] == "snapshotting",
    )
    if turn is not None:
        try:
            expected, after_seq = _snapshot_here_or_count(ledger, campaign_id, items, list_paths)
        except BaseException:
            turn.release()
            raise
        if not expected:  # written here, complete: the turn is over
            turn.release()
            return SnapshotStart()
        return SnapshotStart(expected, after_seq, turn)
    if campaigns.campaign_row(ledger, campaign_id)["state"] == "snapshotting":
        # Another sender writes it: send its rows as they come.
        return SnapshotStart(
            follower=SnapshotFollower(
                ledger, campaign_id, lambda: snapshot_being_written(ledger, campaign_id)
            )
        )
    return SnapshotStart()


def _snapshot_here_or_count(
    ledger: Ledger, campaign_id: str, items: Items, list_paths: Sequence[Path]
) -> tuple[int, int]:
    """Begin the snapshot again: written here, or (where this process can fork) only
    read through for its row count, for a writer to stream. (Rows expected from a
    writer, 0 if written here; the seq new rows come after.)"""
    after_seq = campaigns.restart_snapshot(ledger, campaign_id)
    expected = 0
    try:
        if list_paths and can_stream():
            expected = sum(check_readable(path) for path in list_paths)
        if not expected:
            write_snapshot(ledger, campaign_id, items(ledger), after_seq=after_seq)
    except DigestMailError:
        # An unreadable list (missing, bad encoding): nothing was sent, so leave no
        # half-made campaign behind; the error names the file and the fix.
        if not campaigns.claimed_any(ledger, campaign_id):
            campaigns.discard_campaign(ledger, campaign_id)
        raise
    return expected, after_seq


def start_writer(
    workspace: Workspace,
    ledger: Ledger,
    campaign_id: str,
    items: Items,
    after_seq: int,
    turn: SnapshotTurn,
) -> SnapshotWriter:
    """The forked snapshot writer; this run keeps the snapshot's turn until it is done
    (a forked child does not inherit PostgreSQL's locks)."""
    campaigns.mark_started(ledger, campaign_id)
    with ledger.disconnected():
        return SnapshotWriter(workspace, campaign_id, items, after_seq, on_done=turn.release)


def _write_snapshot(  # pragma: no cover - runs in the forked child
    workspace: Workspace,
    campaign_id: str,
    items: Items,
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

        with open_ledger(workspace) as ledger:
            write_snapshot(
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


def can_stream() -> bool:
    """Fork only where it is safe: POSIX, and no other thread whose locks a child could
    inherit mid-use (the CLI, not a test process running an SMTP server thread). The
    ledger's connection is closed across the fork (:meth:`Ledger.disconnected`)."""
    return hasattr(os, "fork") and threading.active_count() == 1
