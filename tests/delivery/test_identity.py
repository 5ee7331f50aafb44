"""The sample identity (example.jp) never reaches readers through a real relay
(issue 15, item 12): init says to change it, check warns, and with a relay beyond this
machine check fails and send, test-send and run-due refuse before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Runner, use_own_identity
from digest_mail.delivery.identity import is_reserved_domain
from schedule_helpers import compose_draft, outbox_messages, set_schedules, weekly

RELAY = "smtps://relay.chrysanthemum-digest.jp:465"
KEYS = "newsletter.from, newsletter.list_id, unsubscribe.base_url, unsubscribe.mailto"


@pytest.mark.parametrize(
    ("domain", "reserved"),
    [
        ("example.jp", True),
        ("chrysanthemum-digest.example.jp", True),
        ("example.co.jp", True),
        ("news.example.ne.jp", True),
        ("example.com", True),
        ("mail.example.org", True),
        ("example.net.", True),
        ("relay.test", True),
        ("digest.example", True),
        ("foo.invalid", True),
        ("chrysanthemum-digest.jp", False),
        ("example-news.jp", False),
        ("examples.com", False),
        ("example.co.uk", False),
        ("", False),
    ],
)
def test_reserved_example_domains(domain: str, reserved: bool) -> None:
    assert is_reserved_domain(domain) is reserved


def _relay(env: dict[str, str] | None = None) -> dict[str, str]:
    return {"DIGEST_MAIL_SMTP_URL": RELAY, **(env or {})}


def test_check_warns_about_the_sample_identity_while_mail_is_captured(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", "--edition", "2026-W49", "--since", "3650d").exit_code == 0
    result = run("check", "--json")
    assert result.exit_code == 0
    finding = [f for f in __import__("json").loads(result.output)["findings"]]
    assert {
        "level": "warning",
        "code": "identity",
        "message": f"{KEYS} still on a reserved example domain: set them to your own domain "
        "before configuring a real relay",
    } in finding


def test_check_fails_on_the_sample_identity_with_a_real_relay(workspace: Path, run: Runner) -> None:
    assert run("compose", "--edition", "2026-W49", "--since", "3650d").exit_code == 0
    result = run("check", env=_relay())
    assert result.exit_code == 1
    assert (
        f"  error: identity: {KEYS} still on a reserved example domain, and [smtp] url sends "
        f"through {RELAY}: set them to your own domain (send refuses until then)\n"
    ) in result.output
    assert result.output.splitlines()[-1].startswith("FAILED: 1 errors, ")


REFUSAL = (
    f"Error: refusing to send through {RELAY} as a reserved example domain: {KEYS} in "
    "{toml} still carry the sample identity\n"
    f"Hint: set {KEYS} to addresses and URLs of your own domain\n"
)


def test_send_and_test_send_refuse_the_sample_identity_through_a_real_relay(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", "--edition", "2026-W49", "--since", "3650d").exit_code == 0
    expected = REFUSAL.format(toml=workspace / "digest-mail.toml")
    for command in (
        ["send", "2026-W49", "--list", "weekly", "--yes"],
        ["send", "2026-W49", "--list", "weekly"],
        ["test-send", "2026-W49"],
    ):
        result = run(*command, env=_relay())
        assert (result.exit_code, result.output) == (1, expected), command
    # A dry run says what it would do; it sends nothing, so it is not refused.
    dry = run("send", "2026-W49", "--list", "weekly", "--dry-run", env=_relay())
    assert dry.exit_code == 0, dry.output
    assert not (workspace / "outbox").exists()


def test_run_due_refuses_the_sample_identity_through_a_real_relay(
    workspace: Path, run: Runner
) -> None:
    set_schedules(workspace, weekly())
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界?")
    assert run("approve", "2026-W48").exit_code == 0
    result = run("schedule", "run-due", "--now", "2026-11-30T08:00:30+09:00", "--yes", env=_relay())
    assert result.exit_code == 1
    toml = workspace / "digest-mail.toml"
    assert result.output == (
        "weekly: 2026-11-30 08:00 JST (2026-11-29T23:00:00+00:00): failed: 2026-W48 to weekly "
        f"failed: refusing to send through {RELAY} as a reserved example domain: {KEYS} in "
        f"{toml} still carry the sample identity (set {KEYS} to addresses and URLs of your own "
        "domain); run-due retries until 2026-11-30T05:00:00+00:00\n"
    )


def test_an_own_identity_passes_and_loopback_relays_keep_the_sample(
    workspace: Path, run: Runner, smtp_server
) -> None:
    # dev-smtp and a local Postfix are loopback: the sample identity is fine there.
    assert run("compose", "--edition", "2026-W49", "--since", "3650d").exit_code == 0
    sent = run(
        "test-send",
        "2026-W49",
        "--to",
        "editor@example.jp",
        env={"DIGEST_MAIL_SMTP_URL": smtp_server.url},
    )
    assert sent.exit_code == 0, sent.output
    use_own_identity(workspace)
    result = run("check", env=_relay())
    assert result.exit_code == 0, result.output
    assert "identity" not in result.output
    assert outbox_messages(workspace) == []
