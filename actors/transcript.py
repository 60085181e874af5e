"""`TranscriptActor`: one per open transcript; owns its log file, its tree and its usage.

Every call of the `Transcript` handle is an ask answered here, one at a time. A turn's
entries are written with one `write` and (with durability `"turn"`) one fsync inside
the handler: that is the turn's own I/O, a few milliseconds at most, and it keeps the
answer ordered after the write. The summarizer, which may call an LLM, runs on the
blocking pool instead; while it runs the actor holds every further call back (queued in a
`BusyQueue`, answered in order afterwards), so nothing can change the context the cut
was chosen on. The messages are in `greenroom.transcripts.messages`.

Every write goes to the file first; memory changes only once the write (and its fsync)
succeeded. A failed write is cut back out of the file (`LogFile`), so file and memory
agree either way. Resuming a file (parsing every entry: about 1.3 s for 100,000) happens
in `Transcripts.resume`, on the caller's thread (a worker thread for `greenroom.aio`),
before this actor starts. Moving the branch
(`append_leaf`) rebuilds the context by walking the new branch: linear in its length,
about 12 ms for a 20,000-entry branch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs

from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, Reply
from greenroom.actors.busy_queue import BusyQueue
from greenroom.errors import CompactionError, InvalidTransition, NotFound, Stopped, StorageError
from greenroom.futures import GreenroomFuture
from greenroom.pricing import calculate_cost, lookup_pricing
from greenroom.transcripts.compaction import choose_cut, context_tokens, default_summarizer
from greenroom.transcripts.logformat import (
    IsoStamps,
    LogFile,
    Node,
    TranscriptState,
    check_ids_left,
    compaction_entry,
    encode,
    encode_lines,
    estimate_tokens,
    leaf_entry,
    message_entry,
)
from greenroom.transcripts.messages import AppendLeaf, Close, Compact, Get, TurnEnd
from greenroom.transcripts.records import (
    AssistantMessage,
    CompactionConfig,
    CompactionResult,
    CompactionSummary,
    Message,
    TurnResult,
)
from greenroom.usage import ZERO_USAGE, unchecked_usage

__all__ = ["TranscriptActor", "summarizing"]

log = logging.getLogger("greenroom.transcripts")


@attrs.frozen
class _Plan:
    """A compaction on its way: where the cut is, what it saw, and the turn that
    triggered it (`None` for `compact()`)."""

    reason: str
    cut: int
    tokens_before: int
    summarised: tuple[Message, ...]
    turn: TurnResult | None


summarizing = threading.local()
"""`summarizing.session` names the transcript whose summarizer runs on this thread: that
transcript holds its calls back until the summary is in, so the handle refuses them."""


def _summarise(
    session_id: str, summarizer: Callable[[list[Message]], Any], messages: list[Message]
) -> str:
    """Run on the blocking pool: the host's summarizer, its failure made typed."""
    summarizing.session = session_id
    try:
        summary = summarizer(messages)
    except Exception as error:
        raise CompactionError(
            f"the summarizer raised {type(error).__name__}: {error}; the transcript was not "
            "compacted"
        ) from error
    finally:
        summarizing.session = None
    if not isinstance(summary, str) or not summary.strip():
        raise CompactionError(
            f"the summarizer must return a non-empty str, it returned {summary!r:.200}; the "
            "transcript was not compacted"
        )
    try:
        summary.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CompactionError(
            "the summarizer returned text that is not valid Unicode (a lone surrogate at "
            f"position {error.start}), which the log cannot hold; the transcript was not "
            "compacted"
        ) from None
    return summary


