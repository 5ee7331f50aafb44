"""Editing a list: add, remove and import rows, one writer at a time, never half a file.

Every change rewrites the list through a temporary file in the same folder (fsync, then
rename: a reader sees the old list or the new one) under a lock on the folder, keeping
the file's delimiter, its header as written, its BOM and its extra columns. An address
that opted out (unsubscribed on the list, or suppressed in the ledger) is not
re-subscribed unless the command says the person asked to be.
"""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from digest_mail.audience.addresses import AddressError, address_key, normalize_address
from digest_mail.audience.csvfiles import ListSource, open_list, scan_list, scan_source
from digest_mail.audience.rows import KNOWN_COLUMNS, Recipient, RowProblem, check_name
from digest_mail.errors import DigestMailError, InputError
from digest_mail.files import display_path, keep_mode, new_temp_file
from digest_mail.ledger.suppressions import is_suppressed, unsuppress

if TYPE_CHECKING:
    from digest_mail.ledger.db import Ledger

__all__ = [
    "AddResult",
    "ImportReport",
    "add_subscriber",
    "import_list",
    "list_lock",
    "remove_subscriber",
    "write_atomic",
]


@contextmanager
def list_lock(path: Path) -> Iterator[None]:
    """One writer at a time in a list's folder, so that two edits never lose each other.

    The lock is flock() on the folder itself: no lock file is left next to the lists.
    Readers need none: a rewrite replaces the file whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[TextIO], None], *, bom: bool = False) -> None:
    """Write through a temp file in the same folder, fsync, rename: never half a list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # New files get the umask's mode (077: 0600), a replaced one keeps its own.
    fd, tmp = new_temp_file(path.parent, prefix=f".{path.name}.")
    try:
        with open(fd, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        keep_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _writer(out: TextIO, delimiter: str) -> Any:
    return csv.writer(out, delimiter=delimiter, lineterminator="\r\n")


def _column(header: list[str], name: str) -> int:
    return header.index(name) if name in header else -1


def _set(
    values: list[str], header: list[str], raw_header: list[str], name: str, value: str
) -> None:
    index = _column(header, name)
    if index < 0:
        header.append(name)
        raw_header.append(name)
        index = len(header) - 1
    while len(values) <= index:
        values.append("")
    values[index] = value


def _keeps_bom(source: ListSource) -> bool:
    # Excel in Japan reads BOM-less UTF-8 as cp932: keep lists it saved readable by it.
    return source.encoding in ("utf-8-sig", "cp932", "utf-16")


Action = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True)
class AddResult:
    """What ``add`` did: ``added``, ``updated`` (name or status) or ``unchanged``."""

    action: Action
    email: str


def add_subscriber(
    path: Path,
    address: str,
    *,
    name: str | None = None,
    ledger: Ledger | None = None,
    resubscribe: bool = False,
    today: str = "",
) -> AddResult:
    """Subscribe ``address`` (add a row, or mark an unsubscribed row subscribed again).

    A suppressed or unsubscribed address is not re-subscribed unless ``resubscribe``;
    with it the ledger's suppression is lifted too.
    """
    try:
        email, key = normalize_address(address.strip())
    except AddressError as exc:
        raise InputError(exc.message) from None
    if name is not None:
        check_name(name)
    with list_lock(path):
        return _add_locked(
            path, email, key, name=name, ledger=ledger, resubscribe=resubscribe, today=today
        )


def _add_locked(
    path: Path,
    email: str,
    key: str,
    *,
    name: str | None,
    ledger: Ledger | None,
    resubscribe: bool,
    today: str,
) -> AddResult:
    suppressed = ledger is not None and is_suppressed(ledger, key)
    if suppressed and not resubscribe:
        raise DigestMailError(
            f"{email} is suppressed in the ledger (it unsubscribed or bounced)",
            hint="add --resubscribe only if the person asked to subscribe again",
        )
    if path.exists():
        action = _add_to_list(path, email, key, name=name, resubscribe=resubscribe, today=today)
    else:
        _start_list(path, email, name=name, today=today)
        action = "added"
    if suppressed and ledger is not None:
        unsuppress(ledger, key)
    return AddResult(action, email)


def _start_list(path: Path, email: str, *, name: str | None, today: str) -> None:
    """Write a new list whose one row is ``email``."""
    header = list(KNOWN_COLUMNS)
    row = [email, name or "", "subscribed", today]

    def create(out: TextIO) -> None:
        writer = _writer(out, ",")
        writer.writerow(header)
        writer.writerow(row)

    write_atomic(path, create)


