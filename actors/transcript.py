"""`TranscriptActor`: one per open transcript; owns its log file, its tree and its usage.

Every call of the `Transcript` handle is an ask answered here, one at a time. A turn's
entries are written with one `write` and (with durability `"turn"`) one fsync inside
the handler: that is the turn's own I/O, a few milliseconds at most, and it keeps the
answer ordered after the write. The summarizer, which may call an LLM, runs on the
blocking pool instead; while it runs the actor holds every further call back (queued,
answered in order afterwards), so nothing can change the context the cut was chosen on.

Every write goes to the file first; memory changes only once the write (and its fsync)
succeeded. A failed write is cut back out of the file (`LogFile`), so file and memory
agree either way. Resuming a file (parsing every entry: about 1.3 s for 100,000) happens
in the facade, on the caller's thread, before this actor starts. Moving the branch
(`append_leaf`) rebuilds the context by walking the new branch: linear in its length,
about 12 ms for a 20,000-entry branch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from typing import Any

import attrs

from greenroom.actors.base import DEFERRED, ActorContext, GreenroomActor, Reply
from greenroom.errors import CompactionError, InvalidTransition, NotFound, Stopped, StorageError
from greenroom.pricing import calculate_cost, lookup_pricing
from greenroom.transcripts.compaction import choose_cut, context_tokens, default_summarizer
from greenroom.transcripts.logformat import (
    LogFile,
    Node,
    TranscriptState,
    compaction_entry,
    encode,
    estimate_tokens,
    iso_utc,
    leaf_entry,
    message_entry,
)
from greenroom.transcripts.records import (
    ZERO_USAGE,
    AssistantMessage,
    CompactionConfig,
    CompactionResult,
    CompactionSummary,
    Message,
    TurnResult,
    Usage,
)

__all__ = ["AppendLeaf", "Compact", "TranscriptActor", "TurnEnd"]

log = logging.getLogger("greenroom.transcripts")


@attrs.frozen
class TurnEnd:
    """Ask: append a turn's messages (and a leaf), then compact if over the threshold."""

    messages: tuple[Any, ...]
    usage: Usage | None


@attrs.frozen
class Compact:
    """Ask: compact now."""

    reason: str


@attrs.frozen
class AppendLeaf:
    """Ask: move the active branch to end at `entry_id`."""

    entry_id: str


@attrs.frozen
class _Get:
    what: str


GET_CONTEXT = _Get("context")
GET_CONTEXT_TOKENS = _Get("context_tokens")
GET_USAGE = _Get("usage")
GET_COST = _Get("cost")
GET_NEXT_ID = _Get("next_id")
GET_TIP = _Get("tip")
CLOSE = _Get("close")


@attrs.frozen
class _Plan:
    """A compaction on its way: where the cut is and what it saw."""

    reason: str
    cut: int
    tokens_before: int
    summarised: tuple[Message, ...]


summarizing = threading.local()
"""`summarizing.session` names the transcript whose summarizer runs on this thread: that
transcript holds its calls back until the summary is in, so the handle refuses them."""