class TranscriptActor(GreenroomActor):
    """Serves one transcript; see the module docstring."""

    kind = "transcript"

    def __init__(
        self,
        ctx: ActorContext,
        file: LogFile,
        state: TranscriptState,
        *,
        model: str,
        compaction: CompactionConfig,
        durability: str,
    ) -> None:
        super().__init__(ctx)
        self._file = file
        self._state = state
        self._model = model
        self._compaction = compaction
        self._threshold = compaction.effective_threshold
        self._durability = durability
        # The compaction under way is the queue's current operation; every call that
        # arrives meanwhile waits behind it (a _Plan or a message: see _start).
        self._ops: BusyQueue[Any] = BusyQueue(self._start)
        self._draining = False
        self._more = False
        self._closed = False
        self._stamp = IsoStamps()

    # -- lifecycle ---------------------------------------------------------------------

    def on_stop(self) -> None:
        self._ops.fail_all(
            Stopped(f"transcript {self.ctx.actor_id!r} stopped before this call finished")
        )
        # A failed last fsync is counted and logged in _close_file; nobody waits for
        # this stop's answer to raise it to (the runtime is closing, or close() raised).
        with contextlib.suppress(StorageError):
            self._close_file()

    def _close_file(self) -> None:
        """fsync (unless durability is "none") and close the file; `StorageError`
        (counted as a write failure, logged) when that fails: the file is closed anyway."""
        if self._closed:
            return
        self._closed = True
        self._state = TranscriptState()  # a handle kept after close holds no tree
        before = self._file.fsyncs
        try:
            self._file.close(sync=self._durability != "none")
        except StorageError as error:
            self.ctx.metrics.incr("transcript_write_failures")
            log.error("transcript %s: %s", self.ctx.actor_id, error)
            raise
        finally:
            self._count_fsyncs(before)
            self.ctx.metrics.incr("transcripts_closed")

    # -- dispatch ----------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if self._ops.busy:
            self._ops.submit(message, self.reply_later())
            return DEFERRED
        outcome = self._handle(message)
        if type(outcome) is _Plan:
            self._ops.submit(outcome, self.reply_later())  # idle: it starts at once
            return DEFERRED
        return outcome

    def _handle(self, message: Any) -> Any:
        """Answer `message`, or return the `_Plan` of the compaction it needs."""
        cls = type(message)
        if self._closed:
            if cls is Close:
                return None
            raise Stopped(f"transcript {self.ctx.actor_id!r} is closed")
        if cls is TurnEnd:
            return self._turn(message)
        if cls is Compact:
            return self._plan(message.reason, None)
        if cls is AppendLeaf:
            return self._append_leaf(message.entry_id)
        if cls is Get:
            return self._get(message.what)
        if cls is Close:
            self._close_file()
            return None
        raise InvalidTransition(f"transcript actor got an unknown message {message!r}")

    def _start(self, item: Any, reply: Reply) -> None:
        """`BusyQueue`'s start: begin a compaction, or answer a call held back by one."""
        if type(item) is _Plan:
            self._summarise(item, reply)
            return
        try:
            outcome = self._handle(item)
        except Exception as error:
            log.info("transcript %s: a queued call failed: %s", self.ctx.actor_id, error)
            raise  # the queue fails its reply and starts the next one
        if type(outcome) is _Plan:
            self._summarise(outcome, reply)  # stays the operation under way
            return
        reply.set(outcome)
        self._next()

    def _next(self) -> None:
        """The operation under way ended: start the waiting ones, in order.

        `done()` starts the next one, whose `_start` comes back here when it answered at
        once: that call only marks `_more`, and this loop goes on, so a long queue is
        served without one stack frame per call.
        """
        if self._draining:
            self._more = True
            return
        self._draining = True
        try:
            self._more = True
            while self._more:
                self._more = False
                self._ops.done()
        finally:
            self._draining = False

    def _get(self, what: str) -> Any:
        state = self._state
        if what == "context":
            return state.messages()
        if what == "context_tokens":
            return self._context_tokens()
        if what == "usage":
            return state.usage
        if what == "cost":
            pricing = lookup_pricing(self._model, self.ctx.config.pricing)
            return None if pricing is None else calculate_cost(state.usage, pricing)
        if what == "next_id":
            return str(state.next_seq)
        if what == "tip":
            return state.tip
        raise InvalidTransition(f"unknown transcript query {what!r}")

    # -- writing -----------------------------------------------------------------------

    def _write(self, lines: list[bytes], entries: int | None = None, *, turns: int = 0) -> None:
        """Append `lines` (`entries` lines in all, if one of them holds several; `turns`
        counted with them)."""
        before = self._file.fsyncs
        try:
            self._file.append(lines, self._durability)
        except Exception:
            self.ctx.metrics.incr("transcript_write_failures")
            self._count_fsyncs(before)
            raise
        written = len(lines) if entries is None else entries
        fsyncs = self._file.fsyncs - before
        if turns and fsyncs:  # a turn's three counters under one lock
            self.ctx.metrics.incr_each(
                ("transcript_turns", turns),
                ("transcript_entries_written", written),
                ("transcript_fsyncs", fsyncs),
            )
            return
        if turns:
            self.ctx.metrics.incr_each(
                ("transcript_turns", turns), ("transcript_entries_written", written)
            )
        else:
            self.ctx.metrics.incr("transcript_entries_written", written)
        self._count_fsyncs(before)

    def _count_fsyncs(self, before: int) -> None:
        if self._file.fsyncs != before:
            self.ctx.metrics.incr("transcript_fsyncs", self._file.fsyncs - before)

    def _now(self) -> str:
        return self._stamp(self.ctx.clock.now_ms())

    def _context_tokens(self) -> int:
        state = self._state
        return context_tokens(state.context, state.post_start, state.est_sum)

    # -- turns -------------------------------------------------------------------------

    def _turn(self, message: TurnEnd) -> TurnResult | _Plan:
        state = self._state
        # The turn's messages and its leaf; refused before anything is written.
        check_ids_left(state.next_seq, len(message.messages) + 1, self._file.path)
        now = self._now()
        seq = state.next_seq
        parent = state.tip
        entries: list[dict[str, Any]] = []
        nodes: list[Node] = []
        spent = [0, 0, 0, 0]
        for msg in message.messages:
            entry_id = str(seq)
            seq += 1
            entries.append(message_entry(entry_id, parent, now, msg))
            nodes.append(Node(entry_id, parent, msg, estimate_tokens(msg), now))
            if type(msg) is AssistantMessage and msg.usage is not ZERO_USAGE:
                usage = msg.usage
                spent[0] += usage.input_tokens
                spent[1] += usage.output_tokens
                spent[2] += usage.cache_read_tokens
                spent[3] += usage.cache_write_tokens
            parent = entry_id
        last = nodes[-1].id  # the handle sends no empty turn
        leaf_id = str(seq)
        seq += 1
        entries.append(leaf_entry(leaf_id, last, now, last, message.usage))
        # The result is made before the write, so that after it (the fsync's wait) only
        # the state changes: the turn's time after the fsync is its caller's latency.
        turn_usage = unchecked_usage(*spent) if message.usage is None else message.usage
        size = self._size_with(nodes)
        result = TurnResult(tuple(node.id for node in nodes), None, size)
        # Memory changes before the write and is taken back if it fails: nobody sees
        # the state in between (one message at a time), and after the fsync's wait the
        # caches are cold, so what runs there is what the caller waits for.
        taken = state.add_messages(nodes, turn_usage)
        try:
            if self._durability == "entry":
                self._write([encode(entry) for entry in entries], turns=1)  # (a write per line)
            else:  # one write: the turn's lines encoded in one pass
                self._write([encode_lines(entries)], len(entries), turns=1)
        except BaseException:
            state.take_back(nodes, taken)
            raise
        state.next_seq = seq
        if self._compaction.enabled and size > self._threshold:
            return self._plan("threshold", result) or result
        return result

    def _size_with(self, nodes: list[Node]) -> int:
        """The context's estimated size once `nodes` join it (`_context_tokens` then)."""
        after = 0
        for node in reversed(nodes):
            found = node.message
            if type(found) is AssistantMessage and found.usage.total_tokens:
                return found.usage.total_tokens + after
            after += node.tokens
        return self._context_tokens() + after

    def _append_leaf(self, entry_id: str) -> None:
        state = self._state
        if entry_id not in state.nodes:
            raise NotFound(
                f"transcript {self.ctx.actor_id!r} has no message or compaction entry "
                f"{entry_id!r} to move its branch to"
            )
        check_ids_left(state.next_seq, 1, self._file.path)
        line = encode(leaf_entry(str(state.next_seq), state.tip, self._now(), entry_id))
        self._write([line])
        state.next_seq += 1
        state.move_tip(entry_id)
        for note in state.notes:
            log.warning("transcript %s: %s", self.ctx.actor_id, note)
        state.notes.clear()
        self.ctx.metrics.incr("transcript_branch_moves")

    # -- compaction --------------------------------------------------------------------

    def _plan(self, reason: str, turn: TurnResult | None) -> _Plan | None:
        """Where to cut the context now; `None` (logged) when nothing can be summarised."""
        context = self._state.context
        cut = choose_cut(
            [item.message for item in context],
            [item.tokens for item in context],
            self._compaction.keep_recent_tokens,
        )
        if cut is None:
            log.info(
                "transcript %s: %s compaction found nothing to summarise (%d messages)",
                self.ctx.actor_id,
                reason,
                len(context),
            )
            return None
        summarised = tuple(item.message for item in context[:cut])
        return _Plan(reason, cut, self._context_tokens(), summarised, turn)

    def _summarise(self, plan: _Plan, reply: Reply) -> None:
        """Run the summarizer on the blocking pool; `_summarised` ends the compaction."""
        summarizer = self._compaction.summarizer or default_summarizer
        self.run_blocking(
            _summarise,
            self.ctx.actor_id,
            summarizer,
            list(plan.summarised),
            then=lambda future: self._summarised(future, plan, reply),
        )

    def _summarised(self, future: GreenroomFuture[str], plan: _Plan, reply: Reply) -> None:
        try:
            self._answer_compaction(future, plan, reply)
        finally:
            self._next()

    def _answer_compaction(self, future: GreenroomFuture[str], plan: _Plan, reply: Reply) -> None:
        turn = plan.turn
        try:
            summary = future.get()
        except Exception as raised:
            error = raised
            if not isinstance(error, CompactionError):
                error = CompactionError(
                    f"compaction failed: {type(raised).__name__}: {raised}; the "
                    "transcript was not compacted"
                )
                error.__cause__ = raised
            self._compaction_failed(error, reply, turn)
            return
        try:
            result = self._write_compaction(plan, summary)
        except Exception as raised:
            if turn is None:  # compact(): its own write failed, nothing changed
                self.ctx.metrics.incr("transcript_compaction_failures")
                log.warning("transcript %s: compaction: %s", self.ctx.actor_id, raised)
                reply.fail(raised)
                return
            # The turn is saved already: a bare StorageError ("nothing kept") would
            # make the host write the turn again.
            error = CompactionError(
                f"the compaction entry could not be written ({type(raised).__name__}: "
                f"{raised}); the transcript was not compacted"
            )
            error.__cause__ = raised
            self._compaction_failed(error, reply, turn)
            return
        if turn is not None:
            reply.set(attrs.evolve(turn, compaction=result, context_tokens=self._context_tokens()))
        else:
            reply.set(result)

    def _compaction_failed(
        self, error: CompactionError, reply: Reply, turn: TurnResult | None
    ) -> None:
        """Count, log and answer a failed compaction; with the turn that triggered it
        (saved already) as the error's `turn`."""
        self.ctx.metrics.incr("transcript_compaction_failures")
        if turn is not None:
            error.turn = turn  # type: ignore[attr-defined]
            error.add_note(
                f"the turn itself was saved (entries {', '.join(turn.entry_ids)}); only the "
                "compaction failed: do not write the turn again"
            )
        log.warning("transcript %s: %s", self.ctx.actor_id, error)
        reply.fail(error)

    def _write_compaction(self, plan: _Plan, text: str) -> CompactionResult:
        state = self._state
        context = state.context
        kept = context[plan.cut :]
        first_kept = kept[0].id
        summary_tokens = len(text.encode("utf-8")) // 4
        tokens_after = summary_tokens + sum(item.tokens for item in kept)
        summary = CompactionSummary(text, first_kept, plan.tokens_before, tokens_after)
        now = self._now()
        check_ids_left(state.next_seq, 2, self._file.path)  # the entry and its leaf
        entry_id = str(state.next_seq)
        leaf_id = str(state.next_seq + 1)
        lines = [
            encode(compaction_entry(entry_id, state.tip, now, summary)),
            encode(leaf_entry(leaf_id, entry_id, now, entry_id)),
        ]
        self._write(lines)  # raises before anything below changes
        state.next_seq += 2
        state.add_compaction(Node(entry_id, state.tip, summary, summary_tokens, now), plan.cut)
        self.ctx.metrics.incr("transcript_compactions")
        log.info(
            "transcript %s: compacted (%s) %d messages into a summary; %d -> %d tokens",
            self.ctx.actor_id,
            plan.reason,
            plan.cut,
            plan.tokens_before,
            tokens_after,
        )
        if tokens_after > self._threshold:
            log.warning(
                "transcript %s: after compaction the context is still %d tokens, above the "
                "threshold of %d: every turn will compact again; lower keep_recent_tokens, "
                "shorten the summaries or raise threshold_tokens",
                self.ctx.actor_id,
                tokens_after,
                self._threshold,
            )
        return CompactionResult(plan.reason, entry_id, summary, tuple(state.messages()))