def _add_to_list(
    path: Path, email: str, key: str, *, name: str | None, resubscribe: bool, today: str
) -> Action:
    """Rewrite the list at ``path`` with ``email`` subscribed: its first row updated, or
    a new row at the end."""
    action: Action = "added"
    with open_list(path) as source:
        header, raw_header = list(source.header), list(source.raw_header)
        if name and "name" not in header:
            header.append("name")
            raw_header.append("name")

        def rewrite(out: TextIO) -> None:
            nonlocal action
            writer = _writer(out, source.delimiter)
            writer.writerow(raw_header)
            found = False
            for _line, values, item in scan_source(source):
                if not found and isinstance(item, Recipient) and item.key == key:
                    found = True
                    values, action = _subscribe_row(
                        values, item, header, raw_header, email, name=name, resubscribe=resubscribe
                    )
                writer.writerow(values)
            if not found:
                writer.writerow(_new_row(header, email, name=name, today=today))

        write_atomic(path, rewrite, bom=_keeps_bom(source))
    return action


def _subscribe_row(
    values: list[str],
    item: Recipient,
    header: list[str],
    raw_header: list[str],
    email: str,
    *,
    name: str | None,
    resubscribe: bool,
) -> tuple[list[str], Action]:
    """The row of ``item`` marked subscribed (and renamed to ``name``), and whether that
    changed it; an unsubscribed row is refused unless ``resubscribe``."""
    if item.status != "subscribed" and not resubscribe:
        raise DigestMailError(
            f"{email} is on the list as unsubscribed (line {item.line})",
            hint="add --resubscribe only if the person asked to subscribe again",
        )
    renamed = name is not None and name != item.name
    values = list(values)
    if "status" in header:
        _set(values, header, raw_header, "status", "subscribed")
    if name is not None:
        _set(values, header, raw_header, "name", name)
    resubscribed = item.status != "subscribed"
    return values, "updated" if renamed or resubscribed else "unchanged"


def _new_row(header: list[str], email: str, *, name: str | None, today: str) -> list[str]:
    row = [""] * len(header)
    row[header.index("email")] = email
    defaults = {"name": name or "", "status": "subscribed", "subscribed_at": today}
    for column, value in defaults.items():
        if column in header:
            row[header.index(column)] = value
    return row


def remove_subscriber(path: Path, address: str) -> Recipient:
    """Delete the row of ``address`` from the list; the removed Recipient."""
    key = address_key(address)
    removed: list[Recipient] = []
    with list_lock(path), open_list(path) as source:

        def rewrite(out: TextIO) -> None:
            writer = _writer(out, source.delimiter)
            writer.writerow(source.raw_header)
            for _line, values, item in scan_source(source):
                if not removed and isinstance(item, Recipient) and item.key == key:
                    removed.append(item)
                    continue
                writer.writerow(values)
            if not removed:
                raise InputError(f"{address!r} is not on this list", path=display_path(path))

        write_atomic(path, rewrite, bom=_keeps_bom(source))
    return removed[0]