def _summarise(session_id: str, summarizer: Any, messages: list[Message]) -> str:
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
        self._busy = False
        self._current: Reply | None = None  # the ask a compaction under way answers
        self._queued: deque[tuple[Any, Reply]] = deque()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    def on_stop(self) -> None:
        stopped = Stopped(f"transcript {self.ctx.actor_id!r} stopped before this call finished")
        if self._current is not None:
            self._current.fail(stopped)
            self._current = None
        for _message, reply in self._queued:
            reply.fail(stopped)
        self._queued.clear()
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
        if self._busy:
            self._queued.append((message, self.reply_later()))
            return DEFERRED
        return self._handle(message, None)

    def _handle(self, message: Any, reply: Reply | None) -> Any:
        cls = type(message)
        if self._closed:
            if message is CLOSE:
                return None
            raise Stopped(f"transcript {self.ctx.actor_id!r} is closed")
        if cls is TurnEnd:
            return self._turn(message, reply)
        if cls is Compact:
            return self._start_compaction(message.reason, reply, None)
        if cls is AppendLeaf:
            return self._append_leaf(message.entry_id)
        if cls is _Get:
            return self._get(message.what)
        raise InvalidTransition(f"transcript actor got an unknown message {message!r}")

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
        if what == "close":
            self._close_file()
            return None
        raise InvalidTransition(f"unknown transcript query {what!r}")

    def _finish(self) -> None:
        """A compaction is over: answer the held-back calls, in order."""
        self._busy = False
        self._current = None
        while self._queued and not self._busy:
            message, reply = self._queued.popleft()
            try:
                result = self._handle(message, reply)
            except Exception as error:
                log.info("transcript %s: a queued call failed: %s", self.ctx.actor_id, error)
                reply.fail(error)
                continue
            if result is not DEFERRED:
                reply.set(result)

    # -- writing -----------------------------------------------------------------------

    def _write(self, lines: list[bytes]) -> None:
        before = self._file.fsyncs
        try:
            self._file.append(lines, self._durability)
        except Exception:
            self.ctx.metrics.incr("transcript_write_failures")
            raise
        finally:
            self._count_fsyncs(before)
        self.ctx.metrics.incr("transcript_entries_written", len(lines))

    def _count_fsyncs(self, before: int) -> None:
        if self._file.fsyncs != before:
            self.ctx.metrics.incr("transcript_fsyncs", self._file.fsyncs - before)

    def _now(self) -> str:
        return iso_utc(self.ctx.clock.now_ms())

    def _context_tokens(self) -> int:
        state = self._state
        return context_tokens(state.context, state.post_start, state.est_sum)

    # -- turns -------------------------------------------------------------------------

    def _turn(self, message: TurnEnd, reply: Reply | None) -> Any:
        state = self._state
        now = self._now()
        seq = state.next_seq
        parent = state.tip
        lines: list[bytes] = []
        nodes: list[Node] = []
        spent = [0, 0, 0, 0]
        for msg in message.messages:
            entry_id = str(seq)
            seq += 1
            lines.append(encode(message_entry(entry_id, parent, now, msg)))
            nodes.append(Node(entry_id, parent, msg, estimate_tokens(msg), now))
            if type(msg) is AssistantMessage and msg.usage is not ZERO_USAGE:
                usage = msg.usage
                spent[0] += usage.input_tokens
                spent[1] += usage.output_tokens
                spent[2] += usage.cache_read_tokens
                spent[3] += usage.cache_write_tokens
            parent = entry_id
        leaf_id = str(seq)
        seq += 1
        lines.append(encode(leaf_entry(leaf_id, parent, now, parent, message.usage)))
        self._write(lines)  # raises before anything below changes
        state.next_seq = seq
        state.add_messages(nodes, Usage(*spent) if message.usage is None else message.usage)
        self.ctx.metrics.incr("transcript_turns")
        size = self._context_tokens()
        result = TurnResult(tuple(node.id for node in nodes), None, size)
        if self._compaction.enabled and size > self._threshold:
            return self._start_compaction("threshold", reply, result)
        return result

    def _append_leaf(self, entry_id: str) -> None:
        state = self._state
        if entry_id not in state.nodes:
            raise NotFound(
                f"transcript {self.ctx.actor_id!r} has no message or compaction entry "
                f"{entry_id!r} to move its branch to"
            )
        line = encode(leaf_entry(str(state.next_seq), state.tip, self._now(), entry_id))
        self._write([line])
        state.next_seq += 1
        state.move_tip(entry_id)
        for note in state.notes:
            log.warning("transcript %s: %s", self.ctx.actor_id, note)
        state.notes.clear()
        self.ctx.metrics.incr("transcript_branch_moves")

    # -- compaction --------------------------------------------------------------------

    def _start_compaction(self, reason: str, reply: Reply | None, turn: TurnResult | None) -> Any:
        state = self._state
        context = state.context
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
            return turn
        plan = _Plan(
            reason,
            cut,
            self._context_tokens(),
            tuple(item.message for item in context[:cut]),
        )
        if reply is None:
            reply = self.reply_later()
        summarizer = self._compaction.summarizer or default_summarizer
        self._busy = True
        self._current = reply
        self.run_blocking(
            _summarise,
            self.ctx.actor_id,
            summarizer,
            list(plan.summarised),
            then=lambda future: self._summarised(future, plan, reply, turn),
        )
        return DEFERRED

    def _summarised(self, future: Any, plan: _Plan, reply: Reply, turn: TurnResult | None) -> None:
        try:
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
                reply.set(
                    attrs.evolve(turn, compaction=result, context_tokens=self._context_tokens())
                )
            else:
                reply.set(result)
        finally:
            self._finish()

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
