"""Transcripts through the public surface: create, turns, compaction, resume, branch, fork."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from greenroom import (
    AssistantMessage,
    CompactionConfig,
    CompactionSummary,
    CostBreakdown,
    FakeClock,
    ModelPricing,
    Runtime,
    ToolCall,
    ToolResult,
    Transcript,
    Usage,
    UserMessage,
)
from greenroom.errors import (
    CompactionError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Stopped,
    StorageError,
)
from greenroom.kernel import Kernel

# A small window so a few turns cross the threshold (bytes // 4 estimates).
# A tool_turn is ~130 tokens: three of them cross the threshold.
SMALL = CompactionConfig(context_window_tokens=2_000, threshold_tokens=300, keep_recent_tokens=150)
MANUAL = attrs.evolve(SMALL, enabled=False)


def lines(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def tool_turn(n: int, size: int = 40, usage: Usage | None = None) -> list[Any]:
    """A user request, a tool call, its result and a final answer (~`size` tokens each)."""
    return [
        UserMessage(f"request {n} " + "u" * (4 * size)),
        AssistantMessage(
            f"calling {n}",
            tool_calls=[ToolCall(f"call-{n}", "read_file", {"path": f"f{n}.py"})],
            usage=usage or Usage(),
        ),
        ToolResult(f"call-{n}", "r" * (4 * size)),
        AssistantMessage(f"answer {n} " + "a" * (4 * size)),
    ]


def snapshot(t: Transcript) -> tuple[Any, ...]:
    return (t.context(), t.usage(), t.next_entry_id(), t.leaf_id(), t.context_tokens())


# -- create and the file format --------------------------------------------------------------


def test_create_writes_header_and_turn_entries_linked_by_parent(rt: Runtime) -> None:
    t = rt.transcripts.create(cwd="/work", model="anthropic:claude-sonnet-4-5")
    result = t.on_turn_end([UserMessage("hi"), AssistantMessage("hello", usage=Usage(12, 3))])
    assert result.entry_ids == ("1", "2")
    assert result.compaction is None
    path = Path(t.path)
    assert path.parent == Path(rt.path).resolve().with_name("greenroom.db.transcripts")
    assert path.name == f"{t.session_id}.jsonl"
    header, *entries = lines(path)
    assert header == {
        "type": "session",
        "version": 1,
        "id": t.session_id,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "cwd": "/work",
        "parent_session": None,
        "model": "anthropic:claude-sonnet-4-5",
        "compaction": {  # the settings (not the summarizer), for a resume without them
            "enabled": True,
            "context_window_tokens": 200_000,
            "threshold_tokens": None,
            "keep_recent_tokens": None,  # left to its default
        },
    }
    assert [(e["type"], e["id"], e["parent_id"]) for e in entries] == [
        ("message", "1", None),
        ("message", "2", "1"),
        ("leaf", "3", "2"),
    ]
    assert entries[2]["entry_id"] == "2"
    assert entries[0]["message"] == {"role": "user", "text": "hi"}
    assert entries[1]["message"]["usage"]["input_tokens"] == 12
    assert t.recovery.clean
    t.close()


def test_timestamps_come_from_the_runtime_clock(rt: Runtime, fake_clock: FakeClock) -> None:
    t = rt.transcripts.create()
    fake_clock.advance(61.5)
    t.on_turn_end([UserMessage("later")])
    assert lines(t.path)[1]["timestamp"] == "2026-01-01T00:01:01.500Z"
    t.close()


def test_session_ids_are_random_and_files_never_overwritten(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = rt.transcripts.create()
    second = rt.transcripts.create()
    assert first.session_id != second.session_id
    # Entry ids are per transcript, not one counter shared by the process.
    assert first.on_turn_end([UserMessage("a")]).entry_ids == ("1",)
    assert second.on_turn_end([UserMessage("b")]).entry_ids == ("1",)
    assert len(first.session_id) == 16
    before = Path(first.path).read_bytes()
    # The next random draw collides with an existing file: it must draw again.
    draws = iter([first.session_id, "00000000000000ab"])
    monkeypatch.setattr("greenroom.transcripts.namespace.secrets.token_hex", lambda _n: next(draws))
    third = rt.transcripts.create()
    assert third.session_id == "00000000000000ab"
    assert Path(first.path).read_bytes() == before
    for t in (first, second, third):
        t.close()


def test_metrics_start_at_zero_and_count(rt: Runtime) -> None:
    metrics = rt.metrics()
    for name in (
        "transcripts_created",
        "transcript_turns",
        "transcript_fsyncs",
        "transcript_compactions",
        "transcript_compaction_failures",
        "transcript_corrupt_lines",
        "transcripts_open",
    ):
        assert metrics[name] == 0
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a"), AssistantMessage("b")])
    metrics = rt.metrics()
    assert metrics["transcripts_created"] == 1
    assert metrics["transcript_turns"] == 1
    assert metrics["transcript_entries_written"] == 3  # 2 messages and a leaf
    assert metrics["transcripts_open"] == 1
    t.close()
    assert rt.metrics()["transcripts_open"] == 0


@pytest.mark.parametrize(("durability", "fsyncs"), [("turn", 1), ("entry", 4), ("none", 0)])
def test_durability_fsyncs_per_turn_per_entry_or_never(
    rt: Runtime, durability: str, fsyncs: int
) -> None:
    t = rt.transcripts.create(durability=durability)
    before = rt.metrics()["transcript_fsyncs"]
    t.on_turn_end([UserMessage("a"), AssistantMessage("b"), UserMessage("c")])
    assert rt.metrics()["transcript_fsyncs"] - before == fsyncs
    t.close()


def test_default_durability_comes_from_the_config(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(transcript_durability="none")
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a")])
    t.close()
    assert rt.metrics()["transcript_fsyncs"] == 0


def test_transcript_dir_from_config_and_directory_argument(
    open_rt: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = open_rt(transcript_dir=str(tmp_path / "logs"))
    t = rt.transcripts.create()
    assert Path(t.path).parent == tmp_path / "logs"
    other = rt.transcripts.create(directory=tmp_path / "elsewhere")
    assert Path(other.path).parent == tmp_path / "elsewhere"
    t.close()
    other.close()


class _PathLike:
    """An `os.PathLike` that is not a `Path`."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __fspath__(self) -> str:
        return str(self._path)


