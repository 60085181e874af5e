"""Where block archives are kept: the `Archives` interface and `FolderArchives`.

An archive is one compressed file of a block's output, named
`<block id>.<archived at, ms>.<suffix>` (`archive_name`); a block's metadata holds
that name. greenroom compresses and checks archives itself (`greenroom.blocks.archive`)
and asks an `Archives` only to keep their bytes: save one under a name, open one,
say its size, delete one, list them, and clean up after a crash. `FolderArchives`, the
default, keeps them in a folder (`RuntimeConfig.archive_dir`); a host whose archives
belong in object storage passes its own `Archives` to `Runtime.open(archives=...)`.

    archives = FolderArchives(Path("/mnt/shared/archives"))
    rt = Runtime.open("postgresql://...", archives=archives)
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

from greenroom.checks import check_text
from greenroom.errors import InvalidInput, StorageError
from greenroom.files import (
    DEFAULT_DIR_MODE,
    DEFAULT_FILE_MODE,
    create_private,
    open_regular,
    private_dir,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "TEMP_SUFFIX",
    "ArchiveEntry",
    "Archives",
    "FolderArchives",
    "archive_block_id",
    "archive_name",
    "check_archive_name",
    "check_block_id",
    "checked_archive_path",
    "next_archive_name",
    "temp_owner",
]

_BLOCK_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
ARCHIVE_SUFFIXES = {"zstd": ".zst", "gzip": ".gz"}
"""The file name suffix of an archive, per codec."""
_SUFFIXES = frozenset(ARCHIVE_SUFFIXES.values())
TEMP_SUFFIX = ".tmp"
"""How the name of an archive being written ends (`FolderArchives`)."""


@attrs.frozen
class ArchiveEntry:
    """One archive kept: its name and its size in bytes (compressed)."""

    name: str
    size: int

    @property
    def archived_at_ms(self) -> int:
        """When it was made (Unix ms), from its name."""
        return int(self.name.rsplit(".", 2)[1])


@runtime_checkable
class Archives(Protocol):
    """Keeps the bytes of block archives, by name; see the module docstring.

    Names are what `archive_name` makes (checked by `check_archive_name`). Every call
    may run on any of greenroom's threads, several at once. Failures raise
    `StorageError` with a message a user can act on.
    """

    def describe(self) -> str:
        """Where the archives are, for messages and logs (a folder, a bucket...)."""
        ...

    def save(self, name: str, write: Callable[[BinaryIO], None], *, owner: str) -> str:
        """Keep what `write(out)` writes to `out` as the archive `name`; the name used.

        All or nothing: an error (`write`'s own included, raised as it is) or a crash
        leaves no archive under a final name. An archive already kept under `name` is
        never replaced: the next free name (`next_archive_name`, repeatedly) is used.
        `owner` is the runtime's owner token, for naming anything a crash could leave
        behind (`remove_leftovers`).
        """
        ...

    def open(self, name: str) -> BinaryIO:
        """The archive `name`, for reading and seeking; `StorageError` if there is none."""
        ...

    def size(self, name: str) -> int | None:
        """The archive's size in bytes, or None if there is no archive `name`."""
        ...

    def delete(self, name: str) -> int:
        """Delete the archive `name`; the bytes freed (0: there was none)."""
        ...

    def entries(self) -> list[ArchiveEntry]:
        """Every archive kept, in any order: names of an archive's shape,
        `<block id>.<ms>.<suffix>`, whatever the block id."""
        ...

    def remove_leftovers(self, is_alive: Callable[[str], bool]) -> list[str]:
        """Remove what saves of runtimes that are gone left (`is_alive(owner)` False);
        another live runtime's saves under way are left alone. What was removed."""
        ...

    def resolve(self, stored: object, block_id: str, *, must_exist: bool = False) -> str:
        """The name of `block_id`'s archive that `stored` (a name from metadata, or a
        path a caller gave) refers to; `StorageError` if it names none of that block's
        (with `must_exist`, also if there is no such archive)."""
        ...

    def location(self, name: str) -> Path:
        """What results and progress events show for the archive `name`
        (`ArchiveResult.path`): a file, or a path naming it in another store."""
        ...


def check_block_id(block_id: object) -> str:
    """The block id, if valid: 1-200 characters of letters, digits and `-_.:@`."""
    text = check_text(block_id, "block id")
    if not _BLOCK_ID.fullmatch(text):
        raise InvalidInput(
            f"block id must be 1-200 characters of letters, digits and -_.:@, got {text[:210]!r}"
        )
    return text


def archive_name(block_id: str, archived_at_ms: int, codec: str) -> str:
    """The name of a block's archive made at `archived_at_ms`: never reused."""
    return f"{check_block_id(block_id)}.{archived_at_ms}{ARCHIVE_SUFFIXES[codec]}"


def archive_block_id(name: str) -> str | None:
    """The block id an archive name (`<id>.<ms>.<suffix>`) belongs to, else None."""
    if not _archive_shaped(name):
        return None
    head = name.rsplit(".", 2)[0]
    return head if _BLOCK_ID.fullmatch(head) else None


def _archive_shaped(name: str) -> bool:
    """Whether `name` has an archive's shape, `<...>.<ms>.<suffix>` (its block id may
    be one no block can have: such an archive is listed, and left alone)."""
    parts = name.rsplit(".", 2)
    return len(parts) == 3 and _is_ms(parts[1]) and f".{parts[2]}" in _SUFFIXES


def _is_ms(text: str) -> bool:
    """Whether `text` is milliseconds as a name holds them: ASCII digits only."""
    return text.isascii() and text.isdigit()


def next_archive_name(name: str) -> str:
    """The archive name of the next millisecond (`<id>.<ms+1>.<suffix>`)."""
    head, at, suffix = name.rsplit(".", 2)
    return f"{head}.{int(at) + 1}.{suffix}"


def check_archive_name(stored: object, block_id: str) -> str:
    """`stored` (a name, or a path whose last part is the name) as the name of one of
    `block_id`'s archives; `StorageError` otherwise (metadata anyone may edit)."""
    if isinstance(stored, os.PathLike):
        stored = os.fspath(stored)
    if not isinstance(stored, str) or not stored:
        raise StorageError(f"archive path {stored!r} in metadata is not a path")
    name = stored.rsplit("/", 1)[-1]
    if archive_block_id(name) != block_id:
        raise StorageError(
            f"refusing archive path {stored[:200]!r}: it is not an archive of block {block_id!r}"
        )
    return name


def temp_owner(name: str) -> str | None:
    """The owner token in an archive temporary's name (`.<name>.<owner>.<rand>.tmp`), or
    None if `name` is no archive temporary."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    parts = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
    return parts[1] if len(parts) == 3 else ""


def checked_archive_path(
    archive_dir: Path, path: object, block_id: str, *, must_exist: bool = False
) -> Path:
    """`path` resolved, if it names one of `block_id`'s archives inside `archive_dir`.

    Metadata stores the file name alone (relative to the folder), so a database moved
    together with its archive folder keeps working. Older versions stored absolute
    paths: one that is not inside `archive_dir` is looked up by its file name inside
    it (the folder was moved), and used if that file exists.

    Paths come back from metadata, which anyone with the database can edit: one that
    points outside the folder (with no file of its name inside), or at another block's
    archive, is refused with `StorageError`, never opened (nor deleted). With
    `must_exist`, so is a path naming no file (the archives may be kept elsewhere).
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)  # (a caller's path; metadata holds str)
    if not isinstance(path, str) or not path:
        raise StorageError(f"archive path {path!r} in metadata is not a path")
    if "\x00" in path or len(path) > 4096 or not _encodable(path):
        shown = path if len(path) <= 200 else path[:200] + "..."
        raise StorageError(f"refusing archive path {shown!r}: it is not a usable file path")
    folder = archive_dir.resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = folder / candidate
    resolved = candidate.resolve()
    if resolved.parent != folder and Path(path).is_absolute():
        # An absolute path from before the folder moved: the same name inside it.
        moved = folder / candidate.name
        if moved.is_file():
            resolved = moved.resolve()  # (a symlink out of the folder is still refused)
    if resolved.parent != folder or not resolved.name.endswith(tuple(_SUFFIXES)):
        raise StorageError(
            f"refusing archive path {path!r}: it is not an archive file inside {str(folder)!r}"
        )
    if archive_block_id(resolved.name) != block_id:
        raise StorageError(
            f"refusing archive path {path!r}: it is not an archive of block {block_id!r}"
        )
    if must_exist and not resolved.is_file():
        raise StorageError(
            f"refusing archive path {path!r}: it is not an archive file inside {str(folder)!r} "
            "(no such file)"
        )
    return resolved


