"""A list's rows: what a valid row becomes, what a bad one is reported as, and the counts.

Every data row of a list comes out of the reader (:mod:`digest_mail.audience.csvfiles`)
as a :class:`Recipient` or a :class:`RowProblem` (invalid address, duplicate, control
characters, unknown status, extra fields): problems are reported with file and line,
never dropped and never sent to. The rule for a reader's name is here too, because a
name typed with ``subscribers add --name`` obeys the one a name read from a file does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from digest_mail.errors import InputError
from digest_mail.files import display_path
from digest_mail.text import MAX_NAME, looks_like_encoded_word

__all__ = [
    "FIELD_CONTROL",
    "KNOWN_COLUMNS",
    "STATUSES",
    "ListCounts",
    "ProblemKind",
    "Recipient",
    "RowProblem",
    "check_name",
    "name_problem",
]

KNOWN_COLUMNS = ("email", "name", "status", "subscribed_at")
STATUSES = ("subscribed", "unsubscribed")
ProblemKind = Literal["invalid", "duplicate", "control-chars", "status", "columns"]

# C0 and C1 controls (CR, LF, NUL, TAB, ESC …) plus the Unicode line and paragraph
# separators: any of them in a name could end a header line and start another.
FIELD_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Recipient:
    """One valid row of a list.

    ``email`` is the address as written with the domain normalized (lowercased, IDNA
    normalized); ``key`` is the casefolded address used for duplicates and suppressions.
    """

    email: str
    key: str
    name: str
    status: str
    attrs: Mapping[str, str]
    line: int
    subscribed_at: str = ""


@dataclass(frozen=True)
class RowProblem:
    """A row that must not be sent to, named by file and line."""

    path: Path
    line: int
    value: str
    message: str
    kind: ProblemKind
    field: str = "email"

    def __str__(self) -> str:
        return f"{display_path(self.path)}:{self.line}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": display_path(self.path),
            "line": self.line,
            "kind": self.kind,
            "field": self.field,
            "value": self.value,
            "message": self.message,
        }


@dataclass
class ListCounts:
    """What a list holds. ``rows`` = subscribed + unsubscribed + suppressed + problems.

    ``suppressed`` counts rows marked subscribed whose address the ledger suppresses.
    """

    rows: int = 0
    subscribed: int = 0
    unsubscribed: int = 0
    suppressed: int = 0
    problems: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def add_problem(self, problem: RowProblem) -> None:
        self.rows += 1
        self.problems += 1
        self.kinds[problem.kind] = self.kinds.get(problem.kind, 0) + 1

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "subscribed": self.subscribed,
            "unsubscribed": self.unsubscribed,
            "suppressed": self.suppressed,
            "problems": self.problems,
            "problem_kinds": dict(sorted(self.kinds.items())),
        }

    def summary(self) -> str:
        text = (
            f"{self.rows} rows: {self.subscribed} subscribed, {self.unsubscribed} unsubscribed, "
            f"{self.suppressed} suppressed, {self.problems} "
            f"{'problem' if self.problems == 1 else 'problems'}"
        )
        if self.kinds:
            text += " (" + ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) + ")"
        return text


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a reader's name in a To header, or None: one rule for rows
    read from a list and for ``subscribers add --name``."""
    char = FIELD_CONTROL.search(name)
    if char:
        return (
            f"{name!r} contains a control character (U+{ord(char.group()):04X}) "
            "that could break a mail header"
        )
    if looks_like_encoded_word(name):
        # A header would decode it (CR/LF included, spaces or not): refused before any send.
        return (
            f"{name!r} is an RFC 2047 encoded word, which a mail header would decode; "
            "write the name as plain text"
        )
    if len(name) > MAX_NAME:
        # Nobody is called that: a column mix-up, or an attack on header line limits.
        return f"{len(name)} characters long (at most {MAX_NAME})"
    return None


def check_name(name: str) -> None:
    problem = name_problem(name)
    if problem:
        raise InputError(problem, field="name")