def test_paths_are_taken_as_str_or_pathlike_and_given_back_as_path(
    rt: Runtime, tmp_path: Path
) -> None:
    assert isinstance(rt.transcripts.directory, Path)
    t = rt.transcripts.create(directory=_PathLike(tmp_path / "a"))
    assert isinstance(t.path, Path)
    assert t.path.parent == tmp_path / "a"
    assert isinstance(t.recovery.path, Path)
    t.on_turn_end([UserMessage("q")])
    t.close()
    again = rt.transcripts.resume(_PathLike(t.path))
    assert again.path == t.path
    assert again.recovery.path == t.path
    again.close()
    fork = rt.transcripts.fork(str(t.path), directory=str(tmp_path / "b"))
    assert fork.path.parent == tmp_path / "b"
    assert fork.recovery.path == t.path  # what reading the source found
    assert fork.context() == [UserMessage("q")]
    fork.close()


@pytest.mark.parametrize("bad", ["with\0nul", "lone\ud800surrogate", "", 3, b"bytes"])
def test_unusable_paths_are_invalid_input(rt: Runtime, bad: Any) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("q")])
    with pytest.raises(InvalidInput, match="directory"):
        rt.transcripts.create(directory=bad)
    with pytest.raises(InvalidInput, match="path"):
        rt.transcripts.resume(bad)
    with pytest.raises(InvalidInput, match="path"):
        rt.transcripts.fork(bad)
    with pytest.raises(InvalidInput, match="directory"):
        rt.transcripts.fork(t.path, directory=bad)
    assert rt.metrics()["transcripts_created"] == 1
    assert rt.metrics()["transcripts_forked"] == 0
    assert t.context() == [UserMessage("q")]
    t.close()


def test_memory_database_uses_a_temporary_folder(fake_clock: FakeClock) -> None:
    with Runtime.open(":memory:", clock=fake_clock) as rt:
        t = rt.transcripts.create()
        assert Path(t.path).exists()
        assert Path(t.path).parent == rt.transcripts.directory
        folder = rt.transcripts.directory
    assert not folder.exists()  # the runtime made it: the runtime removes it


def test_a_folder_the_runtime_did_not_make_is_left_on_close(
    open_rt: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = open_rt()
    t = rt.transcripts.create()
    rt.close()
    assert Path(t.path).exists()
    assert Path(t.path).parent == rt.transcripts.directory


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_is_refused_and_changes_nothing(rt: Runtime) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a")])
    size = Path(t.path).stat().st_size
    state = snapshot(t)
    with pytest.raises(InvalidInput, match="at least one message"):
        t.on_turn_end([])
    with pytest.raises(InvalidInput, match="summaries are written by compaction"):
        t.on_turn_end([CompactionSummary("s", "1", 1, 1)])
    with pytest.raises(InvalidInput, match="list of UserMessage"):
        t.on_turn_end("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="usage must be None, a Usage"):
        t.on_turn_end([UserMessage("a")], usage=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="reason"):
        t.compact("")
    with pytest.raises(NotFound, match="no message or compaction entry '99'"):
        t.append_leaf("99")
    with pytest.raises(NotFound):
        t.append_leaf("2")  # a leaf entry, not a message
    assert Path(t.path).stat().st_size == size
    assert snapshot(t) == state
    t.close()


def test_bad_messages_and_options_are_refused_when_made(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match="text must be a str"):
        UserMessage(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        UserMessage("\ud800")
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        ToolCall("c", "t", {"x": object()})
    with pytest.raises(InvalidInput, match="JSON-serialisable"):
        ToolCall("c", "t", {"x": float("nan")})
    with pytest.raises(InvalidInput, match="int >= 0"):
        Usage(input_tokens=-1)
    with pytest.raises(InvalidInput, match="int >= 0"):
        Usage(output_tokens=True)
    with pytest.raises(InvalidInput, match="ToolCall objects"):
        AssistantMessage("x", tool_calls=["c"])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="must not exceed"):
        CompactionConfig(context_window_tokens=1_000, threshold_tokens=2_000)
    with pytest.raises(InvalidInput, match="below the threshold"):
        CompactionConfig(
            context_window_tokens=10_000, threshold_tokens=5_000, keep_recent_tokens=5_000
        )
    with pytest.raises(InvalidInput, match="callable"):
        CompactionConfig(summarizer="nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="durability"):
        rt.transcripts.create(durability="sometimes")
    with pytest.raises(InvalidInput, match="CompactionConfig"):
        rt.transcripts.create(compaction={"enabled": False})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="cwd"):
        rt.transcripts.create(cwd=3)  # type: ignore[arg-type]
    assert rt.metrics()["transcripts_created"] == 0


def test_tool_call_arguments_are_a_copy(rt: Runtime) -> None:
    arguments = {"path": "a.py"}
    call = ToolCall("c1", "read", arguments)
    arguments["path"] = "changed.py"
    assert call.arguments == {"path": "a.py"}


def test_tool_call_arguments_are_read_only_so_the_context_cannot_be_changed(
    rt: Runtime,
) -> None:
    arguments = {"path": "a.py", "lines": [1, 2], "opts": {"follow": True}}
    t = rt.transcripts.create()
    t.on_turn_end(
        [UserMessage("read"), AssistantMessage("", tool_calls=[ToolCall("c1", "read", arguments)])]
    )
    call = t.context()[1].tool_calls[0]
    for change in (
        lambda: call.arguments.__setitem__("path", "other.py"),
        lambda: call.arguments.update(path="other.py"),
        lambda: call.arguments.pop("path"),
        lambda: call.arguments.clear(),
        lambda: call.arguments["lines"].append(3),
        lambda: call.arguments["lines"].__setitem__(0, 9),
        lambda: call.arguments["opts"].__setitem__("follow", False),
    ):
        with pytest.raises(InvalidTransition, match="read-only"):
            change()
    assert t.context()[1].tool_calls[0].arguments == arguments  # memory unchanged
    # Still a JSON object: equal to a dict, serialisable, hashable; a mutable copy on demand.
    assert isinstance(call.arguments, dict)
    assert json.loads(json.dumps(call.arguments)) == arguments
    assert hash(call) == hash(ToolCall("c1", "read", dict(arguments)))
    mine = call.arguments_copy()
    mine["lines"].append(3)
    assert mine["lines"] == [1, 2, 3]
    assert call.arguments["lines"] == [1, 2]
    live = snapshot(t)
    t.close()
    again = rt.transcripts.resume(t.path)
    assert snapshot(again) == live
    with pytest.raises(InvalidTransition, match="read-only"):
        again.context()[1].tool_calls[0].arguments["opts"].clear()
    again.close()


# -- resume ----------------------------------------------------------------------------------


def test_round_trip_with_compaction_resume_equals_live_state(rt: Runtime) -> None:
    t = rt.transcripts.create(model="anthropic:claude-haiku-4-5", compaction=SMALL)
    compactions = []
    expected: list[Any] = []  # the agent buffer as the host keeps it
    for n in range(8):
        result = t.on_turn_end(tool_turn(n), usage=Usage(100 + n, 10, 5, 1) if n % 2 else None)
        expected += tool_turn(n)
        if result.compaction is not None:
            compactions.append(result.compaction)
            assert result.context_tokens < result.compaction.tokens_before
            expected = list(result.compaction.context)
            assert isinstance(expected[0], CompactionSummary)
            assert expected[1:] == tool_turn(n)[-len(expected) + 1 :]  # kept: the newest
    assert len(compactions) >= 2
    live = snapshot(t)
    assert isinstance(live[0][0], CompactionSummary)
    assert live[0] == expected
    t.close()
    again = rt.transcripts.resume(t.path)
    assert again.recovery.clean
    assert again.session_id == t.session_id
    assert snapshot(again) == live
    # Ids continue after the resume; the next turn goes on the same branch.
    next_id = again.next_entry_id()
    result = again.on_turn_end([UserMessage("after resume")])
    assert result.entry_ids == (next_id,)
    assert lines(t.path)[-2]["parent_id"] == live[3]
    again.close()


def test_usage_is_the_sum_of_messages_or_the_turn_figure_and_survives_resume(rt: Runtime) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a"), AssistantMessage("b", usage=Usage(10, 1, 2, 3))])
    t.on_turn_end(
        [UserMessage("c"), AssistantMessage("d", usage=Usage(5, 5))], usage=Usage(1000, 100)
    )
    assert t.usage() == Usage(1010, 101, 2, 3)
    t.close()
    assert rt.transcripts.resume(t.path).usage() == Usage(1010, 101, 2, 3)


def test_usage_is_python_ints_without_truncation(rt: Runtime) -> None:
    t = rt.transcripts.create()
    big = 2**40
    t.on_turn_end([AssistantMessage("x", usage=Usage(big, big))])
    t.on_turn_end([AssistantMessage("y", usage=Usage(big, 1))])
    assert t.usage() == Usage(2 * big, big + 1)
    t.close()
    assert rt.transcripts.resume(t.path).usage().input_tokens == 2 * big


def test_resume_refuses_an_open_file_and_missing_or_foreign_files(
    rt: Runtime, tmp_path: Path
) -> None:
    t = rt.transcripts.create()
    with pytest.raises(InvalidTransition, match="open already"):
        rt.transcripts.resume(t.path)
    with pytest.raises(NotFound):
        rt.transcripts.resume(tmp_path / "nope.jsonl")
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"hello": 1}\n')
    with pytest.raises(StorageError, match="not a transcript"):
        rt.transcripts.resume(foreign)
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"type":"session","version":9,"id":"x","timestamp":"","cwd":"."}\n')
    with pytest.raises(StorageError, match="upgrade greenroom"):
        rt.transcripts.resume(newer)
    t.close()


