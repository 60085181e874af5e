"""Block archives' bytes: zstd or gzip, written and read in bounded pieces.

greenroom compresses and checks archives here; where their bytes are kept is an
`Archives`' business (`greenroom.archives`: a folder by default). Nothing here holds
a whole output in memory. Readers recognise the codec by its magic bytes, whatever
the current config says.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
import zlib
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

from greenroom.archives import Archives
from greenroom.errors import StorageError

__all__ = ["read_archive", "write_archive"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"
_READ_PIECE = 1 << 20
_ZSTD_INPUT = 1 << 20  # an archive is read this much at a time (see below on why large)
# What the compressor is handed at a time (and how much output it gathers before
# writing it out). It lets go of the interpreter's lock while it works on each piece,
# and taking the lock back can cost a whole switch interval (5 ms) when another thread
# runs Python: 100 MB handed over in 256 KB pieces took 4.7 s in a busy process (0.32 s
# alone), in 4 MB pieces 0.64 s.
_COMPRESS_PIECE = 1 << 22
_COMPRESS_OUT = 1 << 20
# Pieces read ahead of the compressor, by another thread: reading a block's output
# from the store (its statements and the joins of `_gathered`) then overlaps the
# compression, as both let go of the interpreter's lock (100 MB: a read of
# 0.08-0.12 s beside 0.36-0.40 s of compression, which it no longer adds to).
_READ_AHEAD = 1
_MAX_WINDOW = 1 << 27  # zstd's own default limit (128 MiB); level 3 uses 2 MiB


def write_archive(
    pieces: Iterable[bytes], archives: Archives, name: str, codec: str, *, owner: str = ""
) -> tuple[int, str]:
    """Compress `pieces` (`codec`: "zstd" or "gzip") into the archive `name` kept by
    `archives`; (raw bytes, the name used).

    The name used differs from `name` if that was taken meanwhile (another process
    archived the block in the same millisecond): see `Archives.save`. `owner` is the
    runtime's owner token, so a crash's leftover can be told from another process's
    work in progress.
    """
    raw = 0

    def compress(out: BinaryIO) -> None:
        nonlocal raw
        # (Closed on the way out, error or not: the reading stops then, not when the
        # garbage collector finds the generator.)
        with contextlib.closing(
            _read_ahead(_gathered(pieces, _COMPRESS_PIECE), _READ_AHEAD)
        ) as gathered:
            if codec == "zstd":
                # The checksum lets a read tell a damaged archive from a good one.
                compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
                with compressor.stream_writer(
                    out, closefd=False, write_size=_COMPRESS_OUT
                ) as writer:
                    for piece in gathered:
                        raw += len(piece)
                        writer.write(piece)
            else:
                with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as writer:
                    for piece in gathered:
                        raw += len(piece)
                        writer.write(piece)

    used = archives.save(name, compress, owner=owner)
    return raw, used


def _gathered(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """`pieces` joined into pieces of at least `size` bytes (but the last); closing
    this closes `pieces` too (a generator reading the store, say)."""
    held: list[bytes] = []
    count = 0
    try:
        for piece in pieces:
            if not held and len(piece) >= size:
                yield piece  # (already large: not copied)
                continue
            held.append(piece)
            count += len(piece)
            if count >= size:
                yield b"".join(held)
                held, count = [], 0
        if held:
            yield b"".join(held)
    finally:
        _close(pieces)


def _close(pieces: object) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        close()  # (a generator's `finally` runs now, in this thread)


class _Ahead:
    """What a read-ahead thread and its reader share (under `ready`'s lock)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.ready: deque[bytes] = deque()
        self.finished = False  # the reading thread is done (`error` says how)
        self.error: BaseException | None = None
        self.abandoned = False  # the reader stopped early: read no more


def _read_ahead(pieces: Iterator[bytes], ahead: int) -> Generator[bytes, None, None]:
    """`pieces`, read by a thread of their own up to `ahead` pieces before they are
    wanted; an error reading them is raised here, after the pieces read before it.

    Leaving early (an error compressing, say) stops the reading and closes `pieces`
    (in that thread), and waits for it: nothing reads on behind the caller's back.
    """
    shared = _Ahead()
    reading = threading.Thread(
        target=_read_into,
        args=(pieces, shared, ahead),
        name="greenroom-archive-read",
        daemon=True,  # (never keeps a process from exiting: it only reads)
    )
    reading.start()
    try:
        while True:
            with shared.lock:
                while not shared.ready and not shared.finished:
                    shared.lock.wait()
                if not shared.ready:
                    if shared.error is not None:
                        raise shared.error
                    return
                piece = shared.ready.popleft()
                shared.lock.notify()
            yield piece
    finally:
        with shared.lock:
            shared.abandoned = True
            shared.lock.notify()
        reading.join()


def _read_into(pieces: Iterator[bytes], shared: _Ahead, ahead: int) -> None:
    """The read-ahead thread: `pieces` into `shared.ready`, at most `ahead` waiting."""
    error: BaseException | None = None
    try:
        for piece in pieces:
            with shared.lock:
                while len(shared.ready) >= ahead and not shared.abandoned:
                    shared.lock.wait()
                if shared.abandoned:
                    break
                shared.ready.append(piece)
                shared.lock.notify()
    except BaseException as exc:  # (raised to the reader, in its thread)
        error = exc
    finally:
        _close(pieces)  # (in the thread that read it)
        with shared.lock:
            shared.finished = True
            shared.error = error
            shared.lock.notify()


def read_archive(archives: Archives, name: str, *, max_bytes: int | None = None) -> Iterator[bytes]:
    """The uncompressed bytes of an archive, in pieces; `StorageError` if unreadable.

    The codec is recognised by its magic bytes (`archives` opens the archive `name`).
    With `max_bytes` (the size greenroom recorded when it wrote the archive), an
    archive that holds more is refused once it passes that size, so a crafted file
    cannot make a read unbounded. A missing, truncated or
    corrupt file raises `StorageError` (possibly after some pieces were yielded:
    callers that must not act on a partial read collect into a temporary place first).
    """
    path = archives.location(name)  # (what messages name)
    try:
        opened = archives.open(name)
    except OSError as exc:
        raise StorageError(f"archive {str(path)!r} cannot be read: {exc}") from exc
    with opened as handle:
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
