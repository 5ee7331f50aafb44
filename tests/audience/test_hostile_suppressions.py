"""An address that unsubscribed never gets mail again, however the list spells it.

Suppress one spelling with ``digest-mail unsubscribe``, then send lists that
writes the same mailbox in other spellings: case, an IDN domain as U-label or A-label,
full-width letters. The SMTP server must receive nothing for any of them, while a
different mailbox (plus-addressing) still gets its one copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_helpers import env_for
from conftest import Runner
from delivery_draft import make_draft
from digest_mail.config import find_workspace
from digest_mail.delivery.campaign import run_campaign
from faultserver import FaultServer

CASES = [
    ("hanako@example.jp", ["Hanako@Example.JP", "HANAKO@EXAMPLE.JP", "hanako@ＥＸＡＭＰＬＥ.jp"]),
    ("sato@例え.jp", ["sato@xn--r8jz45g.jp", "SATO@例え.JP", "sato@XN--R8JZ45G.JP"]),
    ("ito@xn--r8jz45g.jp", ["ito@例え.jp"]),
]


@pytest.mark.parametrize(("suppressed", "spellings"), CASES)
def test_no_spelling_escapes_a_suppression(
    workspace: Path,
    run: Runner,
    monkeypatch: pytest.MonkeyPatch,
    suppressed: str,
    spellings: list[str],
) -> None:
    result = run("unsubscribe", suppressed)
    assert result.exit_code == 0, result.output
    others = "other+news@example.jp,別の人\n"
    sent_lists = []
    for index, spelling in enumerate(spellings):
        name = f"variant{index}"
        (workspace / "subscribers" / f"{name}.csv").write_text(
            f"email,name\n{spelling},読者\n{others}", encoding="utf-8"
        )
        sent_lists.append(name)
    with FaultServer(smtputf8=True) as server:
        for key, value in env_for(server.url).items():
            monkeypatch.setenv(key, value)
        ws = find_workspace(workspace)
        for name in sent_lists:
            run_campaign(ws, make_draft(), name, concurrency=1)
    got = server.recorder.accepted_counts()
    # One copy: the later campaigns of the same edition leave out whoever had it.
    assert got == {"other+news@example.jp": 1}, got
