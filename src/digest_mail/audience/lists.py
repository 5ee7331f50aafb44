"""Subscriber lists by name: ``subscribers/<name>.csv``, found, counted and snapshotted.

A list name must name a list that exists (a typo must never start a new list; the
nearest name is suggested). :func:`iter_recipients` is what a send reads: the
subscribed, not suppressed rows of a list, with its problem rows; :func:`tally_list`
counts a list's rows by fate for ``subscribers count`` and ``check``. Reading the file
is :mod:`digest_mail.audience.csvfiles`; changing it is :mod:`digest_mail.audience.editing`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from digest_mail.audience.addresses import address_key
from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.keyset import SeenKeys
from digest_mail.audience.rows import ListCounts, Recipient, RowProblem
from digest_mail.errors import InputError
from digest_mail.files import display_path
from digest_mail.ledger.suppressions import count_suppressions, is_suppressed, suppressed_keys

if TYPE_CHECKING:
    from digest_mail.config import Workspace
    from digest_mail.ledger.db import Ledger

__all__ = [
    "UnknownListError",
    "check_new_list",
    "existing_lists",
    "iter_recipients",
    "require_list",
    "resolve_list",
    "similar_list",
    "tally_list",
]


def _is_path(ref: str) -> bool:
    return ref.endswith((".csv", ".tsv", ".txt")) or "/" in ref or os.sep in ref


def resolve_list(
    workspace: Workspace, ref: str, *, create: bool = False, allow_similar: bool = False
) -> Path:
    """A list name (``weekly``) or the path of a CSV file.

    A list name must name an existing list, unless ``create`` (a command that may start
    a list); even then a name one typo away from an existing list is refused unless
    ``allow_similar`` (:func:`check_new_list`). A path is left to the reader's errors."""
    if _is_path(ref):
        return Path(ref)
    if create:
        return check_new_list(workspace, ref, allow_similar=allow_similar)
    return require_list(workspace, ref)


class UnknownListError(InputError):
    """A list name with no subscribers/<name>.csv; carries the lists that do exist."""

    def __init__(self, name: str, path: Path, lists: Sequence[str], *, hint: str) -> None:
        shown = ", ".join(lists) if lists else "none yet"
        super().__init__(
            f"no list {name!r}: {display_path(path)} does not exist (lists: {shown})", hint=hint
        )
        self.name = name
        self.lists = tuple(lists)


def existing_lists(workspace: Workspace) -> list[str]:
    """The names of the workspace's lists: the stems of subscribers/*.csv, sorted."""
    directory = workspace.subscribers_dir
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.csv") if p.is_file())


def similar_list(name: str, lists: Sequence[str]) -> str | None:
    """The one of ``lists`` that ``name`` looks like a typo of, if any."""
    found = difflib.get_close_matches(name, lists, n=1, cutoff=0.75)
    if not found:
        # Case slips (Weekly) are typos too.
        found = [n for n in lists if n.casefold() == name.casefold()]
    return found[0] if found else None


def require_list(workspace: Workspace, name: str) -> Path:
    """The path of the existing list ``name``; :class:`UnknownListError` naming the
    real lists (and the nearest one) when there is none: a misspelt name must never
    lead to creating a new list."""
    path = workspace.list_path(name)
    if path.is_file():
        return path
    lists = existing_lists(workspace)
    near = similar_list(name, lists)
    if near is not None:
        raise UnknownListError(name, path, lists, hint=f"Did you mean {near!r}?")
    raise UnknownListError(
        name,
        path,
        lists,
        hint=f"start the list with 'digest-mail subscribers add {name} ADDRESS'",
    )


def check_new_list(workspace: Workspace, name: str, *, allow_similar: bool = False) -> Path:
    """The path for list ``name``, which may be new: but a new name that is one typo away
    from an existing list is refused (``allow_similar`` overrides, for a list that is
    meant to look alike)."""
    path = workspace.list_path(name)
    if path.exists() or allow_similar:
        return path
    lists = existing_lists(workspace)
    near = similar_list(name, lists)
    if near is not None:
        raise UnknownListError(
            name,
            path,
            lists,
            hint=f"Did you mean {near!r}? To start a new list {name!r}, add --new-list",
        )
    return path


def tally_list(
    path: Path,
    *,
    ledger: Ledger | None = None,
    on_problem: Callable[[RowProblem], None] | None = None,
    encoding: str | None = None,
) -> ListCounts:
    """Count a list's rows by fate; ``on_problem`` sees each problem as it is found."""
    counts = ListCounts()
    suppressed = _suppression_filter(ledger) if ledger is not None else None
    for item in scan_list(path, encoding=encoding):
        if isinstance(item, RowProblem):
            counts.add_problem(item)
            if on_problem is not None:
                on_problem(item)
            continue
        counts.rows += 1
        if item.status != "subscribed":
            counts.unsubscribed += 1
        elif suppressed is not None and suppressed(item.key):
            counts.suppressed += 1
        else:
            counts.subscribed += 1
    return counts


def _suppression_filter(ledger: Ledger) -> Callable[[str], bool]:
    """A fast ``is_suppressed`` for counting: the ledger's keys as 64-bit hashes in memory
    (12 bytes each), each hit confirmed by the ledger, so the answer stays exact."""
    seen = SeenKeys(count_suppressions(ledger))
    for address in suppressed_keys(ledger):
        seen.add(address, 0)

    def suppressed(key: str) -> bool:
        key = address_key(key)
        return seen.contains(key) and is_suppressed(ledger, key)

    return suppressed


def iter_recipients(
    workspace: Workspace,
    list_name: str,
    ledger: Ledger,
    *,
    counts: ListCounts | None = None,
    on_excluded: Callable[[Recipient, str], None] | None = None,
) -> Iterator[Recipient | RowProblem]:
    """The send snapshot of a list: subscribed, not suppressed Recipients, and RowProblems.

    Rows that must not receive mail but are not problems are never yielded: an
    ``unsubscribed`` status, or an address the ledger suppresses. They are counted in
    ``counts`` (``unsubscribed`` / ``suppressed``, with ``subscribed`` and ``problems``
    for the rest) and passed to ``on_excluded(recipient, reason)`` with reason
    ``"unsubscribed"`` or ``"suppressed"`` when given.
    """
    counts = ListCounts() if counts is None else counts
    # One query per row was 5 % of a send (benchmarks/profiles); the in-memory filter
    # asks the ledger only about its hits, so the answer is the same.
    suppressed = _suppression_filter(ledger)
    for item in scan_list(workspace.list_path(list_name)):
        if isinstance(item, RowProblem):
            counts.add_problem(item)
            yield item
            continue
        counts.rows += 1
        if item.status != "subscribed":
            counts.unsubscribed += 1
            reason = "unsubscribed"
        elif suppressed(item.key):
            counts.suppressed += 1
            reason = "suppressed"
        else:
            counts.subscribed += 1
            yield item
            continue
        if on_excluded is not None:
            on_excluded(item, reason)
