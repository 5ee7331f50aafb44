"""Commands load their module on first use: the table in digest_mail.cli is complete."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click

import digest_mail.cli as cli_package
from digest_mail.cli import LAZY_COMMANDS, cli


def test_every_command_module_is_in_the_table() -> None:
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(cli_package.__path__):
        module = importlib.import_module(f"digest_mail.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            assert command.name not in found, f"{command.name} is defined twice"
            found[command.name] = info.name
    assert found == LAZY_COMMANDS


def test_each_command_resolves_to_its_own_object() -> None:
    ctx = click.Context(cli)
    for name, module_name in LAZY_COMMANDS.items():
        module = importlib.import_module(f"digest_mail.cli.{module_name}")
        command = cli.get_command(ctx, name)
        assert command is not None and command in module.COMMANDS
    assert cli.get_command(ctx, "no-such-command") is None


def test_send_does_not_load_the_other_stages() -> None:
    # A fresh interpreter: what `digest-mail send` imports before it runs.
    code = (
        "import sys, click\n"
        "from digest_mail.cli import cli\n"
        "assert cli.get_command(click.Context(cli), 'send') is not None\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('digest_mail', "
        "'feedparser', 'croniter', 'dkim', 'dns', 'email_validator')))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "digest_mail.delivery.campaign" in loaded
    for heavy in (
        "feedparser",
        "croniter",
        "dkim",
        "dns",
        "email_validator",  # the snapshot writer, a child process, checks addresses
        "digest_mail.content.feed",
        "digest_mail.audience.bounces",
        "digest_mail.schedule.rundue",
        "digest_mail.cli.audience",
    ):
        assert heavy not in loaded, heavy
