"""`Transcript`: the handle on one open conversation log; every call goes to its actor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from greenroom.errors import InvalidInput, InvalidTransition, Stopped
from greenroom.pricing import CostBreakdown
from greenroom.transcripts.records import (
    TURN_MESSAGES,
    AssistantMessage,
    CompactionResult,
    Message,
    RecoveryReport,
    ToolResult,
    TurnResult,
    Usage,
    UserMessage,
)

if TYPE_CHECKING:
    from greenroom.actors.base import GreenroomActorRef

__all__ = ["Transcript"]


class Transcript:
    """A handle on one open transcript; every call is answered by the transcript's actor.

    Get one from `rt.transcripts.create`, `rt.transcripts.resume` or `rt.transcripts.fork`.
    Calls wait for the actor's answer; from inside an actor's handler (where the wait
    would block a shared dispatcher thread) they raise `InvalidTransition`.
    After `close()` (or the runtime's), every call raises `Stopped`.
    """

    __slots__ = ("_ref", "model", "path", "recovery", "session_id")

    def __init__(
        self,
        ref: GreenroomActorRef,
        session_id: str,
        path: str,
        recovery: RecoveryReport,
        model: str,
    ) -> None:
        self._ref = ref
        self.session_id = session_id
        """The session's random id (also the file's name, without `.jsonl`)."""
        self.path = path
        """The absolute path of the JSONL file."""
        self.recovery = recovery
        """The `RecoveryReport` of opening the file (clean for a new transcript)."""
        self.model = model
        """The `provider:model` the transcript was created with (for `cost()`)."""

    def _refuse_blocking_call(self, what: str) -> None:
        """`InvalidTransition` where waiting for this transcript's actor would block: in
        this transcript's own summarizer (the actor waits for it), or in any actor's
        handler (it would hold a shared dispatcher thread while it waits)."""
        from greenroom.actors.base import current_actor
        from greenroom.actors.transcript import summarizing

        if getattr(summarizing, "session", None) == self.session_id:
            raise InvalidTransition(
                f"Transcript.{what} was called from the transcript's own summarizer, which "
                "it waits for: the summarizer gets the messages to summarise as its "
                "argument; call the transcript once the compaction returned"
            )
        actor = current_actor()
        if actor is not None:
            raise InvalidTransition(
                f"Transcript.{what} of {self.session_id!r} was called from a handler of "
                f"actor {actor.name}; it would block a shared dispatcher thread while it "
                "waits. Call it from the host's own thread (or a run_blocking job)."
            )

    def _ask(self, what: str, message: Any) -> Any:
        from pykka import ActorDeadError

        self._refuse_blocking_call(what)
        try:
            return self._ref.ask(message)
        except ActorDeadError:
            raise Stopped(
                f"transcript {self.session_id!r} is closed; reopen it with "
                f"rt.transcripts.resume({self.path!r})"
            ) from None

    def on_turn_end(
        self,
        new_messages: Sequence[UserMessage | AssistantMessage | ToolResult],
        usage: Usage | None = None,
    ) -> TurnResult:
        """Append the turn's messages and a leaf; compact if the context crossed the
        threshold.

        `usage` is the turn's total billed usage; `None` means the sum of the assistant
        messages' usage. Raises `InvalidInput` for a bad message (nothing written),
        `StorageError` when the turn could not be written (nothing recorded, in memory
        or on disk: the turn may be sent again), and `CompactionError` when the
        compaction this turn triggered failed, whether its summarizer raised or returned
        no usable text, or the compaction entry could not be written (the `StorageError`
        is then its `__cause__`): the turn itself is saved, in the file and in memory
        (do not send it again), its `TurnResult` is the error's `turn` attribute, and
        the transcript stays uncompacted.
        """
        from greenroom.actors.transcript import TurnEnd

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
        if usage is not None and not isinstance(usage, Usage):
            raise InvalidInput(f"usage must be a Usage or None, got {usage!r}")
        return self._ask("on_turn_end()", TurnEnd(messages, usage))

    def compact(self, reason: str = "manual") -> CompactionResult | None:
        """Compact now, whatever the threshold; `None` when there is nothing to summarise
        (the kept part would be the whole context). `CompactionError` if the summarizer
        failed (nothing changed)."""
        from greenroom.actors.transcript import Compact

        if not isinstance(reason, str) or not reason:
            raise InvalidInput(f"reason must be a non-empty str, got {reason!r}")
        return self._ask("compact()", Compact(reason))

    def append_leaf(self, entry_id: str) -> None:
        """Move the active branch to end at `entry_id`, an earlier message or compaction
        entry (branching); the next turn continues from there. `NotFound` for an id
        that is not a message or compaction entry of this transcript."""
        from greenroom.actors.transcript import AppendLeaf

        if not isinstance(entry_id, str) or not entry_id:
            raise InvalidInput(f"entry_id must be a non-empty str, got {entry_id!r}")
        self._ask("append_leaf()", AppendLeaf(entry_id))

    def context(self) -> list[Message]:
        """The agent buffer: `[summary?, ...kept, ...newer]` on the active branch."""
        from greenroom.actors.transcript import GET_CONTEXT

        return self._ask("context()", GET_CONTEXT)

    def context_tokens(self) -> int:
        """The estimated size of the current context (what the threshold is checked on)."""
        from greenroom.actors.transcript import GET_CONTEXT_TOKENS

        return self._ask("context_tokens()", GET_CONTEXT_TOKENS)

    def usage(self) -> Usage:
        """Cumulative usage over the whole file, every branch included."""
        from greenroom.actors.transcript import GET_USAGE

        return self._ask("usage()", GET_USAGE)

    def cost(self) -> CostBreakdown | None:
        """What `usage()` cost at the model's pricing; `None` for an unknown model."""
        from greenroom.actors.transcript import GET_COST

        return self._ask("cost()", GET_COST)

    def next_entry_id(self) -> str:
        """The id the next entry written will get (ids continue after a resume)."""
        from greenroom.actors.transcript import GET_NEXT_ID

        return self._ask("next_entry_id()", GET_NEXT_ID)

    def leaf_id(self) -> str | None:
        """The entry the active branch ends at (`None` while the transcript is empty)."""
        from greenroom.actors.transcript import GET_TIP

        return self._ask("leaf_id()", GET_TIP)

    @property
    def closed(self) -> bool:
        """Whether the transcript's actor has stopped (closed, or the runtime closed)."""
        return not self._ref.is_alive()

    def close(self) -> None:
        """Flush (fsync unless durability is `"none"`), release the file, stop the actor.

        Waits for a compaction under way. Idempotent. `StorageError` when the last
        fsync failed (counted in `transcript_write_failures`): the file is released and
        the actor stopped anyway. `InvalidTransition` from the transcript's own
        summarizer or an actor's handler, like every call.
        """
        from pykka import ActorDeadError

        from greenroom.actors.transcript import CLOSE

        self._refuse_blocking_call("close()")
        try:
            self._ref.ask(CLOSE)
        except ActorDeadError:
            return
        finally:
            self._ref.stop(block=True)  # even when the last fsync failed (raised here)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Transcript {self.session_id!r} {state} {self.path!r}>"
