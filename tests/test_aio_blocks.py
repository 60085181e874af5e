"""`AsyncBlocks` (`greenroom.aio.blocks`): `rt.blocks` awaited under asyncio and trio,
never blocking the event loop.

Every test runs under both backends (anyio's pytest plugin, the `anyio_backend` fixture
below). Waits are awaits or `threading.Event` waits with timeouts, never sleeps:
`anyio.sleep(0.01)` appears only as the loop's own ticker, the thing a blocked loop
would stop.
"""

from __future__ import annotations

import ast
import inspect
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import greenroom.actors.block
from greenroom import FakeClock, Runtime
from greenroom.aio import blocks as aio_blocks
from greenroom.aio.blocks import AsyncBlock, AsyncBlocks
from greenroom.aio.bridge import off_loop
from greenroom.blocks.records import (
    ArchiveResult,
    OutputRead,
    RestoreResult,
    SessionStats,
    SweepProgress,
    SweepStats,
)
from greenroom.errors import InvalidInput, InvalidTransition, Stopped

from .conftest import START_MS

pytestmark = pytest.mark.anyio

WAIT = 10.0  # real seconds a test waits for anything before failing
DAY = 86_400.0


@pytest.fixture
def held_archives(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """(entered, go): archive files are written only once `go` is set."""
    entered, go = threading.Event(), threading.Event()
    original = greenroom.actors.block.write_archive

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert go.wait(WAIT)
        return original(*args, **kwargs)

    monkeypatch.setattr(greenroom.actors.block, "write_archive", held)
    return entered, go


async def until(event: threading.Event) -> None:
    """Wait on the loop until a thread sets `event` (polled by the loop's own ticker)."""
    with anyio.fail_after(WAIT):
        while not event.is_set():
            await anyio.sleep(0.01)


# -- the calls ---------------------------------------------------------------------------------


async def test_block_calls_through_the_facade(rt: Runtime, loop_waits: list[str]) -> None:
    blocks = AsyncBlocks(rt.blocks)
    pane = await blocks.get("pane-1")
    assert isinstance(pane, AsyncBlock)
    assert pane.block_id == "pane-1"
    assert pane.append_output(b'{"type":"text","text":"hello"}\n{"type":"done"}\n') is None
    pane.record_line(8)
    stats = await pane.stats()
    assert isinstance(stats, SessionStats)
    assert stats == SessionStats(START_MS, START_MS, 3, 7 + 3 + 2)
    await pane.flush()
    assert (await pane.meta())["session:line_count"] == 3
    assert (await pane.update_meta({"title": "build"}))["title"] == "build"
    archived = await pane.archive()
    assert isinstance(archived, ArchiveResult)
    assert archived.archived_bytes == 47
    assert isinstance(archived.path, Path)
    assert archived.path.parent == blocks.archive_dir == rt.blocks.archive_dir
    read = await pane.read_output()
    assert isinstance(read, OutputRead)
    assert read.archived
    assert read.data.endswith(b'{"type":"done"}\n')
    restored = await pane.restore()
    assert restored == RestoreResult("pane-1", 47)
    assert not (await pane.read_output()).archived
    notes = await blocks.get("notes", view="notes")
    assert (await notes.meta())["view"] == "notes"
    assert await blocks.ids() == ["notes", "pane-1"]
    assert await blocks.ids(view="notes") == ["notes"]
    assert loop_waits == []
    # The sync handle agrees.
    assert (await off_loop(rt.blocks.get("pane-1").read_output)).line_count == 2


async def test_pruning_an_archive_through_the_facade(rt: Runtime) -> None:
    blocks = AsyncBlocks(rt.blocks)
    pane = await blocks.get("pane-1")
    pane.append_output(b"output\n")
    archived = await pane.archive()
    await pane.restore()  # the archive is kept as a backup until the next archive
    assert archived.path is not None
    size = archived.path.stat().st_size
    assert await pane.prune_archive(archived.path) == size
    assert not archived.path.exists()
    assert "session:archive_backup_path" not in await pane.meta()


async def test_block_errors_are_those_of_the_sync_handle(rt: Runtime) -> None:
    blocks = AsyncBlocks(rt.blocks)
    with pytest.raises(InvalidInput, match="block id"):
        await blocks.get("no spaces allowed")
    with pytest.raises(InvalidInput, match="view"):
        await blocks.get("pane-1", view="")
    with pytest.raises(InvalidInput, match="view"):
        await blocks.ids(view=3)  # type: ignore[arg-type]
    pane = await blocks.get("pane-1")
    with pytest.raises(InvalidInput, match="bytes"):
        pane.append_output("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="byte count"):
        pane.record_line(-1)
    with pytest.raises(InvalidInput, match="path"):
        await pane.prune_archive(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidTransition, match="not archived"):
        await pane.restore()
    with pytest.raises(InvalidInput, match="inactive_days"):
        await blocks.sweep(inactive_days=-1)
    with pytest.raises(InvalidInput, match="AsyncBlocks wraps"):
        AsyncBlocks(rt)  # type: ignore[arg-type]


async def test_a_block_handle_reconnects_when_its_actor_was_stopped(
    rt: Runtime, loop_waits: list[str]
) -> None:
    blocks = AsyncBlocks(rt.blocks)
    pane = await blocks.get("pane-1")
    pane.append_output(b"one\n")
    await pane.flush()
    old = rt.get_actor("block", "pane-1")
    await off_loop(old.stop)  # as a failure or the host might
    pane.append_output(b"two\n")  # not delivered: resent to a new actor, off the loop
    assert (await pane.stats()).line_count == 2  # the counters carried on
    assert (await pane.read_output()).data == b"one\ntwo\n"
    assert rt.get_actor("block", "pane-1") is not old
    assert loop_waits == []
    await off_loop(rt.close)
    with pytest.raises(Stopped):
        await pane.stats()
    with pytest.raises(Stopped):
        pane.append_output(b"three\n")
    with pytest.raises(Stopped):
        await blocks.get("pane-2")


async def test_sweep_through_the_facade(
    open_rt: Any, fake_clock: FakeClock, loop_waits: list[str]
) -> None:
    rt: Runtime = open_rt()  # (no sweep timer)
    blocks = AsyncBlocks(rt.blocks)
    pane = await blocks.get("agent-1")
    pane.append_output(b"idle output\n")
    await pane.flush()
    fake_clock.advance(8 * DAY)
    events: list[SweepProgress] = []
    dry = await blocks.sweep(dry_run=True, progress=events.append)
    assert dry == SweepStats(archived_count=1, bytes_freed=12)
    assert [event.outcome for event in events] == ["started", "would_archive", "started"]
    assert await blocks.sweep() == dry
    assert (await pane.read_output()).archived
    assert loop_waits == []


# -- the loop stays free -----------------------------------------------------------------------


async def test_the_loop_runs_while_an_archive_is_under_way(
    rt: Runtime, held_archives: tuple[threading.Event, threading.Event], loop_waits: list[str]
) -> None:
    entered, go = held_archives
    pane = await AsyncBlocks(rt.blocks).get("pane-1")
    pane.append_output(b"output\n")
    results: list[ArchiveResult] = []

    async def archive() -> None:
        results.append(await pane.archive())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(archive)
        await until(entered)
        # The archive waits for `go`, which only this loop sets: a loop blocked by the
        # archive call could never get here.
        pane.append_output(b"more\n")  # held back by the block until the archive ends
        assert (await pane.stats()).line_count == 2
        go.set()
    assert results[0].archived_bytes == len(b"output\n")
    assert (await pane.read_output()).data == b"output\nmore\n"
    assert loop_waits == []


async def test_the_loop_runs_while_a_sweep_waits_for_its_archives(
    open_rt: Any, fake_clock: FakeClock, held_archives: tuple[threading.Event, threading.Event]
) -> None:
    entered, go = held_archives
    rt: Runtime = open_rt()
    blocks = AsyncBlocks(rt.blocks)
    pane = await blocks.get("agent-1")
    pane.append_output(b"output\n")
    await pane.flush()
    fake_clock.advance(8 * DAY)
    results: list[SweepStats] = []

    async def sweep() -> None:
        results.append(await blocks.sweep())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(sweep)
        await until(entered)
        assert await pane.meta()  # the block answers asks meanwhile (its archive is queued)
        go.set()
    assert results == [SweepStats(archived_count=1, bytes_freed=7)]


async def test_a_reconnect_never_waits_on_the_loop(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, loop_waits: list[str]
) -> None:
    pane = await AsyncBlocks(rt.blocks).get("pane-1")
    pane.append_output(b"one\n")
    await pane.flush()
    await off_loop(rt.get_actor("block", "pane-1").stop)
    # Reconnecting looks the block's record up (to make it if need be): hold it there,
    # on its thread.
    entered, go = threading.Event(), threading.Event()
    real_find = rt.store.find_object
    held = [True]

    def held_find(*args: Any, **kwargs: Any) -> Any:
        if held.pop() if held else False:  # the reconnect's lookup (the first) only
            entered.set()
            assert go.wait(WAIT)
        return real_find(*args, **kwargs)

    monkeypatch.setattr(rt.store, "find_object", held_find)
    pane.append_output(b"two\n")  # returns at once: the reconnect is not on this thread
    await until(entered)
    lines: list[int] = []

    async def count() -> None:
        lines.append((await pane.stats()).line_count)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(count)
        await anyio.sleep(0.01)  # (the loop's ticker: the stats call waits, the loop not)
        assert lines == []
        go.set()
    assert lines == [2]
    assert loop_waits == []


async def test_cancelling_a_wait_leaves_the_archive_going(
    rt: Runtime, held_archives: tuple[threading.Event, threading.Event]
) -> None:
    entered, go = held_archives
    pane = await AsyncBlocks(rt.blocks).get("pane-1")
    pane.append_output(b"output\n")
    with anyio.move_on_after(WAIT) as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pane.archive)
            await until(entered)
            tasks.cancel_scope.cancel()  # stops the wait, not the work
    assert not scope.cancelled_caught
    go.set()
    assert (await pane.read_output()).archived  # queued behind the archive, which went on


# -- the seam ----------------------------------------------------------------------------------


def test_the_facade_uses_only_the_public_seam_of_the_sync_side() -> None:
    for name in ("stats", "meta", "update_meta", "flush", "archive", "restore", "read_output"):
        assert inspect.iscoroutinefunction(getattr(AsyncBlock, name)), name
    for name in ("append_output", "record_line"):
        assert not inspect.iscoroutinefunction(getattr(AsyncBlock, name)), name
    for name in ("get", "ids", "sweep"):
        assert inspect.iscoroutinefunction(getattr(AsyncBlocks, name)), name
    tree = ast.parse(Path(aio_blocks.__file__).read_text(encoding="utf-8"))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr in ("_block", "_blocks")
    }
    assert used >= {"stats_future", "archive_future", "prune_archive_future", "get", "sweep"}
    assert not [name for name in used if name.startswith("_")]