# -- branching -------------------------------------------------------------------------------


def test_append_leaf_branches_and_resume_picks_the_branch(rt: Runtime) -> None:
    t = rt.transcripts.create()
    first = t.on_turn_end([UserMessage("q1"), AssistantMessage("a1")])
    t.on_turn_end([UserMessage("q2"), AssistantMessage("a2")])
    t.append_leaf(first.entry_ids[-1])  # back to after the first answer
    assert t.context() == [UserMessage("q1"), AssistantMessage("a1")]
    assert t.leaf_id() == first.entry_ids[-1]
    branch = t.on_turn_end([UserMessage("q2 again"), AssistantMessage("a2 again")])
    entries = {e["id"]: e for e in lines(t.path)[1:]}
    assert entries[branch.entry_ids[0]]["parent_id"] == first.entry_ids[-1]
    live = snapshot(t)
    assert live[0] == [
        UserMessage("q1"),
        AssistantMessage("a1"),
        UserMessage("q2 again"),
        AssistantMessage("a2 again"),
    ]
    t.close()
    again = rt.transcripts.resume(t.path)
    assert snapshot(again) == live
    assert rt.metrics()["transcript_branch_moves"] == 1
    again.close()


def test_branching_to_before_a_compaction_restores_the_full_context(rt: Runtime) -> None:
    t = rt.transcripts.create(compaction=SMALL)
    ids = []
    for n in range(6):
        ids.append(t.on_turn_end(tool_turn(n)).entry_ids)
    assert isinstance(t.context()[0], CompactionSummary)
    t.append_leaf(ids[1][-1])  # end of the second turn, before any compaction
    assert t.context() == tool_turn(0) + tool_turn(1)
    live = snapshot(t)
    t.close()
    assert snapshot(rt.transcripts.resume(t.path)) == live


def test_usage_counts_every_branch_and_context_only_the_active_one(rt: Runtime) -> None:
    t = rt.transcripts.create(model="anthropic:claude-sonnet-4-5")
    first = t.on_turn_end([UserMessage("q"), AssistantMessage("a", usage=Usage(100, 10))])
    t.on_turn_end([UserMessage("abandoned"), AssistantMessage("x", usage=Usage(1000, 100))])
    t.append_leaf(first.entry_ids[-1])
    t.on_turn_end([UserMessage("kept"), AssistantMessage("y", usage=Usage(10, 1))])
    assert t.usage() == Usage(1110, 111)
    assert UserMessage("abandoned") not in t.context()
    # The context size comes from the active branch's newest usage, not the spend.
    assert t.context_tokens() == 11
    t.close()
    again = rt.transcripts.resume(t.path)
    assert again.usage() == Usage(1110, 111)
    assert again.context_tokens() == 11
    again.close()


