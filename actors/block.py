"""`BlockActor`: one per block; owns its archive, its metadata and its flushes.

Output and stats do not pass through it: a block's handle tells its output straight
to the runtime's `BlockWriter`, which counts the lines (`greenroom.blocks.counting`),
writes many blocks in one transaction and keeps every block's stats on one schedule
(stored at once on the first line, then at most once per `stats_flush_interval_s`,
with a trailing write when an interval with new lines ends). Counters start from the
stored metadata, so they carry on across restarts.

Archive, restore, read and prune run their heavy part (compressing, decompressing) on
the blocking pool. While one runs, the writer holds back the block's new output
(`HoldOutput`, told as it starts; `ReleaseOutput` as it ends) and the actor queues
further calls, so none of them can interleave; stats keep counting.
Every step that changes what the block points at is one store transaction:

* archive: compress to a temporary file, fsync, rename into place; then, in one
  transaction, point the metadata at it (by file name, relative to the archive
  folder) and delete the live output. A crash before that transaction leaves the
  live output (and at worst an unreferenced file); after it, a complete archive the
  metadata points to.
* restore: decompress into a temporary store file (named for this runtime and this
  restore: never shared with another process); then, in one transaction, rename it
  over the output and clear the `session:archived_*` keys. A corrupt or missing
  archive raises `StorageError` and changes nothing.

Another process (the CLI, a second host) may open the same database, with its own
actor for the same block: nothing serialises the two. So the final transaction of an
archive or restore first checks that the live output and the archive pointer are
still what was read; if another process appended output (or archived, restored,
pruned) meanwhile, it changes nothing, removes what it wrote, and raises `Conflict`
("try again"): no byte is dropped. A read that fails because another process moved
the archive meanwhile is retried. Temporaries are named with the runtime's owner
token (`greenroom.blocks.owners`): an actor that starts removes only those of runtimes
that are gone, never another live process's work in progress.

`flush()` answers once everything appended before it is stored, output held back by
an archive or restore under way included; `close()` stores the held output and answers
every caller.

An archived block that gets new output keeps it live: its output is the archive
followed by the live part, and the next archive (or a restore) joins the two.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, GreenroomActorRef, Reply
from greenroom.actors.busy_queue import BusyQueue
from greenroom.archives import Archives, archive_name
from greenroom.blocks.archive import read_archive, write_archive
from greenroom.blocks.messages import (
    Archive,
    Flush,
    GetMeta,
    HoldOutput,
    MergeMeta,
    PruneArchive,
    ReadOutput,
    ReleaseOutput,
    Restore,
    WhenWritten,
)
from greenroom.blocks.owners import Owners
from greenroom.blocks.records import (
    ARCHIVE_BACKUP,
    ARCHIVE_PATH,
    ARCHIVED_AT,
    ARCHIVED_BYTES,
    PRUNED_AT,
    ArchiveResult,
    OutputRead,
    RestoreResult,
    count_lines,
    meta_count,
)
from greenroom.errors import Conflict, InvalidTransition, NotFound, Stopped, StorageError
from greenroom.store import DeleteFile, ExpectFile, ExpectMeta, RenameFile, Store, UpdateMeta

__all__ = ["BlockActor"]

log = logging.getLogger("greenroom.blocks")

BLOCK = "block"
OUTPUT = "output"
RESTORING = "output.restoring"  # + ".<owner>.<random>": one name per restore
_PIECE = 1 << 20
_NO_ARCHIVE: tuple[int, str | None, Any, Any, list[int]] = (0, None, None, None, [0])
"""`BlockActor._archive_meta` before any archive (never read: an archive sets it)."""
_READ_TRIES = 3  # a read that met another process's archive or restore is tried again
_LEFTOVER_MS = 24 * 3600 * 1000  # an unreferenced archive younger than this may be
# another process's, written and about to be committed: pruning leaves it alone

Op = Callable[[Reply], None]
"""One heavy operation (archive, restore, read, prune): started with its caller's reply."""


