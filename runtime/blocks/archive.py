"""Compressed archive files of block outputs: codecs, safe paths, streaming I/O.

An archive is written to a private temporary file in the archive folder, fsynced,
linked into place and the folder fsynced, so a crash leaves either no archive or a
complete one (and a temporary, removed once its owner is known to be gone). Nothing
here holds a whole output in memory: data moves in bounded pieces.
Readers recognise the codec by its magic bytes, whatever the current config says.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import secrets
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

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
    "archive_block_id",
    "archive_name",
    "check_block_id",
    "checked_archive_path",
    "read_archive",
    "remove_stale_temps",
    "temp_owner",
    "write_archive",
]

_BLOCK_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,200}")
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
ARCHIVE_SUFFIXES = {"zstd": ".zst", "gzip": ".gz"}
_SUFFIXES = frozenset(ARCHIVE_SUFFIXES.values())
_READ_PIECE = 1 << 20
_ZSTD_INPUT = 1 << 16
_MAX_WINDOW = 1 << 27  # zstd's own default limit (128 MiB); level 3 uses 2 MiB
TEMP_SUFFIX = ".tmp"


def check_block_id(block_id: object) -> str:
    """The block id, if valid: 1-200 characters of letters, digits and `-_.:@`."""
    text = check_text(block_id, "block id")
    if not _BLOCK_ID.fullmatch(text):
        raise InvalidInput(
            f"block id must be 1-200 characters of letters, digits and -_.:@, got {text[:210]!r}"
        )
    return text


def archive_name(block_id: str, archived_at_ms: int, codec: str) -> str:
    """The file name of a block's archive made at `archived_at_ms`: never reused."""
    return f"{check_block_id(block_id)}.{archived_at_ms}{ARCHIVE_SUFFIXES[codec]}"


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
    if resolved.parent != folder or not resolved.name.endswith(tuple(ARCHIVE_SUFFIXES.values())):
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


def archive_block_id(name: str) -> str | None:
    """The block id an archive file name (`<id>.<ms>.<suffix>`) belongs to, else None."""
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit() or f".{parts[2]}" not in _SUFFIXES:
        return None
    return parts[0] if _BLOCK_ID.fullmatch(parts[0]) else None


