"""`BlockWriter`: the one actor that counts and writes block output and stats, in batches.

Block handles tell it their output (and `record_line` counts) directly: it counts each
block's lines (`LineCounts`, loaded from the block's metadata on first use) and holds
a block's output back while an archive, restore, read or prune of it runs (its actor
says when: `HoldOutput`, `ReleaseOutput`). It gathers what arrives and writes it all,
output and stats together, in one store transaction (`Store.append_many`: one fsync
and a few statements for the lot), so a host with thousands of active blocks costs a
few commits a second, not thousands.
Batching needs no timer: the first write to arrive queues a commit message behind it,
everything that arrives before that message is handled joins the batch (if more mail
is still waiting then, the commit moves behind it, a few times at most), and whatever
arrives during a commit joins the next one.

Stats keep one schedule for every block, here, rather than a timer per block: a
block's stats are stored at once when none were stored in the last
`stats_flush_interval_s` (or when they are urgent: its first count after they were
loaded, a flush, an archive, its actor's stop), and otherwise wait for that interval
to end. Stored blocks queue up in the order their intervals end, so one timer, set for
the first, serves them all. A stats record is built when it is stored, not per line.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.blocks.backlog import OutputBacklog
from greenroom.blocks.counting import Counted, LineCounts
from greenroom.blocks.messages import (
    AppendOutput,
    CommitDue,
    CommitNow,
    CommitSoon,
    CreateBlock,
    ForgetCounts,
    GetStats,
    HoldOutput,
    RecordLine,
    ReleaseOutput,
    StatsDue,
    WhenWritten,
)
from greenroom.blocks.records import snapshot_meta
from greenroom.errors import Conflict, NotFound, StorageError

__all__ = ["BlockWriter"]

log = logging.getLogger("greenroom.blocks")

BLOCK = "block"
OUTPUT = "output"
_COMMIT = CommitDue()
_STATS_DUE = StatsDue()
_LATE = (
    AppendOutput,
    RecordLine,
    CreateBlock,
    HoldOutput,
    ReleaseOutput,
    ForgetCounts,
    WhenWritten,
)
"""Tells `on_unhandled` keeps: what block handles and actors send that must be stored."""
_MAX_DEFERRALS = 4
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0


class BlockWriter(GreenroomActor):
    """Writes blocks' output and stats for the whole runtime, one transaction a batch."""

    kind = "block_writer"
    stop_order = 10  # after the blocks, whose on_stop hands it their last stats
    turn_throughput = 1024  # it serves every block: give it longer turns

    def __init__(
        self,
        ctx: ActorContext,
        backlog: OutputBacklog | None = None,
        *,
        owned_by: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(ctx)
        self._backlog = backlog  # released as output is stored (or dropped, counted)
        # On a shared store: (lease key, this host): a block another host took over is
        # not written here (its output fails, counted and logged).
        self._owned_by = owned_by
        self._creates: dict[str, dict[str, Any]] = {}  # new blocks' objects
        self._unchecked: set[str] = set()  # those of them that may be stored already
        self._counts: dict[str, LineCounts] = {}  # blocks' live counts, loaded on first use
        # Unchecked new blocks counted from their creation's metadata until their stored
        # rows are read, many a statement (`_resolve`): what each counted meanwhile.
        self._pending: dict[str, list[Counted]] = {}
        self._output: dict[str, bytearray] = {}
        # Output held back while an operation of its block runs (counted already).
        self._held: dict[str, bytearray] = {}
        # Blocks whose stats are stored with the next commit (a snapshot of their
        # counts then), and those waiting for their interval to end.
        self._stats: dict[str, LineCounts] = {}
        self._later: dict[str, LineCounts] = {}
        # Blocks whose stats were stored within the last interval: when it ends (a
        # monotonic time), in `_ends` in that order; an entry of `_ends` that no longer
        # matches `_interval_end` was overtaken by a later store.
        self._interval_end: dict[str, float] = {}
        self._ends: deque[tuple[float, str]] = deque()
        self._timer: Any = None
        self._waiting: list[WhenWritten] = []
        self._commit_queued = False
        self._delayed: Any = None  # the timer of a commit waiting for its delay
        self._deferrals = 0
        self.commits = 0
        self.failures = 0
        self._retries = 0
        self._final = False

    def on_receive(self, message: Any) -> Any:
        cls = type(message)
        if cls is AppendOutput:
            block_id = message.block_id
            counts = self._counts.get(block_id) or self._load(block_id)
            counted = self._pending.get(block_id) if self._pending else None
            if counted is None:
                changed = counts.add_output(message.data, self._now_ms)
            else:
                at = self._now_ms()
                counted.append((message.data, 0, at))
                changed = counts.add_output(message.data, lambda: at)
            if changed:
                self._changed(block_id, counts)
            held = self._held.get(block_id)
            if held is None:
                self._queue_output(block_id, message.data)
            else:
                held += message.data
                if not self._stats:
                    return None  # held, stats waiting for their interval: no commit
        elif cls is RecordLine:
            block_id = message.block_id
            counts = self._counts.get(block_id) or self._load(block_id)
            now, tokens = self._now_ms(), message.n_bytes // 4
            counts.count(1, tokens, now)
            counted = self._pending.get(block_id) if self._pending else None
            if counted is not None:
                counted.append((None, tokens, now))
            self._changed(block_id, counts)
            if not self._stats:
                return None  # it waits for its interval: nothing to commit now
        elif cls is GetStats:
            # (Not kept when read for this: on a shared store, another host may write
            # to the block until this one takes its lease again.)
            self._resolve([message.block_id])
            counts = self._counts.get(message.block_id) or self._read(message.block_id)
            return counts.stats()
        elif cls is CreateBlock:
            self._creates[message.block_id] = message.meta
            if not message.checked:
                self._unchecked.add(message.block_id)
        elif cls is ForgetCounts:
            self._forget(message.block_id)
            return None
        elif cls is HoldOutput:
            self._hold(message.block_id, message.end_line)
        elif cls is ReleaseOutput:
            self._release(message.block_id, message.stopped)
        elif cls is WhenWritten:
            self._waiting.append(message)
            self._store_all_stats()  # a flush: the stats waiting for their interval too
            self._commit_at_once()
            return None
        elif cls is CommitSoon:
            self._expedite()
            return None
        elif cls is StatsDue:
            self._timer = None
            self._stats_due()
            if not self._stats:
                self._arm()
            else:
                # (One timer for every block's interval: already a batch; stored at
                # the end of the interval, not a commit delay later.)
                self._commit_at_once()
            return None
        elif cls is CommitNow:
            self._store_all_stats()
            self._commit_now()
            return None
        elif cls is CommitDue:
            self._undelay()
            if self.actor_inbox and self._deferrals < _MAX_DEFERRALS:
                # More mail waits behind: let it join this batch (bounded, so a
                # writer that is never idle still commits every few turns).
                self._deferrals += 1
                self.actor_ref.tell(_COMMIT)
                return None
            self._commit_queued = False
            self._deferrals = 0
            self._commit()
            return None
        else:
            return super().on_receive(message)
        if not self._commit_queued:
            self._commit_queued = True
            delay = self.ctx.config.output_commit_delay_s
            backlog = self._backlog
            if delay and not self._final and not (backlog is not None and backlog.pressed):
                # More output may join this batch meanwhile: one commit for all of it.
                self._delayed = self.schedule_once(delay, _COMMIT)
                if backlog is not None:
                    backlog.delayed = True
            else:
                self.actor_ref.tell(_COMMIT)
        return None

    def _commit_at_once(self) -> None:
        """Commit as soon as the writer is free, whether or not a commit waits for its
        delay (a flush; the end of stats intervals)."""
        if self._final:
            return  # (stopping: `on_stop` or `on_unhandled_end` commits)
        if self._commit_queued:
            self._expedite()
        else:
            self._commit_queued = True
            self.actor_ref.tell(_COMMIT)

    def _expedite(self) -> None:
        """A commit waiting for its delay is wanted now (a flush, a settle)."""
        if self._delayed is not None and not self._final:
            self._delayed.cancel()
            self._undelay()
            self.actor_ref.tell(_COMMIT)

    def _undelay(self) -> None:
        self._delayed = None
        if self._backlog is not None:
            self._backlog.delayed = False

    # -- counts ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return self.ctx.clock.now_ms()

    def _load(self, block_id: str) -> LineCounts:
        """A block's counts, first used (`_read`), kept. A new block that may be stored
        already is counted from its creation's metadata until the next commit reads its
        row with the others' (`_resolve`)."""
        if (
            block_id in self._unchecked
            and block_id in self._creates
            and block_id not in self._stats
            and block_id not in self._later
        ):
            counts = self._counts[block_id] = LineCounts(self._creates[block_id])
            self._pending[block_id] = []
            return counts
        counts = self._counts[block_id] = self._read(block_id)
        return counts

    def _resolve(self, block_ids: list[str]) -> None:
        """Read the stored rows of these pending blocks (`_load`), a few hundred a
        statement: one stored already counts on from its stored counts, what it
        counted meanwhile counted again."""
        pending = [(bid, self._pending.pop(bid)) for bid in block_ids if bid in self._pending]
        if not pending:
            return
        store = self.ctx.store
        try:
            stored = store.find_objects(BLOCK, [block_id for block_id, _ in pending])
        except StorageError:  # a damaged row: each read alone, to say which
            stored = {}
            for block_id, _ in pending:
                try:
                    found = store.find_object(BLOCK, block_id)
                except StorageError as error:
                    log.warning("block %r: counting from zero, its metadata: %s", block_id, error)
                    continue
                if found is not None:
                    stored[block_id] = found
        for block_id, counted in pending:
            found = stored.get(block_id)
            counts = self._counts.get(block_id)
            if found is None or counts is None:
                continue  # a new block (its counts are right), or forgotten since
            fresh = LineCounts(found.meta)
            changed = fresh.again(counted)
            counts.take(fresh)
            if changed:
                self._changed(block_id, counts)

    def _read(self, block_id: str) -> LineCounts:
        """A block's counts: those waiting to be stored (its actor stopped meanwhile),
        a new block's, or those in its stored metadata."""
        counts = self._stats.get(block_id) or self._later.get(block_id)
        if counts is not None:
            return counts
        meta = self._creates.get(block_id)
        if meta is None or block_id in self._unchecked:
            try:
                found = self.ctx.store.find_object(BLOCK, block_id)
            except StorageError as error:  # (a damaged row: counted from zero)
                log.warning("block %r: counting from zero, its metadata: %s", block_id, error)
                found = None
            if found is not None:
                meta = found.meta
            elif meta is None:
                meta = {}
        return LineCounts(meta)

    def _queue_output(self, block_id: str, data: bytes | bytearray) -> None:
        """Output for the next commit, after the block's output queued before it."""
        pending = self._output.get(block_id)
        if pending is None:
            self._output[block_id] = bytearray(data)
        else:
            pending += data

    def _forget(self, block_id: str) -> None:
        """Another host serves the block now: its counts here are stale."""
        self._pending.pop(block_id, None)
        self._counts.pop(block_id, None)
        self._later.pop(block_id, None)
        self._stats.pop(block_id, None)  # (refused if stored now)

    def _hold(self, block_id: str, end_line: bool) -> None:
        """An operation of the block starts: its output from now on is held back."""
        self._held.setdefault(block_id, bytearray())
        self._resolve([block_id])
        if end_line:
            counts = self._counts.get(block_id) or self._load(block_id)
            if counts.end_partial_line(self._now_ms()):
                self._changed(block_id, counts, urgent=True)

    def _release(self, block_id: str, stopped: bool) -> None:
        """The operation ended, or the block's actor stopped: held output goes on."""
        held = self._held.pop(block_id, None)
        if held:
            self._queue_output(block_id, held)
        if stopped:
            self._resolve([block_id])
            counts = self._counts.pop(block_id, None)  # (loaded again if used again)
            if counts is not None and (
                counts.end_partial_line(self._now_ms()) or block_id in self._later
            ):
                self._changed(block_id, counts, urgent=True)

    # -- the stats schedule ------------------------------------------------------------

    def _changed(self, block_id: str, counts: LineCounts, urgent: bool = False) -> None:
        """The block's counts changed: stored with the next commit, or at the end of
        its interval (a snapshot is taken when they are stored)."""
        if urgent or not counts.sent:
            counts.sent = True
            self._stats[block_id] = counts
            self._later.pop(block_id, None)
        elif block_id in self._stats:
            pass  # stored with the next commit: as they are then
        elif block_id in self._interval_end:
            self._later[block_id] = counts  # its interval started with the stats before
        else:
            self._stats[block_id] = counts

    def _store_all_stats(self) -> None:
        if self._later:
            self._stats.update(self._later)
            self._later.clear()

    def _stats_due(self) -> None:
        """Intervals that ended: their blocks' waiting stats go with the next commit;
        blocks with none are free to store their next stats at once."""
        now = self.ctx.clock.monotonic()
        ends = self._ends
        while ends and ends[0][0] <= now:
            end, block_id = ends.popleft()
            if self._interval_end.get(block_id) != end:
                continue  # overtaken: stored again since, a later entry follows
            waiting = self._later.pop(block_id, None)
            if waiting is None:
                del self._interval_end[block_id]
            else:
                self._stats[block_id] = waiting  # (newer than any there: see _take_stats)

    def _stored_stats(self, block_ids: list[str]) -> None:
        end = self.ctx.clock.monotonic() + self.ctx.config.stats_flush_interval_s
        for block_id in block_ids:
            self._interval_end[block_id] = end
            self._ends.append((end, block_id))

    def _arm(self) -> None:
        if self._timer is None and self._ends and not self._final:
            delay = max(0.0, self._ends[0][0] - self.ctx.clock.monotonic())
            self._timer = self.schedule_once(delay, _STATS_DUE)

    def _commit_now(self) -> None:
        """Store everything handed over so far, now (`CommitNow`: answered once stored).

        Raises `StorageError` if it could not be stored; it is kept and retried.
        """
        self._commit()
        if self._creates or self._output or self._stats:
            raise StorageError("block output or stats could not be stored yet; retrying")

    def _failed(self, what: str, block_ids: list[str], error: BaseException) -> None:
        # Counted and logged: this data of these blocks could not be stored.
        self.failures += len(block_ids)
        self.ctx.metrics.incr("block_write_failures", len(block_ids))
        for block_id in block_ids:
            log.error("could not write %s of block %r: %s", what, block_id, error)

    def on_unhandled(self, message: Any) -> bool:
        """Output (and what goes with it) told while the writer stopped: kept, and
        stored by `on_unhandled_end`, never dropped."""
        if type(message) not in _LATE:
            return False
        self._commit_queued = True  # (no commit message: on_unhandled_end commits)
        self.on_receive(message)
        return True

    def on_unhandled_end(self) -> None:
        self._end_streams()
        self._commit()

    def on_stop(self) -> None:
        self._final = True
        self._undelay()  # (its timer is cancelled with the actor's)
        self._end_streams()
        self._commit()  # nothing handed over is left unwritten

    def _end_streams(self) -> None:
        # (The blocks' actors stopped first and said so; these are blocks written to
        # since, or whose actor is gone: their streams end here too.)
        self._resolve(list(self._pending))  # (together, not a statement each)
        for block_id in list(self._held):
            self._release(block_id, stopped=False)
        for block_id in list(self._counts):
            self._release(block_id, stopped=True)
        self._store_all_stats()

    def _commit(self) -> None:
        if self._pending:
            self._resolve(list(self._pending))
        creates, self._creates = self._creates, {}
        unchecked, self._unchecked = self._unchecked, set()
        output, self._output = self._output, {}
        stats, self._stats = self._stats, {}
        waiting, self._waiting = self._waiting, []
        if creates or output or stats:
            values = {block_id: snapshot_meta(c.snapshot()) for block_id, c in stats.items()}
            try:
                written = self.ctx.store.append_many(
                    BLOCK, OUTPUT, output, values=values, objects=creates, owned_by=self._owned_by
                )
            except Exception as error:  # the whole transaction: nothing of it was stored
                self._creates = {**creates, **self._creates}
                self._unchecked |= unchecked
                self._put_back(output, stats)
                self._waiting = waiting + self._waiting  # answered once it is stored
                self._retry(error)
                return
            self.commits += 1
            for block_id, failure in written.failed.items():
                self._failed("output" if block_id in output else "stats", [block_id], failure)
                if isinstance(failure, Conflict):
                    self._forget(block_id)  # another host serves it now
            if written.values_changed < len(values):
                self._unstored_stats(list(values))
            if self._backlog is not None:
                self._backlog.release(sum(len(data) for data in output.values()))
            if stats:
                self._stored_stats(list(stats))
        self._retries = 0
        self._arm()
        for sync in waiting:
            try:
                sync.notify.tell(sync.message)
            except Exception:  # a stopped block: nothing waits any more
                log.debug("block writer: sync target %r is gone", sync.notify)

    def _unstored_stats(self, block_ids: list[str]) -> None:
        """Some stats changed no row: their block is gone, or its row is damaged."""
        for block_id in block_ids:
            try:
                found = self.ctx.store.find_object(BLOCK, block_id)
            except StorageError as error:  # a hand-edited row: it was skipped
                self._failed("stats", [block_id], error)
                continue
            if found is None:
                self._failed("stats", [block_id], NotFound("the block no longer exists"))

    def _put_back(self, output: dict[str, bytearray], stats: dict[str, LineCounts]) -> None:
        for block_id, data in output.items():
            newer = self._output.get(block_id)
            self._output[block_id] = data if newer is None else data + newer
        for block_id, counts in stats.items():
            self._stats.setdefault(block_id, counts)
            self._later.pop(block_id, None)  # (stored with them)

    def _retry(self, error: BaseException) -> None:
        """A batch's transaction failed: keep its data and try again later."""
        if self._final:
            # Stopping: no later. What could not be stored is counted and logged.
            self._failed("output", list(self._output), error)
            self._failed("stats", list(self._stats), error)
            self._failed("creation", list(self._creates), error)
            if self._backlog is not None:
                self._backlog.release(sum(len(data) for data in self._output.values()))
            self._output, self._stats, self._creates = {}, {}, {}
            self._unchecked = set()
            return
        delay = min(_RETRY_FIRST_S * 2**self._retries, _RETRY_MAX_S)
        self._retries += 1
        self.ctx.metrics.incr("block_write_retries")
        log.warning(
            "block writer: a batch could not be stored (%s); kept, retrying in %g s",
            error,
            delay,
        )
        self._commit_queued = True
        self.schedule_once(delay, _COMMIT)
