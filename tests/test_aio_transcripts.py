"""`AsyncTranscripts` (`greenroom.aio.transcripts`): `rt.transcripts` awaited under asyncio
and trio, never blocking the event loop.

Every test runs under both backends (anyio's pytest plugin, the `anyio_backend` fixture
below). Waits are awaits bounded by `WAIT`, never sleeps: `anyio.sleep(0.01)` appears
only as the loop's own ticker, the thing a blocked loop would stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from greenroom import (
    AssistantMessage,
    CompactionConfig,
    CompactionSummary,
    Runtime,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from greenroom.aio.bridge import call_soon_threadsafe
from greenroom.aio.transcripts import AsyncTranscript, AsyncTranscripts
from greenroom.errors import (
    CompactionError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Stopped,
    StorageError,
)
from greenroom.transcripts import logformat

pytestmark = pytest.mark.anyio

WAIT = 10.0  # real seconds a test waits for anything before failing

# A small window so a few turns cross the threshold (a tool_turn is ~130 tokens).
SMALL = CompactionConfig(context_window_tokens=2_000, threshold_tokens=300, keep_recent_tokens=150)
MANUAL = attrs.evolve(SMALL, enabled=False)


def tool_turn(n: int, size: int = 40) -> list[Any]:
    """A user request, a tool call, its result and a final answer (~`size` tokens each)."""
    return [
        UserMessage(f"request {n} " + "u" * (4 * size)),
        AssistantMessage(f"calling {n}", tool_calls=[ToolCall(f"c{n}", "read", {"n": n})]),
        ToolResult(f"c{n}", "r" * (4 * size)),
        AssistantMessage(f"answer {n} " + "a" * (4 * size)),
    ]


class Ticker:
    """Counts the loop's own timer firing: a blocked loop would not count."""

    def __init__(self) -> None:
        self.count = 0

    async def run(self) -> None:
        while True:
            await anyio.sleep(0.01)
            self.count += 1

    async def advance(self, n: int) -> None:
        """Wait (bounded) until the ticker has fired `n` more times."""
        target = self.count + n
        with anyio.fail_after(WAIT):
            while self.count < target:
                await anyio.sleep(0.01)


def loop_event() -> tuple[anyio.Event, Callable[[], None]]:
    """An event on the loop, and a function any thread may call to set it."""
    event = anyio.Event()
    soon = call_soon_threadsafe()
    return event, lambda: soon(event.set)


# -- the calls -----------------------------------------------------------------------------


async def test_transcripts_through_the_facade_match_the_sync_runtime(
    rt: Runtime, loop_waits: list[str], tmp_path: Path
) -> None:
    transcripts = AsyncTranscripts(rt.transcripts)
    assert transcripts.directory == rt.transcripts.directory
    assert isinstance(transcripts.directory, Path)
    t = await transcripts.create(model="anthropic:claude-sonnet-4-5", compaction=MANUAL)
    assert isinstance(t, AsyncTranscript)
    assert isinstance(t.path, Path)
    assert t.path.parent == rt.transcripts.directory
    assert t.session_id == t.path.stem
    assert (t.model, t.recovery.clean, t.closed) == ("anthropic:claude-sonnet-4-5", True, False)

    first = await t.on_turn_end([UserMessage("hi"), AssistantMessage("hello", usage=Usage(900, 3))])
    assert (first.entry_ids, first.compaction) == (("1", "2"), None)
    second = await t.on_turn_end(tool_turn(1), usage={"input_tokens": 50, "output_tokens": 5})
    assert second.entry_ids == ("4", "5", "6", "7")
    assert await t.usage() == Usage(950, 8)
    cost = await t.cost()
    assert cost is not None
    assert cost.total > 0
    assert await t.context() == [
        UserMessage("hi"),
        AssistantMessage("hello", usage=Usage(900, 3)),
        *tool_turn(1),
    ]
    # (The sync call waits for the actor: off the loop, which must never wait.)
    assert await t.context_tokens() == await anyio.to_thread.run_sync(t.transcript.context_tokens)
    assert (await t.next_entry_id(), await t.leaf_id()) == ("9", "7")

    await t.append_leaf("2")  # branch back before the tool turn
    assert await t.leaf_id() == "2"
    await t.on_turn_end(tool_turn(2))
    await t.on_turn_end(tool_turn(3))
    compaction = await t.compact("by hand")
    assert compaction is not None
    assert compaction.reason == "by hand"
    context = await t.context()
    assert isinstance(context[0], CompactionSummary)
    assert list(compaction.context) == context
    usage = await t.usage()
    await t.aclose()
    assert t.closed
    await t.aclose()  # idempotent

    # Resume and fork take str or os.PathLike and read the file off the loop.
    again = await transcripts.resume(str(t.path))
    assert (await again.context(), await again.usage()) == (context, usage)
    fork = await transcripts.fork(again.path, directory=tmp_path / "forks")
    assert fork.path.parent == tmp_path / "forks"
    assert await fork.context() == context
    async with fork:
        assert not fork.closed
    assert fork.closed
    await again.aclose()
    metrics = rt.metrics()
    assert (metrics["transcripts_created"], metrics["transcripts_resumed"]) == (1, 1)
    assert (metrics["transcripts_forked"], metrics["transcripts_closed"]) == (1, 3)
    assert metrics["transcripts_open"] == 0
    assert loop_waits == []


