"""Scratch tables: SQLite files that live for one scan, never the ledger itself.

A million-row list finds its duplicates in a temporary SQLite file instead of memory
(:func:`digest_mail.audience.keyset.seen_keys` chooses). It holds no ledger table and
outlives no scan; it is here because every SQL statement of digest-mail lives in this
package. It is SQLite on purpose, whatever database holds the ledger: a private file
on local disk, deleted when the scan ends.
"""

from __future__ import annotations

__all__ = ["SeenKeysOnDisk"]


class SeenKeysOnDisk:
    """:class:`~digest_mail.audience.keyset.SeenKeys` for big lists: the same 64-bit
    hashes in a temporary SQLite file (deleted on close) whose page cache is capped at
    2 MiB. Same answers, flat memory; a few µs a row more."""

    def __init__(self) -> None:
        import sqlite3

        # "" is a private temporary database on disk, removed when the connection closes.
        self._db = sqlite3.connect("", isolation_level=None)
        self._integrity_error = sqlite3.IntegrityError
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-2048"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE seen (digest INTEGER PRIMARY KEY, line INTEGER NOT NULL)")
        self._db.execute("BEGIN")  # one transaction for the whole scan: nothing to keep

    def add(self, key: str, line: int) -> int | None:
        digest = hash(key)  # a signed 64-bit int: SQLite's INTEGER holds it as is
        try:
            self._db.execute("INSERT INTO seen VALUES (?, ?)", (digest, line))
        except self._integrity_error:
            row = self._db.execute("SELECT line FROM seen WHERE digest = ?", (digest,)).fetchone()
            return int(row[0])
        return None

    def close(self) -> None:
        self._db.close()
