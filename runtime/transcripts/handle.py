"""`Transcript`: the handle on one open conversation log; every call goes to its actor.

Each waiting call has a twin that only sends and hands back the reply's future:
`on_turn_end` and `on_turn_end_future`, `context` and `context_future`, and so on. The
sync call waits on that future; `greenroom.aio` awaits it without blocking its loop.

    future = t.on_turn_end_future([UserMessage("hi")])   # sent; nothing waits
    result = future.get()                                # what on_turn_end returns
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pykka import ActorDeadError

from greenroom.actors.base import GreenroomActorRef
from greenroom.actors.transcript import summarizing
from greenroom.checks import check_text
from greenroom.errors import InvalidInput, InvalidTransition, Stopped
from greenroom.futures import GreenroomFuture, in_handler
from greenroom.pricing import CostBreakdown
from greenroom.pykka_internals import ActorStop
from greenroom.transcripts.messages import (
    CLOSE,
    GET_CONTEXT,
    GET_CONTEXT_TOKENS,
    GET_COST,
    GET_NEXT_ID,
    GET_TIP,
    GET_USAGE,
    AppendLeaf,
    Compact,
    TurnEnd,
)
from greenroom.transcripts.records import (
    TURN_MESSAGES,
    CompactionResult,
    Message,
    RecoveryReport,
    TurnMessage,
    TurnResult,
    bounded_usage,
)
from greenroom.usage import Usage, as_usage

__all__ = ["Transcript"]


class Transcript:
    """A handle on one open transcript; every call is answered by the transcript's actor.

    Get one from `rt.transcripts.create`, `rt.transcripts.resume` or `rt.transcripts.fork`.
    Calls wait for the actor's answer; from inside one of the runtime's handlers (where
    the wait would hold a shared dispatcher thread) and from the transcript's own
    summarizer (which the actor waits for) they raise `InvalidTransition`. After `close()` (or
    the runtime's), every call raises `Stopped`.

    The `..._future` twins send the same message, check the same input (raising at
    once) and return a `GreenroomFuture` of what the call returns (or raises) without
    waiting: the seam `greenroom.aio` is built on. They may be called anywhere but from
    the transcript's own summarizer.
    """

    __slots__ = ("_ref", "_refuse_inside_actor", "model", "path", "recovery", "session_id")

    def __init__(
        self,
        ref: GreenroomActorRef,
        session_id: str,
        path: Path,
        recovery: RecoveryReport,
        model: str,
        refuse_inside_actor: Callable[[str], None],
    ) -> None:
        """Wrap the actor `ref`; `Transcripts` makes the handles. `refuse_inside_actor(what)`
        raises `InvalidTransition` where a waiting call must not wait (the kernel's guard)."""
        self._ref = ref
        self._refuse_inside_actor = refuse_inside_actor
        self.session_id = session_id
        """The session's random id (also the file's name, without `.jsonl`)."""
        self.path = path
        """The absolute path of the JSONL file, a `Path`."""
        self.recovery = recovery
        """The `RecoveryReport` of opening the file (clean for a new transcript)."""
        self.model = model
        """The `provider:model` the transcript was created with (for `cost()`)."""

    # -- sending -----------------------------------------------------------------------

    def _refuse_in_summarizer(self, what: str) -> None:
        """`InvalidTransition` in this transcript's own summarizer: the actor holds every
        call back until the summarizer returns, so waiting there would never end."""
        if getattr(summarizing, "session", None) == self.session_id:
            raise InvalidTransition(
                f"Transcript.{what} was called from the transcript's own summarizer, which "
                "it waits for: the summarizer gets the messages to summarise as its "
                "argument; call the transcript once the compaction returned"
            )

    def _refuse_blocking_call(self, what: str) -> None:
        """`InvalidTransition` where waiting for this transcript's actor would block: in
        its own summarizer, or in one of the runtime's handlers."""
        if (
            getattr(in_handler, "actor", None) is None
            and getattr(summarizing, "session", None) is None
        ):
            return  # the host's own thread, as nearly always: nothing to refuse
        self._refuse_in_summarizer(what)
        self._refuse_inside_actor(f"Transcript.{what} of {self.session_id!r}")

    def _send(self, message: Any, *, here: bool) -> GreenroomFuture[Any]:
        """Ask the actor; the answer's future, with `Stopped` for a closed transcript.

        `here` (a caller about to wait) lets an idle actor's turn run on this thread
        (`GreenroomActorRef.ask_here`); otherwise the message is only queued.
        """
        ref = self._ref
        sent = ref.ask_here(message) if here else ref.ask(message, block=False)
        answer: GreenroomFuture[Any] = GreenroomFuture()

        def relay(future: GreenroomFuture[Any]) -> None:
            try:
                value = future.get(timeout=0)  # resolved: never waits
            except ActorDeadError:
                stopped = self._stopped()
                answer.set_exception((Stopped, stopped, None))
            except BaseException:
                answer.set_exception()
            else:
                answer.set(value)

        sent.add_done_callback(relay)
        return answer

    def _stopped(self) -> Stopped:
        return Stopped(
            f"transcript {self.session_id!r} is closed; reopen it with "
            f"rt.transcripts.resume({str(self.path)!r})"
        )

    def _ask(self, what: str, message: Any) -> Any:
        self._refuse_blocking_call(what)
        # Waited for here: no relaying future (`_send`'s), one per call.
        try:
            return self._ref.ask_here(message).get()
        except ActorDeadError:
            raise self._stopped() from None

    # -- the calls, and their futures ----------------------------------------------------

    def on_turn_end(
        self, new_messages: Sequence[TurnMessage], usage: Usage | Mapping[str, int] | None = None
    ) -> TurnResult:
        """Append the turn's messages and a leaf; compact if the context crossed the
        threshold.

        `usage` is the turn's total billed usage (a `Usage` or a provider's usage
        mapping, see `greenroom.usage.as_usage`); `None` means the sum of the assistant
        messages' usage. Raises `InvalidInput` for a bad message (nothing written),
        `StorageError` when the turn could not be written (nothing recorded, in memory
        or on disk: the turn may be sent again), and `CompactionError` when the
        compaction this turn triggered failed, whether its summarizer raised or returned
        no usable text, or the compaction entry could not be written (the `StorageError`
        is then its `__cause__`): the turn itself is saved, in the file and in memory
        (do not send it again), its `TurnResult` is the error's `turn` attribute, and
        the transcript stays uncompacted.
        """
        message = _turn_end(new_messages, usage)
        result: TurnResult = self._ask("on_turn_end()", message)
        return result

    def on_turn_end_future(
        self, new_messages: Sequence[TurnMessage], usage: Usage | Mapping[str, int] | None = None
    ) -> GreenroomFuture[TurnResult]:
        """`on_turn_end`, sent: the future of its `TurnResult` (or its error). Bad input
        raises `InvalidInput` here, before anything is sent."""
        message = _turn_end(new_messages, usage)
        self._refuse_in_summarizer("on_turn_end_future()")
        return self._send(message, here=False)

    def compact(self, reason: str = "manual") -> CompactionResult | None:
        """Compact now, whatever the threshold; `None` when there is nothing to summarise
        (the kept part would be the whole context). `CompactionError` if the summarizer
        failed (nothing changed)."""
        message = Compact(check_text(reason, "reason", nonempty=True))
        result: CompactionResult | None = self._ask("compact()", message)
        return result

    def compact_future(self, reason: str = "manual") -> GreenroomFuture[CompactionResult | None]:
        """`compact`, sent: the future of its result."""
        message = Compact(check_text(reason, "reason", nonempty=True))
        self._refuse_in_summarizer("compact_future()")
        return self._send(message, here=False)

    def append_leaf(self, entry_id: str) -> None:
        """Move the active branch to end at `entry_id`, an earlier message or compaction
        entry (branching); the next turn continues from there. `NotFound` for an id
        that is not a message or compaction entry of this transcript."""
        self._ask("append_leaf()", AppendLeaf(check_text(entry_id, "entry_id", nonempty=True)))

    def append_leaf_future(self, entry_id: str) -> GreenroomFuture[None]:
        """`append_leaf`, sent: a future resolved (with `None`) once the branch moved."""
        message = AppendLeaf(check_text(entry_id, "entry_id", nonempty=True))
        self._refuse_in_summarizer("append_leaf_future()")
        return self._send(message, here=False)

    def context(self) -> list[Message]:
        """The agent buffer: `[summary?, ...kept, ...newer]` on the active branch."""
        result: list[Message] = self._ask("context()", GET_CONTEXT)
        return result

    def context_future(self) -> GreenroomFuture[list[Message]]:
        """`context`, sent: the future of the agent buffer."""
        self._refuse_in_summarizer("context_future()")
        return self._send(GET_CONTEXT, here=False)

    def context_tokens(self) -> int:
        """The estimated size of the current context (what the threshold is checked on)."""
        result: int = self._ask("context_tokens()", GET_CONTEXT_TOKENS)
        return result

    def context_tokens_future(self) -> GreenroomFuture[int]:
        """`context_tokens`, sent: the future of the estimate."""
        self._refuse_in_summarizer("context_tokens_future()")
        return self._send(GET_CONTEXT_TOKENS, here=False)

    def usage(self) -> Usage:
        """Cumulative usage over the whole file, every branch included."""
        result: Usage = self._ask("usage()", GET_USAGE)
        return result

    def usage_future(self) -> GreenroomFuture[Usage]:
        """`usage`, sent: the future of the cumulative `Usage`."""
        self._refuse_in_summarizer("usage_future()")
        return self._send(GET_USAGE, here=False)

    def cost(self) -> CostBreakdown | None:
        """What `usage()` cost at the model's pricing; `None` for an unknown model."""
        result: CostBreakdown | None = self._ask("cost()", GET_COST)
        return result

    def cost_future(self) -> GreenroomFuture[CostBreakdown | None]:
        """`cost`, sent: the future of the `CostBreakdown` (or `None`)."""
        self._refuse_in_summarizer("cost_future()")
        return self._send(GET_COST, here=False)

    def next_entry_id(self) -> str:
        """The id the next entry written will get (ids continue after a resume)."""
        result: str = self._ask("next_entry_id()", GET_NEXT_ID)
        return result

    def next_entry_id_future(self) -> GreenroomFuture[str]:
        """`next_entry_id`, sent: the future of the id."""
        self._refuse_in_summarizer("next_entry_id_future()")
        return self._send(GET_NEXT_ID, here=False)

    def leaf_id(self) -> str | None:
        """The entry the active branch ends at (`None` while the transcript is empty)."""
        result: str | None = self._ask("leaf_id()", GET_TIP)
        return result

    def leaf_id_future(self) -> GreenroomFuture[str | None]:
        """`leaf_id`, sent: the future of the id (or `None`)."""
        self._refuse_in_summarizer("leaf_id_future()")
        return self._send(GET_TIP, here=False)

    # -- closing -----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the transcript's actor has stopped (closed, or the runtime closed)."""
        return not self._ref.is_alive()

    def close(self) -> None:
        """Flush (fsync unless durability is `"none"`), release the file, stop the actor.

        Waits for a compaction under way. Idempotent. `StorageError` when the last
        fsync failed (counted in `transcript_write_failures`): the file is released and
        the actor stopped anyway. `InvalidTransition` from the transcript's own
        summarizer or the runtime's handlers, like every call.
        """
        self._refuse_blocking_call("close()")
        self._close(here=True).get()

    def close_future(self) -> GreenroomFuture[None]:
        """`close`, sent: a future resolved once the file is closed and the actor has
        stopped (so the file may be resumed again), or failed with the `StorageError`
        of a last fsync that failed (the actor stopped anyway)."""
        self._refuse_in_summarizer("close_future()")
        return self._close(here=False)

    def _close(self, *, here: bool) -> GreenroomFuture[None]:
        ref = self._ref
        closed: GreenroomFuture[None] = GreenroomFuture()

        def flushed(future: GreenroomFuture[Any]) -> None:
            failure: BaseException | None = None
            try:
                future.get(timeout=0)  # resolved: never waits
            except ActorDeadError:
                pass  # closed already: idempotent
            except BaseException as error:
                failure = error  # the last fsync failed: the actor stops all the same

            def stopped(_future: GreenroomFuture[Any]) -> None:
                if failure is None:
                    closed.set(None)
                else:
                    closed.set_exception((type(failure), failure, failure.__traceback__))

            # Answered once the actor has left the runtime's lookup (dead already: at once).
            ref.ask(ActorStop(), block=False).add_done_callback(stopped)

        (ref.ask_here(CLOSE) if here else ref.ask(CLOSE, block=False)).add_done_callback(flushed)
        return closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Transcript {self.session_id!r} {state} {str(self.path)!r}>"


def _turn_end(new_messages: Any, usage: Any) -> TurnEnd:
    """The `TurnEnd` for `on_turn_end`'s arguments; `InvalidInput` for bad ones."""
    if isinstance(new_messages, str | bytes) or not isinstance(new_messages, Sequence):
        raise InvalidInput(
            f"new_messages must be a list of UserMessage, AssistantMessage and "
            f"ToolResult, got {type(new_messages).__name__}"
        )
    messages = tuple(new_messages)
    if not messages:
        raise InvalidInput("a turn needs at least one message; nothing was written")
    for message in messages:
        if not isinstance(message, TURN_MESSAGES):
            raise InvalidInput(
                f"a turn holds UserMessage, AssistantMessage and ToolResult objects, "
                f"got {message!r} (summaries are written by compaction only)"
            )
    turn_usage = as_usage(usage, "usage")
    return TurnEnd(messages, None if turn_usage is None else bounded_usage(turn_usage, "usage"))
