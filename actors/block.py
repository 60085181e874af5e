"""`BlockActor`: one per block; owns its output, its session stats and its archive.

Stats: counted in memory, written at once on the first line after start, then at
most once per `stats_flush_interval_s`, with a trailing write when an interval with
new lines ends, so the last lines are never left unsaved. Counters start from the
stored metadata, so they carry on across restarts. Output and stats go through the
runtime's `BlockWriter`, which writes many blocks in one transaction.

Archive, restore and read run their heavy part (compressing, decompressing) on the
blocking pool. While one runs, the block holds back new output and queues further
archive / restore / read calls, so none of them can interleave; stats keep counting.
Every step that changes what the block points at is one store transaction:

* archive: compress to a temporary file, fsync, rename into place; then, in one
  transaction, point the metadata at it (by file name, relative to the archive
  folder) and delete the live output. A crash before that transaction leaves the
  live output (and at worst an unreferenced file); after it, a complete archive the
  metadata points to.
* restore: decompress into a temporary store file; then, in one transaction, rename
  it over the output and clear the `session:archived_*` keys. A corrupt or missing
  archive raises `StorageError` and changes nothing.

Another process (the CLI, a second host) may open the same database, with its own
actor for the same block: nothing serialises the two. So the final transaction of an
archive or restore first checks that the live output and the archive pointer are
still what was read; if another process appended output (or archived, restored)
meanwhile, it changes nothing, removes what it wrote, and raises `InvalidTransition`
("try again"): no byte is dropped.

An archived block that gets new output keeps it live: its output is the archive
followed by the live part, and the next archive (or a restore) joins the two.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, GreenroomActorRef, Reply
from greenroom.actors.busy_queue import BusyQueue
from greenroom.blocks.archive import archive_name, checked_archive_path, read_archive, write_archive
from greenroom.blocks.messages import (
    AppendOutput,
    Archive,
    Flush,
    GetMeta,
    GetStats,
    MergeMeta,
    PruneArchive,
    ReadOutput,
    RecordLine,
    Restore,
    TrailingFlush,
    WhenWritten,
    WriteOutput,
    WriteStats,
)
from greenroom.blocks.records import (
    ARCHIVE_BACKUP,
    ARCHIVE_PATH,
    ARCHIVED_AT,
    ARCHIVED_BYTES,
    PRUNED_AT,
    ArchiveResult,
    OutputRead,
    RestoreResult,
    SessionStats,
    count_lines,
)
from greenroom.errors import Conflict, InvalidTransition, NotFound, Stopped, StorageError
from greenroom.store import DeleteFile, ExpectFile, ExpectMeta, RenameFile, Store, UpdateMeta

__all__ = ["BlockActor"]

log = logging.getLogger("greenroom.blocks")

BLOCK = "block"
OUTPUT = "output"
RESTORING = "output.restoring"
_PIECE = 1 << 20
_TRAILING = TrailingFlush()

Op = Callable[[Reply], None]
"""One heavy operation (archive, restore, read, prune): started with its caller's reply."""


@attrs.frozen
class _Then:
    """A continuation: call `fn(*args)` inside the actor (once the writer has synced)."""

    fn: Callable[..., object]
    args: tuple[Any, ...] = ()


class _Changed(InvalidTransition):
    """The block's output or archive changed under an archive / restore (another process)."""


def _write_if_unchanged(
    store: Store,
    block_id: str,
    live_bytes: int,
    archive_path: Any,
    writes: list[UpdateMeta | DeleteFile | RenameFile],
) -> None:
    """`store.write_atomic(writes)`, if the live output still holds `live_bytes` bytes
    and `session:archive_path` is still `archive_path`, checked in the same transaction.

    Else nothing is written and `_Changed` is raised.
    """
    expect: list[ExpectFile | ExpectMeta] = [
        ExpectFile(BLOCK, block_id, OUTPUT, live_bytes),
        ExpectMeta(BLOCK, block_id, ARCHIVE_PATH, archive_path),
    ]
    try:
        store.write_atomic(writes, expect=expect)
    except Conflict as error:
        raise _Changed(
            f"block {block_id!r} changed while this ran ({error}; another process wrote "
            "to it); nothing changed, try again"
        ) from None


