"""The command line. Commands parse options, call one library function and print.

Each command lives in a module of this package by pipeline stage; they are all
registered on :data:`cli` here. Library errors (:class:`DigestMailError`) become one
``Error: …`` line and the error's ``exit_code`` (1 unless it says otherwise) in
:meth:`DigestMailGroup.invoke`, nowhere else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from digest_mail import __version__
from digest_mail.config import Workspace, find_workspace
from digest_mail.errors import DigestMailError

F = TypeVar("F", bound=Callable[..., Any])


# Which module of this package defines each command. A command's module is imported only
# when that command runs (or help lists them all): ``send`` then never loads the feed,
# bounce, schedule or archive code, a tenth of a second at every start.
# tests/test_cli_lazy.py checks this table against every module's COMMANDS.
LAZY_COMMANDS = {
    "approve": "schedule",
    "archive": "extras",
    "articles": "extras",
    "bounces": "audience",
    "check": "compose",
    "compose": "compose",
    "dev-smtp": "delivery",
    "init": "extras",
    "preview": "compose",
    "schedule": "schedule",
    "send": "delivery",
    "serve": "audience",
    "status": "delivery",
    "subscribers": "audience",
    "suppressions": "audience",
    "test-send": "delivery",
    "unsubscribe": "audience",
}


class DigestMailGroup(click.Group):
    """A group that turns library errors into ``Error: …`` lines (the error's exit code, no
    traceback)
    and loads each command's module on first use (:data:`LAZY_COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            _load(LAZY_COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestMailError as exc:
            # A relay's reply or a file's contents may be in the message: no control
            # characters reach the terminal (line breaks of our own stay).
            message = "\n".join(printable(line) for line in str(exc).split("\n"))
            if exc.hint:
                message += f"\nHint: {printable(exc.hint)}"
            raise _Failed(message, exc.exit_code) from None


class _Failed(click.ClickException):
    """A ClickException whose exit status is the library error's: Click's own
    ``exit_code`` is a class attribute."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return self.status


class _State:
    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._workspace: Workspace | None = None

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = find_workspace(self.root)
            for line in self._workspace.warnings:
                click.echo(f"Warning: {line}", err=True)
        return self._workspace


def pass_workspace(func: F) -> F:
    """Give the command the :class:`Workspace` as its first argument."""

    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        state = ctx.find_object(_State)
        if state is None:
            state = _State(None)
        return ctx.invoke(func, state.workspace, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Remote text (a relay's reply, a bounce's diagnostic) with control characters
    escaped, so that it can never send escape sequences to the operator's terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def json_option(func: F) -> F:
    """``--json``: print a machine-readable result instead of prose."""
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)


@click.group(cls=DigestMailGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DIGEST_MAIL_WORKSPACE",
    help="The newsletter folder (default: the current directory; env DIGEST_MAIL_WORKSPACE).",
)
@click.version_option(__version__, prog_name="digest-mail")
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None) -> None:
    """Compose, check, test and send the Chrysanthemum Digest newsletter.

    The current directory is the workspace (digest-mail.toml, articles/,
    templates/email/, subscribers/). With no SMTP relay configured, mail is
    captured in outbox/ and never leaves the machine.

    \b
    Example:
        digest-mail compose --since 7d && digest-mail check && digest-mail test-send
    """
    ctx.obj = _State(workspace)


def _load(module_name: str) -> None:
    import importlib

    module = importlib.import_module(f"{__name__}.{module_name}")
    for command in getattr(module, "COMMANDS", ()):
        if command.name not in cli.commands:
            cli.add_command(command)


def load_all() -> None:
    """Import every command module (for the README reference and the tests)."""
    for module_name in sorted(set(LAZY_COMMANDS.values())):
        _load(module_name)
