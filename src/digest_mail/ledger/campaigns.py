"""Campaigns and deliveries: every recipient's state, so that a rerun never doubles a send.

A campaign is one edition sent to its lists; each of its readers has one ``deliveries``
row (queued, sending, sent, deferred, failed, suppressed, skipped or uncertain) keyed by
the campaign and the address. This module is the only place these tables are read or
written.
"""

from __future__ import annotations

from collections.abc import Sequence

from digest_mail.ledger.db import Ledger


def sent_editions(ledger: Ledger, lists: str | Sequence[str]) -> set[str]:
    """Editions these lists have received: for each list, a campaign of the edition that
    went to it (alone or with other lists) and finished.

    A campaign a scheduled run completed counts too, whatever state the campaign row
    was left in by an earlier, failed run. A campaign that never sent a message (older
    versions recorded an empty list's send as finished) does not count.
    """
    names = {lists} if isinstance(lists, str) else set(lists)
    rows = ledger.db.execute(
        "SELECT campaigns.edition, campaign_lists.list_name FROM campaigns"
        " JOIN campaign_lists ON campaign_lists.campaign_id = campaigns.id"
        " WHERE campaigns.kind = 'campaign'"
        " AND (campaigns.state = 'finished'"
        " OR campaigns.id IN (SELECT campaign_id FROM schedule_runs WHERE state = 'sent'))"
        " AND EXISTS (SELECT 1 FROM deliveries WHERE campaign_id = campaigns.id"
        " AND message_id != '')"
    )
    covered: dict[str, set[str]] = {}
    for edition, name in rows:
        covered.setdefault(edition, set()).add(name)
    return {edition for edition, got in covered.items() if names <= got}


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
