"""Campaigns and deliveries: every recipient's state, so that a rerun never doubles a send.

A campaign is one edition sent to its lists; each of its readers has one ``deliveries``
row (queued, sending, sent, deferred, failed, suppressed, skipped or uncertain) keyed by
the campaign and the address. This module is the only place these tables are read or
written.
"""

from __future__ import annotations

from digest_mail.ledger.db import Ledger


def sent_message(ledger: Ledger, address: str, message_id: str) -> bool:
    """True if a campaign of this ledger sent ``message_id`` to ``address`` (a key)."""
    if not message_id:
        return False
    # One probe of the (campaign_id, address) index per campaign, not a table scan.
    row = ledger.db.execute(
        "SELECT 1 FROM deliveries WHERE campaign_id IN (SELECT id FROM campaigns) "
        "AND address = ? AND message_id = ? LIMIT 1",
        (address, message_id),
    ).fetchone()
    return row is not None
