"""One error base for everything a user can cause; the CLI turns these into one line."""

from __future__ import annotations

from pathlib import Path

# The process's exit status, one meaning each (docs/relays.md has the table).
EXIT_COMPLETE = 0
EXIT_ERROR = 1  # a user mistake, configuration, refused input
EXIT_USAGE = 2  # Click's own
EXIT_STOPPED = 3  # the relay refused us, the circuit breaker tripped, or interrupted
EXIT_INCOMPLETE = 4  # recipients remain queued or deferred: rerun to resume
EXIT_UNCERTAIN = 5  # only in-flight rows of a crashed run remain: --resend-uncertain


class DigestMailError(Exception):
    """Base of every error digest-mail raises on purpose.

    ``hint`` is an optional second sentence telling the user what to do next.
    ``exit_code`` is the process's exit status when the CLI ends on this error: a class
    attribute, overridable per instance.
    """

    exit_code: int = EXIT_ERROR

    def __init__(
        self, message: str, *, hint: str | None = None, exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ConfigError(DigestMailError):
    """digest-mail.toml, an environment override or a secret file is wrong."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        prefix = f"{path}: " if path else ""
        if key:
            prefix += f"{key}: "
        super().__init__(prefix + message, hint=hint)
        self.path = path
        self.key = key


class InputError(DigestMailError):
    """A file the user wrote (article, CSV, template) is malformed: names file and line."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if field:
            where += f"{field}: "
        super().__init__(where + message, hint=hint)
        self.path = path
        self.line = line
        self.field = field


class LedgerError(DigestMailError):
    """The ledger cannot be opened, is newer (or, shared, older) than this program, or
    refused a statement."""