# -- fork ------------------------------------------------------------------------------------


def test_fork_holds_only_the_active_branch(rt: Runtime) -> None:
    t = rt.transcripts.create(cwd="/repo", model="openai:gpt-4o", compaction=SMALL)
    first = t.on_turn_end([UserMessage("q1"), AssistantMessage("a1", usage=Usage(7, 1))])
    t.on_turn_end([UserMessage("dead end"), AssistantMessage("x", usage=Usage(500, 5))])
    t.append_leaf(first.entry_ids[-1])
    for n in range(5):
        t.on_turn_end(tool_turn(n))
    live_context = t.context()
    source_bytes = Path(t.path).read_bytes()
    fork = rt.transcripts.fork(t.path)  # the source is still open: forking only reads it
    assert Path(t.path).read_bytes() == source_bytes
    assert fork.session_id != t.session_id
    assert fork.path != t.path
    assert fork.context() == live_context
    header, *entries = lines(fork.path)
    assert header["parent_session"] == t.session_id
    assert header["cwd"] == "/repo"
    assert header["model"] == "openai:gpt-4o"
    texts = json.dumps(entries)
    assert "dead end" not in texts
    assert fork.usage() == Usage(7, 1)  # the copied messages' own usage
    # The copied entries keep their ids; the fork's own leaf takes the source's next id.
    source_ids = {e["id"] for e in lines(t.path)[1:]}
    assert {e["id"] for e in entries[:-1]} <= source_ids
    assert entries[-1]["type"] == "leaf"
    assert entries[-1]["id"] == t.next_entry_id()
    assert fork.next_entry_id() == str(int(t.next_entry_id()) + 1)
    # The fork goes its own way; the source is unaffected.
    fork.on_turn_end([UserMessage("only in the fork")])
    assert UserMessage("only in the fork") not in t.context()
    fork_state = snapshot(fork)
    fork.close()
    assert snapshot(rt.transcripts.resume(fork.path)) == fork_state
    t.close()


def test_fork_of_an_empty_transcript(rt: Runtime) -> None:
    t = rt.transcripts.create()
    fork = rt.transcripts.fork(t.path)
    assert fork.context() == []
    assert fork.leaf_id() is None
    fork.on_turn_end([UserMessage("first")])
    assert fork.context() == [UserMessage("first")]
    t.close()
    fork.close()


# -- compaction ------------------------------------------------------------------------------


def test_threshold_is_on_context_size_not_cumulative_spend(rt: Runtime) -> None:
    config = CompactionConfig(
        context_window_tokens=10_000, threshold_tokens=5_000, keep_recent_tokens=1_000
    )
    t = rt.transcripts.create(compaction=config)
    # Each call is billed 3,000 tokens on a context of ~3,000: the spend passes the
    # threshold on turn 2, the context never does.
    for n in range(10):
        result = t.on_turn_end(
            [UserMessage(f"q{n}"), AssistantMessage(f"a{n}", usage=Usage(2_900, 100))]
        )
        assert result.compaction is None
    assert t.usage().total_tokens == 30_000
    # Now a call whose context really is over the threshold.
    result = t.on_turn_end([UserMessage("big"), AssistantMessage("z", usage=Usage(5_200, 100))])
    assert result.compaction is not None
    assert result.compaction.reason == "threshold"
    assert result.compaction.tokens_before == 5_300
    t.close()


def test_usage_from_before_a_compaction_does_not_retrigger_it(rt: Runtime) -> None:
    config = CompactionConfig(
        context_window_tokens=10_000, threshold_tokens=5_000, keep_recent_tokens=10
    )
    t = rt.transcripts.create(compaction=config)
    t.on_turn_end([UserMessage("q0"), AssistantMessage("a0")])
    result = t.on_turn_end([UserMessage("q1"), AssistantMessage("a1", usage=Usage(6_000, 10))])
    assert result.compaction is not None
    # The kept answer still carries its 6,010-token usage; it measured the old context.
    assert t.context_tokens() < 100
    assert t.on_turn_end([UserMessage("q2")]).compaction is None
    t.close()


def test_disabled_compaction_never_triggers_but_manual_does(rt: Runtime) -> None:
    config = CompactionConfig(
        enabled=False, context_window_tokens=2_000, threshold_tokens=300, keep_recent_tokens=150
    )
    t = rt.transcripts.create(compaction=config)
    for n in range(6):
        assert t.on_turn_end(tool_turn(n)).compaction is None
    result = t.compact()
    assert result is not None
    assert result.reason == "manual"
    assert t.context() == list(result.context)
    assert isinstance(result.context[0], CompactionSummary)
    assert result.context[0].first_kept_entry_id == result.first_kept_entry_id
    assert result.tokens_after < result.tokens_before
    t.close()


def test_manual_compaction_with_nothing_to_summarise_returns_none(rt: Runtime) -> None:
    t = rt.transcripts.create()
    assert t.compact() is None
    t.on_turn_end([UserMessage("just one")])
    size = Path(t.path).stat().st_size
    assert t.compact("because") is None
    assert Path(t.path).stat().st_size == size
    t.close()


def test_compaction_keeps_recent_turns_whole_and_tool_pairs_together(rt: Runtime) -> None:
    t = rt.transcripts.create(compaction=MANUAL)
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    result = t.compact()
    assert result is not None
    kept = list(result.context[1:])
    assert isinstance(kept[0], UserMessage)  # a turn boundary
    calls = {c.id for m in kept if isinstance(m, AssistantMessage) for c in m.tool_calls}
    results = {m.tool_call_id for m in kept if isinstance(m, ToolResult)}
    assert calls == results
    t.close()


def test_compaction_entry_written_with_its_leaf(rt: Runtime) -> None:
    t = rt.transcripts.create(compaction=MANUAL)
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    result = t.compact()
    assert result is not None
    *_, compaction, leaf = lines(t.path)
    assert compaction["type"] == "compaction"
    assert compaction["id"] == result.entry_id
    assert compaction["first_kept_entry_id"] == result.first_kept_entry_id
    assert compaction["summary"] == result.summary.summary
    assert compaction["tokens_before"] == result.tokens_before
    assert leaf == {
        "type": "leaf",
        "id": str(int(result.entry_id) + 1),
        "parent_id": result.entry_id,
        "timestamp": compaction["timestamp"],
        "entry_id": result.entry_id,
    }
    t.close()


