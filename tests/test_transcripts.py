"""Transcripts through the public surface: create, turns, compaction, resume, branch, fork."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from actors.transcript import GET_CONTEXT
from runtime import (
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
from runtime.errors import (
    CompactionError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    Stopped,
    StorageError,
)

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
    t = rt.transcript_create(cwd="/work", model="anthropic:claude-sonnet-4-5")
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
    t = rt.transcript_create()
    fake_clock.advance(61.5)
    t.on_turn_end([UserMessage("later")])
    assert lines(t.path)[1]["timestamp"] == "2026-01-01T00:01:01.500Z"
    t.close()


def test_session_ids_are_random_and_files_never_overwritten(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = rt.transcript_create()
    second = rt.transcript_create()
    assert first.session_id != second.session_id
    # Entry ids are per transcript, not one counter shared by the process.
    assert first.on_turn_end([UserMessage("a")]).entry_ids == ("1",)
    assert second.on_turn_end([UserMessage("b")]).entry_ids == ("1",)
    assert len(first.session_id) == 16
    before = Path(first.path).read_bytes()
    # The next random draw collides with an existing file: it must draw again.
    draws = iter([first.session_id, "00000000000000ab"])
    monkeypatch.setattr("runtime.transcripts_api.secrets.token_hex", lambda _n: next(draws))
    third = rt.transcript_create()
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
    t = rt.transcript_create()
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
    t = rt.transcript_create(durability=durability)
    before = rt.metrics()["transcript_fsyncs"]
    t.on_turn_end([UserMessage("a"), AssistantMessage("b"), UserMessage("c")])
    assert rt.metrics()["transcript_fsyncs"] - before == fsyncs
    t.close()


def test_default_durability_comes_from_the_config(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(transcript_durability="none")
    t = rt.transcript_create()
    t.on_turn_end([UserMessage("a")])
    t.close()
    assert rt.metrics()["transcript_fsyncs"] == 0


def test_transcript_dir_from_config_and_directory_argument(
    open_rt: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = open_rt(transcript_dir=str(tmp_path / "logs"))
    t = rt.transcript_create()
    assert Path(t.path).parent == tmp_path / "logs"
    other = rt.transcript_create(directory=tmp_path / "elsewhere")
    assert Path(other.path).parent == tmp_path / "elsewhere"
    t.close()
    other.close()


def test_memory_database_uses_a_temporary_folder(fake_clock: FakeClock) -> None:
    with Runtime.open(":memory:", clock=fake_clock) as rt:
        t = rt.transcript_create()
        assert Path(t.path).exists()
        assert Path(t.path).parent == rt.transcript_dir


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_is_refused_and_changes_nothing(rt: Runtime) -> None:
    t = rt.transcript_create()
    t.on_turn_end([UserMessage("a")])
    size = Path(t.path).stat().st_size
    state = snapshot(t)
    with pytest.raises(InvalidInput, match="at least one message"):
        t.on_turn_end([])
    with pytest.raises(InvalidInput, match="summaries are written by compaction"):
        t.on_turn_end([CompactionSummary("s", "1", 1, 1)])
    with pytest.raises(InvalidInput, match="list of UserMessage"):
        t.on_turn_end("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="usage must be a Usage"):
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
        CompactionConfig(context_window_tokens=10_000, threshold_tokens=5_000)
    with pytest.raises(InvalidInput, match="callable"):
        CompactionConfig(summarizer="nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="durability"):
        rt.transcript_create(durability="sometimes")
    with pytest.raises(InvalidInput, match="CompactionConfig"):
        rt.transcript_create(compaction={"enabled": False})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="cwd"):
        rt.transcript_create(cwd=3)  # type: ignore[arg-type]
    assert rt.metrics()["transcripts_created"] == 0


def test_tool_call_arguments_are_a_copy(rt: Runtime) -> None:
    arguments = {"path": "a.py"}
    call = ToolCall("c1", "read", arguments)
    arguments["path"] = "changed.py"
    assert call.arguments == {"path": "a.py"}


# -- resume ----------------------------------------------------------------------------------


def test_round_trip_with_compaction_resume_equals_live_state(rt: Runtime) -> None:
    t = rt.transcript_create(model="anthropic:claude-haiku-4-5", compaction=SMALL)
    compactions = []
    for n in range(8):
        result = t.on_turn_end(tool_turn(n), usage=Usage(100 + n, 10, 5, 1) if n % 2 else None)
        if result.compaction is not None:
            compactions.append(result.compaction)
            assert result.context_tokens < result.compaction.tokens_before
    assert len(compactions) >= 2
    live = snapshot(t)
    assert isinstance(live[0][0], CompactionSummary)
    assert live[0] == list(compactions[-1].context) or len(live[0]) > len(compactions[-1].context)
    t.close()
    again = rt.transcript_resume(t.path)
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
    t = rt.transcript_create()
    t.on_turn_end([UserMessage("a"), AssistantMessage("b", usage=Usage(10, 1, 2, 3))])
    t.on_turn_end(
        [UserMessage("c"), AssistantMessage("d", usage=Usage(5, 5))], usage=Usage(1000, 100)
    )
    assert t.usage() == Usage(1010, 101, 2, 3)
    t.close()
    assert rt.transcript_resume(t.path).usage() == Usage(1010, 101, 2, 3)


def test_usage_is_python_ints_without_truncation(rt: Runtime) -> None:
    t = rt.transcript_create()
    big = 2**40
    t.on_turn_end([AssistantMessage("x", usage=Usage(big, big))])
    t.on_turn_end([AssistantMessage("y", usage=Usage(big, 1))])
    assert t.usage() == Usage(2 * big, big + 1)
    t.close()
    assert rt.transcript_resume(t.path).usage().input_tokens == 2 * big


def test_resume_refuses_an_open_file_and_missing_or_foreign_files(
    rt: Runtime, tmp_path: Path
) -> None:
    t = rt.transcript_create()
    with pytest.raises(InvalidTransition, match="open already"):
        rt.transcript_resume(t.path)
    with pytest.raises(NotFound):
        rt.transcript_resume(tmp_path / "nope.jsonl")
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"hello": 1}\n')
    with pytest.raises(StorageError, match="not a transcript"):
        rt.transcript_resume(foreign)
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"type":"session","version":9,"id":"x","timestamp":"","cwd":"."}\n')
    with pytest.raises(StorageError, match="upgrade greenroom"):
        rt.transcript_resume(newer)
    t.close()


# -- branching -------------------------------------------------------------------------------


def test_append_leaf_branches_and_resume_picks_the_branch(rt: Runtime) -> None:
    t = rt.transcript_create()
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
    again = rt.transcript_resume(t.path)
    assert snapshot(again) == live
    assert rt.metrics()["transcript_branch_moves"] == 1
    again.close()


def test_branching_to_before_a_compaction_restores_the_full_context(rt: Runtime) -> None:
    t = rt.transcript_create(compaction=SMALL)
    ids = []
    for n in range(6):
        ids.append(t.on_turn_end(tool_turn(n)).entry_ids)
    assert isinstance(t.context()[0], CompactionSummary)
    t.append_leaf(ids[1][-1])  # end of the second turn, before any compaction
    assert t.context() == tool_turn(0) + tool_turn(1)
    live = snapshot(t)
    t.close()
    assert snapshot(rt.transcript_resume(t.path)) == live


def test_usage_counts_every_branch_and_context_only_the_active_one(rt: Runtime) -> None:
    t = rt.transcript_create(model="anthropic:claude-sonnet-4-5")
    first = t.on_turn_end([UserMessage("q"), AssistantMessage("a", usage=Usage(100, 10))])
    t.on_turn_end([UserMessage("abandoned"), AssistantMessage("x", usage=Usage(1000, 100))])
    t.append_leaf(first.entry_ids[-1])
    t.on_turn_end([UserMessage("kept"), AssistantMessage("y", usage=Usage(10, 1))])
    assert t.usage() == Usage(1110, 111)
    assert UserMessage("abandoned") not in t.context()
    # The context size comes from the active branch's newest usage, not the spend.
    assert t.context_tokens() == 11
    t.close()
    again = rt.transcript_resume(t.path)
    assert again.usage() == Usage(1110, 111)
    assert again.context_tokens() == 11
    again.close()


# -- fork ------------------------------------------------------------------------------------


def test_fork_holds_only_the_active_branch(rt: Runtime) -> None:
    t = rt.transcript_create(cwd="/repo", model="openai:gpt-4o", compaction=SMALL)
    first = t.on_turn_end([UserMessage("q1"), AssistantMessage("a1", usage=Usage(7, 1))])
    t.on_turn_end([UserMessage("dead end"), AssistantMessage("x", usage=Usage(500, 5))])
    t.append_leaf(first.entry_ids[-1])
    for n in range(5):
        t.on_turn_end(tool_turn(n))
    live_context = t.context()
    source_bytes = Path(t.path).read_bytes()
    fork = rt.transcript_fork(t.path)  # the source is still open: forking only reads it
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
    assert int(fork.next_entry_id()) > int(t.next_entry_id()) - 1
    # The fork goes its own way; the source is unaffected.
    fork.on_turn_end([UserMessage("only in the fork")])
    assert UserMessage("only in the fork") not in t.context()
    fork_state = snapshot(fork)
    fork.close()
    assert snapshot(rt.transcript_resume(fork.path)) == fork_state
    t.close()


def test_fork_of_an_empty_transcript(rt: Runtime) -> None:
    t = rt.transcript_create()
    fork = rt.transcript_fork(t.path)
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
    t = rt.transcript_create(compaction=config)
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
    t = rt.transcript_create(compaction=config)
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
    t = rt.transcript_create(compaction=config)
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
    t = rt.transcript_create()
    assert t.compact() is None
    t.on_turn_end([UserMessage("just one")])
    size = Path(t.path).stat().st_size
    assert t.compact("because") is None
    assert Path(t.path).stat().st_size == size
    t.close()


def test_compaction_keeps_recent_turns_whole_and_tool_pairs_together(rt: Runtime) -> None:
    t = rt.transcript_create(compaction=MANUAL)
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
    t = rt.transcript_create(compaction=MANUAL)
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
    from actors.blocking import BlockingPool

    seen: list[Any] = []

    def summarizer(messages: list[Any]) -> str:
        seen.append((list(messages), BlockingPool.current() is not None))
        return f"{len(messages)} messages"

    t = rt.transcript_create(compaction=attrs.evolve(MANUAL, summarizer=summarizer))
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
    t = rt.transcript_create(compaction=config)
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
    assert snapshot(rt.transcript_resume(t.path)) == live


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
    t = rt.transcript_create(compaction=config)
    t.on_turn_end(tool_turn(0))
    t.on_turn_end(tool_turn(1))
    results: dict[str, Any] = {}
    compacting = threading.Thread(target=lambda: results.update(turn=t.on_turn_end(tool_turn(2))))
    compacting.start()
    assert started.wait(10)
    # Sent while the summarizer runs: held back, not answered with the old context.
    context = t._ref.ask(GET_CONTEXT, block=False)
    release.set()
    compacting.join(10)
    assert results["turn"].compaction is not None
    # Held back until the compaction was written: it sees the compacted context.
    assert isinstance(context.get(timeout=10)[0], CompactionSummary)
    t.close()


def test_failed_compaction_write_leaves_memory_and_file_as_they_were(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = rt.transcript_create(compaction=MANUAL)
    for n in range(3):
        t.on_turn_end(tool_turn(n))
    before = snapshot(t)
    size = Path(t.path).stat().st_size

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("runtime.logformat.fsync", broken_fsync)
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
    assert snapshot(rt.transcript_resume(t.path)) == live


# -- cost ------------------------------------------------------------------------------------


def test_cost_for_a_known_model(rt: Runtime) -> None:
    t = rt.transcript_create(model="anthropic:claude-sonnet-4-5")
    t.on_turn_end([AssistantMessage("x", usage=Usage(1_000_000, 100_000, 2_000_000, 10_000))])
    cost = t.cost()
    assert isinstance(cost, CostBreakdown)
    assert cost.input == pytest.approx(3.0)
    assert cost.output == pytest.approx(1.5)
    assert cost.cache_read == pytest.approx(0.6)
    assert cost.cache_write == pytest.approx(0.0375)
    assert cost.total == pytest.approx(5.1375)
    t.close()
    assert rt.transcript_resume(t.path).cost() == cost  # the model is in the header


def test_cost_for_an_unknown_model_is_none(rt: Runtime) -> None:
    for model in ("acme:unknown-model", ""):
        t = rt.transcript_create(model=model)
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
    tiny = rt.transcript_create(model="acme:tiny")
    tiny.on_turn_end([AssistantMessage("x", usage=Usage(500_000, 500_000))])
    assert tiny.cost() == CostBreakdown(0.5, 1.0, 0.0, 0.0)
    sonnet = rt.transcript_create(model="anthropic:claude-sonnet-4-5")
    sonnet.on_turn_end([AssistantMessage("x", usage=Usage(500_000, 500_000))])
    assert sonnet.cost().total == 0.0  # type: ignore[union-attr]
    # A resume may name the model when the header has none.
    tiny.close()
    assert rt.transcript_resume(tiny.path, model="acme:tiny").cost().total == 1.5  # type: ignore[union-attr]
    sonnet.close()


def test_bad_pricing_tables_are_refused() -> None:
    from runtime import RuntimeConfig

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
    t = rt.transcript_create()
    t.on_turn_end([UserMessage("a")])
    t.close()
    t.close()  # idempotent
    assert t.closed
    with pytest.raises(Stopped, match="transcript_resume"):
        t.on_turn_end([UserMessage("b")])
    with pytest.raises(Stopped):
        t.context()
    again = rt.transcript_resume(t.path)  # the lock is released
    assert again.context() == [UserMessage("a")]
    again.close()
    assert rt.metrics()["transcripts_closed"] == 2


def test_runtime_close_closes_open_transcripts(
    open_rt: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = open_rt(transcript_durability="none")
    t = rt.transcript_create()
    t.on_turn_end([UserMessage("a"), AssistantMessage("b", usage=Usage(1, 2))])
    rt.close()
    assert t.closed
    with pytest.raises(Stopped):
        t.usage()
    with pytest.raises(Stopped):
        rt.transcript_create()
    other = open_rt()
    again = other.transcript_resume(t.path)
    assert again.usage() == Usage(1, 2)
    assert again.recovery.clean


def test_a_summarizer_calling_its_own_transcript_is_refused_not_deadlocked(rt: Runtime) -> None:
    holder: list[Transcript] = []

    def summarizer(messages: list[Any]) -> str:
        return str(len(holder[0].context()))  # would wait for the compaction it is part of

    t = rt.transcript_create(compaction=attrs.evolve(MANUAL, summarizer=summarizer))
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
        rt.transcript_create(directory=blocker)
    with pytest.raises(StorageError, match="cannot create transcript folder"):
        rt.transcript_fork(rt.transcript_create().path, directory=blocker)
