"""Who may send a campaign now, and whose turn it is to write a snapshot.

All of it is the ledger's session locks (:meth:`~digest_mail.ledger.db.Ledger.try_lock`):
``flock`` files beside a SQLite ledger, advisory locks on PostgreSQL. Both are dropped
when their process dies, so a crashed send never leaves a campaign locked, and a
sender's liveness is a fact the database (or the kernel) keeps, not a guess from a
timestamp.

- On SQLite (one host), one sender per campaign (:func:`only_sender`).
- On a shared PostgreSQL ledger, any number: each run is a sender
  (:func:`sender_seat`: a ``senders`` row and its lock); they claim disjoint batches.
- A campaign's snapshot is written once, by the sender that takes its lock first
  (:func:`snapshot_writer`); the snapshots of one edition's campaigns take turns, so
  that each sees the readers the others took.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Iterator

from digest_mail.delivery.report import CampaignError
from digest_mail.ledger import claims, senders
from digest_mail.ledger.db import Ledger


def only_sender(ledger: Ledger, campaign_id: str) -> None:
    """On a ledger one host owns (SQLite), the campaign is this process's until it ends
    (the lock lives as long as the ledger connection)."""
    if ledger.shared:
        return
    if not ledger.try_lock(f"campaign:{campaign_id}"):
        raise CampaignError(
            f"campaign {campaign_id} is being sent by another process",
            hint=(
                "wait for it to finish, or check 'digest-mail status' (several senders "
                "on one campaign need a PostgreSQL ledger: docs/deployment.md)"
            ),
        )


@contextlib.contextmanager
def sender_seat(ledger: Ledger, campaign_id: str) -> Iterator[str]:
    """This run as a sender of the campaign: its id (``HOST/PID/random``), alive while
    the block runs. The lock is taken before the row is written, so no other sender
    ever sees this one recorded but unlocked (taken for dead)."""
    sender = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"
    name = senders.lock_name(campaign_id, sender)
    ledger.try_lock(name, wait=True)
    try:
        senders.register(ledger, campaign_id, sender, host=socket.gethostname(), pid=os.getpid())
        yield sender
    finally:
        ledger.unlock(name)


def settle_dead_senders(ledger: Ledger, campaign_id: str) -> list[str]:
    """Senders of the campaign whose process died: recorded so, the rows they had in
    flight made uncertain, the rows they held for a retry freed. Returns them."""
    dead = senders.record_dead(ledger, campaign_id)
    # Rows in flight whose holder is not alive, whatever its row says (a lock, once
    # free, is never taken again: sender ids are new each run).
    for holder in claims.in_flight_holders(ledger, campaign_id):
        if holder not in dead and not ledger.is_locked(senders.lock_name(campaign_id, holder)):
            dead.append(holder)
    claims.mark_uncertain(ledger, campaign_id, dead)
    return dead


class SnapshotTurn:
    """The right to write a campaign's snapshot, held until :meth:`release` (when the
    snapshot is complete, or this run gave up). Releasing twice is harmless."""

    def __init__(self, ledger: Ledger, names: list[str]) -> None:
        self._ledger = ledger
        self._names = names

    def release(self) -> None:
        names, self._names = self._names, []
        for name in reversed(names):
            self._ledger.unlock(name)


def snapshot_lock_name(campaign_id: str) -> str:
    return f"snapshot:{campaign_id}"


def snapshot_writer(
    ledger: Ledger, campaign_id: str, edition: str | None, still_needed: Callable[[], bool]
) -> SnapshotTurn | None:
    """This run's turn to write the campaign's snapshot, or None when another sender is
    writing it now (this one sends the rows as they come) or has just completed it
    (``still_needed()`` false once the lock is ours). With ``edition``, the snapshots of
    the edition's campaigns also take turns (a blocking wait)."""
    name = snapshot_lock_name(campaign_id)
    if not ledger.try_lock(name):
        return None
    names = [name]
    if edition is not None:
        turn = f"edition:{edition}"
        ledger.try_lock(turn, wait=True)
        names.append(turn)
    taken = SnapshotTurn(ledger, names)
    if not still_needed():
        taken.release()
        return None
    return taken


def snapshot_being_written(ledger: Ledger, campaign_id: str) -> bool:
    return ledger.is_locked(snapshot_lock_name(campaign_id))
