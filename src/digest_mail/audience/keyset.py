"""Duplicate detection in flat memory: which address keys a scan has already seen.

A list of a million addresses must not hold a million Python strings to find its
duplicates: :class:`SeenKeys` keeps 12 bytes per key (a 64-bit hash and a line number)
in two flat arrays, and past :data:`SEEN_IN_MEMORY_ROWS` rows
:class:`~digest_mail.ledger.scratch.SeenKeysOnDisk` keeps the same hashes in a temporary
SQLite file (in the ledger package, where every SQL statement lives), so that memory
stays flat from a thousand rows to a million (issue #6). :func:`seen_keys` picks one for
a list's expected size.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from contextlib import contextmanager

from digest_mail.ledger.scratch import SeenKeysOnDisk

__all__ = ["SEEN_IN_MEMORY_ROWS", "SeenKeys", "seen_keys"]


class SeenKeys:
    """Keys seen so far -> first line, in 12 bytes a slot (open addressing, linear probing).

    A key is stored as its 64-bit ``hash()`` (SipHash, keyed per process), never as a
    string: a false duplicate needs a 64-bit collision, about one chance in 10^7 for a
    list of a million addresses. Sized from the expected row count so that a big list
    is allocated once (about 20 bytes per row) instead of doubling and copying.
    """

    _LOAD = 0.6

    def __init__(self, expected: int = 0) -> None:
        self._count = 0
        self._allocate(max(1024, int(expected / self._LOAD) + 1))

    def _allocate(self, size: int) -> None:
        self._size = size
        self._limit = int(size * self._LOAD)
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size

    def add(self, key: str, line: int) -> int | None:
        """Record ``key`` at ``line``; the first line if it was seen before."""
        digest = (hash(key) & 0xFFFF_FFFF_FFFF_FFFF) or 1  # 0 marks an empty slot
        keys, size = self._keys, self._size
        slot = digest % size
        while True:
            found = keys[slot]
            if found == 0:
                keys[slot] = digest
                self._lines[slot] = line
                self._count += 1
                if self._count > self._limit:
                    self._grow()
                return None
            if found == digest:
                return self._lines[slot]
            slot += 1
            if slot == size:
                slot = 0

    def contains(self, key: str) -> bool:
        digest = (hash(key) & 0xFFFF_FFFF_FFFF_FFFF) or 1
        keys, size = self._keys, self._size
        slot = digest % size
        while True:
            found = keys[slot]
            if found == 0:
                return False
            if found == digest:
                return True
            slot = slot + 1 if slot + 1 < size else 0

    def _grow(self) -> None:
        old_keys, old_lines = self._keys, self._lines
        self._allocate(self._size * 2)
        keys, lines, size = self._keys, self._lines, self._size
        for digest, line in zip(old_keys, old_lines, strict=True):
            if digest:
                slot = digest % size
                while keys[slot]:
                    slot = slot + 1 if slot + 1 < size else 0
                keys[slot] = digest
                lines[slot] = line


# Past this many rows, duplicate detection moves from memory to a temporary file, so a
# send's memory stays the same from a thousand rows to a million (issue #6).
SEEN_IN_MEMORY_ROWS = 200_000


@contextmanager
def seen_keys(expected: int) -> Iterator[SeenKeys | SeenKeysOnDisk]:
    """A duplicate detector for about ``expected`` keys: in memory, or past
    :data:`SEEN_IN_MEMORY_ROWS` in a temporary file that is gone when the block ends."""
    if expected > SEEN_IN_MEMORY_ROWS:
        on_disk = SeenKeysOnDisk()
        try:
            yield on_disk
        finally:
            on_disk.close()
    else:
        yield SeenKeys(expected)
