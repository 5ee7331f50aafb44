"""The campaign's locks: one sender per campaign, and snapshots of an edition in turn.

Both are ``flock`` locks on files under ``var/locks/``, which the kernel drops when
their process dies: a crashed send never leaves a campaign locked, and ``status`` can
tell a campaign being sent (its lock is held) from one whose sender died.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from digest_mail.config import Workspace
from digest_mail.delivery.report import CampaignError


def lock_path(workspace: Workspace, campaign_id: str) -> Path:
    return workspace.var_dir / "locks" / (re.sub(r"[^A-Za-z0-9._-]", "_", campaign_id) + ".lock")


def sender_alive(workspace: Workspace, campaign_id: str) -> bool:
    """Whether a process holds the campaign's lock now (it sends, or writes its snapshot)."""
    path = lock_path(workspace, campaign_id)
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
def campaign_lock(workspace: Workspace, campaign_id: str) -> Iterator[None]:
    """One sender per campaign at a time (a lock the kernel drops if the process dies)."""
    path = lock_path(workspace, campaign_id)
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
def snapshot_turn(workspace: Workspace, edition: str) -> Iterator[None]:
    """The snapshots of one edition's campaigns take turns, so that each sees every row
    the others wrote and leaves out their readers
    (:class:`~digest_mail.ledger.campaigns.AlreadyReceived`): two sends of one edition at
    once (a scheduled run, a manual one) never both take an address.
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
