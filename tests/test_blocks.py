"""Blocks: session stats, debounced and trailing flushes, counters across re-opens,
the block writer's batching, block ids and views.

Everything runs on real SQLite files in tmp_path with a `FakeClock`: time moves only
through `fake_clock.advance`, which fires due timers and settles the actors.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import Block, FakeClock, Runtime, SessionStats
from greenroom.actors.base import ActorContext, GreenroomActor
from greenroom.errors import (
    InvalidInput,
    InvalidTransition,
    NotFound,
    Stopped,
    StorageError,
    Timeout,
)
from greenroom.futures import GreenroomFuture

from .conftest import START_MS

LINE_COUNT = "session:line_count"
TOKENS = "session:token_estimate"
OPEN_LINE = "session:open_line_counted"
START = "session:start_ts_ms"
LAST = "session:last_activity_ms"
STATS_KEYS = (START, LAST, LINE_COUNT, TOKENS)


def stored(rt: Runtime, block_id: str) -> dict[str, Any]:
    """The block's stats keys as stored (what survives a crash)."""
    meta = rt.store.get_object("block", block_id).meta
    return {key: meta[key] for key in STATS_KEYS if key in meta}


def version(rt: Runtime, block_id: str) -> int:
    return rt.store.get_object("block", block_id).version


