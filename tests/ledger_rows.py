"""Reading a workspace's ledger in tests, whichever database it is.

The delivery and schedule tests run on SQLite and on PostgreSQL (issue 18; the
``ledger_kind`` parameter of tests/conftest.py). A test that looks at the ledger behind
the code's back must therefore open it as the code does, through ``[ledger] url``
(``open_ledger``), never the SQLite file by its path: on PostgreSQL that file does not
exist, and opening it would create an empty ledger that proves nothing. The queries several
tests need live here once; a child process gets the ledger's settings from
:func:`child_env`.
"""

from __future__ import annotations

import os
from pathlib import Path

from digest_mail.config import POSTGRES_SCHEMES, Workspace, find_workspace
from digest_mail.ledger.db import Ledger, open_ledger

# The settings that choose the ledger: a child process (a CLI run, a killed sender) must
# get them, whatever else of DIGEST_MAIL_* a test leaves out of its environment.
LEDGER_VARIABLES = ("DIGEST_MAIL_LEDGER_URL", "DIGEST_MAIL_LEDGER_PASSWORD")


def workspace_ledger(where: Workspace | Path) -> Ledger:
    """The ledger of the workspace (or of the workspace folder ``where``), as configured."""
    ws = where if isinstance(where, Workspace) else find_workspace(where)
    return open_ledger(ws)


def delivery_states(where: Workspace | Path, campaign_id: str) -> dict[str, int]:
    """How many of the campaign's deliveries are in each state."""
    with workspace_ledger(where) as ledger:
        rows = ledger.execute(
            "SELECT state, COUNT(*) FROM deliveries WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        ).fetchall()
    return {state: int(n) for state, n in rows}


def child_env() -> dict[str, str]:
    """This process's environment for a child, without the DIGEST_MAIL_* settings except
    the ledger's: the child writes the test's ledger, and gets the rest from the test."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DIGEST_MAIL_") or key in LEDGER_VARIABLES
    }


def uses_sqlite_file(where: Workspace | Path) -> bool:
    """Whether the workspace's ledger is the SQLite file (not a PostgreSQL database)."""
    ws = where if isinstance(where, Workspace) else find_workspace(where)
    return not ws.ledger_url.startswith(POSTGRES_SCHEMES)


def wait_until_no_sender(where: Workspace | Path, campaign_id: str, deadline: float) -> None:
    """Until no process sends the campaign or writes its snapshot: a killed sender's
    forked snapshot writer holds its locks (its copy of the flock file, or of the
    database session) until it leaves, at its next committed batch."""
    import time

    from digest_mail.delivery.lock import snapshot_being_written
    from digest_mail.ledger.senders import live_senders

    with workspace_ledger(where) as ledger:
        while live_senders(ledger, campaign_id) or snapshot_being_written(ledger, campaign_id):
            assert time.monotonic() < deadline, "the snapshot writer outlived its sender"
            time.sleep(0.01)  # polling a real process