async def test_errors_are_those_of_the_sync_runtime(rt: Runtime, tmp_path: Path) -> None:
    transcripts = AsyncTranscripts(rt.transcripts)
    for bad in ("nul\0in path", "lone\ud800surrogate", ""):
        with pytest.raises(InvalidInput, match="directory"):
            await transcripts.create(directory=bad)
        with pytest.raises(InvalidInput, match="path"):
            await transcripts.resume(bad)
    with pytest.raises(InvalidInput, match="durability"):
        await transcripts.create(durability="sometimes")
    with pytest.raises(NotFound, match="no transcript file"):
        await transcripts.resume(tmp_path / "missing.jsonl")
    t = await transcripts.create()
    await t.on_turn_end([UserMessage("q")])
    size = t.path.stat().st_size
    # Checked before anything is sent: nothing written.
    with pytest.raises(InvalidInput, match="at least one message"):
        await t.on_turn_end([])
    with pytest.raises(InvalidInput, match="summaries are written by compaction"):
        await t.on_turn_end([CompactionSummary("s", "1", 1, 1)])
    with pytest.raises(InvalidInput, match="usage"):
        await t.on_turn_end([UserMessage("a")], usage={"tokens": 3})
    with pytest.raises(InvalidInput, match="reason"):
        await t.compact("")
    with pytest.raises(InvalidInput, match="entry_id"):
        await t.append_leaf("")
    with pytest.raises(NotFound, match="no message or compaction entry '99'"):
        await t.append_leaf("99")
    assert t.path.stat().st_size == size
    assert await t.context() == [UserMessage("q")]
    with pytest.raises(InvalidTransition, match="open already"):
        await transcripts.resume(t.path)
    await t.aclose()
    with pytest.raises(Stopped, match=r"rt\.transcripts\.resume"):
        await t.context()
    with pytest.raises(Stopped):
        await t.on_turn_end([UserMessage("late")])
    assert rt.metrics()["transcripts_created"] == 1


async def test_a_failed_summarizer_is_a_compaction_error_carrying_the_turn(rt: Runtime) -> None:
    def summarizer(messages: list[Any]) -> str:
        raise RuntimeError("the LLM is down")

    t = await AsyncTranscripts(rt.transcripts).create(
        compaction=attrs.evolve(SMALL, summarizer=summarizer)
    )
    await t.on_turn_end(tool_turn(0))
    await t.on_turn_end(tool_turn(1))
    with pytest.raises(CompactionError, match="not compacted") as caught:
        await t.on_turn_end(tool_turn(2))
    turn = caught.value.turn  # type: ignore[attr-defined]
    assert turn.entry_ids == ("11", "12", "13", "14")
    assert (await t.context())[-4:] == tool_turn(2)  # the turn itself was saved
    await t.aclose()


