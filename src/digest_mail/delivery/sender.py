"""The sender: claims rows from the ledger, sends their messages concurrently, records
the answers.

A feeder claims queued rows in small batches (``queued`` → ``sending``, each given its
Message-ID) *before* their messages go out, and hands them to workers through a queue;
each worker splices its reader's message from the edition's
:class:`~digest_mail.mail.message.MessageTemplate` (rendered once per send) and hands the
bytes to the transport. Answers are committed with the next claim (one transaction), or
after :data:`FLUSH_EVERY` seconds or :data:`FLUSH_SIZE` answers: a crash leaves at most
the claimed-but-unrecorded rows in ``sending``, which the next run marks ``uncertain``.

Temporary failures are retried and permanent ones judged as :mod:`~.retry` says; a
session lost once the final dot may have reached the relay makes the row ``uncertain``
(never retried: the relay may have queued it); a relay
that refuses us (AUTH, TLS, sender) stops the run, and rows in flight are released back
to ``queued``. The per-reader path (``_send``) is kept as cheap as it can be: no ledger
access, a few string joins and one call into the template.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from digest_mail.audience.unsubscribe import (
    TokenSigner,
    signing_key,
    unsubscribe_mailto,
    unsubscribe_url,
)
from digest_mail.config import Workspace, parse_duration
from digest_mail.delivery.report import (
    BreakerTripped,
    CampaignReport,
    CampaignStopped,
    DeliveryState,
    DeliveryStop,
    state_counts,
)
from digest_mail.delivery.retry import BACKOFF_BASE, BACKOFF_CAP, Breaker, backoff
from digest_mail.delivery.snapshot import SnapshotFollower, SnapshotWriter
from digest_mail.errors import ConfigError, DigestMailError
from digest_mail.eventloop import Wake
from digest_mail.ledger import claims
from digest_mail.ledger.db import Ledger
from digest_mail.mail.message import MessageTemplate, new_message_id
from digest_mail.transport.errors import (
    PermanentFailure,
    RelayError,
    TemporaryFailure,
    UncertainFailure,
)
from digest_mail.transport.protocol import Transport
from digest_mail.transport.ratelimit import Clock, SystemClock

FLUSH_EVERY = 0.05  # seconds
FLUSH_SIZE = 100
# The states an answer leaves a row in, looked up once rather than once a message.
_QUEUED, _SENT, _FAILED = DeliveryState.QUEUED, DeliveryState.SENT, DeliveryState.FAILED
_DEFERRED, _UNCERTAIN = DeliveryState.DEFERRED, DeliveryState.UNCERTAIN

Progress = Callable[[CampaignReport], None]


@dataclass(slots=True)
class _Job:
    """A claimed row on its way: the reader, the tries so far, its Message-ID (kept for
    every try), and when it was first tried (``retry_for`` counts from then)."""

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

    state: DeliveryState
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


@dataclass
class Options:
    """How a run sends: connections, how long and how often to retry, the clock."""

    concurrency: int
    retry_for: float
    clock: Clock
    progress: Progress | None
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    random: Callable[[], float] = random.random
    breaker: bool = True


class Sender:
    """One run of a campaign: the feeder, the workers, the answers on their way to the
    ledger. :meth:`run` returns when every claimed row is answered or released; why it
    stopped early, if it did, is :attr:`stop_error`."""

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
        options: Options,
        sign: Callable[[bytes], bytes] | None,
        snapshot: SnapshotWriter | SnapshotFollower | None = None,
        sender_id: str = "",
    ) -> None:
        self.ledger = ledger
        # The rows this run claims are held in its name (several senders may share a
        # campaign on a shared ledger).
        self.sender_id = sender_id
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
        self.wake = Wake()
        # The feeder claims more rows when the queue runs this low.
        self.low_water = max(4, options.concurrency * 2)
        self.stopping = False
        self.stop_error: CampaignStopped | None = None
        self.workers: list[asyncio.Task[None]] = []
        self._source = f"campaign {campaign_id}"
        self.breaker = Breaker(enabled=options.breaker)
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
        snapshot = self.snapshot if isinstance(self.snapshot, SnapshotWriter) else None
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
            self.results.extend(_Result(_QUEUED, job, None, "") for job in leftovers)
            if self.breaker.trip:
                self._requeue_held()
            else:
                self._release_held()
            self._flush(force=True)
            # What this run held for a retry, or claimed and never tried, is anyone's again.
            claims.release(self.ledger, self.campaign_id, self.sender_id)

    async def _feed(self) -> None:
        clock = self.options.clock
        cursor = 0
        exhausted = False
        # On a shared ledger, the claims pass over rows another sender's claim holds at
        # that moment. Before this run calls the queue empty, one last pass from the
        # start waits for those claims to end: their rows are then theirs (or, if that
        # transaction failed, free and found here), never counted as left unsent.
        swept = False
        low_water = self.low_water
        # All of a claim may be in doubt after a SIGKILL, so it stays small; on a
        # database server, where each claim is a few round trips, twice as big.
        claim_size = low_water * (4 if self.ledger.shared else 2)
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
                claims.claim_retries(self.ledger, self.campaign_id, due, sender=self.sender_id)
                for job in due:
                    self.queue.put_nowait(job)
            if not exhausted and self.queue.qsize() < low_water and len(self.retries) < retry_cap:
                # The results so far ride in the claim's transaction (one commit, not two).
                results, self.results = self.results, []
                claimed, last = claims.claim(
                    self.ledger,
                    self.campaign_id,
                    cursor,
                    claim_size,
                    message_ids=self.message_ids,
                    sender=self.sender_id,
                    results=results,
                    source=self._source,
                    wait=swept,
                )
                self.last_flush = time.monotonic()
                if last is None:
                    # With a snapshot still being written, more rows are on their way.
                    exhausted = self._snapshot_complete()
                    if exhausted and not swept and self.ledger.shared:
                        swept, exhausted, cursor = True, False, 0
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
        snapshot.check()
        if snapshot.error is not None:
            if self.stop_error is None:
                self.stop_error = snapshot.error
            self.stopping = True
            return True
        if snapshot.done and not self.snapshot_counted:
            # The whole list is in: the progress total becomes exact.
            self.snapshot_counted = True
            counts = state_counts(self.ledger, self.campaign_id)
            queued = counts[DeliveryState.QUEUED] + counts[DeliveryState.SENDING]
            self.report.queued = self.report.sent_this_run + queued
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
                self.results.append(_Result(_QUEUED, job, None, ""))
                if self.stop_error is None:
                    self.stop_error = DeliveryStop(exc.message, hint=exc.hint)
                self.stopping = True
            except Exception as exc:  # never lose a job to a bug: record it, keep working
                self.results.append(_Result(_FAILED, job, None, f"internal error: {exc!r}"))
            except asyncio.CancelledError:  # force_stop: it may or may not have gone out
                self.results.append(
                    _Result(_UNCERTAIN, job, None, "abandoned in flight (stopped twice)")
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
            self.results.append(_Result(_FAILED, job, None, exc.message))
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
        except UncertainFailure as exc:  # the relay may have queued it: never a retry
            self.report.tried_this_run += 1
            self.results.append(_Result(_UNCERTAIN, job, exc.code, exc.message))
        except RelayError as exc:
            job.attempts -= 1
            self.results.append(_Result(_QUEUED, job, exc.code, exc.message))
            if self.stop_error is None:
                self.stop_error = DeliveryStop(exc.message, hint=exc.hint)
            self.stopping = True
        except DigestMailError as exc:  # a header value we refuse to write
            self.report.tried_this_run += 1
            self.results.append(_Result(_FAILED, job, None, exc.message))
        else:
            self.results.append(_Result(_SENT, job, 250, ""))
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
        result = _Result(_FAILED, job, exc.code, exc.message, bounced=exc.bounced)
        judging = self.breaker.judging
        self.breaker.refused(exc)
        if not judging:
            self.report.tried_this_run += 1
            self.results.append(result)
            return
        # Queued in the ledger while held: a crash now leaves it to be sent again.
        self.results.append(_Result(_QUEUED, job, exc.code, exc.message))
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
            self.results.append(_Result(_QUEUED, held.job, held.code, held.reply))
        self.held.clear()

    def _retry(self, job: _Job, exc: TemporaryFailure) -> None:
        options = self.options
        now = options.clock.monotonic()
        delay = backoff(
            job.attempts, base=options.backoff_base, cap=options.backoff_cap, random=options.random
        )
        if now + delay - job.first_try > options.retry_for:
            self.report.tried_this_run += 1
            self.results.append(_Result(_DEFERRED, job, exc.code, exc.message))
            return
        self.results.append(_Result(_QUEUED, job, exc.code, exc.message))
        heapq.heappush(self.retries, (now + delay, job.seq, job))

    def _flush(self, *, force: bool = False) -> None:
        if not self.results:
            return
        now = time.monotonic()
        if not force and len(self.results) < FLUSH_SIZE and now - self.last_flush < FLUSH_EVERY:
            return
        results, self.results = self.results, []
        claims.record_results(
            self.ledger, self.campaign_id, results, source=self._source, sender=self.sender_id
        )
        self.last_flush = now


_STOP = _Job(-1, "", "", "", 0, "")


def options_for(
    workspace: Workspace,
    concurrency: int | None,
    clock: Clock | None,
    progress: Progress | None,
    *,
    breaker: bool = True,
) -> Options:
    """The sender's options for this workspace; ``concurrency`` None: ``[smtp]``'s."""
    smtp = workspace.settings.smtp
    return Options(
        concurrency=max(1, concurrency or smtp.concurrency),
        retry_for=parse_duration(smtp.retry_for, key="smtp.retry_for"),
        backoff_base=parse_duration(smtp.retry_backoff, key="smtp.retry_backoff"),
        clock=clock or SystemClock(),
        progress=progress,
        breaker=breaker,
    )