class BlockActor(GreenroomActor):
    """Serves one block; see the module docstring."""

    kind = "block"

    def __init__(self, ctx: ActorContext, writer: GreenroomActorRef, archive_dir: Path) -> None:
        super().__init__(ctx)
        self.block_id = ctx.actor_id
        self._writer = writer
        self._archive_dir = archive_dir
        self._stats = SessionStats()
        self._partial = 0  # bytes of a line whose newline has not arrived
        self._partial_counted = False  # counted already (at an archive)
        self._dirty = False
        self._last_flush: float | None = None
        self._trailing: Any = None
        # The archive / restore / read / prune under way, and those waiting for it.
        self._ops: BusyQueue[Op] = BusyQueue(self._start_op)
        self._held = bytearray()  # output that arrived while an archive or restore ran
        self._archive_meta: tuple[int, Path | None, Any, Any, list[int]] = (
            0,
            None,
            None,
            None,
            [0],
        )
        self._restore_from: tuple[Path, Any, list[int]] | None = None

    def on_start(self) -> None:
        meta = self.ctx.store.get_object(BLOCK, self.block_id).meta
        self._stats = SessionStats.from_meta(meta)
        # A restore cut short (a stop or a crash) left its partial copy: never used.
        # (Looked up first: a read costs no commit, and almost every start finds none.)
        if any(info.name == RESTORING for info in self.ctx.store.list_files(BLOCK, self.block_id)):
            self.ctx.store.delete_file(BLOCK, self.block_id, RESTORING, missing_ok=True)

    def on_stop(self) -> None:
        self._end_partial_line()
        self._flush_stats()
        self._release_held()
        # The job under way will answer a stopped actor: its caller is answered now.
        self._ops.fail_all(Stopped(f"block {self.block_id!r} stopped before this call finished"))

    def on_receive(self, message: Any) -> Any:
        cls = type(message)
        # Tells first: they are most of the traffic.
        if cls is AppendOutput:
            self._append(message.data)
        elif cls is RecordLine:
            self._count(1, message.n_bytes // 4)
        elif cls is _Then:
            message.fn(*message.args)
        elif cls is TrailingFlush:
            self._trailing = None
            if self._dirty:
                self._maybe_flush(force=False)
        elif cls is GetStats:
            return self._stats
        elif cls is GetMeta:
            return self._meta()
        elif cls is MergeMeta:
            return self.ctx.store.update_meta(BLOCK, self.block_id, message.update).meta
        elif cls is Flush:
            return self._flush()
        elif cls is Archive:
            return self._enqueue(self._archive)
        elif cls is Restore:
            return self._enqueue(self._restore)
        elif cls is ReadOutput:
            return self._enqueue(self._read)
        elif cls is PruneArchive:
            return self._enqueue(functools.partial(self._prune, message.path))
        else:
            return super().on_receive(message)
        return None

    # -- output and stats (tells) ----------------------------------------------------------

    def _append(self, data: bytes) -> None:
        if not data:
            return
        pieces = data.split(b"\n")
        if len(pieces) == 1:
            self._partial += len(data)
        else:
            # Every non-empty line counts; the first piece ends the line carried over.
            lengths = []
            first = self._partial + len(pieces[0])
            if first and not self._partial_counted:
                lengths.append(first)
            lengths += [len(piece) for piece in pieces[1:-1] if piece]
            self._partial = len(pieces[-1])
            self._partial_counted = False
            if lengths:
                self._count(len(lengths), sum(length // 4 for length in lengths))
        if self._ops.busy:
            self._held += data
        else:
            self._writer.tell(WriteOutput(self.block_id, data))

    def _release_held(self) -> None:
        if self._held:
            self._writer.tell(WriteOutput(self.block_id, bytes(self._held)))
            self._held.clear()

    def _end_partial_line(self) -> None:
        # The output's last line has no newline yet; when the stream pauses for an
        # archive or ends (stop), it is a line all the same, counted once.
        if self._partial and not self._partial_counted:
            self._count(1, self._partial // 4)
            self._partial_counted = True

    def _count(self, lines: int, tokens: int) -> None:
        now = self.ctx.clock.now_ms()
        stats = self._stats
        self._stats = SessionStats(
            stats.start_ts_ms or now,
            now,
            stats.line_count + lines,
            stats.token_estimate + tokens,
        )
        self._dirty = True
        self._maybe_flush(force=not stats.start_ts_ms)

    def _maybe_flush(self, *, force: bool) -> None:
        interval = self.ctx.config.stats_flush_interval_s
        now = self.ctx.clock.monotonic()
        if force or self._last_flush is None or now - self._last_flush >= interval:
            self._flush_stats()
        elif self._trailing is None:
            self._trailing = self.schedule_once(interval - (now - self._last_flush), _TRAILING)

    def _flush_stats(self) -> None:
        if self._dirty:
            self._writer.tell(WriteStats(self.block_id, self._stats.as_meta()))
            self._dirty = False
            self._last_flush = self.ctx.clock.monotonic()

    def _flush(self) -> Any:
        """`Flush`: answered once the writer has stored the stats and output sent so far."""
        self._flush_stats()
        reply = self.reply_later()
        self._writer.tell(WhenWritten(self.actor_ref, _Then(reply.set)))
        return DEFERRED

    # -- one heavy operation at a time ----------------------------------------------------

    def _enqueue(self, op: Op) -> Any:
        self._ops.submit(op, self.reply_later())
        return DEFERRED

    @staticmethod
    def _start_op(op: Op, reply: Reply) -> None:
        op(reply)  # (an error raised here fails the reply; the queue goes on)

    def _done(self) -> None:
        """The operation under way ended (its reply answered): output held back goes on,
        and the next operation starts."""
        self._release_held()
        self._ops.done()

    def _synced(self, then: Callable[..., None], *args: Any) -> None:
        """Call `then(*args)` in this actor once the writer has stored all we sent."""
        self._writer.tell(WhenWritten(self.actor_ref, _Then(self._guarded, (then, *args))))

    def _guarded(self, then: Callable[..., None], reply: Reply, *args: Any) -> None:
        try:
            then(reply, *args)
        except Exception as error:
            reply.fail(error)
            self._done()

    def _offload(self, job: Callable[[], Any], then: Callable[..., None], reply: Reply) -> None:
        """Run `job` on the blocking pool; then `then(reply, result)` here (errors fail)."""

        def back(future: Any) -> None:
            try:
                result = future.get()
            except Exception as error:
                reply.fail(error)
                self._done()
                return
            self._guarded(then, reply, result)

        self.run_blocking(job, then=back)

    def _meta(self) -> dict[str, Any]:
        return self.ctx.store.get_object(BLOCK, self.block_id).meta

    def _archived_path(self, meta: dict[str, Any]) -> Path | None:
        if not meta.get(ARCHIVE_PATH):
            return None
        return checked_archive_path(
            self._archive_dir, meta[ARCHIVE_PATH], self.block_id, must_exist=True
        )

    def _live_size(self) -> int:
        try:
            return self.ctx.store.stat_file(BLOCK, self.block_id, OUTPUT).size
        except NotFound:
            return 0

    def _pieces(
        self, archived: Path | None, live: bool, read: list[int] | None = None
    ) -> Iterator[bytes]:
        """The archive's bytes, then the live output's; `read[0]` counts the live ones."""
        if archived is not None:
            yield from read_archive(archived)
        if live:
            for piece in self.ctx.store.iter_file(BLOCK, self.block_id, OUTPUT):
                if read is not None:
                    read[0] += len(piece)
                yield piece

    # archive

    def _archive(self, reply: Reply) -> None:
        self._end_partial_line()
        self._flush_stats()
        self._synced(self._archive_synced, reply)

    def _archive_synced(self, reply: Reply) -> None:
        meta = self._meta()
        archived = self._archived_path(meta)
        live = self._live_size() > 0
        now = self.ctx.clock.now_ms()
        if not live:
            # Nothing new to archive (empty, missing, or archived already).
            reply.set(ArchiveResult(self.block_id, 0, now, archived))
            self._done()
            return
        codec = self.ctx.config.archive_codec
        at = now
        while (self._archive_dir / archive_name(self.block_id, at, codec)).exists():
            at += 1  # a second archive within the same millisecond: never overwrite
        name = archive_name(self.block_id, at, codec)

        read = [0]  # live bytes compressed: the final transaction checks there are no more

        def job() -> tuple[int, int, Path]:
            pieces = self._pieces(archived, True, read)
            return write_archive(pieces, self._archive_dir, name, codec)

        self._archive_meta = (at, archived, meta.get(ARCHIVE_BACKUP), meta.get(ARCHIVE_PATH), read)
        self._offload(job, self._archive_written, reply)

    def _archive_written(self, reply: Reply, written: tuple[int, int, Path]) -> None:
        raw, _size, path = written
        at, previous, backup, stored, read = self._archive_meta
        update = {
            ARCHIVED_AT: at,
            ARCHIVED_BYTES: raw,
            ARCHIVE_PATH: path.name,  # relative: the folder may move with the database
            ARCHIVE_BACKUP: None,
            PRUNED_AT: None,
        }
        try:
            _write_if_unchanged(
                self.ctx.store,
                self.block_id,
                read[0],
                stored,
                [
                    UpdateMeta(BLOCK, self.block_id, update),
                    DeleteFile(BLOCK, self.block_id, OUTPUT),
                ],
            )
        except Exception as error:
            path.unlink(missing_ok=True)  # not referenced: the live output still holds it all
            if isinstance(error, _Changed):
                log.info("block %r not archived: %s", self.block_id, error)
            raise
        for old in {previous, self._backup_path(backup)} - {None, path}:
            old.unlink(missing_ok=True)  # type: ignore[union-attr]
        log.info("block %r archived: %d bytes to %s", self.block_id, raw, path)
        reply.set(ArchiveResult(self.block_id, raw, at, path))
        self._done()

    def _backup_path(self, backup: Any) -> Path | None:
        if not backup:
            return None
        try:
            return checked_archive_path(self._archive_dir, backup, self.block_id)
        except StorageError:
            log.warning(
                "block %r: ignoring a backup path outside the archive folder", self.block_id
            )
            return None

    # restore

    def _restore(self, reply: Reply) -> None:
        meta = self._meta()
        if not meta.get(ARCHIVE_PATH):
            if meta.get(PRUNED_AT):
                raise InvalidTransition(
                    f"block {self.block_id!r} cannot be restored: its archive was pruned at "
                    f"{meta[PRUNED_AT]} to keep the archive folder within max_archive_bytes"
                )
            raise InvalidTransition(f"block {self.block_id!r} is not archived; nothing to restore")
        self._synced(self._restore_synced, reply)

    def _restore_synced(self, reply: Reply) -> None:
        meta = self._meta()  # (read again: another process may have changed it)
        if not meta.get(ARCHIVE_PATH):
            raise InvalidTransition(f"block {self.block_id!r} is not archived; nothing to restore")
        archived = self._archived_path(meta)
        assert archived is not None  # (archived: the path was checked and exists)
        live = self._live_size() > 0
        store, block_id = self.ctx.store, self.block_id
        read = [0]  # live bytes copied: the final transaction checks there are no more

        def job() -> int:
            store.delete_file(BLOCK, block_id, RESTORING, missing_ok=True)
            restored = 0
            try:
                batch = bytearray()
                for piece in self._pieces(archived, live, read):
                    batch += piece
                    if len(batch) >= _PIECE:
                        store.append_file(BLOCK, block_id, RESTORING, bytes(batch), create=True)
                        restored += len(batch)
                        batch.clear()
                store.append_file(BLOCK, block_id, RESTORING, bytes(batch), create=True)
                restored += len(batch)
            except BaseException:
                store.delete_file(BLOCK, block_id, RESTORING, missing_ok=True)
                raise
            return restored

        self._restore_from = (archived, meta.get(ARCHIVE_PATH), read)
        self._offload(job, self._restore_written, reply)

    def _restore_written(self, reply: Reply, restored: int) -> None:
        assert self._restore_from is not None
        archived, stored, read = self._restore_from
        update: dict[str, Any] = {ARCHIVED_AT: None, ARCHIVED_BYTES: None, ARCHIVE_PATH: None}
        update[ARCHIVE_BACKUP] = archived.name  # kept until the next archive
        try:
            _write_if_unchanged(
                self.ctx.store,
                self.block_id,
                read[0],
                stored,
                [
                    RenameFile(BLOCK, self.block_id, RESTORING, OUTPUT),
                    UpdateMeta(BLOCK, self.block_id, update),
                ],
            )
        except Exception as error:
            self.ctx.store.delete_file(BLOCK, self.block_id, RESTORING, missing_ok=True)
            if isinstance(error, _Changed):
                log.info("block %r not restored: %s", self.block_id, error)
            raise
        log.info("block %r restored: %d bytes", self.block_id, restored)
        reply.set(RestoreResult(self.block_id, restored))
        self._done()

    # read

    def _read(self, reply: Reply) -> None:
        self._synced(self._read_synced, reply)

    def _read_synced(self, reply: Reply) -> None:
        meta = self._meta()
        archived = self._archived_path(meta)
        live = self._live_size() > 0
        if archived is None and not live and meta.get(PRUNED_AT):
            raise NotFound(
                f"block {self.block_id!r} has no output: its archive was pruned at "
                f"{meta[PRUNED_AT]} to keep the archive folder within max_archive_bytes"
            )

        def job() -> OutputRead:
            data = b"".join(self._pieces(archived, live))
            return OutputRead(data, count_lines(data), archived is not None)

        self._offload(job, self._read_done, reply)

    def _read_done(self, reply: Reply, read: OutputRead) -> None:
        reply.set(read)
        self._done()

    # prune (from the sweep)

    def _prune(self, path: Path, reply: Reply) -> None:
        target = checked_archive_path(self._archive_dir, path, self.block_id)
        meta = self._meta()
        uses = []
        for key in (ARCHIVE_PATH, ARCHIVE_BACKUP):
            if not meta.get(key):
                continue
            try:
                if checked_archive_path(self._archive_dir, meta[key], self.block_id) == target:
                    uses.append(key)
            except StorageError as error:
                # It cannot be told whether that names this file: deleting it might
                # leave the block pointing at a file that is gone. Left alone.
                raise StorageError(
                    f"archive {target.name!r} left alone: block {self.block_id!r} has a "
                    f"{key} that cannot be checked ({error})"
                ) from error
        update: dict[str, Any] = {}
        if ARCHIVE_PATH in uses:
            update = {
                ARCHIVED_AT: None,
                ARCHIVED_BYTES: None,
                ARCHIVE_PATH: None,
                PRUNED_AT: self.ctx.clock.now_ms(),
            }
        if ARCHIVE_BACKUP in uses:
            update[ARCHIVE_BACKUP] = None
        if update:
            # Metadata first: a block never points at a file that is gone.
            self.ctx.store.update_meta(BLOCK, self.block_id, update)
        # (Referenced by neither: a leftover of an archive that was never committed.)
        size = target.stat().st_size if target.exists() else 0
        target.unlink(missing_ok=True)
        log.info("block %r: pruned archive %s (%d bytes)", self.block_id, target, size)
        reply.set(size)
        self._done()
