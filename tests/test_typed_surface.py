"""A tour of every public call, checked by `mypy --strict` (`make typecheck`) and run.

Each `assert_type` states what a host's type checker sees; at run time it is a no-op, so
this file is also a plain test that the tour works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, assert_type

import anyio
import pytest

from greenroom import (
    ArchiveResult,
    AssistantMessage,
    AsyncExecutionContext,
    Block,
    CompactionResult,
    CostBreakdown,
    ExecutionContext,
    FakeClock,
    FeedResult,
    Follower,
    Gap,
    LlmRequest,
    ObservationEvent,
    OutputRead,
    Replayed,
    RestoreResult,
    Runtime,
    RuntimeConfig,
    SessionStats,
    Subscription,
    SweepStats,
    Transcript,
    TurnResult,
    Usage,
    UserMessage,
)
from greenroom.actors import ActorContext, GreenroomActor, GreenroomActorRef
from greenroom.aio import (
    AsyncBlock,
    AsyncFollower,
    AsyncRuntime,
    AsyncSubscription,
    AsyncTranscript,
    wait,
)
from greenroom.errors import GreenroomError, InvalidInput


class Echo(GreenroomActor):
    """A host's own actor: answers what it is asked."""

    kind = "echo"

    def __init__(self, ctx: ActorContext, prefix: str) -> None:
        super().__init__(ctx)
        self.prefix = prefix

    def on_receive(self, message: Any) -> Any:
        return f"{self.prefix}{message}"


async def judge(ctx: AsyncExecutionContext, topic: str) -> str:
    answer = await ctx.llm(f"Judge {topic}")
    assert_type(answer, str)
    both = await ctx.llm_batch([LlmRequest("a"), LlmRequest("b", system="be brief")])
    assert_type(both, list[str])
    return answer + "".join(both)


def plain(ctx: ExecutionContext) -> str:
    answer = ctx.llm("Plain question")
    assert_type(answer, str)
    return answer


def _answer_all(rt: Runtime, step: FeedResult) -> FeedResult:
    while step.status == "needs_response":
        items = [(query.id, f"answer to {query.id}", None) for query in step.queries]
        step = rt.executions.feed_many(step.session_id, items)
    return step


