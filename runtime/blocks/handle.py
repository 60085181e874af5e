"""`Block`: the handle on one block (an agent pane); calls go to the block's actor, and
output, line counts and stats to the runtime's block writer.

    pane = rt.blocks.get("pane-1")
    pane.append_output(b'{"type":"text"}\\n')   # a tell: returns at once
    pane.stats()                               # waits for the actor's answer
    future = pane.stats_future()               # sends, returns a GreenroomFuture at once

Output goes straight to the block writer, which counts its lines and stores it with
every other block's in one transaction: no turn of the block's own actor per line.
While an archive, restore, read or prune of the block runs, the writer holds its new
output back (counted) until it ends.

The seam. Each call that waits has a twin ending in `_future` that sends the same
message and returns a `GreenroomFuture` without waiting: `stats()` is
`stats_future().get()`, and `greenroom.aio.blocks` awaits the very same futures on an
event loop. Everything below (checks, messages, reconnecting) is shared by both faces.

Reconnecting. A block's actor is started by the first call that needs it (output and
stats never do: a block that only gets output costs no actor), and a handle outlives
it (the actor may be stopped, by a failure or by the host). A message the stopped
actor never got (`ActorDeadError`, answered to an ask) was not delivered, so it is
safe to send again: the handle reconnects through the `Blocks` namespace and resends
it, once. Connecting may wait (for an old actor to leave, for its last stats to be
stored), so it runs on the runtime's blocking pool, never on the caller's thread: an
ask's future resolves once the new actor answered. Messages sent meanwhile wait
behind the one being resent, in order. After `Runtime.close()` a call raises
`Stopped` (a tell at once; an ask through its future).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from os import PathLike
from typing import Any, Protocol

from pykka import ActorDeadError

from greenroom.actors.base import GreenroomActorRef
from greenroom.blocks.backlog import OutputBacklog
from greenroom.blocks.messages import (
    AppendOutput,
    Archive,
    CommitSoon,
    Flush,
    GetMeta,
    GetStats,
    MergeMeta,
    ReadOutput,
    RecordLine,
    Restore,
    line_message,
    output_message,
    prune_message,
)
from greenroom.blocks.records import ArchiveResult, OutputRead, RestoreResult, SessionStats
from greenroom.errors import Stopped
from greenroom.futures import GreenroomFuture, in_handler

__all__ = ["Block", "Connector"]

log = logging.getLogger("greenroom.blocks")

_COMMIT_SOON = CommitSoon()

_Pending = tuple[Any, "GreenroomFuture[Any]", bool]
"""An ask waiting for a (re)connect: (message, its answer, whether it may still be
resent once)."""


class Connector(Protocol):
    """How a `Block` reaches its block's actor again; the `Blocks` namespace gives one."""

    def check_open(self) -> None:
        """Raise `Stopped` once the runtime is closed; never waits."""

    def connect(self, block_id: str) -> GreenroomActorRef:
        """The block's running actor, started if need be. May wait: never on a loop."""

    def run_later(self, job: Callable[[], None]) -> None:
        """Run `job` on a thread where waiting is allowed (the blocking pool)."""


def _fail(answer: GreenroomFuture[Any], error: BaseException) -> None:
    answer.set_exception((type(error), error, error.__traceback__))