def expected_stats(lines: list[bytes]) -> tuple[int, int]:
    """(line_count, token_estimate) of complete lines: non-empty ones, bytes // 4 each."""
    counted = [line for line in lines if line]
    return len(counted), sum(len(line) // 4 for line in counted)


# -- first line, debounce, trailing flush ----------------------------------------------------


def test_first_line_is_stored_at_once(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    assert block.meta() == {"view": "agent"}
    block.append_output(b'{"type":"text","text":"hello"}\n')  # 30 bytes
    rt.settle()
    assert stored(rt, "pane-1") == {
        START: START_MS,
        LAST: START_MS,
        LINE_COUNT: 1,
        TOKENS: 30 // 4,
    }
    assert block.meta()[LINE_COUNT] == 1
    assert block.stats() == SessionStats(START_MS, START_MS, 1, 7)


def test_lines_within_the_interval_wait_for_the_trailing_flush(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"first line\n")  # flushed at once
    rt.settle()
    fake_clock.advance(0.1)
    block.append_output(b"second line\nthird line!\n")
    rt.settle()
    # Counted in memory, not stored yet: the interval since the first flush is not over.
    assert block.stats().line_count == 3
    assert stored(rt, "pane-1")[LINE_COUNT] == 1
    fake_clock.advance(0.5)  # t = 0.6 s
    assert stored(rt, "pane-1")[LINE_COUNT] == 1
    fake_clock.advance(0.399)  # t = 0.999 s
    assert stored(rt, "pane-1")[LINE_COUNT] == 1
    fake_clock.advance(0.001)  # t = 1.0 s: the interval ends, the trailing flush writes
    assert stored(rt, "pane-1") == {
        START: START_MS,
        LAST: START_MS + 100,
        LINE_COUNT: 3,
        TOKENS: 10 // 4 + 11 // 4 + 11 // 4,
    }
    assert block.stats() == SessionStats.from_meta(block.meta())


def test_trailing_flush_follows_the_configured_interval(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(stats_flush_interval_s=5.0)
    block = rt.blocks.get("pane-1")
    block.record_line(8)
    rt.settle()  # (a line told before the first commit would be stored with it)
    block.record_line(8)
    rt.settle()
    assert stored(rt, "pane-1")[LINE_COUNT] == 1
    fake_clock.advance(4.9)
    assert stored(rt, "pane-1")[LINE_COUNT] == 1
    fake_clock.advance(0.1)
    assert stored(rt, "pane-1")[LINE_COUNT] == 2


def test_the_trailing_stats_of_many_blocks_share_one_timer_and_one_commit(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    blocks = [rt.blocks.get(f"pane-{n}") for n in range(200)]
    for block in blocks:
        block.append_output(b"first\n")  # each stored at once
    rt.settle()
    timers = fake_clock.pending_timers()
    fake_clock.advance(0.1)
    for block in blocks:
        block.append_output(b"second\n")  # each waits for its interval to end
    rt.settle()
    assert fake_clock.pending_timers() <= timers  # no timer per block
    assert {stored(rt, f"pane-{n}")[LINE_COUNT] for n in range(200)} == {1}
    commits = rt.metrics()["store_commits"]
    fake_clock.advance(0.9)  # t = 1 s: every interval ends
    assert rt.metrics()["store_commits"] == commits + 1
    assert {stored(rt, f"pane-{n}")[LINE_COUNT] for n in range(200)} == {2}


def test_a_flush_stores_the_stats_waiting_for_their_interval(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    one, other = rt.blocks.get("one"), rt.blocks.get("other")
    for block in (one, other):
        block.append_output(b"first\n")
    rt.settle()
    fake_clock.advance(0.1)
    for block in (one, other):
        block.append_output(b"second\n")
    rt.settle()
    one.flush()
    assert stored(rt, "one")[LINE_COUNT] == 2
    assert stored(rt, "other")[LINE_COUNT] == 2  # (any flush stores every waiting stat)


def test_at_most_one_flush_per_interval_while_lines_keep_coming(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    block = rt.blocks.get("busy")
    rt.settle()
    commits = rt.metrics()["store_commits"]
    versions = [version(rt, "busy")]
    # A line every 0.25 s for 6 s (record_line: no output, so every commit is a flush).
    for _ in range(24):
        block.record_line(40)
        rt.settle()
        versions.append(version(rt, "busy"))
        fake_clock.advance(0.25)
        versions.append(version(rt, "busy"))
    flushes = versions[-1] - versions[0]
    # Flushed at t = 0 (first line), then once as each interval ends: 1, 2, ..., 6 s.
    assert flushes == 7
    assert rt.metrics()["store_commits"] - commits == 7
    # Sampled at t = 0 (before the first line), 1, 2, ..., 6 s: the first interval holds
    # the first line's flush and its trailing flush, every later one a single flush.
    per_interval = [later - earlier for earlier, later in itertools.pairwise(versions[::8])]
    assert per_interval == [2, 1, 1, 1, 1, 1]
    # The last lines are stored (the trailing flush at t = 6 s).
    assert stored(rt, "busy")[LINE_COUNT] == 24
    assert stored(rt, "busy")[TOKENS] == 24 * 10
    assert stored(rt, "busy")[LAST] == START_MS + 5750


def test_a_line_after_a_quiet_spell_is_stored_at_once(rt: Runtime, fake_clock: FakeClock) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"one\n")
    rt.settle()
    fake_clock.advance(30)
    block.append_output(b"two\n")
    rt.settle()
    assert stored(rt, "pane-1")[LINE_COUNT] == 2
    assert stored(rt, "pane-1")[LAST] == START_MS + 30_000
    assert stored(rt, "pane-1")[START] == START_MS


def test_no_flush_without_new_lines(rt: Runtime, fake_clock: FakeClock) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"only line\n")
    rt.settle()
    before = version(rt, "pane-1")
    commits = rt.metrics()["store_commits"]
    for _ in range(5):
        fake_clock.advance(1.0)
    assert version(rt, "pane-1") == before
    assert rt.metrics()["store_commits"] == commits
    # Blank lines and partial lines are not new lines: no flush either.
    block.append_output(b"\n\n")
    rt.settle()
    fake_clock.advance(2.0)
    assert version(rt, "pane-1") == before


def test_flush_stores_pending_stats_now(rt: Runtime, fake_clock: FakeClock) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"aaaa\n")
    block.append_output(b"bbbbbbbb\n")
    block.record_line(100)
    block.flush()
    assert stored(rt, "pane-1")[LINE_COUNT] == 3
    assert stored(rt, "pane-1")[TOKENS] == 1 + 2 + 25
    assert block.stats() == SessionStats.from_meta(block.meta())
    assert rt.store.read_file("block", "pane-1", "output") == b"aaaa\nbbbbbbbb\n"
    # The pending trailing timer then finds nothing to write.
    before = version(rt, "pane-1")
    fake_clock.advance(2.0)
    assert version(rt, "pane-1") == before


def test_partial_line_is_counted_only_once_its_newline_arrives(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"abcd")
    block.append_output(b"efgh")
    assert block.stats().line_count == 0
    block.append_output(b"ijkl\nmn")
    assert block.stats() == SessionStats(START_MS, START_MS, 1, 12 // 4)
    block.append_output(b"op\n")
    assert block.stats().line_count == 2
    assert block.stats().token_estimate == 3 + 1
    block.flush()
    assert rt.store.read_file("block", "pane-1", "output") == b"abcdefghijkl\nmnop\n"


def test_partial_last_line_is_counted_when_the_block_is_archived(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"complete line\n" + b"y" * 12)
    assert block.stats().line_count == 1
    block.archive()
    assert block.stats().line_count == 2
    assert block.stats().token_estimate == 13 // 4 + 12 // 4
    assert stored(rt, "pane-1")[LINE_COUNT] == 2
    assert stored(rt, "pane-1")[TOKENS] == 3 + 3


def test_close_stores_pending_stats_and_the_partial_last_line(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    block = rt.blocks.get("pane-1")
    block.append_output(b"first\n")  # stored at once
    rt.settle()
    fake_clock.advance(0.2)
    block.append_output(b"second line\n" + b"z" * 10)  # within the interval; a partial line
    rt.settle()
    assert stored(rt, "pane-1")[LINE_COUNT] == 1
    rt.close()
    rt = open_rt()
    assert stored(rt, "pane-1") == {
        START: START_MS,
        LAST: START_MS + 200,
        LINE_COUNT: 3,
        TOKENS: 5 // 4 + 11 // 4 + 10 // 4,  # newlines are not part of a line
    }
    assert rt.store.read_file("block", "pane-1", "output") == b"first\nsecond line\n" + b"z" * 10


def test_record_line_counts_one_line_of_the_given_size(rt: Runtime, fake_clock: FakeClock) -> None:
    block = rt.blocks.get("pane-1")
    block.record_line(100)
    rt.settle()  # stored at once (with any line told before that commit)
    block.record_line(7)
    block.record_line(4)
    assert block.stats() == SessionStats(START_MS, START_MS, 3, 25 + 1 + 1)
    rt.settle()
    assert stored(rt, "pane-1")[LINE_COUNT] == 1  # the rest trail
    fake_clock.advance(1.0)
    assert stored(rt, "pane-1")[LINE_COUNT] == 3
    assert stored(rt, "pane-1")[TOKENS] == 27
    # No output is written for lines kept elsewhere.
    with pytest.raises(NotFound):
        rt.store.stat_file("block", "pane-1", "output")


def test_empty_lines_are_not_counted(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"")
    block.append_output(b"\n\n\n")
    assert block.stats() == SessionStats()
    block.append_output(b"a\n\n\nbbbb\n\n")
    assert block.stats().line_count == 2
    assert block.stats().token_estimate == 0 + 1
    block.flush()
    assert rt.store.read_file("block", "pane-1", "output") == b"\n\n\na\n\n\nbbbb\n\n"
    assert block.read_output().line_count == 2


def test_token_estimate_is_utf8_bytes_over_four_per_line(rt: Runtime) -> None:
    lines = ["héllo wörld", "日本語のテキスト", "x", "abcd", "abcde", "a" * 1001, "🙂🙂🙂"]
    block = rt.blocks.get("pane-1")
    block.append_output("".join(line + "\n" for line in lines).encode())
    encoded = [line.encode() for line in lines]
    assert block.stats().line_count == len(lines)
    assert block.stats().token_estimate == sum(len(line) // 4 for line in encoded)
    assert block.stats().token_estimate != sum(len(line) // 4 for line in lines)  # bytes, not chars


def test_output_accepts_bytes_like_objects(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(bytearray(b"one\n"))
    block.append_output(memoryview(b"two\n"))
    block.flush()
    assert block.stats().line_count == 2
    assert rt.store.read_file("block", "pane-1", "output") == b"one\ntwo\n"


_ids = itertools.count()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=25),
    tail=st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
    data=st.data(),
)
def test_any_chunking_of_an_output_gives_the_same_stats(
    rt: Runtime, lines: list[bytes], tail: bytes, data: st.DataObject
) -> None:
    output = b"".join(line + b"\n" for line in lines) + tail
    cuts = sorted(data.draw(st.lists(st.integers(0, len(output)), max_size=12), label="cuts"))
    chunks = [output[lo:hi] for lo, hi in itertools.pairwise([0, *cuts, len(output)])]
    n = next(_ids)
    whole, chunked = rt.blocks.get(f"whole-{n}"), rt.blocks.get(f"chunked-{n}")
    whole.append_output(output)
    for chunk in chunks:
        chunked.append_output(chunk)
    count, tokens = expected_stats(lines)
    for block in (whole, chunked):
        stats = block.stats()
        assert (stats.line_count, stats.token_estimate) == (count, tokens)
        assert stats.start_ts_ms == (START_MS if count else 0)
    # Archiving ends the stream: the last line without a newline counts then.
    for block in (whole, chunked):
        block.archive()
        stats = block.stats()
        assert (stats.line_count, stats.token_estimate) == expected_stats([*lines, tail])
        assert block.read_output().data == output


# -- invalid input ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["text\n", None, 5, [b"a\n"]])
def test_append_output_refuses_what_is_not_bytes(rt: Runtime, data: object) -> None:
    block = rt.blocks.get("pane-1")
    with pytest.raises(InvalidInput, match="bytes"):
        block.append_output(data)  # type: ignore[arg-type]
    assert block.stats() == SessionStats()


@pytest.mark.parametrize("n_bytes", [-1, True, False, 1.5, "10", None])
def test_record_line_refuses_what_is_not_a_byte_count(rt: Runtime, n_bytes: object) -> None:
    block = rt.blocks.get("pane-1")
    with pytest.raises(InvalidInput):
        block.record_line(n_bytes)  # type: ignore[arg-type]
    assert block.stats() == SessionStats()


@pytest.mark.parametrize(
    "block_id",
    ["", "a/b", "x" * 201, "../x", "..\\x", "a b", "tab\t", "new\nline", "é", None, 5, b"bytes"],
)
def test_bad_block_ids_are_refused(rt: Runtime, block_id: object) -> None:
    with pytest.raises(InvalidInput, match="block id"):
        rt.blocks.get(block_id)  # type: ignore[arg-type]
    assert rt.blocks.ids() == []


def test_block_id_characters_and_length_allowed(rt: Runtime) -> None:
    ids = ["x" * 200, "a", "A-Z_0.9:user@host"]
    for block_id in ids:
        rt.blocks.get(block_id).append_output(b"line\n")
    rt.settle()
    assert rt.blocks.ids() == sorted(ids)


@pytest.mark.parametrize("view", ["", None, 3])
def test_bad_views_are_refused(rt: Runtime, view: object) -> None:
    with pytest.raises(InvalidInput, match="view"):
        rt.blocks.get("pane-1", view=view)  # type: ignore[arg-type]
    assert rt.blocks.ids() == []


# -- counters across re-opens -----------------------------------------------------------------


def test_counters_survive_a_reopen_and_keep_counting(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt()
    block = rt.blocks.get("pane-1")
    block.append_output(b"12345678\n" * 5)  # 5 lines of 8 bytes
    block.record_line(40)
    rt.close()
    fake_clock.advance(60)

    rt = open_rt()
    block = rt.blocks.get("pane-1")
    assert block.stats() == SessionStats(START_MS, START_MS, 6, 5 * 2 + 10)
    block.append_output(b"abcdefghijkl\n")  # the first line after the re-open: stored at once
    rt.settle()
    assert stored(rt, "pane-1") == {
        START: START_MS,  # the session's start is kept
        LAST: START_MS + 60_000,
        LINE_COUNT: 7,
        TOKENS: 20 + 3,
    }
    block.record_line(4)
    rt.close()

    rt = open_rt()
    assert rt.blocks.get("pane-1").stats() == SessionStats(START_MS, START_MS + 60_000, 8, 24)
    # The output itself is one stream across the re-opens.
    assert rt.blocks.get("pane-1").read_output().data == b"12345678\n" * 5 + b"abcdefghijkl\n"


def test_a_reopened_blocks_counts_read_with_the_commit_go_on_from_its_open_line(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    # A block from an earlier run is counted from its creation's metadata until the
    # writer reads its row, with its next commit: what it counted meanwhile is counted
    # again on the stored counts then, an archive or a stop (which count an unfinished
    # line) read the row first.
    rt = open_rt()
    rt.blocks.get("pane-1").append_output(b"12345678\n" * 2 + b"abcd")
    rt.close()  # (the unfinished line counts at the stop: the open-line mark is stored)
    assert open_rt().store.get_object("block", "pane-1").meta[OPEN_LINE] == 1
    rt = open_rt()
    block = rt.blocks.get("pane-1")
    block.append_output(b"\n")  # ends the counted line: no line more, the mark goes
    rt.settle()
    meta = rt.store.get_object("block", "pane-1").meta
    assert (meta[LINE_COUNT], meta.get(OPEN_LINE, 0)) == (3, 0)
    rt.close()
    fake_clock.advance(5)
    rt = open_rt()
    block = rt.blocks.get("pane-1")
    block.append_output(b"12345678\n" + b"efghijkl")  # a line, and one unfinished
    block.archive()  # counts the unfinished line (before the writer's next commit)
    assert block.stats() == SessionStats(START_MS, START_MS + 5_000, 5, 2 + 2 + 1 + 2 + 2)
    rt.close()
    rt = open_rt()
    block = rt.blocks.get("pane-1")
    block.append_output(b"\n12345678")  # (an empty line: not counted) and one unfinished
    block.meta()  # (its actor starts)
    rt.get_actor("block", "pane-1").stop()  # the stream ends: the unfinished line counts
    rt.settle()
    assert stored(rt, "pane-1")[LINE_COUNT] == 6


def test_counters_carry_on_for_blocks_only_touched_by_record_line(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()
    for n in range(3):
        rt.blocks.get(f"b{n}").record_line(4 * (n + 1))
    rt.close()
    rt = open_rt()
    for n in range(3):
        rt.blocks.get(f"b{n}").record_line(4)
    rt.settle()
    assert [stored(rt, f"b{n}")[LINE_COUNT] for n in range(3)] == [2, 2, 2]
    assert [stored(rt, f"b{n}")[TOKENS] for n in range(3)] == [2, 3, 4]


@pytest.mark.parametrize("round_", range(5))
def test_counters_carry_on_when_a_blocks_actor_is_restarted(rt: Runtime, round_: int) -> None:
    # The old actor's last stats are still on their way to the writer when it stops;
    # the new actor must start from them, never from older stored totals.
    block = rt.blocks.get("pane-1")
    block.meta()  # (its actor starts with the first call that needs it)
    for _ in range(200):
        block.append_output(b"12345678\n")
    for other in range(20):  # keep the writer busy with other blocks
        rt.blocks.get(f"other-{other}").append_output(b"x" * 1000 + b"\n")
    rt.get_actor("block", "pane-1").stop(block=False)
    again = rt.blocks.get("pane-1")
    assert again.stats().line_count == 200
    again.append_output(b"12345678\n")
    again.flush()
    assert stored(rt, "pane-1")[LINE_COUNT] == 201
    assert stored(rt, "pane-1")[TOKENS] == 201 * 2


# -- batched writes ---------------------------------------------------------------------------


def test_many_blocks_are_flushed_in_a_few_batched_commits(rt: Runtime) -> None:
    count = 320
    blocks = [rt.blocks.get(f"pane-{n:03d}") for n in range(count)]
    rt.settle()
    commits = rt.metrics()["store_commits"]
    for n, block in enumerate(blocks):
        block.append_output(f"line of block {n}\n".encode())
    rt.settle()
    used = rt.metrics()["store_commits"] - commits
    # Each block wrote an output append and a (first-line) stats flush: 640 writes.
    # One commit per block would be >= 320; the writer batches what queued up meanwhile.
    assert 1 <= used < count // 5, used
    for n in (0, 1, count // 2, count - 1):
        block_id = f"pane-{n:03d}"
        assert stored(rt, block_id)[LINE_COUNT] == 1
        assert rt.store.read_file("block", block_id, "output") == f"line of block {n}\n".encode()
    assert all(
        obj.meta.get(LINE_COUNT) == 1
        for obj in rt.store.list_objects("block")
        if obj.id.startswith("pane-")
    )


def test_appends_to_one_block_keep_their_order(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    pieces = [f"{n}:{'x' * (n % 7)}\n".encode() for n in range(500)]
    for piece in pieces:
        block.append_output(piece)
    block.flush()
    assert rt.store.read_file("block", "pane-1", "output") == b"".join(pieces)
    assert block.stats().line_count == 500


# -- listing and views ------------------------------------------------------------------------


def test_blocks_lists_ids_sorted_and_filters_by_view(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()
    assert rt.blocks.ids() == []
    rt.blocks.get("b-agent")
    rt.blocks.get("a-agent", view="agent")
    rt.blocks.get("shell-1", view="shell")
    rt.blocks.get("term", view="terminal")
    assert rt.blocks.ids() == ["a-agent", "b-agent", "shell-1", "term"]
    assert rt.blocks.ids(view="agent") == ["a-agent", "b-agent"]
    assert rt.blocks.ids(view="shell") == ["shell-1"]
    assert rt.blocks.ids(view="nothing") == []
    rt.close()
    rt = open_rt()
    assert rt.blocks.ids(view="terminal") == ["term"]


def test_a_block_keeps_the_view_it_was_created_with(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt()
    shell = rt.blocks.get("shell-1", view="shell")
    assert shell.meta()["view"] == "shell"
    again = rt.blocks.get("shell-1")  # default view "agent" does not change it
    assert isinstance(again, Block)
    assert again.block_id == "shell-1"
    assert again.meta()["view"] == "shell"
    rt.close()
    rt = open_rt()
    assert rt.blocks.get("shell-1", view="agent").meta()["view"] == "shell"
    assert rt.blocks.ids(view="agent") == []


def test_update_meta_merges_with_the_stats(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"hello there\n")
    rt.settle()
    meta = block.update_meta({"title": "my pane", "view": None})
    assert meta["title"] == "my pane"
    assert "view" not in meta
    assert meta[LINE_COUNT] == 1
    assert block.meta() == meta


def test_a_partial_line_counted_at_an_archive_is_not_counted_again(rt: Runtime) -> None:
    block = rt.blocks.get("agent-partial")
    block.append_output(b"one\nhalf a li")
    block.archive()  # the stream pauses: "half a li" counts as a line
    assert block.stats().line_count == 2
    block.append_output(b"ne\ntwo\n")  # the same line ends, then one more
    rt.settle()
    assert block.stats().line_count == 3
    assert block.read_output().data == b"one\nhalf a line\ntwo\n"


# -- a failing writer transaction -------------------------------------------------------------


def test_a_failed_write_transaction_keeps_the_data_and_retries(
    rt: Runtime, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"one\n")
    block.flush()
    store = rt.store
    real_append_many = store.append_many
    failures = [2]

    def failing_append_many(*args: Any, **kwargs: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise StorageError("disk I/O error (injected)")
        return real_append_many(*args, **kwargs)

    monkeypatch.setattr(store, "append_many", failing_append_many)
    block.append_output(b"two\n")
    rt.settle()
    assert rt.metrics()["block_write_retries"] == 1
    block.append_output(b"three\n")  # joins the kept batch
    fake_clock.advance(2)  # the retries (the second fails too), then the trailing stats
    block.flush()
    assert block.read_output().data == b"one\ntwo\nthree\n"
    assert stored(rt, "pane-1")[LINE_COUNT] == 3
    assert rt.metrics()["block_write_failures"] == 0
    assert rt.metrics()["block_write_retries"] == 2


def test_a_handle_reconnects_after_its_actor_stopped_and_says_stopped_after_close(
    rt: Runtime,
) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"one\n")
    block.flush()  # (its actor starts with the first call that needs it)
    rt.get_actor("block", "pane-1").stop()
    block.append_output(b"two\n")
    assert block.stats().line_count == 2
    assert block.read_output().data == b"one\ntwo\n"  # starts a new actor for the block
    rt.close()
    with pytest.raises(Stopped):
        block.stats()
    with pytest.raises(Stopped):
        block.append_output(b"three\n")


# -- the seam: calls that return a future without waiting ---------------------------------------


def test_each_waiting_call_has_a_future_twin_that_gives_the_same_answer(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"hello there\n")
    assert block.flush_future().get(timeout=10) is None
    stats = block.stats_future()
    assert isinstance(stats, GreenroomFuture)
    assert stats.get(timeout=10) == block.stats() == SessionStats(START_MS, START_MS, 1, 2)
    assert block.meta_future().get(timeout=10) == block.meta()
    assert block.update_meta_future({"title": "t"}).get(timeout=10)["title"] == "t"
    archived = block.archive_future().get(timeout=10)
    assert archived.archived_bytes == 12
    assert block.read_output_future().get(timeout=10).archived
    assert block.restore_future().get(timeout=10).restored_bytes == 12
    # The previous archive is kept as a backup until the next archive; prune it.
    backup = rt.blocks.archive_dir / block.meta()["session:archive_backup_path"]
    size = backup.stat().st_size
    assert block.prune_archive_future(backup).get(timeout=10) == size
    assert not backup.exists()
    assert "session:archive_backup_path" not in block.meta()


def test_errors_reach_the_future_and_bad_input_is_refused_at_once(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    with pytest.raises(InvalidTransition, match="not archived"):
        block.restore_future().get(timeout=10)
    with pytest.raises(InvalidInput, match="prune_archive's path"):
        block.prune_archive_future(5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="record_line's byte count"):
        block.record_line(-1)


def test_a_stopped_actor_is_reconnected_off_the_callers_thread_keeping_the_order(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"one\n")
    block.flush()
    rt.get_actor("block", "pane-1").stop()
    # Reconnecting looks the block's record up (to make it if need be): hold it there.
    entered, go = threading.Event(), threading.Event()
    connecting_threads: list[int] = []
    real_find = rt.store.find_object
    held = [True]

    def held_find(*args: Any, **kwargs: Any) -> Any:
        if held.pop() if held else False:  # the reconnect's lookup (the first) only
            connecting_threads.append(threading.get_ident())
            entered.set()
            assert go.wait(10)
        return real_find(*args, **kwargs)

    monkeypatch.setattr(rt.store, "find_object", held_find)
    sender = threading.Thread(
        target=lambda: [block.append_output(b"two\n"), block.record_line(8)], daemon=True
    )
    sender.start()
    sender.join(10)
    assert not sender.is_alive(), "a tell waited for the reconnect"
    assert entered.wait(10)
    stats = block.stats_future()  # queued behind the tells, not sent to the old actor
    assert not stats.done
    go.set()
    assert stats.get(timeout=10).line_count == 3
    assert len(connecting_threads) == 1
    assert connecting_threads[0] not in (threading.get_ident(), sender.ident)
    assert block.read_output().data == b"one\ntwo\n"
    assert rt.actor_ids("block") == ["pane-1"]


def test_a_closed_runtime_fails_the_futures_with_stopped(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    rt.close()
    future = block.stats_future()
    with pytest.raises(Stopped):
        future.get(timeout=10)
    with pytest.raises(Stopped):
        block.archive_future().get(timeout=10)
    with pytest.raises(Stopped):
        rt.blocks.get("pane-1")


def test_output_is_counted_and_stored_without_a_turn_of_the_blocks_actor(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"one\n")
    rt.settle()
    assert rt.actor_ids("block") == []  # output needs no actor of the block's own
    block.flush()  # this call does: it starts one
    rt.get_actor("block", "pane-1").stop()
    # The actor is gone; output and stats go to the writer, which needs no new one.
    block.append_output(b"two\nthree")
    block.record_line(40)
    assert block.stats().line_count == 3
    rt.settle()
    assert rt.actor_ids("block") == []  # not started again for output
    assert rt.store.read_file("block", "pane-1", "output") == b"one\ntwo\nthree"
    block.flush()  # (an ask of the block's actor: it starts again)
    assert rt.actor_ids("block") == ["pane-1"]
    assert stored(rt, "pane-1")[LINE_COUNT] == 3  # "three" is still open


def test_an_unfinished_line_counts_once_when_the_blocks_actor_stops(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"one\ntw")
    block.flush()  # (starts the block's actor)
    rt.get_actor("block", "pane-1").stop()
    rt.settle()
    assert stored(rt, "pane-1")[LINE_COUNT] == 2  # the stream ended: "tw" counts
    block.append_output(b"o\nthree\n")  # its end does not count it again
    block.flush()
    assert block.stats().line_count == 3
    assert stored(rt, "pane-1")[LINE_COUNT] == 3


def test_output_told_while_the_runtime_closes_is_stored_or_refused(open_rt: Any) -> None:
    rt = open_rt()
    block = rt.blocks.get("pane-1")
    returned, busy = [0], threading.Event()
    refused: list[BaseException] = []

    def append() -> None:
        while True:
            try:
                block.append_output(b"0123456789\n")
            except Stopped as error:  # the writer is gone: refused, not lost
                refused.append(error)
                return
            returned[0] += 1
            if returned[0] == 2000:
                busy.set()

    appender = threading.Thread(target=append)
    appender.start()
    assert busy.wait(30)
    rt.close()  # while it appends: what it tells behind the writer's stop is kept
    appender.join(30)
    assert refused
    again = open_rt()
    assert again.store.read_file("block", "pane-1", "output") == b"0123456789\n" * returned[0]
    assert again.blocks.get("pane-1").stats().line_count == returned[0]


def test_output_waits_for_the_commit_delay_and_one_commit_serves_it_all(
    rt: Runtime, fake_clock: FakeClock
) -> None:
    assert rt.config.output_commit_delay_s == 0.02

    def outputs() -> list[bytes]:
        return [rt.store.read_file("block", f"pane-{n}", "output") for n in range(3)]

    blocks = [rt.blocks.get(f"pane-{n}") for n in range(3)]
    for block in blocks:
        block.append_output(b"x\n")
    rt.settle()  # commits at once, delay or not
    assert outputs() == [b"x\n"] * 3
    commits = rt.metrics()["store_commits"]
    for block in blocks:
        block.append_output(b"y\n")
    fake_clock.advance(0.019)  # within the delay: not committed yet
    assert outputs() == [b"x\n"] * 3
    fake_clock.advance(0.001)  # the delay ends: one commit for the three
    assert rt.metrics()["store_commits"] == commits + 1
    assert outputs() == [b"x\ny\n"] * 3
    blocks[0].append_output(b"z\n")
    blocks[0].flush()  # a flush does not wait for the delay either
    assert outputs()[0] == b"x\ny\nz\n"


class _Producer(GreenroomActor):
    """Appends to a block from its handler once let go (output made while a host settles)."""

    kind = "producer"

    def __init__(self, ctx: ActorContext, block: Block, go: threading.Event) -> None:
        super().__init__(ctx)
        self._block, self._go = block, go

    def on_receive(self, message: Any) -> Any:
        if message == "append":
            self._go.wait(30)  # (blocks on purpose: settle must wait for it)
            self._block.append_output(b"hello\n")
            return None
        return super().on_receive(message)


def test_settle_stores_output_made_while_it_waits(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"first\n")
    rt.settle()
    go = threading.Event()
    rt.spawn(_Producer, block, go, actor_id="producer").tell("append")
    settling = threading.Thread(target=rt.settle)
    settling.start()  # (its first look finds no commit waiting for its delay)
    go.set()
    settling.join(30)
    # The output came after settle began, and waited for its commit delay: stored all
    # the same before settle returned (no clock moved).
    assert rt.store.read_file("block", "pane-1", "output") == b"first\nhello\n"


def test_an_appender_that_may_not_wait_has_the_writer_commit_at_once(
    open_rt: Callable[..., Runtime], fake_clock: FakeClock
) -> None:
    rt = open_rt(max_pending_output_bytes=1000)
    block = rt.blocks.get("pane-1")
    accepted = refused = 0
    for _ in range(30):
        try:
            block.append_output_nowait(b"y" * 99 + b"\n")
            accepted += 1
        except Timeout:
            refused += 1
            fake_clock.settle()  # no time moves: the writer made room all the same
    assert refused
    assert accepted > 20  # (without a commit at once: 10, then refused for good)
    block.flush()
    assert rt.store.read_file("block", "pane-1", "output") == (b"y" * 99 + b"\n") * accepted


def test_a_lazily_started_blocks_actor_removes_dead_restores(rt: Runtime) -> None:
    block = rt.blocks.get("pane-1")
    block.append_output(b"one\n")
    rt.settle()  # stored, and no actor of the block started
    dead = "output.restoring." + "0123456789abcdef" * 2 + ".x"  # a crashed runtime's
    rt.store.create_file("block", "pane-1", dead)
    block.meta()  # starts the block's actor
    assert [info.name for info in rt.store.list_files("block", "pane-1")] == ["output"]
