"""Files digest-mail writes, and how it names files in what it prints.

Written files are created the way the operator's umask says, and replaced in place.

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

__all__ = ["display_path", "keep_mode", "new_temp_dir", "new_temp_file"]

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


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when the file is inside it
    (``subscribers/weekly.csv``: shorter errors and output), else as given."""
    try:
        return (
            os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
        )
    except (OSError, ValueError):
        return str(path)
