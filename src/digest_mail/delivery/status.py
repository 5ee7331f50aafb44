"""``status``: where each campaign stands, read from the ledger.

A campaign is named ``EDITION/LIST`` (``EDITION/A+B`` for several lists, in any order);
an edition id names all its campaigns. Rows a dead run left in flight are shown as
uncertain: their sender's lock is free, its process died (:mod:`~.lock`).
"""

from __future__ import annotations

from digest_mail.config import Workspace
from digest_mail.delivery.campaign import campaign_id_for
from digest_mail.delivery.report import CampaignError, CampaignReport, campaign_report
from digest_mail.ledger import campaigns
from digest_mail.ledger.db import ledger_exists, open_ledger


def campaign_status(
    workspace: Workspace, ref: str | None = None, *, include_tests: bool = False
) -> list[CampaignReport]:
    """Reports for ``ref`` (a campaign id like 2026-W48/weekly, or an edition id), or for
    the most recent campaign when ``ref`` is None. Test sends only by their id, or with
    ``include_tests`` (then every campaign when ``ref`` is None)."""
    if not ledger_exists(workspace):
        raise CampaignError(
            "no campaigns yet (the ledger is empty)",
            hint="run 'digest-mail send DRAFT --list NAME'",
        )
    with open_ledger(workspace) as ledger:
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
        return [campaign_report(ledger, id_) for id_ in ids]
