"""Which runtimes are alive: a lock file per runtime, so a crash's leftovers can be told
from another process's work in progress.

Every runtime takes an owner token and, from its first archive or restore, holds an
exclusive `flock` on the empty file `<archive folder>/.owner.<token>.lock` until it
closes. The
temporary files of its archives and restores carry the token in their names. A
temporary whose owner's lock can be taken belongs to a runtime that is gone (closed, or
killed: the kernel releases a dead process's locks at once), so it is removed; one
whose owner still holds its lock is another host's work in progress, left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import threading
from pathlib import Path

from greenroom.files import create_private, private_dir

__all__ = ["LOCK_PREFIX", "LOCK_SUFFIX", "OWNER_TOKEN", "Owners", "lock_name"]

log = logging.getLogger("greenroom.blocks")

OWNER_TOKEN = re.compile(r"[0-9a-f]{16}")
"""What an owner token looks like: 16 hex digits."""


LOCK_PREFIX = ".owner."
LOCK_SUFFIX = ".lock"


def lock_name(token: str) -> str:
    """The file name of `token`'s lock in the archive folder (empty: 0 bytes)."""
    return f"{LOCK_PREFIX}{token}{LOCK_SUFFIX}"


class Owners:
    """This runtime's owner token and lock, and the liveness of other owners.

    The lock is taken lazily, by the first archive or restore that names a temporary
    with the token: a runtime that only reads makes no file.
    """

    def __init__(self, archive_dir: Path, *, file_mode: int, dir_mode: int) -> None:
        """A new token for a runtime whose archives go to `archive_dir`."""
        self._token = secrets.token_hex(8)
        self._folder = archive_dir
        self._file_mode = file_mode
        self._dir_mode = dir_mode
        self._path = archive_dir / lock_name(self._token)
        self._fd: int | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        """The folder holding the owner locks."""
        return self._folder

    @property
    def token(self) -> str:
        """This runtime's token, its lock held from now on; `OSError` if it cannot be."""
        with self._lock:
            if self._fd is None and not self._closed:
                private_dir(self._folder, self._dir_mode)
                # Locked before it has its name: nobody ever finds it unlocked while we run.
                making = self._folder / f".owner.{self._token}.making"
                fd = create_private(making, self._file_mode)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (new: never held)
                    os.rename(making, self._path)
                except BaseException:
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        os.unlink(making)
                    raise
                self._fd = fd
            return self._token

    def is_alive(self, token: str) -> bool:
        """Whether the runtime that owns `token` still runs (this one does)."""
        if token == self._token:
            return not self._closed
        if not OWNER_TOKEN.fullmatch(token):
            return False  # (an old greenroom's unnamed temporary, or junk)
        try:
            fd = os.open(self._folder / lock_name(token), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False  # closed cleanly (its lock file removed), or never here
        except OSError:
            return True  # cannot tell: treated as alive, so nothing of it is removed
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # held: that runtime runs
        finally:
            os.close(fd)  # (closing releases a lock just taken)
        return False

    def forget_dead(self) -> int:
        """Remove the lock files of owners that are gone; how many were removed."""
        removed = 0
        with contextlib.suppress(OSError):
            for entry in os.scandir(self._folder):
                name = entry.name
                if not (name.startswith(LOCK_PREFIX) and name.endswith(LOCK_SUFFIX)):
                    continue
                if not self.is_alive(name[len(LOCK_PREFIX) : -len(LOCK_SUFFIX)]):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def close(self) -> None:
        """Release the lock and remove its file; this token is dead from now on."""
        with self._lock:
            self._closed = True
            if self._fd is None:
                return
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            os.close(self._fd)
            self._fd = None
