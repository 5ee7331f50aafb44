"""Ctrl-C and SIGTERM during a send: the first lets the messages in flight finish, the
second abandons them.

A first signal stops the sender from taking new rows; what is in flight is answered
and recorded, the rest stays queued, and the run ends with
:class:`~.report.CampaignInterrupted` (exit status 3). A second one cancels the
workers: their messages may or may not have been accepted, so their rows become
``uncertain``. The handlers a caller had (the schedule daemon's) come back after.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass

from digest_mail.delivery.sender import Sender


@dataclass
class Signals:
    received: int = 0  # SIGINTs and SIGTERMs during the run


@contextlib.contextmanager
def stop_on_signals(sender: Sender) -> Iterator[Signals]:
    """SIGINT and SIGTERM stop the sender: the first lets messages in flight finish, the
    second abandons them. The handlers the caller had (the schedule daemon's) come back
    after."""
    loop = asyncio.get_running_loop()
    signals = Signals()

    def on_signal() -> None:
        signals.received += 1
        if signals.received > 1:
            sender.force_stop()
            return
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
        yield signals
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
            # remove_signal_handler leaves the default; a caller (the schedule
            # daemon) gets its own handler back.
            signal.signal(sig, previous[sig])
