"""The staff notice: a slot went out empty, so the staff list hears why and what to do.

When run-due finds nothing approved to send, it records the slot as skipped and mails
a short Japanese notice to the ``[lists] staff`` list: the schedule, the slot, the
reason and the commands that fix it. The message comes from the project's message
builder (:func:`digest_mail.mail.message.build_text_message`) and goes through the
configured transport, like every other message; a notice that cannot be sent is noted
on the slot, never a failure of the run.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from digest_mail import eventloop
from digest_mail.config import Workspace
from digest_mail.errors import DigestMailError
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.schedule_runs import get_run, update_run
from digest_mail.schedule.slots import Schedule

__all__ = ["build_notice", "notify_staff"]

_WEEKDAYS_JA = "月火水木金土日"


def notify_staff(
    workspace: Workspace, ledger: Ledger, schedule: Schedule, slot: datetime, reason: str
) -> str:
    """Mail the notice for a skipped ``slot`` (``reason``: why nothing was sent) and add
    what happened to the slot's note; returns that, for run-due's line."""
    staff = workspace.settings.lists.staff
    try:
        recipients = _staff_addresses(workspace)
    except DigestMailError as exc:
        return f"staff not notified: {exc}"
    if not recipients:
        return f"staff not notified: list {staff!r} has no addresses"
    try:
        message = build_notice(workspace, schedule, slot, reason, recipients)
        eventloop.run(_deliver(workspace, recipients, message))
    except Exception as exc:
        note = f"staff not notified: {exc}"
    else:
        note = f"notice sent to staff ({len(recipients)})"
    update_run(
        ledger,
        schedule.name,
        slot,
        state="skipped",
        note=f"{_current_note(ledger, schedule, slot)}; {note}",
    )
    return note


def build_notice(
    workspace: Workspace,
    schedule: Schedule,
    slot: datetime,
    reason: str,
    recipients: list[str],
) -> EmailMessage:
    """The short Japanese notice to staff that a slot went out empty, and how to fix it."""
    from digest_mail.mail.message import build_text_message

    settings = workspace.settings
    local = schedule.local(slot)
    following = schedule.local(next(schedule.slots_after(slot)))
    lines = [
        "スタッフ各位",
        "",
        f"配信スケジュール「{schedule.name}」(リスト {schedule.list_name})の",
        f"{_ja_time(local)} の配信枠で、送信できる承認済みの号がありませんでした。",
        "購読者には何も送信していません。",
        "",
        f"理由: {reason}",
        "",
        "号を確認して承認し、手動で送信してください:",
        "  digest-mail approve <号>   (例: 2026-W48)",
        "  digest-mail send <号> " + " ".join(f"--list {n}" for n in schedule.list_names),
        "",
        f"次の配信枠: {_ja_time(following)}",
        "",
        "-- ",
        f"digest-mail ({settings.newsletter.name})",
    ]
    return build_text_message(
        settings=settings,
        to_addresses=recipients,
        subject=(
            f"[digest-mail] 配信スケジュール「{schedule.name}」:"
            " 承認済みの号がないため送信しませんでした"
        ),
        text="\n".join(lines) + "\n",
    )


def _staff_addresses(workspace: Workspace) -> list[str]:
    from digest_mail.audience.csvfiles import scan_list
    from digest_mail.audience.rows import Recipient

    path = workspace.list_path(workspace.settings.lists.staff)
    if not path.is_file():
        return []
    return [
        item.email
        for item in scan_list(path)
        if isinstance(item, Recipient) and item.status != "unsubscribed"
    ]


def _ja_time(moment: datetime) -> str:
    return (
        f"{moment:%Y年%m月%d日}({_WEEKDAYS_JA[moment.weekday()]}) {moment:%H:%M} {moment.tzname()}"
    )


def _current_note(ledger: Ledger, schedule: Schedule, slot: datetime) -> str:
    run = get_run(ledger, schedule.name, slot)
    return run.note if run is not None else ""


async def _deliver(workspace: Workspace, recipients: list[str], message: EmailMessage) -> None:
    from digest_mail.delivery.identity import refuse_sample_identity
    from digest_mail.mail.message import envelope_sender
    from digest_mail.transport.factory import open_transport

    refuse_sample_identity(workspace)
    transport = open_transport(workspace)
    try:
        await transport.send(envelope_sender(workspace.settings), recipients, message.as_bytes())
    finally:
        await transport.close()
