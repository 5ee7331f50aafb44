"""One error base for everything a user can cause; the CLI turns these into one line."""

from __future__ import annotations

from pathlib import Path


class DigestMailError(Exception):
    """Base of every error digest-mail raises on purpose.

    ``hint`` is an optional second sentence telling the user what to do next.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

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
