"""The stdio transport of `serve_stdio`: the process's pipes read and written on the
asyncio loop itself.

The SDK's `stdio_server` reads each line, writes each message and flushes it through a
worker thread: three hand-offs between threads per round trip, which cost a served
tool call more than greenroom's own work does. On asyncio, when fds 0 and 1 are pipes
(as an MCP client that starts the server makes them), `loop_stdio` gives the SDK's
`stdio_server` file objects that the loop reads and writes without threads; the SDK
still parses and frames the messages. Anything else (a terminal, a socket, a file,
`/dev/null`; trio; Windows) is served by the SDK's own transport, untouched.

As the SDK's transport does, it takes the wire for itself while it serves: fd 0 then
reads the null device and fd 1 writes to stderr, so a stray `print` or a child
process's output cannot corrupt the protocol; both are put back when it ends, with
the pipes' blocking modes as they were. As with the SDK's, a client that closes stdin
ends the session: requests still in flight are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from mcp.server.stdio import stdio_server

__all__ = ["loop_stdio"]

log = logging.getLogger("greenroom.mcp")

# A line is one JSON-RPC message; a requestState carries a round's answers, so a
# message may be large. (The SDK's own reader has no limit at all.)
_LINE_LIMIT = 1 << 30
_CLOSE_WAIT_S = 5.0


class _LoopLines:
    """The lines of a pipe, read on the loop (what `stdio_server` iterates)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _LoopLines:
        return self

    async def __anext__(self) -> str:
        line = await self._reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", "replace")


class _LoopWriter:
    """A pipe written on the loop (what `stdio_server` writes and flushes)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()  # (waits only while the pipe is full)


@asynccontextmanager
async def loop_stdio() -> AsyncIterator[tuple[Any, Any]]:
    """`(read_stream, write_stream)` for `Server.run`, over this process's stdin and
    stdout: read and written on the loop on asyncio, else the SDK's `stdio_server`."""
    async with AsyncExitStack() as stack:
        files = await _loop_files(stack)
        if files is None:
            streams = await stack.enter_async_context(stdio_server())
        else:
            streams = await stack.enter_async_context(stdio_server(*files))
        yield streams


async def _loop_files(stack: AsyncExitStack) -> tuple[Any, Any] | None:
    """Loop-driven stdin and stdout (the wire taken, put back with `stack`); None where
    the loop should not drive them (nothing is changed then)."""
    if sys.platform == "win32" or not (_is_pipe(0) and _is_pipe(1)) or _same_file(1, 2):
        # (stderr on the wire's pipe would share its non-blocking mode: not ours)
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        return None
    # Pipes only: epoll takes them, each end is this process's own (making it
    # non-blocking touches nobody else), and a read end never doubles as a write end.
    blocking = (os.get_blocking(0), os.get_blocking(1))
    wire_in, wire_out = _dup_above_std(0), _dup_above_std(1)
    reader_file = os.fdopen(wire_in, "rb", buffering=0)
    writer_file = os.fdopen(wire_out, "wb", buffering=0)
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    try:
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), reader_file
        )
        try:
            write_transport, write_protocol = await loop.connect_write_pipe(
                lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), writer_file
            )
        except BaseException:
            read_transport.close()
            raise
    except (OSError, ValueError) as error:
        log.debug("stdio on the SDK's worker threads (%s)", error)
        reader_file.close()
        writer_file.close()
        _set_blocking(blocking)
        return None
    writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)
    _take_the_wire(stack, blocking)  # (put back last: after the pipes are closed)
    stack.push_async_callback(_close, read_transport, writer)
    return _LoopLines(reader), _LoopWriter(writer)


def _dup_above_std(fd: int) -> int:
    """A duplicate of `fd` above 2 (with stderr closed, `dup` would land on fd 2)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def _same_file(fd: int, other: int) -> bool:
    try:
        first, second = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _set_blocking(blocking: tuple[bool, bool]) -> None:
    """Fds 0 and 1 (and whatever shares their open files) back to these modes."""
    for fd, mode in zip((0, 1), blocking, strict=True):
        with contextlib.suppress(OSError):
            os.set_blocking(fd, mode)


async def _close(read_transport: asyncio.BaseTransport, writer: asyncio.StreamWriter) -> None:
    read_transport.close()
    writer.close()
    # What is still queued goes out, unless the client stopped reading.
    with (
        anyio.CancelScope(shield=True),
        anyio.move_on_after(_CLOSE_WAIT_S),
        contextlib.suppress(OSError),  # the client went first: nothing to send it
    ):
        await writer.wait_closed()
    queued = _queued(writer)
    if queued:
        # The client stopped reading: what is queued is dropped (so the pipe, blocking
        # again soon, is never written from the loop).
        log.warning("stdio: %d bytes for the client were not sent (it stopped reading)", queued)
        writer.transport.abort()


def _queued(writer: asyncio.StreamWriter) -> int:
    try:
        return writer.transport.get_write_buffer_size()
    except (AttributeError, RuntimeError):
        return 0


def _take_the_wire(stack: AsyncExitStack, blocking: tuple[bool, bool]) -> None:
    """Point fds 0 and 1 away from the wire until `stack` closes (their duplicates
    carry the protocol meanwhile); then put them back, in `blocking` modes."""
    saved_in, saved_out = _dup_above_std(0), _dup_above_std(1)
    _point_at_null(0, os.O_RDONLY)
    try:
        os.fstat(2)
    except OSError:  # stderr is closed: stray output goes nowhere
        _point_at_null(1, os.O_WRONLY)
    else:
        os.dup2(2, 1)

    def put_back() -> None:
        if sys.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()  # stray output: to stderr, where fd 1 points now
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)
        _set_blocking(blocking)  # (the loop made the pipes non-blocking)

    stack.callback(put_back)


def _point_at_null(fd: int, flags: int) -> None:
    null = os.open(os.devnull, flags)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
