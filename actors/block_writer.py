"""`BlockWriter`: the one actor that writes block output and stats, in batches.

Blocks hand it their output bytes and stats updates instead of writing themselves.
It gathers what arrives and writes it all in one store transaction (one fsync), so a
host with thousands of active blocks costs a few commits a second, not thousands.
Batching needs no timer: the first write to arrive queues a commit message behind it,
everything that arrives before that message is handled joins the batch (if more mail
is still waiting then, the commit moves behind it, a few times at most), and whatever
arrives during a commit joins the next one.
"""

from __future__ import annotations

import logging
from typing import Any

from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.blocks.backlog import OutputBacklog
from greenroom.blocks.messages import CommitDue, CommitNow, WhenWritten, WriteOutput, WriteStats
from greenroom.errors import NotFound, StorageError
from greenroom.store import AppendFile

__all__ = ["BlockWriter"]

log = logging.getLogger("greenroom.blocks")

BLOCK = "block"
OUTPUT = "output"
_COMMIT = CommitDue()
_MAX_DEFERRALS = 4
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0


class BlockWriter(GreenroomActor):
    """Writes blocks' output and stats for the whole runtime, one transaction a batch."""

    kind = "block_writer"
    stop_order = 10  # after the blocks, whose on_stop hands it their last stats
    turn_throughput = 1024  # it serves every block: give it longer turns

    def __init__(self, ctx: ActorContext, backlog: OutputBacklog | None = None) -> None:
        super().__init__(ctx)
        self._backlog = backlog  # released as output is stored (or dropped, counted)
        self._output: dict[str, bytearray] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        self._waiting: list[WhenWritten] = []
        self._commit_queued = False
        self._deferrals = 0
        self.commits = 0
        self.failures = 0
        self._retries = 0
        self._final = False

    def on_receive(self, message: Any) -> Any:
        cls = type(message)
        if cls is WriteOutput:
            pending = self._output.get(message.block_id)
            if pending is None:
                self._output[message.block_id] = bytearray(message.data)
            else:
                pending += message.data
        elif cls is WriteStats:
            # Each update is a snapshot of the same keys: the last one wins.
            self._stats.setdefault(message.block_id, {}).update(message.update)
        elif cls is WhenWritten:
            self._waiting.append(message)
        elif cls is CommitNow:
            self._commit_now()
            return None
        elif cls is CommitDue:
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
            self.actor_ref.tell(_COMMIT)
        return None

    def _commit_now(self) -> None:
        """Store everything handed over so far, now (`CommitNow`: answered once stored).

        Raises `StorageError` if it could not be stored; it is kept and retried.
        """
        self._commit()
        if self._output or self._stats:
            raise StorageError("block output or stats could not be stored yet; retrying")

    def _failed(self, what: str, block_ids: list[str], error: BaseException) -> None:
        # Counted and logged: this data of these blocks could not be stored.
        self.failures += len(block_ids)
        self.ctx.metrics.incr("block_write_failures", len(block_ids))
        for block_id in block_ids:
            log.error("could not write %s of block %r: %s", what, block_id, error)

    def on_stop(self) -> None:
        self._final = True
        self._commit()  # nothing handed over is left unwritten

    def _commit(self) -> None:
        output, self._output = self._output, {}
        stats, self._stats = self._stats, {}
        waiting, self._waiting = self._waiting, []
        store = self.ctx.store
        failed: BaseException | None = None
        if output:
            writes = [
                AppendFile(BLOCK, block_id, OUTPUT, bytes(data), create=True)
                for block_id, data in output.items()
            ]
            try:
                results: list[Any] = store.write_batch(writes)
            except Exception as error:
                failed = error  # the whole transaction: nothing of it was stored
                self._put_back_output(output)
            else:
                self.commits += 1
                for write, result in zip(writes, results, strict=True):
                    if isinstance(result, BaseException):
                        self._failed("output", [write.object_id], result)
                if self._backlog is not None:
                    self._backlog.release(sum(len(data) for data in output.values()))
        if stats:
            # Stats are plain keys: one statement for them all (see set_meta_values).
            try:
                changed = store.set_meta_values(BLOCK, stats)
            except Exception as error:
                failed = failed or error
                for block_id, update in stats.items():
                    # Older than anything that arrived since: newer values win.
                    self._stats[block_id] = {**update, **self._stats.get(block_id, {})}
            else:
                self.commits += 1
                if changed < len(stats):
                    self._unstored_stats(list(stats))
        if failed is not None:
            self._waiting = waiting + self._waiting  # answered once it is stored
            self._retry(failed)
            return
        self._retries = 0
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

    def _put_back_output(self, output: dict[str, bytearray]) -> None:
        for block_id, data in output.items():
            newer = self._output.get(block_id)
            self._output[block_id] = data if newer is None else data + newer

    def _retry(self, error: BaseException) -> None:
        """A batch's transaction failed: keep its data and try again later."""
        if self._final:
            # Stopping: no later. What could not be stored is counted and logged.
            self._failed("output", list(self._output), error)
            self._failed("stats", list(self._stats), error)
            if self._backlog is not None:
                self._backlog.release(sum(len(data) for data in self._output.values()))
            self._output, self._stats = {}, {}
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
