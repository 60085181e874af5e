"""Private files and folders, and reads that refuse links and special files.

Everything greenroom creates on disk (the database, transcripts, archives, their
folders) is private by default: files 0600, folders 0700 (`RuntimeConfig.file_mode`
and `dir_mode` change that). The mode is set on the new descriptor, so the umask
cannot widen it and nobody else can open the file between its creation and a chmod.

Files greenroom reads back (archives, transcripts) may sit in a folder other users
can write to. `open_regular` opens without following a symlink in the last step and
checks the opened descriptor, so a link or a FIFO swapped in after any check is
refused, never read (nor waited on).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from greenroom.errors import StorageError

__all__ = ["DEFAULT_DIR_MODE", "DEFAULT_FILE_MODE", "create_private", "open_regular", "private_dir"]

DEFAULT_FILE_MODE = 0o600
DEFAULT_DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def private_dir(folder: Path, mode: int = DEFAULT_DIR_MODE) -> Path:
    """Create `folder` (and missing parents) with `mode`; an existing one is left as it is.

    Raises `OSError` (callers say what the folder was for).
    """
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue  # made meanwhile (another thread or process): left as it is
        os.chmod(path, mode)  # the umask may have narrowed it; set exactly
    return folder


def create_private(
    path: Path,
    mode: int = DEFAULT_FILE_MODE,
    *,
    flags: int = os.O_WRONLY,
    dir_fd: int | None = None,
) -> int:
    """A new file at `path`, created exclusively with `mode`: its descriptor.

    Never follows a symlink and never opens an existing file (`FileExistsError`).
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(
    path: Path | str, *, what: str = "file", flags: int = os.O_RDONLY, dir_fd: int | None = None
) -> int:
    """Open an existing regular file without following a final symlink: its descriptor.

    A symlink, FIFO, device, socket or folder at `path` raises `StorageError` (the
    open never blocks on a FIFO); so does a file that cannot be opened.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a symlink
            raise StorageError(f"refusing {what} {str(path)!r}: it is a symbolic link") from exc
        raise StorageError(f"could not open {what} {str(path)!r}: {exc}") from exc
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise StorageError(
                f"refusing {what} {str(path)!r}: it is not a regular file ({_kind(status.st_mode)})"
            )
        if _NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a file"