def _encodable(path: str) -> bool:
    try:
        os.fsencode(path)
    except UnicodeError:
        return False
    return True


class FolderArchives:
    """Archives as private files in one folder (every host of a fleet must reach it).

    A save writes a private temporary file named with the owner token, fsyncs it,
    links it into place (never over an existing file) and fsyncs the folder, so a
    crash leaves either no archive or a complete one, and a temporary that
    `remove_leftovers` deletes once its owner is known to be gone.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        file_mode: int = DEFAULT_FILE_MODE,
        dir_mode: int = DEFAULT_DIR_MODE,
    ) -> None:
        """Archives in `folder` (made when the first is saved), with these modes."""
        # Absolute, so what results show stays valid whatever the working folder.
        self.folder = Path(folder).resolve()
        self._file_mode = file_mode
        self._dir_mode = dir_mode

    def describe(self) -> str:
        """The folder."""
        return str(self.folder)

    def save(self, name: str, write: Callable[[BinaryIO], None], *, owner: str) -> str:
        """See `Archives.save`: a temporary, fsynced and linked into place."""
        folder = self.folder
        try:
            private_dir(folder, self._dir_mode)
        except OSError as exc:
            raise StorageError(f"could not create archive folder {str(folder)!r}: {exc}") from exc
        final = folder / name
        temp = folder / f".{name}.{owner or 'x'}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            with os.fdopen(create_private(temp, self._file_mode), "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            for _attempt in range(1000):
                try:
                    os.link(temp, final)  # fails if `final` exists: never overwrite
                    break
                except FileExistsError:
                    final = folder / next_archive_name(final.name)
            else:
                raise StorageError(f"could not find a free archive name after {name!r}")
            _fsync_dir(folder)
        except OSError as exc:
            raise StorageError(f"could not write archive {str(final)!r}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        return final.name

    def open(self, name: str) -> BinaryIO:
        """The file, opened without following a symlink; it must be a regular file
        (checked on the opened descriptor, so a swap after any check reads nothing
        else)."""
        return os.fdopen(open_regular(self.folder / name, what="archive"), "rb")

    def size(self, name: str) -> int | None:
        """The file's size, or None if there is none."""
        try:
            return (self.folder / name).stat().st_size
        except OSError:
            return None

    def delete(self, name: str) -> int:
        """Delete the file; its size (0: there was none)."""
        path = self.folder / name
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"could not delete archive {str(path)!r}: {exc}") from exc
        return size

    def entries(self) -> list[ArchiveEntry]:
        """The archive files in the folder (temporaries and other files left out)."""
        found = []
        try:
            scanned = list(os.scandir(self.folder))
        except (FileNotFoundError, NotADirectoryError):
            return []  # no folder (yet): no archive
        except OSError as exc:
            raise StorageError(f"cannot list archive folder {str(self.folder)!r}: {exc}") from exc
        for entry in scanned:
            # (Temporary files end in .tmp; a block id may start with a dot.)
            if not _archive_shaped(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue  # (a link or a folder is never an archive greenroom wrote)
                found.append(ArchiveEntry(entry.name, entry.stat(follow_symlinks=False).st_size))
            except OSError:
                continue  # gone meanwhile
        return found

    def remove_leftovers(self, is_alive: Callable[[str], bool]) -> list[str]:
        """Delete the temporaries whose owner is gone: what a crash mid-archive left."""
        removed = []
        try:
            scanned = list(os.scandir(self.folder))
        except OSError:
            return []  # no folder yet: nothing left over
        for entry in scanned:
            owner = temp_owner(entry.name)
            if owner is None or is_alive(owner):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # (another runtime removed it first)
            except OSError as exc:
                raise StorageError(f"cannot remove {entry.path!r}: {exc}") from exc
            removed.append(entry.name)
        return removed

    def resolve(self, stored: object, block_id: str, *, must_exist: bool = False) -> str:
        """See `Archives.resolve`; an older version's absolute path is looked up by its
        file name in the folder (`checked_archive_path`)."""
        return checked_archive_path(self.folder, stored, block_id, must_exist=must_exist).name

    def location(self, name: str) -> Path:
        """The archive's file."""
        return self.folder / name

    def __repr__(self) -> str:
        return f"FolderArchives({str(self.folder)!r})"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