async def test_a_failed_last_fsync_on_aclose_is_a_storage_error(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await AsyncTranscripts(rt.transcripts).create(durability="none")
    await t.on_turn_end([UserMessage("q")])

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("greenroom.transcripts.logformat.os.fsync", broken_fsync)
    t.transcript.close_future()  # (durability "none" skips it: reopen with "turn")
    with anyio.fail_after(WAIT):
        while not t.closed:
            await anyio.sleep(0.01)
    monkeypatch.undo()
    again = await AsyncTranscripts(rt.transcripts).resume(t.path, durability="turn")
    monkeypatch.setattr("greenroom.transcripts.logformat.os.fsync", broken_fsync)
    with pytest.raises(StorageError, match="could not flush transcript"):
        await again.aclose()
    assert again.closed  # the file released and the actor stopped anyway
    monkeypatch.undo()
    last = await AsyncTranscripts(rt.transcripts).resume(t.path)  # so it can be reopened
    assert await last.context() == [UserMessage("q")]
    await last.aclose()


# -- never blocking the loop -----------------------------------------------------------------


async def test_the_loop_runs_while_a_turn_compacts(rt: Runtime, loop_waits: list[str]) -> None:
    started, mark_started = loop_event()
    release = threading.Event()
    summarised_on: list[int] = []

    def summarizer(messages: list[Any]) -> str:
        summarised_on.append(threading.get_ident())
        mark_started()
        assert release.wait(WAIT)  # set by the test, from the loop
        return "a slow summary"

    t = await AsyncTranscripts(rt.transcripts).create(
        compaction=attrs.evolve(SMALL, summarizer=summarizer)
    )
    await t.on_turn_end(tool_turn(0))
    await t.on_turn_end(tool_turn(1))
    ticker = Ticker()
    results: dict[str, Any] = {}

    async def turn() -> None:
        results["turn"] = await t.on_turn_end(tool_turn(2))

    async def later_context() -> None:
        results["context"] = await t.context()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker.run)
        tasks.start_soon(turn)
        with anyio.fail_after(WAIT):
            await started.wait()
        tasks.start_soon(later_context)  # held back by the compaction, not answered early
        await ticker.advance(3)  # the loop runs while the summarizer waits
        assert results == {}  # neither answered yet
        release.set()
        with anyio.fail_after(WAIT):
            while len(results) < 2:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert len(summarised_on) == 1
    assert summarised_on[0] != threading.get_ident()
    compaction = results["turn"].compaction
    assert compaction is not None
    assert compaction.reason == "threshold"
    assert results["context"] == list(compaction.context)
    assert isinstance(results["context"][0], CompactionSummary)
    await t.aclose()
    assert loop_waits == []


async def test_a_turns_fsync_runs_off_the_loop_while_it_goes_on(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, loop_waits: list[str]
) -> None:
    t = await AsyncTranscripts(rt.transcripts).create(durability="turn")
    started, mark_started = loop_event()
    release = threading.Event()
    synced_on: list[int] = []
    real_fsync = logformat.fsync

    def slow_fsync(fd: int) -> None:
        synced_on.append(threading.get_ident())
        mark_started()
        assert release.wait(WAIT)  # set by the test, from the loop
        real_fsync(fd)

    monkeypatch.setattr(logformat, "fsync", slow_fsync)
    ticker = Ticker()
    results: dict[str, Any] = {}

    async def turn() -> None:
        results["turn"] = await t.on_turn_end([UserMessage("q"), AssistantMessage("a")])

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker.run)
        tasks.start_soon(turn)
        with anyio.fail_after(WAIT):
            await started.wait()
        await ticker.advance(3)  # the loop runs while the turn's fsync waits
        assert "turn" not in results
        release.set()
        with anyio.fail_after(WAIT):
            while "turn" not in results:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()
    assert len(synced_on) == 1  # one fsync for the turn
    assert synced_on[0] != threading.get_ident()
    assert results["turn"].entry_ids == ("1", "2")
    monkeypatch.undo()
    await t.aclose()
    assert loop_waits == []


async def test_cancelling_the_wait_leaves_the_turn_written(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = await AsyncTranscripts(rt.transcripts).create(durability="turn")
    started, mark_started = loop_event()
    release = threading.Event()
    real_fsync = logformat.fsync

    def slow_fsync(fd: int) -> None:
        mark_started()
        assert release.wait(WAIT)
        real_fsync(fd)

    monkeypatch.setattr(logformat, "fsync", slow_fsync)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(t.on_turn_end, [UserMessage("sent")])
            with anyio.fail_after(WAIT):
                await started.wait()
            scope.cancel()  # stops the wait, not the turn
    assert scope.cancelled_caught
    release.set()
    monkeypatch.undo()
    assert await t.context() == [UserMessage("sent")]  # answered after the turn
    await t.aclose()
    again = await AsyncTranscripts(rt.transcripts).resume(t.path)
    assert await again.context() == [UserMessage("sent")]
    await again.aclose()


async def test_closing_the_runtime_stops_the_transcripts(rt: Runtime) -> None:
    t = await AsyncTranscripts(rt.transcripts).create()
    await t.on_turn_end([UserMessage("q")])
    rt.close()
    assert t.closed
    with pytest.raises(Stopped):
        await t.usage()
    await t.aclose()  # idempotent, even then


@pytest.mark.anyio
async def test_a_cancelled_async_with_still_closes_the_file(rt: Runtime) -> None:
    transcripts = AsyncTranscripts(rt.transcripts)
    for _ in range(5):
        with anyio.move_on_after(0.02):
            async with await transcripts.create(model="x:y") as log:
                await log.on_turn_end([UserMessage("hi"), AssistantMessage("hello")])
                await anyio.sleep(10)
        assert log.closed
        again = await transcripts.resume(log.path)  # not "open already"
        await again.aclose()
