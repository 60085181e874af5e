"""Resuming damaged transcript files: truncated, corrupt, missing leaves, unfinished turns."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from greenroom import (
    AssistantMessage,
    CompactionSummary,
    Runtime,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from greenroom.errors import StorageError

LOGGER = "greenroom.transcripts"


def make(rt: Runtime, turns: int = 3) -> tuple[str, list[Any], Usage, str]:
    """A closed transcript of `turns` turns: its path, context, usage and next id."""
    t = rt.transcripts.create()
    for n in range(turns):
        t.on_turn_end(
            [
                UserMessage(f"q{n}"),
                AssistantMessage(
                    f"a{n}", tool_calls=[ToolCall(f"c{n}", "ls", {})], usage=Usage(10, n)
                ),
                ToolResult(f"c{n}", f"r{n}"),
            ]
        )
    state = (t.path, t.context(), t.usage(), t.next_entry_id())
    t.close()
    return state


def raw_lines(path: str) -> list[bytes]:
    return Path(path).read_bytes().splitlines(keepends=True)


def write_lines(path: str, lines: list[bytes]) -> None:
    Path(path).write_bytes(b"".join(lines))


def test_clean_file_reports_clean(rt: Runtime) -> None:
    path, context, usage, next_id = make(rt)
    t = rt.transcripts.resume(path)
    assert t.recovery.clean
    assert t.recovery.notes == ()
    assert (t.context(), t.usage(), t.next_entry_id()) == (context, usage, next_id)
    t.close()


def test_truncated_last_line_is_cut_off_and_reported(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    path, context, usage, next_id = make(rt)
    whole = Path(path).read_bytes()
    partial = b'{"type":"message","id":"13","parent_id":"12","timest'
    Path(path).write_bytes(whole + partial)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        t = rt.transcripts.resume(path)
    report = t.recovery
    assert not report.clean
    assert report.truncated_line == len(whole.splitlines()) + 1
    assert report.truncated_bytes == len(partial)
    assert report.corrupt_lines == ()
    assert "cut short" in caplog.text
    assert Path(path).read_bytes() == whole  # repaired: ends at the last whole line
    assert (t.context(), t.usage(), t.next_entry_id()) == (context, usage, next_id)
    # Appending after the repair yields a readable file.
    t.on_turn_end([UserMessage("after the crash")])
    live = (t.context(), t.usage(), t.next_entry_id())
    t.close()
    again = rt.transcripts.resume(path)
    assert again.recovery.clean
    assert (again.context(), again.usage(), again.next_entry_id()) == live
    assert rt.metrics()["transcript_repairs"] == 1
    again.close()


def test_whole_last_entry_missing_its_newline_is_kept(rt: Runtime) -> None:
    path, context, usage, _next_id = make(rt)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-1])  # the final leaf without its newline
    t = rt.transcripts.resume(path)
    assert t.recovery.truncated_line == len(data.splitlines())
    assert t.recovery.truncated_bytes == 0
    assert Path(path).read_bytes() == data
    assert (t.context(), t.usage()) == (context, usage)
    t.close()


def test_corrupt_lines_are_skipped_with_their_line_numbers(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    path, context, _usage, next_id = make(rt)
    lines = raw_lines(path)
    # Line 1 is the header; lines 2-5 the first turn (3 messages, a leaf).
    lines.insert(5, b"this is not json\n")  # becomes line 6
    lines.insert(6, b"\n")  # line 7: empty
    lines.insert(7, b'{"type":"mystery","id":"x1","parent_id":null,"timestamp":"t"}\n')  # line 8
    lines.insert(8, b"[1, 2]\n")  # line 9
    write_lines(path, lines)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        t = rt.transcripts.resume(path)
    assert t.recovery.corrupt_lines == (6, 7, 8, 9)
    assert t.recovery.truncated_line is None
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 4
    # Nothing the intact lines held is lost.
    assert t.context() == context
    assert t.next_entry_id() == next_id
    assert rt.metrics()["transcript_corrupt_lines"] == 4
    t.close()


def test_a_corrupt_message_line_breaks_the_chain_and_is_reported(rt: Runtime) -> None:
    path, context, _usage, _next_id = make(rt)
    lines = raw_lines(path)
    assert json.loads(lines[6])["id"] == "6"  # the second turn's assistant message
    lines[6] = b'{"type":"message","id":"6", garbage\n'
    write_lines(path, lines)
    t = rt.transcripts.resume(path)
    assert t.recovery.corrupt_lines == (7,)
    assert any("missing" in note for note in t.recovery.notes)
    # The context keeps what is still linked: from the entry after the broken link.
    assert t.context() == context[5:]
    assert t.next_entry_id() == "13"  # ids never reused, even the corrupt line's
    t.close()


def test_corrupt_line_ids_are_not_reused(rt: Runtime) -> None:
    path, _context, _usage, _next_id = make(rt, turns=1)
    lines = raw_lines(path)
    # The last line is the leaf, id "4"; damage it beyond parsing, id still readable.
    lines[-1] = b'{"type":"leaf","id":"4","parent_id":"3",\n'
    write_lines(path, lines)
    t = rt.transcripts.resume(path)
    assert t.recovery.corrupt_lines == (5,)
    assert t.recovery.fallback_entry_id == "3"  # no leaf left: the newest entry
    assert t.next_entry_id() == "5"
    t.close()


def test_last_leaf_pointing_at_a_missing_entry_falls_back_to_the_newest(
    rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    path, context, _usage, _next_id = make(rt)
    with Path(path).open("ab") as file:
        file.write(b'{"type":"leaf","id":"99","parent_id":"12","timestamp":"t","entry_id":"77"}\n')
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        t = rt.transcripts.resume(path)
    assert t.recovery.missing_leaf == "77"
    assert t.recovery.fallback_entry_id == "11"  # the newest message entry
    assert "missing" in caplog.text
    assert t.context() == context  # not an empty context
    assert t.next_entry_id() == "100"
    assert rt.metrics()["transcript_leaf_fallbacks"] == 1
    t.close()


def test_unfinished_turn_after_the_last_leaf_is_reported_and_counted(rt: Runtime) -> None:
    path, context, usage, _next_id = make(rt)
    # A turn cut short: its messages were written, its leaf was not.
    with Path(path).open("ab") as file:
        for entry in (
            {"id": "13", "parent_id": "11", "message": {"role": "user", "text": "half"}},
            {
                "id": "14",
                "parent_id": "13",
                "message": {"role": "assistant", "text": "x", "usage": {"input_tokens": 5}},
            },
        ):
            line = {"type": "message", "timestamp": "2026-01-01T00:00:00.000Z", **entry}
            file.write(json.dumps(line).encode() + b"\n")
    t = rt.transcripts.resume(path)
    assert t.recovery.unfinished_entries == 2
    assert t.context() == context  # the active branch ends at the last leaf
    assert t.usage() == usage + Usage(5)  # money spent is still spent
    t.on_turn_end([UserMessage("again"), AssistantMessage("y", usage=Usage(1))], usage=Usage(7))
    live = (t.context(), t.usage(), t.next_entry_id())
    t.close()
    again = rt.transcripts.resume(path)
    assert (again.context(), again.usage(), again.next_entry_id()) == live
    again.close()


def test_file_with_only_a_partial_header_is_refused_untouched(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b'{"type":"session","vers')
    with pytest.raises(StorageError, match="no complete session header"):
        rt.transcripts.resume(path)
    assert path.read_bytes() == b'{"type":"session","vers'
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(StorageError, match="no complete session header"):
        rt.transcripts.resume(empty)


def test_fork_reads_a_damaged_source_without_repairing_it(rt: Runtime) -> None:
    path, context, _usage, _next_id = make(rt)
    damaged = Path(path).read_bytes() + b'{"type":"mess'
    Path(path).write_bytes(damaged)
    fork = rt.transcripts.fork(path)
    assert Path(path).read_bytes() == damaged  # the source is only read
    assert fork.recovery.truncated_line is not None
    assert fork.recovery.path == Path(path)  # a Path, as every path given back
    assert fork.context() == context
    fork.close()


def test_failed_turn_write_is_cut_back_out_of_the_file(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = rt.transcripts.create(durability="entry")
    t.on_turn_end([UserMessage("kept")])
    size = Path(t.path).stat().st_size
    calls = []

    def flaky_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the second entry of the turn
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("greenroom.transcripts.logformat.fsync", flaky_fsync)
    with pytest.raises(StorageError, match="No space left"):
        t.on_turn_end([UserMessage("a"), UserMessage("b"), UserMessage("c")])
    assert Path(t.path).stat().st_size == size
    assert t.context() == [UserMessage("kept")]
    assert t.next_entry_id() == "3"
    monkeypatch.undo()
    t.close()
    again = rt.transcripts.resume(t.path)
    assert again.recovery.clean
    assert again.context() == [UserMessage("kept")]
    again.close()


@pytest.mark.parametrize("durability", ["turn", "entry"])
def test_a_failed_turn_leaves_every_figure_in_memory_as_it_was(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    t = rt.transcripts.create(durability=durability)
    t.on_turn_end([UserMessage("kept"), AssistantMessage("ok", usage=Usage(100, 10, 0, 0))])
    before = (t.context(), t.context_tokens(), t.usage(), t.leaf_id(), t.next_entry_id())

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("greenroom.transcripts.logformat.fsync", full)
    with pytest.raises(StorageError, match="No space left"):
        t.on_turn_end(
            [UserMessage("lost"), AssistantMessage("lost too", usage=Usage(900, 90, 0, 0))]
        )
    monkeypatch.undo()
    assert (t.context(), t.context_tokens(), t.usage(), t.leaf_id(), t.next_entry_id()) == before
    # The next turn continues from the old tip, in memory as in the file.
    t.on_turn_end([UserMessage("next")])
    live = (t.context(), t.context_tokens(), t.usage(), t.leaf_id(), t.next_entry_id())
    assert live[0] == [*before[0], UserMessage("next")]
    t.close()
    again = rt.transcripts.resume(t.path)
    assert again.recovery.clean
    resumed = (again.context(), again.context_tokens(), again.usage(), again.leaf_id())
    assert resumed == live[:4]
    again.close()


def test_a_write_that_cannot_be_undone_makes_the_transcript_refuse_writes(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("kept")])

    def fail(*_args: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("greenroom.transcripts.logformat.fsync", fail)
    monkeypatch.setattr("greenroom.transcripts.logformat.os.ftruncate", fail)
    with pytest.raises(StorageError):
        t.on_turn_end([UserMessage("lost")])
    monkeypatch.undo()
    with pytest.raises(StorageError, match="resume it to repair"):
        t.on_turn_end([UserMessage("refused")])
    assert t.context() == [UserMessage("kept")]
    t.close()
    # The half-written turn is in the file, whole: a resume reports it, never hides it.
    again = rt.transcripts.resume(t.path)
    assert again.recovery.unfinished_entries == 0
    assert again.context() == [UserMessage("kept"), UserMessage("lost")]
    again.close()


def test_many_corrupt_lines_are_all_counted_but_described_up_to_a_limit(rt: Runtime) -> None:
    path, context, _usage, _next_id = make(rt, turns=1)
    lines = raw_lines(path)
    write_lines(path, lines[:-1] + [b"#garbage\n"] * 150 + lines[-1:])
    t = rt.transcripts.resume(path)
    assert t.recovery.corrupt_lines == tuple(range(5, 155))
    assert len(t.recovery.notes) == 101
    assert "50 more corrupt lines" in t.recovery.notes[-1]
    assert t.context() == context
    t.close()


def test_header_missing_its_newline_is_completed(rt: Runtime) -> None:
    t = rt.transcripts.create()
    t.close()
    data = Path(t.path).read_bytes()
    Path(t.path).write_bytes(data[:-1])
    again = rt.transcripts.resume(t.path)
    assert again.recovery.truncated_line == 1
    assert Path(t.path).read_bytes() == data
    again.on_turn_end([UserMessage("fine")])
    assert again.context() == [UserMessage("fine")]
    again.close()


def test_unfinished_entries_and_broken_links_are_counted(rt: Runtime) -> None:
    metrics = rt.metrics()
    assert metrics["transcript_unfinished_entries"] == 0
    assert metrics["transcript_broken_links"] == 0
    # A turn cut short: two entries after the last leaf.
    path, _context, _usage, _next_id = make(rt)
    with Path(path).open("ab") as file:
        for entry_id, parent in (("13", "11"), ("14", "13")):
            line = {
                "type": "message",
                "id": entry_id,
                "parent_id": parent,
                "timestamp": "2026-01-01T00:00:00.000Z",
                "message": {"role": "user", "text": "half"},
            }
            file.write(json.dumps(line).encode() + b"\n")
    t = rt.transcripts.resume(path)
    assert t.recovery.unfinished_entries == 2
    assert t.recovery.broken_links == 0
    t.close()
    assert rt.metrics()["transcript_unfinished_entries"] == 2
    # A corrupt message line: the next entry's parent is missing.
    path, _context, _usage, _next_id = make(rt)
    lines = raw_lines(path)
    lines[6] = b'{"type":"message","id":"6", garbage\n'
    write_lines(path, lines)
    t = rt.transcripts.resume(path)
    assert t.recovery.broken_links == 1
    t.close()
    assert rt.metrics()["transcript_broken_links"] == 1
    # A compaction whose first kept entry is not on its branch.
    t = rt.transcripts.create()
    for n in range(4):
        t.on_turn_end([UserMessage(f"q{n} " + "x" * 400), AssistantMessage(f"a{n}")])
    assert t.compact() is not None
    t.close()
    lines = raw_lines(t.path)
    for index, line in enumerate(lines):
        entry = json.loads(line)
        if entry["type"] == "compaction":
            entry["first_kept_entry_id"] = "999"
            lines[index] = json.dumps(entry).encode() + b"\n"
    write_lines(t.path, lines)
    again = rt.transcripts.resume(t.path)
    assert again.recovery.broken_links == 1
    assert any("999" in note for note in again.recovery.notes)
    assert isinstance(again.context()[0], CompactionSummary)  # starts at its summary
    again.close()
    assert rt.metrics()["transcript_broken_links"] == 2
    # A fork reading a damaged source counts what it found too.
    fork = rt.transcripts.fork(t.path)
    assert fork.recovery.broken_links == 1
    fork.close()
    assert rt.metrics()["transcript_broken_links"] == 3