def test_the_sync_tour(tmp_path: Path, fake_clock: FakeClock) -> None:
    config = RuntimeConfig(archive_dir=tmp_path / "archives", transcript_dir=tmp_path / "logs")
    with Runtime.open(tmp_path / "app.db", clock=fake_clock, config=config) as rt:
        assert_type(rt.path, str)
        assert_type(rt.config, RuntimeConfig)
        assert not rt.closed

        # actors
        ref = rt.spawn(Echo, "echo: ", actor_id="e1")
        assert_type(ref, GreenroomActorRef)
        assert rt.get_actor("echo", "e1") is ref
        assert rt.actor_ids("echo") == ["e1"]
        assert ref.ask("hi") == "echo: hi"

        # blocks
        pane = rt.blocks.get("pane-1", view="agent")
        assert_type(pane, Block)
        pane.append_output(b'{"type":"text"}\n')
        pane.record_line(40)
        pane.flush()
        stats = pane.stats()
        assert_type(stats, SessionStats)
        assert stats.line_count == 2
        assert_type(pane.meta(), dict[str, Any])
        pane.update_meta({"owner": "host"})
        archived = pane.archive()
        assert_type(archived, ArchiveResult)
        assert isinstance(archived.path, Path)
        read = pane.read_output()
        assert_type(read, OutputRead)
        restored = pane.restore()
        assert_type(restored, RestoreResult)
        assert rt.blocks.ids() == ["pane-1"]
        assert isinstance(rt.blocks.archive_dir, Path)
        swept = rt.blocks.sweep(inactive_days=0, dry_run=True)
        assert_type(swept, SweepStats)

        # executions
        first = rt.executions.start(judge, "drafts")
        assert_type(first, FeedResult)
        done = rt.executions.feed(
            first.session_id, "fine", usage={"prompt_tokens": 10, "completion_tokens": 2}
        )
        done = _answer_all(rt, done)
        assert done.status == "completed"
        assert rt.executions.status(done.session_id)["state"] == "completed"
        assert done.session_id in rt.executions.snapshots()
        second = rt.executions.start(plain, timeout=10.0)
        ended = rt.executions.feed(second.session_id, "ok", usage=Usage(input_tokens=3))
        assert ended.result == "ok"
        third = rt.executions.start(judge, "another")
        assert rt.executions.cancel(third.session_id).status == "cancelled"

        # transcripts
        log = rt.transcripts.create(model="anthropic:claude-sonnet-4-5")
        assert_type(log, Transcript)
        assert_type(log.path, Path)
        turn = log.on_turn_end(
            [UserMessage("hi"), AssistantMessage("hello", usage=Usage(output_tokens=5))]
        )
        assert_type(turn, TurnResult)
        assert_type(log.compact(), CompactionResult | None)
        assert_type(log.usage(), Usage)
        assert_type(log.cost(), CostBreakdown | None)
        assert len(log.context()) == 2
        log.close()
        again = rt.transcripts.resume(log.path)
        fork = rt.transcripts.fork(again.path)
        assert fork.session_id != again.session_id
        again.close()
        fork.close()
        assert isinstance(rt.transcripts.directory, Path)

        # replay buffers
        start = rt.replay.current_cursor("s1")
        event = rt.replay.append("s1", {"type": "commit"}, revision=1)
        assert_type(event, ObservationEvent)
        assert len(rt.replay.append_many("s1", ["a", "b"])) == 2
        rt.replay.publish("s1", {"type": "activity"})
        rt.replay.publish_many("s1", ["c"])
        rt.settle()
        replayed = rt.replay.after(start)
        if isinstance(replayed, Replayed):  # narrows Replayed | Gap
            assert_type(replayed, Replayed)
            assert [e.payload for e in replayed.events][:1] == [{"type": "commit"}]
        else:
            assert_type(replayed, Gap)
            pytest.fail(f"a gap: {replayed}")
        subscription = rt.replay.subscribe(start)
        assert isinstance(subscription, Subscription)
        with subscription:
            assert subscription.next_event(timeout=5).payload == {"type": "commit"}
        follower = rt.replay.follow(start)
        assert_type(follower, Follower)
        with follower:
            item = follower.next_item(timeout=5)
            assert isinstance(item, ObservationEvent)

        assert rt.metrics()["actors_alive"] > 0
    assert rt.closed


def test_bad_input_is_a_greenroom_error(tmp_path: Path, fake_clock: FakeClock) -> None:
    with Runtime.open(tmp_path / "app.db", clock=fake_clock) as rt:
        with pytest.raises(InvalidInput):
            rt.executions.feed("s-1", "x", usage={"tokens": 1})
        with pytest.raises(GreenroomError):
            rt.blocks.get("bad id with spaces")


@pytest.mark.anyio
async def test_the_async_tour(tmp_path: Path, fake_clock: FakeClock) -> None:
    async with AsyncRuntime.open(tmp_path / "app.db", clock=fake_clock) as art:
        ref = art.runtime.spawn(Echo, "echo: ")
        assert await wait(ref.ask("hi", block=False)) == "echo: hi"

        pane = await art.blocks.get("pane-1")
        assert_type(pane, AsyncBlock)
        pane.append_output(b"line\n")
        await pane.flush()
        assert (await pane.stats()).line_count == 1
        assert await art.blocks.ids() == ["pane-1"]

        step = await art.executions.start(judge, "drafts")
        assert_type(step, FeedResult)
        while step.status == "needs_response":
            items = [(query.id, "fine", None) for query in step.queries]
            step = await art.executions.feed_many(step.session_id, items)
        assert art.executions.status(step.session_id)["state"] == "completed"

        log = await art.transcripts.create()
        assert_type(log, AsyncTranscript)
        await log.on_turn_end([UserMessage("hi"), AssistantMessage("hello")])
        assert len(await log.context()) == 2
        await log.aclose()

        start = await art.replay.current_cursor("s1")
        await art.replay.append("s1", "first")
        replayed = await art.replay.after(start)
        assert isinstance(replayed, Replayed)
        subscription = await art.replay.subscribe(start)
        assert isinstance(subscription, AsyncSubscription)
        async with subscription:
            assert (await subscription.next_event(timeout=5)).payload == "first"
        follower = art.replay.follow(start)
        assert_type(follower, AsyncFollower)
        async with follower:
            async for item in follower:
                assert isinstance(item, ObservationEvent)
                break
        with anyio.fail_after(10):
            await art.settle()