class Block:
    """A handle on one block; calls go to the block's actor (output, line counts and
    stats to the runtime's block writer).

    `append_output` and `record_line` are fire and forget; the others wait for an
    answer, and each has a `*_future` twin that does not wait (see the module
    docstring). Get one with `Runtime.blocks.get(block_id)`. A handle outlives its
    actor: if the actor was stopped, the next call starts a new one (which carries on
    from the stored counters); after `Runtime.close()` calls raise `Stopped`.
    """

    __slots__ = ("_backlog", "_connector", "_lock", "_pending", "_ref", "_writer", "block_id")

    def __init__(
        self,
        ref: GreenroomActorRef | None,
        block_id: str,
        writer: GreenroomActorRef,
        connector: Connector | None = None,
        backlog: OutputBacklog | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        """A handle on `block_id`'s actor `ref`, its output to the runtime's block
        `writer`; `Runtime.blocks.get` makes them.

        With `ref` None, the first call that needs the actor starts it (through the
        `connector`). Without a `connector`, a call to a stopped actor raises
        `ActorDeadError`.
        `backlog` is the runtime's count of output not stored yet (backpressure).
        `lock` guards the reconnect state (one may serve every handle of a runtime:
        it is held only for a few assignments; by default, a lock of its own).
        """
        self._ref = ref
        self._writer = writer
        self._backlog = backlog
        self._connector = connector
        self._lock = threading.Lock() if lock is None else lock
        # Sends waiting behind a reconnect under way (None: no reconnect under way).
        self._pending: list[_Pending] | None = None
        self.block_id = block_id

    # -- tells ------------------------------------------------------------------------------

    def append_output(self, data: bytes) -> None:
        """Append `data` to the output and count its non-empty lines.

        Returns at once, unless the runtime's block writer is behind by more than
        `RuntimeConfig.max_pending_output_bytes`: then it waits for room (at most
        `output_wait_timeout_s`, then `Timeout`, nothing appended). Inside a handler,
        where nothing may wait, it raises `Timeout` at once instead.
        """
        message = output_message(self.block_id, data)
        backlog = self._backlog
        if backlog is not None and not backlog.take(len(message.data)):
            # (Only without room does it matter where this runs: a handler must not wait.)
            backlog.wait_to_take(
                len(message.data),
                may_wait=getattr(in_handler, "actor", None) is None,
                on_wait=self._hurry,
            )
        self._write(message)

    def append_output_nowait(self, data: bytes) -> None:
        """`append_output` that never waits: `Timeout` at once (nothing appended) while
        the block writer is behind; for event loops (`greenroom.aio` uses it)."""
        self._append(data, may_wait=False)

    def _append(self, data: bytes, *, may_wait: bool) -> None:
        message = output_message(self.block_id, data)
        if self._backlog is not None:
            self._backlog.admit(len(message.data), may_wait=may_wait, on_wait=self._hurry)
        self._write(message)

    def record_line(self, n_bytes: int) -> None:
        """Count one line of `n_bytes` bytes kept elsewhere; returns at once."""
        self._write(line_message(self.block_id, n_bytes))

    def _hurry(self) -> None:
        """The writer is behind: have it commit without its delay (it makes room)."""
        with contextlib.suppress(ActorDeadError):  # (closed: the write says so)
            self._writer.tell(_COMMIT_SOON)

    def _write(self, message: AppendOutput | RecordLine) -> None:
        """Tell the writer `message`; `Stopped` once the runtime is closed."""
        try:
            self._writer.tell(message)
        except BaseException as error:
            self._lost(message)
            if isinstance(error, ActorDeadError):
                raise Stopped(
                    f"block {self.block_id!r}: the runtime is closed (its block writer "
                    "stopped); nothing was appended"
                ) from None
            raise

    # -- the seam: send now, a future of the answer ------------------------------------------

    def stats_future(self) -> GreenroomFuture[SessionStats]:
        """Ask for the live stats; a future of `SessionStats`, returned without waiting."""
        answer: GreenroomFuture[SessionStats] = GreenroomFuture()
        sent: GreenroomFuture[SessionStats] = self._writer.ask(GetStats(self.block_id), block=False)
        sent.add_done_callback(functools.partial(self._stats_answered, answer))
        return answer

    def _stats_answered(
        self, answer: GreenroomFuture[SessionStats], sent: GreenroomFuture[SessionStats]
    ) -> None:
        try:
            answer.set(sent.get(timeout=0))  # resolved: never waits
        except ActorDeadError:
            _fail(answer, Stopped(f"block {self.block_id!r}: the runtime is closed"))
        except BaseException as error:
            _fail(answer, error)

    def meta_future(self) -> GreenroomFuture[dict[str, Any]]:
        """Ask for the metadata as stored; a future of it, returned without waiting."""
        return self._ask(GetMeta())

    def update_meta_future(self, update: dict[str, Any]) -> GreenroomFuture[dict[str, Any]]:
        """Ask to merge `update` into the metadata; a future of the new metadata."""
        return self._ask(MergeMeta(update))

    def flush_future(self) -> GreenroomFuture[None]:
        """Ask to store the stats and output handed over so far; resolves once stored."""
        return self._ask(Flush())

    def archive_future(self) -> GreenroomFuture[ArchiveResult]:
        """Ask to archive the output; a future of the `ArchiveResult`."""
        return self._ask(Archive())

    def restore_future(self) -> GreenroomFuture[RestoreResult]:
        """Ask to restore an archived output; a future of the `RestoreResult`."""
        return self._ask(Restore())

    def read_output_future(self) -> GreenroomFuture[OutputRead]:
        """Ask for the whole output; a future of the `OutputRead`."""
        return self._ask(ReadOutput())

    def prune_archive_future(self, path: str | PathLike[str]) -> GreenroomFuture[int]:
        """Ask to delete the archive `path` (`prune_archive`); a future of the bytes freed.

        `InvalidInput` (raised at once) if `path` is not a path.
        """
        return self._ask(prune_message(path))

    # -- waiting calls ----------------------------------------------------------------------

    def stats(self) -> SessionStats:
        """The live stats, including lines not flushed yet."""
        return self.stats_future().get()

    def meta(self) -> dict[str, Any]:
        """The metadata as stored (stats as of the last flush)."""
        return self.meta_future().get()

    def update_meta(self, update: dict[str, Any]) -> dict[str, Any]:
        """Merge `update` into the metadata (the store's rules); returns the new metadata."""
        return self.update_meta_future(update).get()

    def flush(self) -> None:
        """Store the stats and the output handed over so far; returns once they are stored.

        Output that arrives while an archive or restore runs is held back until it ends:
        a flush then returns once that output is stored too.
        """
        self.flush_future().get()

    def archive(self) -> ArchiveResult:
        """Compress the output into the archive folder and drop the live copy."""
        return self.archive_future().get()

    def restore(self) -> RestoreResult:
        """Bring an archived output back; `InvalidTransition` if it is not archived."""
        return self.restore_future().get()

    def read_output(self) -> OutputRead:
        """The whole output, read from the archive when the block is archived."""
        return self.read_output_future().get()

    def prune_archive(self, path: str | PathLike[str]) -> int:
        """Delete the archive `path` (pruning) and unlink it from the metadata.

        Used by the sweep; returns the bytes freed. `path` is the archive's name or
        its `ArchiveResult.path`; one that is not one of this block's archives (for
        a folder: inside it) is refused (`StorageError`).
        """
        return self.prune_archive_future(path).get()

    def __repr__(self) -> str:
        return f"<Block {self.block_id!r}>"

    # -- delivery and the reconnect rule -------------------------------------------------------

    def _ask(self, message: Any) -> GreenroomFuture[Any]:
        answer: GreenroomFuture[Any] = GreenroomFuture()
        self._deliver(message, answer)
        return answer

    def _deliver(self, message: Any, answer: GreenroomFuture[Any]) -> None:
        """Ask `message` (answered through `answer`), behind any reconnect under way."""
        with self._lock:
            if self._pending is not None:
                self._pending.append((message, answer, True))
                return
            ref = self._ref
        if ref is None:  # (its actor was never started: the first call starts it)
            self._reconnect(None, message, answer)
            return
        self._send(ref, message, answer, may_resend=True)

    def _send(
        self,
        ref: GreenroomActorRef,
        message: Any,
        answer: GreenroomFuture[Any],
        *,
        may_resend: bool,
    ) -> None:
        sent: GreenroomFuture[Any] = ref.ask(message, block=False)
        sent.add_done_callback(functools.partial(self._answered, ref, message, answer, may_resend))

    def _answered(
        self,
        ref: GreenroomActorRef,
        message: Any,
        answer: GreenroomFuture[Any],
        may_resend: bool,
        sent: GreenroomFuture[Any],
    ) -> None:
        # On the thread that resolved `sent`: quick, never waits.
        try:
            value = sent.get(timeout=0)  # resolved: never waits
        except ActorDeadError:
            if may_resend:
                self._reconnect(ref, message, answer)
            else:
                # The new actor stopped at once: it could not start (logged with why).
                _fail(
                    answer,
                    Stopped(
                        f"block {self.block_id!r}'s actor stopped again as soon as it was "
                        "started (it could not start: the log says why, e.g. a damaged "
                        "database row); nothing was done"
                    ),
                )
        except BaseException as error:
            _fail(answer, error)
        else:
            answer.set(value)

    def _reconnect(
        self, stale: GreenroomActorRef | None, message: Any, answer: GreenroomFuture[Any]
    ) -> None:
        """`message` was not delivered to `stale` (None: no actor was started yet): send
        it to the block's actor, started if need be, once."""
        if self._connector is None:
            _fail(answer, ActorDeadError(f"block {self.block_id!r}'s actor has stopped"))
            return
        try:
            self._connector.check_open()
        except Stopped as error:
            _fail(answer, error)
            return
        with self._lock:
            if self._pending is not None:
                self._pending.append((message, answer, False))  # a reconnect is under way
                return
            fresh = self._ref if self._ref is not stale else None
            if fresh is None:
                self._pending = [(message, answer, False)]
        if fresh is not None:
            # Another send reconnected meanwhile: this one goes to the new actor.
            self._send(fresh, message, answer, may_resend=False)
            return
        try:
            self._connector.run_later(self._reconnect_job)
        except BaseException as error:
            # (The blocking pool is shut down: the runtime is closing.)
            self._give_up(error)

    def _reconnect_job(self) -> None:
        """On the blocking pool: connect to the block's actor, then send what waited."""
        assert self._connector is not None
        try:
            ref = self._connector.connect(self.block_id)  # `Stopped` once closed
        except BaseException as error:
            self._give_up(error)
            return
        while True:
            with self._lock:
                waiting = self._pending
                if not waiting:
                    self._ref = ref
                    self._pending = None
                    return
                self._pending = []  # sends arriving meanwhile still queue behind these
            for message, answer, may_resend in waiting:
                try:
                    self._send(ref, message, answer, may_resend=may_resend)
                except Exception as error:
                    _fail(answer, error)

    def _lost(self, message: Any) -> None:
        """A tell that never reached the writer: its output leaves the backlog."""
        if self._backlog is not None and type(message) is AppendOutput:
            self._backlog.release(len(message.data))

    def _give_up(self, error: BaseException) -> None:
        """The reconnect failed: every waiting ask fails with `error`."""
        with self._lock:
            waiting, self._pending = self._pending or [], None
        for _message, answer, _may_resend in waiting:
            _fail(answer, error)