def test_custom_summarizer_gets_the_summarised_messages_on_the_blocking_pool(
    rt: Runtime,
) -> None:
    from greenroom.actors.blocking import BlockingPool

    seen: list[Any] = []

    def summarizer(messages: list[Any]) -> str:
        seen.append((list(messages), BlockingPool.current() is not None))
        return f"{len(messages)} messages"

    t = rt.transcripts.create(compaction=attrs.evolve(MANUAL, summarizer=summarizer))
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    result = t.compact()
    assert result is not None
    (messages, on_pool), *_ = seen
    assert on_pool
    assert messages == tool_turn(0) + tool_turn(1)
    assert result.summary.summary == "8 messages"
    # A second compaction summarises the first summary with what follows it.
    t.on_turn_end(tool_turn(3))
    t.compact()
    assert isinstance(seen[-1][0][0], CompactionSummary)
    t.close()


@pytest.mark.parametrize("failure", ["raises", "returns nothing"])
def test_summarizer_failure_leaves_the_transcript_uncompacted(rt: Runtime, failure: str) -> None:
    def summarizer(messages: list[Any]) -> Any:
        if failure == "raises":
            raise RuntimeError("the LLM is down")
        return ""

    config = CompactionConfig(
        context_window_tokens=2_000,
        threshold_tokens=300,
        keep_recent_tokens=150,
        summarizer=summarizer,
    )
    t = rt.transcripts.create(compaction=config)
    t.on_turn_end(tool_turn(0))
    t.on_turn_end(tool_turn(1))
    before = snapshot(t)
    with pytest.raises(CompactionError, match="not compacted") as caught:
        t.on_turn_end(tool_turn(2))
    # The turn itself was saved; only the compaction failed.
    turn = caught.value.turn  # type: ignore[attr-defined]
    assert turn.compaction is None
    assert t.context() == before[0] + tool_turn(2)
    assert not any(e["type"] == "compaction" for e in lines(t.path))
    with pytest.raises(CompactionError):
        t.compact()
    assert t.context() == before[0] + tool_turn(2)
    assert rt.metrics()["transcript_compaction_failures"] == 2
    live = snapshot(t)
    t.close()
    assert snapshot(rt.transcripts.resume(t.path)) == live


def test_calls_wait_for_a_compaction_under_way(rt: Runtime) -> None:
    release = threading.Event()
    started = threading.Event()

    def summarizer(messages: list[Any]) -> str:
        started.set()
        assert release.wait(10)
        return "slow summary"

    config = CompactionConfig(
        context_window_tokens=2_000,
        threshold_tokens=300,
        keep_recent_tokens=150,
        summarizer=summarizer,
    )
    t = rt.transcripts.create(compaction=config)
    t.on_turn_end(tool_turn(0))
    t.on_turn_end(tool_turn(1))
    results: dict[str, Any] = {}
    compacting = threading.Thread(target=lambda: results.update(turn=t.on_turn_end(tool_turn(2))))
    compacting.start()
    assert started.wait(10)
    # Sent while the summarizer runs: held back, not answered with the old context.
    context = t.context_future()
    release.set()
    compacting.join(10)
    assert results["turn"].compaction is not None
    # Held back until the compaction was written: it sees the compacted context.
    assert isinstance(context.get(timeout=10)[0], CompactionSummary)
    t.close()


def test_many_calls_held_back_by_a_compaction_are_answered_in_order(rt: Runtime) -> None:
    release = threading.Event()
    started = threading.Event()

    def summarizer(messages: list[Any]) -> str:
        started.set()
        assert release.wait(10)
        return "slow summary"

    t = rt.transcripts.create(compaction=attrs.evolve(MANUAL, summarizer=summarizer))
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    compacting = t.compact_future()
    assert started.wait(10)
    # More calls than the interpreter has stack frames: served in a loop, not recursively.
    held = [t.next_entry_id_future() for _ in range(3_000)]
    bad_leaf = t.append_leaf_future("999")  # one failing in the middle answers alone
    turn = t.on_turn_end_future([UserMessage("after")])
    tail = [t.leaf_id_future() for _ in range(3_000)]
    assert not any(future.done for future in [*held, bad_leaf, turn, *tail])
    release.set()
    compaction = compacting.get(timeout=10)
    assert compaction is not None
    after_compaction = str(int(compaction.entry_id) + 2)
    assert {future.get(timeout=10) for future in held} == {after_compaction}
    with pytest.raises(NotFound):
        bad_leaf.get(timeout=10)
    assert turn.get(timeout=10).entry_ids == (after_compaction,)
    assert {future.get(timeout=10) for future in tail} == {after_compaction}
    assert t.context()[-1] == UserMessage("after")
    t.close()


