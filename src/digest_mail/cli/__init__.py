"""The command line. Commands parse options, call one library function and print.

Each command lives in a module of this package by pipeline stage; they are all
registered on :data:`cli` here. Library errors (:class:`DigestMailError`) become one
``Error: …`` line and the error's ``exit_code`` (1 unless it says otherwise) in
:meth:`DigestMailGroup.invoke`, nowhere else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from digest_mail import __version__
from digest_mail.config import Workspace, find_workspace
from digest_mail.errors import DigestMailError

F = TypeVar("F", bound=Callable[..., Any])


# Which module of this package defines each command. A command's module is imported only
# when that command runs (or help lists them all): ``send`` then never loads the feed,
# bounce, schedule or archive code, a tenth of a second at every start.
# tests/cli/test_cli_lazy.py checks this table against every module's COMMANDS.
LAZY_COMMANDS = {
    "approve": "schedule",
    "archive": "extras",
    "articles": "extras",
    "bounces": "audience",
    "check": "compose",
    "compose": "compose",
    "dev-smtp": "delivery",
    "init": "extras",
    "ledger": "ledger",
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

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Everything a command prints passes through printable_output: relay replies,
        # feed titles, file names and error messages, whoever wrote the echo.
        with printable_output():
            return super().main(*args, **kwargs)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand:
            # Click suggests only among loaded commands; most are lazy and not loaded yet.
            raise click.exceptions.NoSuchCommand(
                click.utils.make_str(args[0]), possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

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
# In output as a whole, TAB and LF are ours (layout); any other control character is
# foreign text that would otherwise reach the terminal raw.
_OUTPUT_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    # C0 as \xNN; DEL and C1 as \u00NN, which is also a valid escape inside a JSON
    # string (json.dumps escapes C0 itself but leaves C1 raw).
    return f"\\x{code:02x}" if code < 0x20 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Remote text (a relay's reply, a bounce's diagnostic) with control characters
    escaped, line breaks too, so that it can never send escape sequences to the
    operator's terminal or fake a line of output."""
    return _CONTROL.sub(_escape, text)


class _PrintableStream:
    """A text stream that escapes control characters other than TAB and LF."""

    def __init__(self, inner: TextIO) -> None:
        self.unwrapped = inner

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes for binary streams this way
            raise TypeError("write() argument must be str")
        self.unwrapped.write(_OUTPUT_CONTROL.sub(_escape, text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # encoding, buffer, isatty, flush, …
        return getattr(self.unwrapped, name)


def unwrapped(stream: TextIO) -> TextIO:
    """The terminal stream under :func:`printable_output`, for a progress display that
    writes escape sequences of its own on purpose."""
    inner = getattr(stream, "unwrapped", None)
    return typing.cast(TextIO, inner) if inner is not None else stream


@contextlib.contextmanager
def printable_output() -> Iterator[None]:
    """Standard output and error escape control characters while the block runs."""
    saved = sys.stdout, sys.stderr
    sys.stdout = typing.cast(TextIO, _PrintableStream(saved[0]))
    sys.stderr = (
        sys.stdout if saved[1] is saved[0] else typing.cast(TextIO, _PrintableStream(saved[1]))
    )
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def json_option(func: F) -> F:
    """``--json``: print a machine-readable result instead of prose."""
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)


def echo_json(data: object) -> None:
    """What ``--json`` prints: indented, Japanese as is (not ``\\u`` escapes)."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


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
    """Import every command module (for docs/commands.md and the tests)."""
    for module_name in sorted(set(LAZY_COMMANDS.values())):
        _load(module_name)
