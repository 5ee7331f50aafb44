"""Files digest-mail writes: created the way the operator's umask says, replaced in place.

``tempfile.mkstemp`` and ``mkdtemp`` create 0600 files and 0700 folders whatever the
umask is, and fixing that with a ``chmod`` to a constant (0644) overrode ``umask 077``
on a shared machine. Temporary files and folders here are created with the full mode
(0666, 0777), so the kernel applies the umask exactly as for any new file; a file that
replaces another takes the mode of the one it replaces.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["keep_mode", "new_temp_dir", "new_temp_file"]

_ATTEMPTS = 100


def _name(folder: Path, prefix: str, suffix: str) -> Path:
    return folder / f"{prefix}{secrets.token_hex(6)}{suffix}"


def new_temp_file(folder: Path, *, prefix: str, suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, empty file in ``folder`` opened for writing (fd, path); mode 0666 & ~umask."""
    for _ in range(_ATTEMPTS):
        path = _name(folder, prefix, suffix)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def new_temp_dir(folder: Path, *, prefix: str, suffix: str = ".tmp") -> Path:
    """A new, empty folder in ``folder``; mode 0777 & ~umask."""
    for _ in range(_ATTEMPTS):
        path = _name(folder, prefix, suffix)
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def keep_mode(temporary: Path, target: Path) -> None:
    """Give ``temporary`` the mode of ``target`` it is about to replace, if there is one."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return
    os.chmod(temporary, mode)