def test_failed_compaction_write_leaves_memory_and_file_as_they_were(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = rt.transcripts.create(compaction=MANUAL)
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    before = snapshot(t)
    size = Path(t.path).stat().st_size

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("greenroom.transcripts.logformat.fsync", broken_fsync)
    with pytest.raises(StorageError, match="nothing of this write was kept"):
        t.compact()
    assert snapshot(t) == before
    assert Path(t.path).stat().st_size == size
    with pytest.raises(StorageError):
        t.on_turn_end([UserMessage("lost?")])
    assert snapshot(t) == before
    assert rt.metrics()["transcript_write_failures"] == 2
    monkeypatch.undo()
    assert t.compact() is not None  # works again once the disk does
    live = snapshot(t)
    t.close()
    assert snapshot(rt.transcripts.resume(t.path)) == live


# -- cost ------------------------------------------------------------------------------------


def test_cost_for_a_known_model(rt: Runtime) -> None:
    t = rt.transcripts.create(model="anthropic:claude-sonnet-4-5")
    t.on_turn_end([AssistantMessage("x", usage=Usage(1_000_000, 100_000, 2_000_000, 10_000))])
    cost = t.cost()
    assert isinstance(cost, CostBreakdown)
    assert cost.input == pytest.approx(3.0)
    assert cost.output == pytest.approx(1.5)
    assert cost.cache_read == pytest.approx(0.6)
    assert cost.cache_write == pytest.approx(0.0375)
    assert cost.total == pytest.approx(5.1375)
    t.close()
    assert rt.transcripts.resume(t.path).cost() == cost  # the model is in the header


def test_cost_for_an_unknown_model_is_none(rt: Runtime) -> None:
    for model in ("acme:unknown-model", ""):
        t = rt.transcripts.create(model=model)
        t.on_turn_end([AssistantMessage("x", usage=Usage(10, 10))])
        assert t.cost() is None
        t.close()


def test_pricing_from_the_config_adds_and_overrides(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(
        pricing={
            "acme:tiny": ModelPricing(1.0, 2.0),
            "anthropic:claude-sonnet-4-5": ModelPricing(0.0, 0.0, 0.0, 0.0),
        }
    )
    tiny = rt.transcripts.create(model="acme:tiny")
    tiny.on_turn_end([AssistantMessage("x", usage=Usage(500_000, 500_000))])
    assert tiny.cost() == CostBreakdown(0.5, 1.0, 0.0, 0.0)
    sonnet = rt.transcripts.create(model="anthropic:claude-sonnet-4-5")
    sonnet.on_turn_end([AssistantMessage("x", usage=Usage(500_000, 500_000))])
    assert sonnet.cost().total == 0.0  # type: ignore[union-attr]
    # A resume may name the model when the header has none.
    tiny.close()
    assert rt.transcripts.resume(tiny.path, model="acme:tiny").cost().total == 1.5  # type: ignore[union-attr]
    sonnet.close()


def test_bad_pricing_tables_are_refused() -> None:
    from greenroom import RuntimeConfig

    with pytest.raises(InvalidInput, match="provider:model"):
        RuntimeConfig(pricing={"no-provider": ModelPricing(1, 1)})
    with pytest.raises(InvalidInput, match="must be a ModelPricing"):
        RuntimeConfig(pricing={"a:b": (1, 2, 3, 4)})
    with pytest.raises(InvalidInput, match="dollars per million"):
        ModelPricing(-1, 0)
    with pytest.raises(InvalidInput, match="dollars per million"):
        ModelPricing(float("inf"), 0)


# -- closing ---------------------------------------------------------------------------------


def test_close_releases_the_file_and_later_calls_raise_stopped(rt: Runtime) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a")])
    t.close()
    t.close()  # idempotent
    assert t.closed
    with pytest.raises(Stopped, match=r"rt\.transcripts\.resume"):
        t.on_turn_end([UserMessage("b")])
    with pytest.raises(Stopped):
        t.context()
    again = rt.transcripts.resume(t.path)  # the lock is released
    assert again.context() == [UserMessage("a")]
    again.close()
    assert rt.metrics()["transcripts_closed"] == 2


def test_runtime_close_closes_open_transcripts(
    open_rt: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = open_rt(transcript_durability="none")
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a"), AssistantMessage("b", usage=Usage(1, 2))])
    rt.close()
    assert t.closed
    with pytest.raises(Stopped):
        t.usage()
    with pytest.raises(Stopped):
        rt.transcripts.create()
    other = open_rt()
    again = other.transcripts.resume(t.path)
    assert again.usage() == Usage(1, 2)
    assert again.recovery.clean


def test_a_summarizer_calling_its_own_transcript_is_refused_not_deadlocked(rt: Runtime) -> None:
    holder: list[Transcript] = []

    def summarizer(messages: list[Any]) -> str:
        return str(len(holder[0].context()))  # would wait for the compaction it is part of

    t = rt.transcripts.create(compaction=attrs.evolve(MANUAL, summarizer=summarizer))
    holder.append(t)
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    with pytest.raises(CompactionError, match="InvalidTransition") as caught:
        t.compact()
    assert isinstance(caught.value.__cause__, InvalidTransition)
    assert "own summarizer" in str(caught.value.__cause__)
    t.close()


def test_a_folder_that_cannot_be_made_is_a_storage_error(rt: Runtime, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create transcript folder"):
        rt.transcripts.create(directory=blocker)
    with pytest.raises(StorageError, match="cannot create transcript folder"):
        rt.transcripts.fork(rt.transcripts.create().path, directory=blocker)


# -- usage of turns given a total, through resume ------------------------------------------


def test_turn_total_replaces_assistant_usage_not_in_the_turns_last_message(rt: Runtime) -> None:
    t = rt.transcripts.create()
    t.on_turn_end(
        [
            UserMessage("go"),
            AssistantMessage("", tool_calls=[ToolCall("c1", "ls", {})], usage=Usage(5)),
            ToolResult("c1", "files"),
        ],
        usage=Usage(7),
    )
    t.on_turn_end(
        [
            UserMessage("more"),
            AssistantMessage("a", usage=Usage(3, 1)),
            AssistantMessage("b"),  # no usage of its own
            UserMessage("and?"),
        ],
        usage=Usage(10, 2),
    )
    assert t.usage() == Usage(17, 2)
    live = snapshot(t)
    t.close()
    again = rt.transcripts.resume(t.path)
    assert again.usage() == Usage(17, 2)  # not 17 + 5 + 3
    assert snapshot(again) == live
    again.close()


def _random_turn(rng: Any, n: int) -> list[Any]:
    turn: list[Any] = [UserMessage(f"q{n} " + "u" * rng.randrange(0, 300))]
    for step in range(rng.randrange(0, 3)):
        calls = [ToolCall(f"c{n}-{step}-{k}", "tool", {"k": k}) for k in range(rng.randrange(3))]
        usage = Usage(rng.randrange(50), rng.randrange(20)) if rng.random() < 0.6 else Usage()
        turn.append(AssistantMessage("s" * rng.randrange(0, 200), calls, usage))
        turn.extend(ToolResult(call.id, "r" * rng.randrange(0, 300)) for call in calls)
    if rng.random() < 0.5:
        turn.append(AssistantMessage("done", usage=Usage(rng.randrange(9))))
    return turn


@pytest.mark.parametrize("seed", range(6))
def test_resume_equals_live_over_random_turns_branches_and_compactions(
    rt: Runtime, seed: int
) -> None:
    import random

    rng = random.Random(seed)
    config = CompactionConfig(
        context_window_tokens=2_000, threshold_tokens=400, keep_recent_tokens=150
    )
    t = rt.transcripts.create(compaction=config, durability="none")
    seen: list[str] = []
    for n in range(25):
        action = rng.random()
        if action < 0.1 and seen:
            t.append_leaf(rng.choice(seen))
        elif action < 0.15:
            t.compact()
        elif action < 0.22:
            live = snapshot(t)
            t.close()
            t = rt.transcripts.resume(t.path, compaction=config, durability="none")
            assert t.recovery.clean
            assert snapshot(t) == live
        else:
            total = Usage(rng.randrange(100), rng.randrange(30), rng.randrange(5))
            result = t.on_turn_end(
                _random_turn(rng, n), usage=total if rng.random() < 0.5 else None
            )
            seen.extend(result.entry_ids)
    live = snapshot(t)
    t.close()
    again = rt.transcripts.resume(t.path, compaction=config)
    assert again.recovery.clean
    assert snapshot(again) == live
    again.close()


# -- compaction failing inside a turn ---------------------------------------------------------


def test_failed_compaction_write_in_a_turn_is_a_compaction_error_carrying_the_turn(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = rt.transcripts.create(compaction=SMALL)
    t.on_turn_end(tool_turn(0))
    t.on_turn_end(tool_turn(1))
    before = snapshot(t)
    calls = []

    def second_fsync_fails(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the turn's fsync passes, the compaction's fails
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("greenroom.transcripts.logformat.fsync", second_fsync_fails)
    with pytest.raises(CompactionError, match="not compacted") as caught:
        t.on_turn_end(tool_turn(2))
    monkeypatch.undo()
    error = caught.value
    assert isinstance(error.__cause__, StorageError)
    assert "do not write the turn again" in "".join(error.__notes__)
    turn = error.turn  # type: ignore[attr-defined]
    assert turn.compaction is None
    assert turn.entry_ids == ("11", "12", "13", "14")
    # Saved in memory and in the file; not compacted.
    assert t.context() == before[0] + tool_turn(2)
    assert [e["type"] for e in lines(t.path)].count("compaction") == 0
    assert rt.metrics()["transcript_compaction_failures"] == 1
    assert rt.metrics()["transcript_write_failures"] == 1
    live = snapshot(t)
    t.close()
    assert snapshot(rt.transcripts.resume(t.path)) == live


def test_a_summary_that_is_not_valid_unicode_is_a_compaction_error(rt: Runtime) -> None:
    config = attrs.evolve(SMALL, summarizer=lambda messages: "half a pair: \ud800")
    t = rt.transcripts.create(compaction=config)
    t.on_turn_end(tool_turn(0))
    t.on_turn_end(tool_turn(1))
    before = snapshot(t)
    with pytest.raises(CompactionError, match="not valid Unicode") as caught:
        t.on_turn_end(tool_turn(2))
    assert caught.value.turn.entry_ids == ("11", "12", "13", "14")  # type: ignore[attr-defined]
    assert t.context() == before[0] + tool_turn(2)
    with pytest.raises(CompactionError, match="not valid Unicode"):
        t.compact()
    assert t.context() == before[0] + tool_turn(2)
    assert rt.metrics()["transcript_compaction_failures"] == 2
    live = snapshot(t)
    t.close()
    assert snapshot(rt.transcripts.resume(t.path)) == live


# -- the last fsync on close ---------------------------------------------------------------


def test_close_with_a_failing_fsync_is_a_storage_error_and_releases_the_file(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a"), AssistantMessage("b")])

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("greenroom.transcripts.logformat.os.fsync", broken_fsync)
    with pytest.raises(StorageError, match="could not flush transcript"):
        t.close()
    monkeypatch.undo()
    assert t.closed
    assert rt.metrics()["transcript_write_failures"] == 1
    assert rt.metrics()["transcripts_closed"] == 1
    again = rt.transcripts.resume(t.path)  # the descriptor and its lock were released
    assert again.context() == [UserMessage("a"), AssistantMessage("b")]
    again.close()


def test_runtime_close_with_a_failing_fsync_counts_and_logs_it(
    open_rt: Callable[..., Runtime],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = open_rt()
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("a")])

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("greenroom.transcripts.logformat.os.fsync", broken_fsync)
    with caplog.at_level(logging.ERROR, logger="greenroom"):
        rt.close()
    monkeypatch.undo()
    assert t.closed
    counters = rt._kernel.metrics.snapshot()
    assert counters.get("transcript_write_failures") == 1
    assert counters.get("actor_failures", 0) == 0  # handled in on_stop, not escaped
    assert "could not flush transcript" in caplog.text
    other = open_rt()
    other.transcripts.resume(t.path).close()


# -- forks: durable, and removed when they cannot start --------------------------------------


@pytest.mark.parametrize("empty", [False, True])
@pytest.mark.parametrize("durability", ["turn", "none"])
def test_fork_syncs_its_file_and_folder(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, empty: bool, durability: str
) -> None:
    t = rt.transcripts.create()
    if not empty:
        t.on_turn_end([UserMessage("q"), AssistantMessage("a")])
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("greenroom.transcripts.logformat.os.fsync", fsync)
    fork = rt.transcripts.fork(t.path, durability=durability)
    monkeypatch.undo()
    if durability == "none":
        assert synced == []
    else:
        assert str(fork.path) in synced  # its entries (or, when empty, its header)
        assert str(Path(fork.path).parent) in synced  # its name in the folder
    fork.close()
    t.close()


@pytest.mark.parametrize("how", ["fork", "create"])
def test_a_new_file_whose_actor_cannot_start_is_removed(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("q")])
    t.close()
    folder = Path(t.path).parent
    before = set(folder.iterdir())

    def spawn(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no room for another actor")

    monkeypatch.setattr(Kernel, "spawn", spawn)
    start = (lambda: rt.transcripts.fork(t.path)) if how == "fork" else rt.transcripts.create
    with pytest.raises(RuntimeError, match="no room"):
        start()
    assert set(folder.iterdir()) == before


# -- calls that would block -------------------------------------------------------------------


def test_a_summarizer_closing_its_own_transcript_is_refused_not_deadlocked(rt: Runtime) -> None:
    holder: list[Transcript] = []

    def summarizer(messages: list[Any]) -> str:
        holder[0].close()  # would wait for the compaction it is part of
        return "never"

    t = rt.transcripts.create(compaction=attrs.evolve(MANUAL, summarizer=summarizer))
    holder.append(t)
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    outcome: list[BaseException] = []

    def compact() -> None:
        try:
            t.compact()
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=compact, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "close() from the summarizer deadlocked"
    assert isinstance(outcome[0], CompactionError)
    assert isinstance(outcome[0].__cause__, InvalidTransition)
    assert "close()" in str(outcome[0].__cause__)
    assert not t.closed
    t.on_turn_end([UserMessage("still open")])
    t.close()


def test_a_summarizer_may_call_another_transcript(rt: Runtime) -> None:
    other = rt.transcripts.create()
    other.on_turn_end([UserMessage("notes"), AssistantMessage("kept")])

    def summarizer(messages: list[Any]) -> str:
        # A blocking-pool job waiting for another transcript's actor: allowed.
        return f"{len(messages)} messages; see also {len(other.context())} more"

    t = rt.transcripts.create(compaction=attrs.evolve(MANUAL, summarizer=summarizer))
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    result = t.compact()
    assert result is not None
    assert result.summary.summary == "8 messages; see also 2 more"
    t.close()
    other.close()


def test_handle_calls_from_an_actor_handler_are_refused(rt: Runtime) -> None:
    from greenroom.actors.base import GreenroomActor

    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("q")])

    class Caller(GreenroomActor):
        kind = "transcript-caller"

        def on_receive(self, message: Any) -> Any:
            try:
                message()
            except InvalidTransition as error:
                return str(error)
            return "allowed"

    caller = rt.spawn(Caller, actor_id="caller")
    for call in (t.context, t.usage, lambda: t.on_turn_end([UserMessage("x")]), t.close):
        answer = caller.ask(call)
        assert "handler of actor" in answer
        assert "would wait inside it" in answer
    assert not t.closed
    assert t.context() == [UserMessage("q")]
    t.close()


# -- compaction settings ----------------------------------------------------------------------


def test_default_threshold_for_the_default_window() -> None:
    config = CompactionConfig()
    assert config.context_window_tokens == 200_000
    assert config.threshold_tokens is None
    assert config.effective_threshold == 183_616  # 200,000 - 16,384 (above 80 %)
    assert config.keep_recent_tokens == 20_000
    assert CompactionConfig(context_window_tokens=50_000).effective_threshold == 40_000  # 80 %


def test_default_keep_recent_is_clamped_for_a_small_window() -> None:
    small = CompactionConfig(context_window_tokens=16_000)
    assert small.effective_threshold == 12_800
    assert small.keep_recent_tokens == 6_400  # half the threshold
    assert CompactionConfig(threshold_tokens=300).keep_recent_tokens == 150
    # Back to a big window through evolve: the default again, not the clamped value.
    assert attrs.evolve(small, context_window_tokens=200_000).keep_recent_tokens == 20_000
    # Chosen explicitly, a value at or above the threshold is still an error.
    with pytest.raises(InvalidInput, match="below the threshold"):
        CompactionConfig(context_window_tokens=16_000, keep_recent_tokens=20_000)
    assert CompactionConfig(context_window_tokens=16_000, keep_recent_tokens=9_000)


def test_fork_keeps_the_turn_totals_of_the_copied_branch(rt: Runtime) -> None:
    t = rt.transcripts.create(compaction=SMALL)
    for n in range(6):
        t.on_turn_end(tool_turn(n, usage=Usage(5)), usage=Usage(100, 10) if n % 2 else None)
    t.on_turn_end([UserMessage("no total"), AssistantMessage("x", usage=Usage(1, 1))])
    assert t.usage() == Usage(3 * 5 + 3 * 100 + 1, 3 * 10 + 1)
    fork = rt.transcripts.fork(t.path)
    assert fork.usage() == t.usage()  # one branch: the same cost, turn totals included
    assert fork.context() == t.context()
    assert fork.next_entry_id() == str(int(t.next_entry_id()) + 1)
    live = snapshot(fork)
    fork.close()
    assert snapshot(rt.transcripts.resume(fork.path)) == live
    t.close()


def test_resume_and_fork_without_compaction_keep_the_recorded_settings(rt: Runtime) -> None:
    config = CompactionConfig(
        context_window_tokens=3_000, threshold_tokens=300, keep_recent_tokens=150
    )
    t = rt.transcripts.create(compaction=config)
    t.on_turn_end(tool_turn(0))
    t.on_turn_end(tool_turn(1))
    t.close()
    assert lines(t.path)[0]["compaction"] == {
        "enabled": True,
        "context_window_tokens": 3_000,
        "threshold_tokens": 300,
        "keep_recent_tokens": 150,
    }
    again = rt.transcripts.resume(t.path)  # no compaction=: the file's settings
    assert again.recovery.clean
    assert again.on_turn_end(tool_turn(2)).compaction is not None  # 300, not 183,616
    again.close()
    fork = rt.transcripts.fork(t.path)
    assert lines(fork.path)[0]["compaction"] == lines(t.path)[0]["compaction"]
    fork.close()
    # Given explicitly, settings apply to that session only.
    off = rt.transcripts.resume(t.path, compaction=attrs.evolve(config, enabled=False))
    assert off.on_turn_end(tool_turn(3)).compaction is None
    off.close()
    assert lines(t.path)[0]["compaction"]["enabled"] is True


def test_unreadable_recorded_settings_are_reported_and_the_defaults_used(rt: Runtime) -> None:
    t = rt.transcripts.create()
    t.on_turn_end([UserMessage("q")])
    t.close()
    header, *rest = Path(t.path).read_bytes().splitlines(keepends=True)
    data = json.loads(header)
    data["compaction"]["threshold_tokens"] = -5
    Path(t.path).write_bytes(json.dumps(data).encode() + b"\n" + b"".join(rest))
    again = rt.transcripts.resume(t.path)
    assert not again.recovery.clean
    assert any("compaction settings are unreadable" in note for note in again.recovery.notes)
    assert again.context() == [UserMessage("q")]
    again.close()