def write_archive(
    pieces: Iterable[bytes],
    archive_dir: Path,
    name: str,
    codec: str,
    *,
    owner: str = "",
    file_mode: int = DEFAULT_FILE_MODE,
    dir_mode: int = DEFAULT_DIR_MODE,
) -> tuple[int, int, Path]:
    """Compress `pieces` into `archive_dir/name`; (raw bytes, file bytes, path).

    Streams through a private temporary file (named with `owner`, the runtime's owner
    token, so a crash's leftover can be told from another process's work) that is
    fsynced and linked into place. An existing file is never overwritten: if `name`
    was taken meanwhile (another process archived the block in the same millisecond),
    the next millisecond's name is used, so the path returned may differ from `name`.
    """
    try:
        private_dir(archive_dir, dir_mode)
    except OSError as exc:
        raise StorageError(f"could not create archive folder {str(archive_dir)!r}: {exc}") from exc
    final = archive_dir / name
    temp = archive_dir / f".{name}.{owner or 'x'}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    raw = 0
    try:
        with os.fdopen(create_private(temp, file_mode), "wb") as out:
            if codec == "zstd":
                # The checksum lets a read tell a damaged archive from a good one.
                compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
                with compressor.stream_writer(out, closefd=False) as writer:
                    for piece in pieces:
                        raw += len(piece)
                        writer.write(piece)
            else:
                with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as writer:
                    for piece in pieces:
                        raw += len(piece)
                        writer.write(piece)
            out.flush()
            os.fsync(out.fileno())
        for _attempt in range(1000):
            try:
                os.link(temp, final)  # fails if `final` exists: never overwrite
                break
            except FileExistsError:
                final = archive_dir / _next_name(final.name)
        else:
            raise StorageError(f"could not find a free archive name after {name!r}")
        _fsync_dir(archive_dir)
    except OSError as exc:
        raise StorageError(f"could not write archive {str(final)!r}: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
    return raw, final.stat().st_size, final


def _next_name(name: str) -> str:
    """The archive name of the next millisecond (`<id>.<ms+1>.<suffix>`)."""
    head, at, suffix = name.rsplit(".", 2)
    return f"{head}.{int(at) + 1}.{suffix}"


def temp_owner(name: str) -> str | None:
    """The owner token in an archive temporary's name (`.<name>.<owner>.<rand>.tmp`), or
    None if `name` is no archive temporary."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    parts = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
    return parts[1] if len(parts) == 3 else ""


def remove_stale_temps(archive_dir: Path, is_alive: Callable[[str], bool]) -> list[str]:
    """Delete the archive temporaries whose owner is gone (`is_alive(owner)` is False):
    what a crash mid-archive left. Another live process's are left alone. Their names."""
    removed = []
    try:
        entries = list(os.scandir(archive_dir))
    except OSError:
        return []  # no folder yet: nothing left over
    for entry in entries:
        owner = temp_owner(entry.name)
        if owner is None or is_alive(owner):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(entry.name)
    return removed


def read_archive(path: Path, *, max_bytes: int | None = None) -> Iterator[bytes]:
    """The uncompressed bytes of an archive, in pieces; `StorageError` if unreadable.

    The codec is recognised by its magic bytes. The file is opened without following a
    symlink and must be a regular file (checked on the opened descriptor, so a swap
    after any check reads nothing else). With `max_bytes` (the size greenroom recorded
    when it wrote the archive), an archive that holds more is refused once it passes
    that size, so a crafted file cannot make a read unbounded. A missing, truncated or
    corrupt file raises `StorageError` (possibly after some pieces were yielded:
    callers that must not act on a partial read collect into a temporary place first).
    """
    fd = open_regular(path, what="archive")
    with os.fdopen(fd, "rb") as handle:
        magic = handle.read(4)
        handle.seek(0)
        try:
            if magic.startswith(_ZSTD_MAGIC):
                pieces = _read_zstd(handle, path, max_bytes)
            elif magic.startswith(_GZIP_MAGIC):
                pieces = _read_gzip(handle)
            else:
                raise StorageError(f"{str(path)!r} is not a zstd or gzip archive")
            total = 0
            for piece in pieces:
                total += len(piece)
                if max_bytes is not None and total > max_bytes:
                    raise StorageError(
                        f"archive {str(path)!r} holds more than the {max_bytes} bytes recorded "
                        "when it was written; refusing it (replaced or damaged)"
                    )
                yield piece
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise StorageError(f"archive {str(path)!r} is corrupt or truncated: {exc}") from exc


def _read_gzip(handle: BinaryIO) -> Iterator[bytes]:
    with gzip.GzipFile(fileobj=handle, mode="rb") as reader:
        while piece := reader.read(_READ_PIECE):
            yield piece


def _read_zstd(handle: BinaryIO, path: Path, max_bytes: int | None) -> Iterator[bytes]:
    # The frame is walked first (headers only), so a truncated file or data after the
    # frame is an error before any byte is handed out; the checksum at the frame's end
    # is checked while decompressing. `read_to_iter` bounds each output piece, whatever
    # the compression ratio (a run of repeated lines shrinks ~30,000x).
    _check_zstd_frame(handle, path, max_bytes)
    handle.seek(0)
    # The window is bounded too: a header declaring a huge one cannot make it allocate.
    decompressor = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
    yield from decompressor.read_to_iter(handle, read_size=_ZSTD_INPUT, write_size=_READ_PIECE)


def _check_zstd_frame(handle: BinaryIO, path: Path, max_bytes: int | None) -> None:
    """Raise `StorageError` unless the file is exactly one complete zstd frame (of at
    most `max_bytes` bytes, if its header declares its size)."""
    head = handle.read(18)  # the longest frame header
    try:
        header = zstandard.frame_header_size(head)
        params = zstandard.get_frame_parameters(head)
    except zstandard.ZstdError as exc:
        raise StorageError(f"archive {str(path)!r} has a corrupt zstd header: {exc}") from exc
    has_checksum = params.has_checksum
    declared = params.content_size
    if max_bytes is not None and declared != zstandard.CONTENTSIZE_UNKNOWN and declared > max_bytes:
        raise StorageError(
            f"archive {str(path)!r} declares {declared} bytes, more than the {max_bytes} "
            "recorded when it was written; refusing it (replaced or damaged)"
        )
    handle.seek(header)
    while True:
        block = handle.read(3)
        if len(block) < 3:
            raise StorageError(f"archive {str(path)!r} is truncated")
        value = int.from_bytes(block, "little")
        last, kind, size = value & 1, (value >> 1) & 3, value >> 3
        if kind == 3:
            raise StorageError(f"archive {str(path)!r} has a corrupt block header")
        skip = 1 if kind == 1 else size  # an RLE block stores one byte
        if skip:
            handle.seek(skip - 1, os.SEEK_CUR)
            if len(handle.read(1)) != 1:
                raise StorageError(f"archive {str(path)!r} is truncated")
        if last:
            break
    if has_checksum and len(handle.read(4)) != 4:
        raise StorageError(f"archive {str(path)!r} is truncated")
    if handle.read(1):
        raise StorageError(f"archive {str(path)!r} has data after its end")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not supported here (e.g. Windows): the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
