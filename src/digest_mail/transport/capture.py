"""Capture: mail goes into a Maildir on disk and nothing leaves the machine.

The default transport (``[smtp] url`` empty or ``capture``), so a fresh workspace can
never reach real people by accident; ``dev-smtp`` keeps what it receives the same way.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Sequence
from pathlib import Path


class MaildirWriter:
    """Writes exact message bytes into a Maildir (tmp/ then rename into new/).

    The envelope is not written into the message (its bytes stay exactly what was signed
    and sent); each delivery appends one JSON line ``{"file", "from", "to"}`` to
    ``envelopes.jsonl`` in the Maildir's root.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Captured mail holds every reader's address and unsubscribe token: owner-only.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(mode=0o700, exist_ok=True)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")
        self._log = open(directory / "envelopes.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def deliver(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> str:
        name = f"{time.time_ns()}.{os.getpid()}_{secrets.token_hex(6)}.{self._host}"
        tmp = self.directory / "tmp" / name
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, self.directory / "new" / name)
        self._log.write(
            json.dumps({"file": name, "from": envelope_from, "to": list(recipients)}) + "\n"
        )
        self._log.flush()
        return name

    def close(self) -> None:
        self._log.close()


class CaptureTransport:
    """Mail goes to a Maildir on disk; nothing leaves the machine."""

    kind = "capture"
    # The Maildir keeps messages as they are read, not in SMTP DATA form.
    takes_dot_stuffed = False

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writer = MaildirWriter(directory)

    @property
    def description(self) -> str:
        return f"capture to {self.directory}"

    async def offers(self, keyword: str) -> bool:
        """Capture takes anything: 8bit bodies, non-ASCII addresses."""
        return True

    async def supports_8bit(self) -> bool:
        return True

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        self._writer.deliver(envelope_from, recipients, data)

    async def close(self) -> None:
        self._writer.close()