@attrs.frozen
class _Then:
    """A continuation: call `fn(*args)` inside the actor (once the writer has synced)."""

    fn: Callable[..., object]
    args: tuple[Any, ...] = ()


class _SetReply:
    """A `WhenWritten` recipient that answers a flush's caller from the writer's thread."""

    __slots__ = ("_reply",)

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    def tell(self, _message: Any) -> None:
        self._reply.set(None)


def restoring_owner(name: str) -> str | None:
    """The owner token in a restore's temporary file name, `""` for an old unnamed one,
    or None if `name` is none."""
    if name == RESTORING:
        return ""
    if not name.startswith(RESTORING + "."):
        return None
    return name[len(RESTORING) + 1 :].split(".", 1)[0]


class _Changed(Conflict):
    """The block's output or archive changed under an archive / restore (another process)."""


def _write_if_unchanged(
    store: Store,
    block_id: str,
    live_bytes: int,
    archive_path: Any,
    writes: list[UpdateMeta | DeleteFile | RenameFile],
    backup: Any = ...,
) -> None:
    """`store.write_atomic(writes)`, if the live output still holds `live_bytes` bytes
    and `session:archive_path` is still `archive_path`, checked in the same transaction.

    Else nothing is written and `_Changed` is raised.
    """
    expect: list[ExpectFile | ExpectMeta] = [
        ExpectFile(BLOCK, block_id, OUTPUT, live_bytes),
        ExpectMeta(BLOCK, block_id, ARCHIVE_PATH, archive_path),
    ]
    if backup is not ...:
        expect.append(ExpectMeta(BLOCK, block_id, ARCHIVE_BACKUP, backup))
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

    def __init__(
        self,
        ctx: ActorContext,
        writer: GreenroomActorRef,
        archives: Archives,
        owners: Owners | None = None,
        meta: dict[str, Any] | None = None,
        unstored: bool = False,
    ) -> None:
        super().__init__(ctx)
        self.block_id = ctx.actor_id
        self._loaded = meta  # the metadata `Blocks.get` just read (None: read it here)
        # A new block's metadata, handed to the writer to store with its next batch
        # (`Blocks.get`), until this actor knows it is stored.
        self._unstored = meta if unstored else None
        self._writer = writer
        self._archives = archives
        self._owners = owners
        # Flushes waiting for the operation under way (made by the first).
        self._flushes: list[Reply] | None = None
        # The archive / restore / read / prune under way, and those waiting for it,
        # each with whether it ends the unfinished last line (an archive's does).
        # (Made by the first: most blocks never run one.)
        self._ops: BusyQueue[tuple[Op, bool]] | None = None
        self._archive_meta = _NO_ARCHIVE  # what the archive under way read
        self._restore_from: tuple[str, Any, list[int], str, Any] | None = None

    def on_start(self) -> None:
        meta, self._loaded = self._loaded, None
        if meta is None:  # (read: a damaged row stops the start, with the error logged)
            self.ctx.store.get_object(BLOCK, self.block_id)
        if self._unstored is None:  # (a new block has no files yet)
            self._remove_dead_restores()

    def _remove_dead_restores(self) -> None:
        """Delete the partial copies of restores whose runtime is gone (a stop or a crash
        cut them short): never used. Another live process's restore is left alone."""
        # (Listed first: a read costs no commit, and almost every start finds none.)
        for info in self.ctx.store.list_files(BLOCK, self.block_id):
            owner = restoring_owner(info.name)
            # (Without owner tokens, whose restore it is cannot be told: left alone.)
            if owner is None or self._owners is None or self._owners.is_alive(owner):
                continue
            self.ctx.store.delete_file(BLOCK, self.block_id, info.name, missing_ok=True)
            self.ctx.metrics.incr("temporaries_removed")
            log.info("block %r: removed %s, left by a restore cut short", self.block_id, info.name)

    def on_stop(self) -> None:
        try:
            # The writer counts the unfinished last line, stores the stats and the
            # output it held back for an operation under way.
            self._writer.tell(ReleaseOutput(self.block_id, stopped=True))
            self._answer_flushes()
        finally:
            # The job under way will answer a stopped actor: its caller is answered now.
            if self._ops is not None:
                self._ops.fail_all(
                    Stopped(
                        f"block {self.block_id!r} stopped before this call finished; output "
                        "held back for it was stored"
                    )
                )

    def on_receive(self, message: Any) -> Any:
        cls = type(message)
        if cls is _Then:
            message.fn(*message.args)
        elif cls is GetMeta:
            return self._meta()
        elif cls is MergeMeta:
            self._ensure_stored()
            return self.ctx.store.update_meta(BLOCK, self.block_id, message.update).meta
        elif cls is Flush:
            return self._flush()
        elif cls is Archive:
            return self._enqueue(self._archive, end_line=True)
        elif cls is Restore:
            return self._enqueue(self._restore)
        elif cls is ReadOutput:
            return self._enqueue(self._read)
        elif cls is PruneArchive:
            return self._enqueue(functools.partial(self._prune, message.path))
        else:
            return super().on_receive(message)
        return None

    # -- flushes ----------------------------------------------------------------------------

    def _flush(self) -> Any:
        """`Flush`: answered once the writer has stored the stats and output sent so far,
        and output held back by the operation under way (once it ends)."""
        reply = self.reply_later()
        if self._ops is not None and self._ops.busy:
            if self._flushes is None:
                self._flushes = []
            self._flushes.append(reply)  # answered at `_done`, after the held output
        else:
            self._writer.tell(WhenWritten(_SetReply(reply), None))
        return DEFERRED

    def _answer_flushes(self) -> None:
        """The held output went to the writer: the flushes waiting for it are answered
        once it is stored (by the writer's thread: this actor may be stopping)."""
        replies, self._flushes = self._flushes, None
        for reply in replies or ():
            self._writer.tell(WhenWritten(_SetReply(reply), None))

    # -- one heavy operation at a time ----------------------------------------------------

    def _enqueue(self, op: Op, *, end_line: bool = False) -> Any:
        if self._ops is None:
            self._ops = BusyQueue(self._start_op)
        self._ops.submit((op, end_line), self.reply_later())
        return DEFERRED

    def _start_op(self, item: tuple[Op, bool], reply: Reply) -> None:
        op, end_line = item
        # From now on the writer holds the block's new output back (counted).
        self._writer.tell(HoldOutput(self.block_id, end_line))
        try:
            op(reply)
        except Exception:
            # (The reply fails with it; the queue goes on.)
            self._writer.tell(ReleaseOutput(self.block_id))
            raise

    def _done(self) -> None:
        """The operation under way ended (its reply answered): output held back goes on,
        and the next operation starts."""
        self._writer.tell(ReleaseOutput(self.block_id))
        if self._flushes:
            self._answer_flushes()
        if self._ops is not None:
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

    def _owner_token(self) -> str:
        """This runtime's owner token, for naming temporaries ("" without owners)."""
        if self._owners is None:
            return ""
        try:
            return self._owners.token
        except OSError as error:
            raise StorageError(
                f"cannot take this runtime's owner lock in {str(self._owners.folder)!r} "
                f"(the archive folder, or archive_dir): {error}"
            ) from error

    def _meta(self) -> dict[str, Any]:
        self._ensure_stored()
        return self.ctx.store.get_object(BLOCK, self.block_id).meta

    def _ensure_stored(self) -> None:
        """A new block's object, stored now if the writer has not yet (a read of its
        metadata cannot wait for the writer's next batch)."""
        if self._unstored is not None:
            self.ctx.store.ensure_object(BLOCK, self.block_id, self._unstored)
            self._unstored = None

    def _archived_name(self, meta: dict[str, Any]) -> str | None:
        """The name of the block's archive, checked (it exists), or None if it has none."""
        if not meta.get(ARCHIVE_PATH):
            return None
        return self._archives.resolve(meta[ARCHIVE_PATH], self.block_id, must_exist=True)

    def _location(self, name: str | None) -> Path | None:
        return None if name is None else self._archives.location(name)

    def _live_size(self) -> int:
        try:
            return self.ctx.store.stat_file(BLOCK, self.block_id, OUTPUT).size
        except NotFound:
            return 0

    def _pieces(
        self, archived: str | None, live: bool, read: list[int] | None = None, meta: Any = None
    ) -> Iterator[bytes]:
        """The archive's bytes, then the live output's; `read[0]` counts the live ones.

        The archive is read bounded by the size recorded in `meta` when it was written.
        """
        if archived is not None:
            recorded = meta_count(meta, ARCHIVED_BYTES) if meta else 0
            yield from read_archive(self._archives, archived, max_bytes=recorded or None)
        if live:
            for piece in self.ctx.store.iter_file(BLOCK, self.block_id, OUTPUT):
                if read is not None:
                    read[0] += len(piece)
                yield piece

    def _raced(self, stored: Any, error: BaseException) -> BaseException:
        """`error` (met reading the archive or the output) as `_Changed` if the block's
        archive pointer moved meanwhile (another process archived, restored or pruned
        it), else `error` itself."""
        if not isinstance(error, StorageError | NotFound):
            return error
        try:
            now = self._meta().get(ARCHIVE_PATH)
        except Exception:
            return error
        if now == stored:
            return error
        changed = _Changed(
            f"block {self.block_id!r} changed while this ran (another process archived, "
            f"restored or pruned it: {error}); nothing changed, try again"
        )
        changed.__cause__ = error
        return changed

    # archive

    def _archive(self, reply: Reply) -> None:
        # (`HoldOutput` counted the unfinished last line: the sync stores its stats.)
        self._synced(self._archive_synced, reply)

    def _archive_synced(self, reply: Reply) -> None:
        meta = self._meta()
        archived = self._archived_name(meta)
        live = self._live_size() > 0
        now = self.ctx.clock.now_ms()
        if not live:
            # Nothing new to archive (empty, missing, or archived already).
            reply.set(ArchiveResult(self.block_id, 0, now, self._location(archived)))
            self._done()
            return
        config = self.ctx.config
        codec = config.archive_codec
        at = max(now, meta_count(meta, ARCHIVED_AT) + 1)  # a new name, never reused
        name = archive_name(self.block_id, at, codec)
        owner = self._owner_token()
        stored = meta.get(ARCHIVE_PATH)

        read = [0]  # live bytes compressed: the final transaction checks there are no more

        def job() -> tuple[int, str]:
            pieces = self._pieces(archived, True, read, meta)
            try:
                written = write_archive(pieces, self._archives, name, codec, owner=owner)
            except Exception as error:
                raise self._raced(stored, error) from None
            if self.actor_stopped.is_set():
                # Nobody will commit it (the block stopped meanwhile): not left behind.
                self._discard(written[1], "an archive its stopped block never committed")
                raise Stopped(f"block {self.block_id!r} stopped before its archive was committed")
            return written

        self._archive_meta = (at, archived, meta.get(ARCHIVE_BACKUP), stored, read)
        self._offload(job, self._archive_written, reply)

    def _archive_written(self, reply: Reply, written: tuple[int, str]) -> None:
        raw, used = written
        _at, previous, backup, stored, read = self._archive_meta
        at = int(used.rsplit(".", 2)[1])  # (the next millisecond's, if that was taken)
        update = {
            ARCHIVED_AT: at,
            ARCHIVED_BYTES: raw,
            ARCHIVE_PATH: used,  # a name: the folder may move with the database
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
                backup,
            )
        except Exception as error:
            # Not referenced: the live output still holds it all.
            self._discard(used, "an archive not committed")
            if isinstance(error, _Changed):
                log.info("block %r not archived: %s", self.block_id, error)
            raise
        for old in {previous, self._backup_name(backup)} - {None, used}:
            self._discard(old, "an archive replaced")  # type: ignore[arg-type]
        path = self._archives.location(used)
        log.info("block %r archived: %d bytes to %s", self.block_id, raw, path)
        reply.set(ArchiveResult(self.block_id, raw, at, path))
        self._done()

    def _discard(self, name: str, what: str) -> None:
        """Delete an archive nothing refers to (any more), best effort: one that cannot
        be deleted now is logged and left to the sweep's pruning."""
        try:
            self._archives.delete(name)
        except Exception as error:
            log.warning(
                "block %r: could not delete %s, %s (left for the sweep to prune): %s",
                self.block_id,
                what,
                name,
                error,
            )

    def _backup_name(self, backup: Any) -> str | None:
        if not backup:
            return None
        try:
            return self._archives.resolve(backup, self.block_id)
        except StorageError:
            log.warning(
                "block %r: ignoring a backup path outside the archive folder", self.block_id
            )
            return None

    # restore

    def _restore(self, reply: Reply) -> None:
        meta = self._meta()
        if not meta.get(ARCHIVE_PATH):
            self._not_archived(meta)
        self._synced(self._restore_synced, reply)

    def _not_archived(self, meta: dict[str, Any]) -> None:
        if meta.get(PRUNED_AT):
            raise InvalidTransition(
                f"block {self.block_id!r} cannot be restored: its archive was pruned at "
                f"{meta[PRUNED_AT]} to keep the archive folder within max_archive_bytes"
            )
        raise InvalidTransition(f"block {self.block_id!r} is not archived; nothing to restore")

    def _restore_synced(self, reply: Reply) -> None:
        meta = self._meta()  # (read again: another process may have changed it)
        if not meta.get(ARCHIVE_PATH):
            self._not_archived(meta)
        stored = meta.get(ARCHIVE_PATH)
        try:
            archived = self._archived_name(meta)
        except StorageError as error:
            raise self._raced(stored, error) from None
        assert archived is not None  # (archived: the path was checked and exists)
        live = self._live_size() > 0
        store, block_id = self.ctx.store, self.block_id
        owner = self._owner_token() or "x"
        # Named for this runtime and this restore: no other process ever touches it.
        temp = f"{RESTORING}.{owner}.{secrets.token_hex(4)}"
        read = [0]  # live bytes copied: the final transaction checks there are no more

        def job() -> int:
            restored = 0
            try:
                batch = bytearray()
                for piece in self._pieces(archived, live, read, meta):
                    batch += piece
                    if len(batch) >= _PIECE:
                        store.append_file(BLOCK, block_id, temp, bytes(batch), create=True)
                        restored += len(batch)
                        batch.clear()
                store.append_file(BLOCK, block_id, temp, bytes(batch), create=True)
                restored += len(batch)
            except BaseException as error:
                store.delete_file(BLOCK, block_id, temp, missing_ok=True)
                raise self._raced(stored, error) from None
            return restored

        self._restore_from = (archived, stored, read, temp, meta.get(ARCHIVE_BACKUP))
        self._offload(job, self._restore_written, reply)

    def _restore_written(self, reply: Reply, restored: int) -> None:
        assert self._restore_from is not None
        archived, stored, read, temp, backup = self._restore_from
        update: dict[str, Any] = {ARCHIVED_AT: None, ARCHIVED_BYTES: None, ARCHIVE_PATH: None}
        update[ARCHIVE_BACKUP] = archived  # kept until the next archive
        try:
            _write_if_unchanged(
                self.ctx.store,
                self.block_id,
                read[0],
                stored,
                [
                    RenameFile(BLOCK, self.block_id, temp, OUTPUT),
                    UpdateMeta(BLOCK, self.block_id, update),
                ],
                backup,
            )
        except Exception as error:
            self.ctx.store.delete_file(BLOCK, self.block_id, temp, missing_ok=True)
            if isinstance(error, _Changed):
                log.info("block %r not restored: %s", self.block_id, error)
            raise
        old_backup = self._backup_name(backup)
        if old_backup is not None and old_backup != archived:
            self._discard(old_backup, "a backup replaced")  # by the archive just restored
        log.info("block %r restored: %d bytes", self.block_id, restored)
        reply.set(RestoreResult(self.block_id, restored))
        self._done()

    # read

    def _read(self, reply: Reply, tries: int = _READ_TRIES) -> None:
        self._synced(self._read_synced, reply, tries)

    def _read_synced(self, reply: Reply, tries: int) -> None:
        meta = self._meta()
        stored = meta.get(ARCHIVE_PATH)
        try:
            archived = self._archived_name(meta)
        except StorageError as error:
            raced = self._raced(stored, error)
            if isinstance(raced, _Changed) and tries > 1:
                # The archive named was replaced by another process's newer one (and
                # deleted) since the metadata was read: read again, as below.
                self._read_synced(reply, tries - 1)
                return
            raise raced from None
        live = self._live_size() > 0
        if archived is None and not live and meta.get(PRUNED_AT):
            raise NotFound(
                f"block {self.block_id!r} has no output: its archive was pruned at "
                f"{meta[PRUNED_AT]} to keep the archive folder within max_archive_bytes"
            )

        def job() -> OutputRead:
            try:
                data = b"".join(self._pieces(archived, live, None, meta))
            except Exception as error:
                raise self._raced(stored, error) from None
            # Another process may have archived or restored the block between the
            # metadata read and the live output's: the archive (kept as a backup) and
            # the restored output both read, or an archive read without what moved
            # into a newer one. The pointer, read again, tells: then it is read again.
            again = self.ctx.store.find_object(BLOCK, self.block_id)
            if again is not None and again.meta.get(ARCHIVE_PATH) != stored:
                raise _Changed(
                    f"block {self.block_id!r} was archived or restored by another process "
                    "while it was read; nothing changed, try again"
                )
            return OutputRead(data, count_lines(data), archived is not None)

        def back(future: Any) -> None:
            try:
                read = future.get()
            except Exception as error:
                if isinstance(error, _Changed) and tries > 1:
                    # (A read changes nothing: it is simply read again.)
                    self._guarded(self._read_synced, reply, tries - 1)
                    return
                reply.fail(error)
                self._done()
                return
            self._read_done(reply, read)

        self.run_blocking(job, then=back)

    def _read_done(self, reply: Reply, read: OutputRead) -> None:
        reply.set(read)
        self._done()

    # prune (from the sweep)

    def _prune(self, path: Path, reply: Reply) -> None:
        target = self._archives.resolve(path, self.block_id)
        meta = self._meta()
        uses = []
        for key in (ARCHIVE_PATH, ARCHIVE_BACKUP):
            if not meta.get(key):
                continue
            try:
                if self._archives.resolve(meta[key], self.block_id) == target:
                    uses.append(key)
            except StorageError as error:
                # It cannot be told whether that names this file: deleting it might
                # leave the block pointing at a file that is gone. Left alone.
                raise StorageError(
                    f"archive {target!r} left alone: block {self.block_id!r} has a "
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
            # Metadata first: a block never points at a file that is gone. Only if it
            # still points where it did: another process may have archived meanwhile.
            try:
                self.ctx.store.write_atomic(
                    [UpdateMeta(BLOCK, self.block_id, update)],
                    expect=[
                        ExpectMeta(BLOCK, self.block_id, ARCHIVE_PATH, meta.get(ARCHIVE_PATH)),
                        ExpectMeta(BLOCK, self.block_id, ARCHIVE_BACKUP, meta.get(ARCHIVE_BACKUP)),
                    ],
                )
            except Conflict as error:
                raise _Changed(
                    f"archive {target!r} not pruned: block {self.block_id!r} changed "
                    f"meanwhile ({error}; another process wrote to it); try again"
                ) from None
        else:
            # Referenced by neither: a leftover of an archive never committed, or one
            # another process wrote and is about to commit. Only an old one is deleted.
            name_ms = target.rsplit(".", 2)[1]
            if self.ctx.clock.now_ms() - int(name_ms) < _LEFTOVER_MS:
                raise _Changed(
                    f"archive {target!r} not pruned: block {self.block_id!r} does not "
                    "point at it, and it is too recent to be a leftover (another process may "
                    "be committing it); a later sweep will look again"
                )
        size = self._archives.delete(target)
        log.info(
            "block %r: pruned archive %s (%d bytes)",
            self.block_id,
            self._archives.location(target),
            size,
        )
        reply.set(size)
        self._done()
