"""`AsyncTranscripts`: `rt.transcripts` for asyncio and trio hosts, never blocking the loop.

    transcripts = AsyncTranscripts(rt.transcripts)        # art.transcripts in AsyncRuntime
    t = await transcripts.create(model="anthropic:claude-sonnet-4-5")
    result = await t.on_turn_end([UserMessage("hi"), AssistantMessage("hello")])
    print(await t.context(), await t.usage())
    await t.aclose()
    again = await transcripts.resume(t.path)

The same names, arguments, results and errors as `greenroom.transcripts.namespace.
Transcripts` and `greenroom.transcripts.handle.Transcript`, built on their public seam:

* `create`, `resume` and `fork` create, or read back and repair, a file (up to
  100,000 entries and more): they run the sync calls on a worker thread
  (`bridge.off_loop`);
* every `AsyncTranscript` call sends its message with the handle's `..._future` twin
  (which checks the input and raises at once, before anything is sent) and awaits the
  future through `bridge.wait`. The turn's write and fsync run in the transcript's
  actor, and a compaction's summarizer on the blocking pool: none of it on the loop's
  thread, which goes on meanwhile.

Cancelling the awaiting task stops the wait, not the work: a turn sent is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio

from greenroom.aio.bridge import off_loop, wait
from greenroom.errors import InvalidInput
from greenroom.pricing import CostBreakdown
from greenroom.transcripts.handle import Transcript
from greenroom.transcripts.namespace import Transcripts
from greenroom.transcripts.records import (
    CompactionConfig,
    CompactionResult,
    Message,
    RecoveryReport,
    TurnMessage,
    TurnResult,
)
from greenroom.usage import Usage

__all__ = ["AsyncTranscript", "AsyncTranscripts"]

_DEFAULT_COMPACTION = CompactionConfig()


class AsyncTranscripts:
    """`rt.transcripts`, awaited: create, resume and fork give an `AsyncTranscript`."""

    __slots__ = ("_transcripts",)

    def __init__(self, transcripts: Transcripts) -> None:
        """Wrap a runtime's `Transcripts` (`rt.transcripts`); `InvalidInput` otherwise."""
        if not isinstance(transcripts, Transcripts):
            raise InvalidInput(
                f"AsyncTranscripts wraps a Transcripts (rt.transcripts), got "
                f"{type(transcripts).__name__}"
            )
        self._transcripts = transcripts

    @property
    def transcripts(self) -> Transcripts:
        """The wrapped sync namespace."""
        return self._transcripts

    @property
    def directory(self) -> Path:
        """`Transcripts.directory`: the folder new transcripts go to (a `Path`)."""
        return self._transcripts.directory

    async def create(
        self,
        *,
        directory: str | os.PathLike[str] | None = None,
        cwd: str = ".",
        model: str = "",
        compaction: CompactionConfig = _DEFAULT_COMPACTION,
        durability: str | None = None,
    ) -> AsyncTranscript:
        """`Transcripts.create` on a worker thread: a new transcript file, its handle."""
        transcript = await off_loop(
            self._transcripts.create,
            directory=directory,
            cwd=cwd,
            model=model,
            compaction=compaction,
            durability=durability,
        )
        return AsyncTranscript(transcript)

    async def resume(
        self,
        path: str | os.PathLike[str],
        *,
        model: str | None = None,
        compaction: CompactionConfig | None = None,
        durability: str | None = None,
    ) -> AsyncTranscript:
        """`Transcripts.resume` on a worker thread (reading and repairing the file)."""
        transcript = await off_loop(
            self._transcripts.resume,
            path,
            model=model,
            compaction=compaction,
            durability=durability,
        )
        return AsyncTranscript(transcript)

    async def fork(
        self,
        path: str | os.PathLike[str],
        *,
        directory: str | os.PathLike[str] | None = None,
        model: str | None = None,
        compaction: CompactionConfig | None = None,
        durability: str | None = None,
    ) -> AsyncTranscript:
        """`Transcripts.fork` on a worker thread: a new file with only the active
        branch of `path`."""
        transcript = await off_loop(
            self._transcripts.fork,
            path,
            directory=directory,
            model=model,
            compaction=compaction,
            durability=durability,
        )
        return AsyncTranscript(transcript)

    def __repr__(self) -> str:
        return f"<AsyncTranscripts of {self._transcripts!r}>"


