"""The stdio transport of `serve_stdio`: the process's pipes read and written on the
asyncio loop itself.

The SDK's `stdio_server` reads each line, writes each message and flushes it through a
worker thread: three hand-offs between threads per round trip, which cost a served
tool call more than greenroom's own work does. On asyncio, with pipes (or a terminal
or socket) on fds 0 and 1, `loop_stdio` gives the SDK's `stdio_server` file objects
that the loop reads and writes without threads; the SDK still parses and frames the
messages. Elsewhere (trio, Windows, a regular file on stdin) it is the SDK's own.

As the SDK's transport does, it takes the wire for itself while it serves: fd 0 then
reads the null device and fd 1 writes to stderr, so a stray `print` or a child
process's output cannot corrupt the protocol; both are put back when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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
    the loop cannot drive them."""
    if sys.platform == "win32":
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio
        return None
    try:
        wire_in = os.dup(0)
        wire_out = os.dup(1)
    except OSError:
        return None
    reader_file = os.fdopen(wire_in, "rb", buffering=0)
    writer_file = os.fdopen(wire_out, "wb", buffering=0)
    try:
        reader = asyncio.StreamReader(limit=_LINE_LIMIT)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), reader_file
        )
    except (OSError, ValueError) as error:  # a regular file: epoll cannot wait on it
        log.debug("stdio on worker threads (stdin: %s)", error)
        reader_file.close()
        writer_file.close()
        return None
    try:
        write_transport, write_protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), writer_file
        )
    except (OSError, ValueError) as error:
        log.debug("stdio on worker threads (stdout: %s)", error)
        read_transport.close()
        writer_file.close()
        return None
    writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)
    _take_the_wire(stack)  # (put back last: after the pipes are closed)
    stack.push_async_callback(_close, read_transport, writer)
    return _LoopLines(reader), _LoopWriter(writer)


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


def _take_the_wire(stack: AsyncExitStack) -> None:
    """Point fds 0 and 1 away from the wire until `stack` closes (their duplicates
    carry the protocol meanwhile)."""
    saved_in, saved_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)

    def put_back() -> None:
        if sys.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()  # stray output: to stderr, where fd 1 points now
        # The pipes' duplicates made them non-blocking, which fds 0 and 1 share.
        for fd in (saved_in, saved_out):
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
        os.dup2(saved_in, 0)
        os.dup2(saved_out, 1)
        os.close(saved_in)
        os.close(saved_out)

    stack.callback(put_back)