@dataclass
class ImportReport:
    """Counts of an import; ``problems`` lists every rejected row of the imported file."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "problems": self.problems,
        }

    def summary(self) -> str:
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.rejected} rejected"
        )


def _extend_header(header: list[str], raw_header: list[str], incoming: Iterable[Recipient]) -> None:
    for new in incoming:
        wanted = {"name": new.name, "status": new.status, "subscribed_at": new.subscribed_at}
        for column, value in (*wanted.items(), *new.attrs.items()):
            implicit = column == "status" and value == "subscribed"
            if value and column not in header and not implicit:
                header.append(column)
                raw_header.append(column)


def _fill(row: list[str], header: list[str], recipient: Recipient) -> bool:
    """Copy the non-empty values of ``recipient`` into ``row``; True if anything changed."""
    values = {"name": recipient.name, "status": recipient.status}
    values["subscribed_at"] = recipient.subscribed_at
    values.update(recipient.attrs)
    row += [""] * (len(header) - len(row))
    changed = False
    for column, value in values.items():
        if not value or column not in header:
            continue
        index = header.index(column)
        current = row[index]
        if column == "status":
            current = current.strip().lower() or "subscribed"
        if current != value:
            row[index] = value
            changed = True
    return changed


def import_list(
    source_path: Path,
    target_path: Path,
    *,
    ledger: Ledger | None = None,
    resubscribe: bool = False,
    encoding: str | None = None,
    today: str = "",
) -> ImportReport:
    """Merge the rows of ``source_path`` into the list at ``target_path``.

    A new address without a subscribed_at of its own gets ``today``, as ``add`` does.

    Existing addresses take the imported non-empty values (new columns are appended to
    the header, the existing column order is kept); new addresses are appended. An
    address that opted out (status ``unsubscribed`` on the list, or suppressed in the
    ledger) is not re-subscribed without ``resubscribe``: that row is rejected; with it,
    the ledger's suppression is lifted. Problem rows of the imported file are rejected
    with their line. The imported file is held in memory; the target list is streamed.
    """
    with list_lock(target_path):
        return _import_locked(
            source_path,
            target_path,
            ledger=ledger,
            resubscribe=resubscribe,
            encoding=encoding,
            today=today,
        )


def _import_locked(
    source_path: Path,
    target_path: Path,
    *,
    ledger: Ledger | None,
    resubscribe: bool,
    encoding: str | None,
    today: str = "",
) -> ImportReport:
    report = ImportReport()
    merge = _Merge(
        incoming=_read_incoming(source_path, encoding, report),
        report=report,
        ledger=ledger,
        resubscribe=resubscribe,
        shown=display_path(source_path),
        today=today,
    )
    if target_path.exists():
        with open_list(target_path) as target:
            write_atomic(target_path, lambda out: merge.write(target, out), bom=_keeps_bom(target))
    else:
        write_atomic(target_path, lambda out: merge.write(None, out))
    if ledger is not None:
        for key in merge.lifted:
            unsuppress(ledger, key)
    return report


def _read_incoming(path: Path, encoding: str | None, report: ImportReport) -> dict[str, Recipient]:
    """The valid rows of the imported file by key (the last row of a key wins); its
    problem rows go into ``report`` as rejected."""
    incoming: dict[str, Recipient] = {}
    for item in scan_list(path, encoding=encoding):
        if isinstance(item, RowProblem):
            report.rejected += 1
            report.problems.append(str(item))
        else:
            incoming[item.key] = item
    return incoming


@dataclass
class _Merge:
    """One import: the ``incoming`` rows merged into a list as it is rewritten, counted
    in ``report``; ``lifted`` collects the suppressions to lift once the list is written."""

    incoming: dict[str, Recipient]
    report: ImportReport
    ledger: Ledger | None
    resubscribe: bool
    shown: str  # the imported file, as problems name it
    today: str
    lifted: list[str] = field(default_factory=list)

    def write(self, target: ListSource | None, out: TextIO) -> None:
        """The merged list into ``out``: the rows of ``target`` (None: a new list) in
        their order, each updated from its incoming row, then the new addresses."""
        header, raw_header, delimiter, rows = _layout(target)
        _extend_header(header, raw_header, self.incoming.values())
        writer = _writer(out, delimiter)
        writer.writerow(raw_header)
        for _line, values, item in rows:
            new = self.incoming.pop(item.key, None) if isinstance(item, Recipient) else None
            if new is not None and isinstance(item, Recipient) and self._allows(new, item.status):
                values = self._update(values, header, new)
            writer.writerow(values)
        for new in self.incoming.values():
            if self._allows(new, None):
                writer.writerow(self._new_row(header, new))
                self.report.new += 1

    def _allows(self, new: Recipient, old_status: str | None) -> bool:
        """Whether ``new`` may go in: an address that opted out (``old_status``
        unsubscribed, or suppressed) is re-subscribed only with ``resubscribe``, and
        otherwise rejected in the report."""
        if new.status != "subscribed":
            return True
        suppressed = self.ledger is not None and is_suppressed(self.ledger, new.key)
        if old_status != "unsubscribed" and not suppressed:
            return True
        if self.resubscribe:
            if suppressed:
                self.lifted.append(new.key)
            return True
        why = "is suppressed in the ledger" if suppressed else "is unsubscribed on the list"
        self.report.rejected += 1
        self.report.problems.append(
            f"{self.shown}:{new.line}: {new.email!r} {why}; not re-subscribed "
            "(use --resubscribe if the person asked to subscribe again)"
        )
        return False

    def _update(self, values: list[str], header: list[str], new: Recipient) -> list[str]:
        """An existing row with the incoming values, counted as updated or unchanged."""
        values = list(values)
        changed = _fill(values, header, new)
        just_lifted = bool(self.lifted) and self.lifted[-1] == new.key
        if changed or just_lifted:
            self.report.updated += 1
        else:
            self.report.unchanged += 1
        return values

    def _new_row(self, header: list[str], new: Recipient) -> list[str]:
        row = [""] * len(header)
        row[header.index("email")] = new.email
        _fill(row, header, new)
        if "status" in header:
            row[header.index("status")] = new.status
        since = header.index("subscribed_at") if "subscribed_at" in header else -1
        if since >= 0 and not row[since] and new.status == "subscribed":
            row[since] = self.today
        return row


def _layout(
    target: ListSource | None,
) -> tuple[list[str], list[str], str, Iterator[tuple[int, list[str], Recipient | RowProblem]]]:
    """(header, header as written, delimiter, rows) of the list being rewritten: copies
    of the existing list's, or a new list's (the known columns, comma, no rows)."""
    if target is None:
        return list(KNOWN_COLUMNS), list(KNOWN_COLUMNS), ",", iter(())
    return list(target.header), list(target.raw_header), target.delimiter, scan_source(target)