class AsyncTranscript:
    """A `Transcript`, awaited: every call is a coroutine with the sync call's semantics.

    `async with` closes it at the end of the block (`aclose`).
    """

    __slots__ = ("_transcript",)

    def __init__(self, transcript: Transcript) -> None:
        """Wrap an open `Transcript` handle."""
        self._transcript = transcript

    @property
    def transcript(self) -> Transcript:
        """The wrapped sync handle."""
        return self._transcript

    @property
    def session_id(self) -> str:
        """The session's random id (also the file's name, without `.jsonl`)."""
        return self._transcript.session_id

    @property
    def path(self) -> Path:
        """The absolute path of the JSONL file."""
        return self._transcript.path

    @property
    def model(self) -> str:
        """The `provider:model` the transcript was opened with (for `cost()`)."""
        return self._transcript.model

    @property
    def recovery(self) -> RecoveryReport:
        """The `RecoveryReport` of opening the file (clean for a new transcript)."""
        return self._transcript.recovery

    @property
    def closed(self) -> bool:
        """Whether the transcript's actor has stopped (closed, or the runtime closed)."""
        return self._transcript.closed

    async def on_turn_end(
        self, new_messages: Sequence[TurnMessage], usage: Usage | Mapping[str, int] | None = None
    ) -> TurnResult:
        """`Transcript.on_turn_end`, awaited: append the turn (written and fsynced by the
        transcript's actor), compacting if it crossed the threshold."""
        return await wait(self._transcript.on_turn_end_future(new_messages, usage))

    async def compact(self, reason: str = "manual") -> CompactionResult | None:
        """`Transcript.compact`, awaited: compact now (the summarizer runs on the
        blocking pool)."""
        return await wait(self._transcript.compact_future(reason))

    async def append_leaf(self, entry_id: str) -> None:
        """`Transcript.append_leaf`, awaited: move the active branch to `entry_id`."""
        await wait(self._transcript.append_leaf_future(entry_id))

    async def context(self) -> list[Message]:
        """`Transcript.context`, awaited: the agent buffer."""
        return await wait(self._transcript.context_future())

    async def context_tokens(self) -> int:
        """`Transcript.context_tokens`, awaited: the current context's estimated size."""
        return await wait(self._transcript.context_tokens_future())

    async def usage(self) -> Usage:
        """`Transcript.usage`, awaited: the usage over the whole file."""
        return await wait(self._transcript.usage_future())

    async def cost(self) -> CostBreakdown | None:
        """`Transcript.cost`, awaited: what `usage()` cost (`None` for an unknown model)."""
        return await wait(self._transcript.cost_future())

    async def next_entry_id(self) -> str:
        """`Transcript.next_entry_id`, awaited."""
        return await wait(self._transcript.next_entry_id_future())

    async def leaf_id(self) -> str | None:
        """`Transcript.leaf_id`, awaited."""
        return await wait(self._transcript.leaf_id_future())

    async def aclose(self) -> None:
        """`Transcript.close`, awaited: flush, release the file and stop the actor
        (after a compaction under way). Idempotent; `StorageError` when the last fsync
        failed (the file is released anyway). Shielded from cancellation: once asked,
        the close is seen through (it waits only for the fsync and a compaction under
        way), so a cancelled `async with` never leaves the file open."""
        future = self._transcript.close_future()
        with anyio.CancelScope(shield=True):
            await wait(future)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<AsyncTranscript {self.session_id!r} {state} {str(self.path)!r}>"
