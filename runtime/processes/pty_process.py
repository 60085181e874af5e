"""One program under a pseudo-terminal: its output streamed into a block, its lines
published to a replay buffer, its end recorded in the block's metadata."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import threading
import tty
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from greenroom.errors import GreenroomError, InvalidInput, InvalidTransition
from greenroom.replay.messages import check_session_id
from greenroom.runtime import Runtime

__all__ = ["MAX_EVENT_CHARS", "Process", "spawn"]

log = logging.getLogger("greenroom.processes")

MAX_EVENT_CHARS = 16384
"""Longest line text an event carries; a longer line's event holds its start and
`"cut": <its length>` (the block holds the whole line)."""

_READ_BYTES = 65536

# The programs each runtime runs, stopped when it closes.
_running: weakref.WeakKeyDictionary[Runtime, set[Process]] = weakref.WeakKeyDictionary()
_running_lock = threading.Lock()


def spawn(
    rt: Runtime,
    block_id: str,
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    session_id: str | None = None,
) -> Process:
    """Run `argv` (no shell) under a pseudo-terminal, its output into block `block_id`.

    The output goes to the block as it comes (`append_output`: when the block writer
    is behind, reading waits, and so does the program once the terminal's buffer is
    full). Each complete line, `\\r\\n` or `\\n`, is published to the replay buffer
    `session_id` (default: the block id) as `{"type": "line", "block_id", "text"}`.
    When the program ends, its exit status and end time are in the block's metadata
    (`session:exit_code`, negative for a signal, and `session:ended_ms`) and the
    output is flushed. A program still running when the runtime closes is sent
    SIGTERM, then SIGKILL after `process_stop_timeout_s` (logged).

    `InvalidInput` for an empty `argv` or a program that cannot be started.
    """
    if isinstance(argv, str | bytes) or not argv:
        raise InvalidInput(f"argv is a non-empty list of str (no shell), got {argv!r}")
    args = [os.fspath(arg) for arg in argv]
    if not all(isinstance(arg, str) for arg in args):
        raise InvalidInput(f"argv holds only str, got {argv!r}")
    block = rt.blocks.get(block_id)
    # Its actor started now (it starts with the first call that needs it): the end of
    # the program is recorded through it, also while the runtime closes.
    block.meta()
    events_id = block_id if session_id is None else session_id
    check_session_id(events_id)  # before anything starts
    master, slave = os.openpty()
    try:
        # Raw: the block gets the program's bytes as written (no "\n" -> "\r\n"), and
        # nothing the program reads is echoed back into its output.
        tty.setraw(slave)
        popen = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,  # its own session: the terminal is its controlling one
            close_fds=True,
        )
    except OSError as error:
        os.close(master)
        raise InvalidInput(f"could not start {args[0]!r}: {error.strerror or error}") from None
    finally:
        os.close(slave)
    process = Process(rt, block_id, events_id, args, popen, master, block)
    with _running_lock:
        known = _running.get(rt)
        if known is None:
            known = _running[rt] = set()
            rt.on_close(lambda: _stop_all(rt))
        known.add(process)
    process._start()
    log.info("process %d (%s) runs into block %s", popen.pid, args[0], block_id)
    return process


def _stop_all(rt: Runtime) -> None:
    with _running_lock:
        left = list(_running.pop(rt, ()))
    timeout = rt.config.process_stop_timeout_s
    for process in left:
        if process.returncode is None:
            log.warning(
                "process %d (%s) still ran when its runtime closed: terminating it",
                process.pid,
                process.argv[0],
            )
            process.terminate()
    for process in left:
        process._stop(timeout)


class Process:
    """A program `spawn` runs: its pid, its block, and how to stop or wait for it."""

    def __init__(
        self,
        rt: Runtime,
        block_id: str,
        session_id: str,
        argv: list[str],
        popen: subprocess.Popen[bytes],
        master: int,
        block: Any,
    ) -> None:
        self._rt = rt
        self.block_id = block_id
        """The block its output goes to."""
        self.session_id = session_id
        """The replay buffer its lines go to."""
        self.argv = list(argv)
        """What runs."""
        self._popen = popen
        self._master = master
        self._block = block
        self._done = threading.Event()
        self._reader = threading.Thread(
            target=self._pump, name=f"greenroom-pty-{block_id}", daemon=True
        )
        self.bytes_read = 0
        """Output bytes read so far."""
        self.lines_published = 0
        """Line events published so far."""
        self.lines_cut = 0
        """Lines longer than `MAX_EVENT_CHARS` whose event holds only their start."""
        self.error: BaseException | None = None
        """What stopped the output from being stored, if anything did (logged)."""

    @property
    def pid(self) -> int:
        """Its process id."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has ended (negative: the signal that ended it)."""
        return self._popen.poll()

    def write(self, data: bytes) -> None:
        """Send `data` to the program's input (its terminal)."""
        if self._done.is_set():
            raise InvalidTransition(f"process {self.pid} has ended; its input is closed")
        view = memoryview(data)
        while view:
            view = view[os.write(self._master, view) :]

    def terminate(self) -> None:
        """Send it SIGTERM (nothing if it has ended)."""
        if self._popen.poll() is None:
            self._popen.terminate()

    def kill(self) -> None:
        """Send it SIGKILL (nothing if it has ended)."""
        if self._popen.poll() is None:
            self._popen.kill()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it has ended and its output is stored and flushed, at most
        `timeout` real seconds (then `TimeoutError`); its exit status."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"process {self.pid} still runs after {timeout} s")
        code = self._popen.returncode
        assert code is not None
        return code

    # -- the reader thread --------------------------------------------------------------

    def _start(self) -> None:
        self._reader.start()

    def _stop(self, timeout: float) -> None:
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                "process %d (%s) did not end %g s after SIGTERM: killing it",
                self.pid,
                self.argv[0],
                timeout,
            )
            self._popen.kill()
        self._done.wait(timeout + 5.0)

    def _pump(self) -> None:
        pending = b""
        try:
            while True:
                try:
                    chunk = os.read(self._master, _READ_BYTES)
                except OSError as error:
                    if error.errno == errno.EIO:  # every end of the terminal is closed
                        break
                    raise
                if not chunk:
                    break
                self.bytes_read += len(chunk)
                self._block.append_output(chunk)
                *lines, pending = (pending + chunk).split(b"\n")
                self._publish(lines)
        except BaseException as error:
            self.error = error
            log.error(
                "process %d (%s): its output could not be stored in block %s: %s",
                self.pid,
                self.argv[0],
                self.block_id,
                error,
            )
        finally:
            self._finish(pending)

    def _publish(self, lines: list[bytes]) -> None:
        if not lines:
            return
        events = []
        for raw in lines:
            text = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
            event: dict[str, Any] = {"type": "line", "block_id": self.block_id, "text": text}
            if len(text) > MAX_EVENT_CHARS:
                event["text"], event["cut"] = text[:MAX_EVENT_CHARS], len(text)
                self.lines_cut += 1
                log.debug(
                    "process %d: a line of %d characters cut in its event", self.pid, len(text)
                )
            events.append(event)
        self._rt.replay.publish_many(self.session_id, events)
        self.lines_published += len(events)

    def _finish(self, pending: bytes) -> None:
        with contextlib.suppress(OSError):
            os.close(self._master)
        code = self._popen.wait()
        try:
            if pending and self.error is None:
                self._publish([pending])
            self._block.update_meta(
                {"session:exit_code": code, "session:ended_ms": self._rt.clock.now_ms()}
            )
            self._block.flush()
        except GreenroomError as error:
            self.error = self.error or error
            log.error("process %d: its end could not be recorded: %s", self.pid, error)
        finally:
            with _running_lock:
                known = _running.get(self._rt)
                if known is not None:
                    known.discard(self)
            self._done.set()
            log.info("process %d (%s) ended with status %d", self.pid, self.argv[0], code)

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exit {self.returncode}"
        return f"<Process {self.pid} {self.argv[0]!r} -> block {self.block_id} {state}>"
