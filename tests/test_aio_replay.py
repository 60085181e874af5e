"""`greenroom.aio.replay`: the replay buffers awaited on asyncio and trio, never blocking the loop.

Every test runs under both backends (anyio's pytest plugin). An autouse fixture fails a
test in which anything would block the loop's thread: waiting on a greenroom future
that has not resolved, a blocking `next_event` or `wait`, or a replay buffer's turn
run on the loop's thread ("caller runs"). Waits are loop checkpoints bounded by
`anyio.fail_after`, never sleeps.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from greenroom import FakeClock, Gap, ObservationEvent, Replayed, Runtime, Subscription
from greenroom.actors.replay import ReplayBuffer
from greenroom.aio.bridge import off_loop
from greenroom.aio.replay import AsyncFollower, AsyncReplay, AsyncSubscription
from greenroom.errors import (
    InvalidInput,
    InvalidTransition,
    MalformedCursor,
    Stopped,
    SubscriberLagged,
    Timeout,
    WrongSession,
)
from greenroom.futures import GreenroomFuture
from greenroom.replay.namespace import PendingSubscribe

pytestmark = pytest.mark.anyio

WAIT = 10.0  # real seconds a test waits for anything before failing


@pytest.fixture(autouse=True)
async def loop_never_blocks(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Fail the test if a call on the loop's thread could block it (see the module)."""
    loop_thread = threading.get_ident()
    blocked: list[str] = []

    def on_loop() -> bool:
        return threading.get_ident() == loop_thread

    def watch(cls: Any, name: str, blocks: Callable[..., bool]) -> None:
        original = getattr(cls, name)

        def watched(self: Any, *args: Any, **kwargs: Any) -> Any:
            if on_loop() and blocks(self, *args, **kwargs):
                blocked.append(f"{cls.__name__}.{name}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, watched)

    def waits(timeout: float | None) -> bool:
        return timeout is None or timeout > 0

    watch(GreenroomFuture, "get", lambda f, timeout=None: not f.done and waits(timeout))
    watch(GreenroomFuture, "wait", lambda f, timeout=None: not f.done and waits(timeout))
    watch(Subscription, "next_event", lambda s, timeout=None: waits(timeout))
    watch(PendingSubscribe, "wait", lambda p, timeout: waits(timeout))
    watch(ReplayBuffer, "on_receive", lambda buffer, message: True)
    yield
    assert blocked == []


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run (checkpoints, no sleep) until `condition()` holds."""
    with anyio.fail_after(WAIT):
        while not condition():
            await anyio.sleep(0)


async def ticks(n: int) -> None:
    """Let other tasks run `n` times (what a blocked loop could not do)."""
    for _ in range(n):
        await anyio.sleep(0)


def waiting(rt: Runtime) -> int:
    """How many waiters the runtime's open subscriptions have."""
    return sum(sub.waiting for sub in list(rt.replay._subs))


# -- calls ---------------------------------------------------------------------------------


async def test_calls_give_what_the_sync_namespace_gives(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    assert replay.sync is rt.replay
    start = await replay.current_cursor("s1")
    event = await replay.append("s1", {"type": "commit"}, revision=3)
    assert isinstance(event, ObservationEvent)
    assert (event.position, event.revision, event.payload) == (1, 3, {"type": "commit"})
    events = await replay.append_many("s1", [1, 2], revision=3)
    assert [e.position for e in events] == [2, 3]
    assert await replay.append_many("s1", []) == []
    replay.publish("s1", "published")
    replay.publish_many("s1", ["more"])
    replayed = await replay.after(start)
    assert isinstance(replayed, Replayed)
    assert [e.payload for e in replayed.events] == [{"type": "commit"}, 1, 2, "published", "more"]
    assert replayed.events[:3] == (event, *events)
    assert await replay.after(replayed.latest_cursor) == Replayed("s1", (), replayed.latest_cursor)
    assert await replay.current_cursor("s1") == replayed.latest_cursor  # "more" was at 0
    unknown = await replay.after("v1:0000000000000000:0:5:nobody")
    assert isinstance(unknown, Gap)
    assert unknown.reason == "unavailable"
    assert rt.metrics()["replay_events_appended"] == 5


async def test_errors_are_those_of_the_sync_namespace(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    with pytest.raises(InvalidInput, match="JSON"):
        await replay.append("s1", {1, 2})
    with pytest.raises(InvalidInput, match="session_id must not be empty"):
        await replay.append("", 1)
    with pytest.raises(InvalidInput, match="revision"):
        await replay.current_cursor("s1", -1)
    with pytest.raises(InvalidInput, match="ordered"):
        await replay.append_many("s1", {1, 2})
    with pytest.raises(InvalidInput, match="JSON"):
        replay.publish("s1", object())
    with pytest.raises(MalformedCursor):
        await replay.after("nonsense")
    cursor = await replay.current_cursor("s1")
    with pytest.raises(WrongSession):
        await replay.after(cursor, session_id="s2")
    with pytest.raises(WrongSession):
        await replay.subscribe(cursor, session_id="s2")
    with pytest.raises(MalformedCursor):
        replay.follow("nonsense")
    assert rt.metrics()["replay_subscribers"] == 0
    assert rt.metrics()["replay_events_appended"] == 0
    with pytest.raises(InvalidInput, match="AsyncReplay wraps a Replay"):
        AsyncReplay(rt)  # type: ignore[arg-type]


async def test_calls_after_close_raise_stopped(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt()
    replay = AsyncReplay(rt.replay)
    cursor = await replay.current_cursor("s")
    await off_loop(rt.close)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: replay.append("s", 1),
        lambda: replay.append_many("s", [1]),
        lambda: replay.current_cursor("s"),
        lambda: replay.after(cursor),
        lambda: replay.subscribe(cursor),
    ]
    for call in calls:
        with pytest.raises(Stopped):
            await call()
    with pytest.raises(Stopped):
        replay.publish("s", 1)
    with pytest.raises(Stopped):
        replay.follow(cursor)


async def test_the_loop_runs_while_a_task_waits_for_events(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")  # the dispatcher's threads are up
    threads = threading.active_count()
    got: list[Any] = []
    ticked = 0

    async def consume() -> None:
        async with replay.follow(start) as follower:
            async for item in follower:
                assert isinstance(item, ObservationEvent)
                got.append(item.payload)
                if len(got) == 2:
                    return

    async def tick() -> None:
        nonlocal ticked
        while True:
            ticked += 1
            await anyio.sleep(0)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            tasks.start_soon(tick)
            await until(lambda: waiting(rt) == 1)  # the consumer waits: on the loop
            before = ticked
            await until(lambda: ticked >= before + 50)  # the ticker goes on meanwhile
            assert waiting(rt) == 1
            assert threading.active_count() <= threads  # and no thread waits for it
            await replay.append("s", 1)
            replay.publish("s", 2)
            await until(lambda: len(got) == 2)
            tasks.cancel_scope.cancel()
    assert got == [1, 2]
    assert rt.metrics()["replay_subscribers"] == 0


async def test_a_call_from_a_thread_without_a_loop_is_refused(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    cursor = await replay.current_cursor("s")
    sub = rt.replay.subscribe_pending(cursor)
    answer = await anyio.to_thread.run_sync(sub.wait, WAIT)
    assert isinstance(answer, Subscription)
    for make in (lambda: replay.follow(cursor), lambda: AsyncSubscription(answer)):
        with pytest.raises(InvalidTransition, match="called from a coroutine"):
            await anyio.to_thread.run_sync(make)
    answer.close()
    with pytest.raises(InvalidInput, match="wraps a Subscription"):
        AsyncSubscription("s")  # type: ignore[arg-type]


# -- subscribe -------------------------------------------------------------------------------


async def test_subscribe_gives_the_replay_then_live_events(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    await replay.append_many("s", ["a", "b"])
    sub = await replay.subscribe(start)
    assert isinstance(sub, AsyncSubscription)
    async with sub:
        assert (sub.session_id, sub.pending, sub.closed) == ("s", 2, False)
        assert [(await sub.next_event(WAIT)).payload for _ in range(2)] == ["a", "b"]
        with pytest.raises(Timeout, match="stays open"):
            await sub.next_event(timeout=0)
        with pytest.raises(InvalidInput, match="timeout"):
            await sub.next_event(timeout=-1)
        assert sub.subscription.waiting == 0  # a timed-out wait leaves no waiter behind
        replay.publish("s", "c")
        event = await sub.next_event(WAIT)
        assert (event.payload, event.position) == ("c", 3)
        assert sub.cursor == event.cursor
    assert sub.closed
    with pytest.raises(Stopped, match="closed"):
        await sub.next_event()
    assert rt.metrics()["replay_subscribers"] == 0


async def test_subscribe_answers_a_gap_and_subscribes_nothing(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(max_events_per_session=1)
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    await replay.append_many("s", [1, 2])
    gap = await replay.subscribe(start)
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.oldest_position) == ("trimmed", 2)
    assert rt.metrics()["replay_subscribers"] == 0


async def test_iterating_a_subscription_until_it_is_closed(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    await replay.append_many("s", [1, 2, 3])
    sub = await replay.subscribe(start)
    assert isinstance(sub, AsyncSubscription)
    seen = []
    async for event in sub:
        seen.append(event.payload)
        if event.payload == 3:
            await sub.aclose()
    assert seen == [1, 2, 3]


async def test_a_lagging_subscription_raises_subscriber_lagged(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(subscriber_queue_size=2)
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    sub = await replay.subscribe(start)
    assert isinstance(sub, AsyncSubscription)
    await replay.append_many("s", [1, 2, 3])  # 3 > 2 waiting: lagged
    with pytest.raises(SubscriberLagged) as caught:
        await sub.next_event(WAIT)
    assert (caught.value.missed, caught.value.resume_cursor) == (3, start)
    again = await replay.subscribe(caught.value.resume_cursor)
    assert isinstance(again, AsyncSubscription)
    assert [(await again.next_event(WAIT)).payload for _ in range(3)] == [1, 2, 3]
    again.close()


async def test_a_waiting_subscription_wakes_when_it_is_closed(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    sub = await replay.subscribe(await replay.current_cursor("s"))
    assert isinstance(sub, AsyncSubscription)
    out: list[BaseException] = []

    async def wait() -> None:
        try:
            await sub.next_event()
        except Stopped as error:
            out.append(error)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await until(lambda: sub.subscription.waiting == 1)
            await anyio.to_thread.run_sync(sub.close)  # from another thread
    assert len(out) == 1
    assert sub.subscription.waiting == 0


async def test_cancelling_a_subscriptions_iteration_closes_it(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    sub = await replay.subscribe(await replay.current_cursor("s"))
    assert isinstance(sub, AsyncSubscription)

    async def consume() -> None:
        async for _event in sub:
            pass

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            await until(lambda: sub.subscription.waiting == 1)
            tasks.cancel_scope.cancel()
    assert sub.closed
    assert sub.subscription.waiting == 0
    assert rt.metrics()["replay_subscribers"] == 0


async def test_a_subscribe_cancelled_while_pending_subscribes_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    entered, release = threading.Event(), threading.Event()
    subscribe = ReplayBuffer._subscribe

    def held(buffer: ReplayBuffer, message: Any) -> Any:
        entered.set()
        release.wait(WAIT)  # a slow buffer: the Subscribe stays unanswered meanwhile
        return subscribe(buffer, message)

    monkeypatch.setattr(ReplayBuffer, "_subscribe", held)
    with anyio.move_on_after(WAIT) as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(replay.subscribe, start)
            await until(entered.is_set)
            assert rt.metrics()["replay_subscribers"] == 1
            tasks.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert rt.metrics()["replay_subscribers"] == 0  # given up at once
    release.set()
    await off_loop(rt.settle)  # the buffer finds the subscription closed: none is kept
    await replay.append("s", "to nobody")
    assert rt.metrics()["replay_subscribers"] == 0


# -- follow ----------------------------------------------------------------------------------


async def test_follow_gives_the_replay_then_live_events(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    await replay.append_many("s", [1, 2])
    follower = replay.follow(start)
    assert isinstance(follower, AsyncFollower)
    assert follower.session_id == "s"
    got: list[Any] = []

    async def consume() -> None:
        async for item in follower:
            assert isinstance(item, ObservationEvent)
            got.append(item.payload)
            if len(got) == 5:
                break

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            await until(lambda: got == [1, 2] and waiting(rt) == 1)  # replayed; now waits
            await replay.append("s", 3)
            replay.publish_many("s", [4, 5])
    assert got == [1, 2, 3, 4, 5]
    assert follower.cursor == await replay.current_cursor("s")
    await follower.aclose()
    assert [item async for item in follower] == []
    assert rt.metrics()["replay_subscribers"] == 0


async def test_follow_recovers_from_a_lag(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(subscriber_queue_size=4)
    replay = AsyncReplay(rt.replay)
    async with replay.follow(await replay.current_cursor("s")) as follower:
        for n in range(1, 11):
            await replay.append("s", n)  # overflows the subscription at the 5th
        got = [await follower.next_item(WAIT) for _ in range(10)]
        assert [item.payload for item in got] == list(range(1, 11))  # type: ignore[union-attr]
        assert follower.lags == 1
    assert follower.closed
    assert rt.metrics()["replay_subscriber_lags"] == 1
    assert rt.metrics()["replay_subscribers"] == 0


async def test_follow_yields_a_gap_once_and_goes_on(open_rt: Callable[..., Runtime]) -> None:
    rt = open_rt(max_events_per_session=2)
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    await replay.append_many("s", [1, 2, 3])
    async with replay.follow(start) as follower:
        gap = await follower.__anext__()
        assert isinstance(gap, Gap)
        assert (gap.reason, gap.requested_cursor) == ("trimmed", start)
        assert follower.cursor == gap.latest_cursor
        await replay.append("s", 4)
        event = await follower.__anext__()
        assert isinstance(event, ObservationEvent)
        assert (event.payload, event.position) == (4, 4)
        assert (follower.gaps, follower.lags) == (1, 0)


async def test_follow_meets_a_trimmed_gap_while_recovering_from_a_lag(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(subscriber_queue_size=2, max_events_per_session=3)
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    async with replay.follow(start) as follower:
        await replay.append_many("s", [1, 2, 3])  # 3 > 2 waiting: the subscription lags
        await replay.append_many("s", [4, 5, 6])  # and 1-3 are trimmed from the buffer
        gap = await follower.next_item(WAIT)  # re-subscribing from `start` meets it
        assert isinstance(gap, Gap)
        assert (gap.reason, gap.oldest_position, gap.requested_cursor) == ("trimmed", 4, start)
        await replay.append("s", 7)
        event = await follower.next_item(WAIT)
        assert isinstance(event, ObservationEvent)
        assert (event.payload, event.position) == (7, 7)
        assert (follower.lags, follower.gaps) == (1, 1)


async def test_breaking_out_of_async_for_ends_the_subscription(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    await replay.append_many("s", [1, 2, 3])
    gc.disable()  # the follower must go by itself, not by a collection
    try:
        async for item in replay.follow(start):
            assert isinstance(item, ObservationEvent)
            break
        # The close runs on the loop, as the loop finalises async generators.
        await until(lambda: rt.metrics()["replay_subscribers"] == 0)
    finally:
        gc.enable()


async def test_cancelling_a_waiting_follower_unsubscribes(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")

    async def cancel_consumer(consume: Callable[[], Coroutine[Any, Any, None]]) -> Subscription:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await until(lambda: waiting(rt) == 1)  # waiting without a thread
                (sub,) = list(rt.replay._subs)
                tasks.cancel_scope.cancel()
        return sub

    async def in_async_with() -> None:
        async with replay.follow(start) as follower:
            async for _item in follower:
                pass

    sub = await cancel_consumer(in_async_with)
    assert rt.metrics()["replay_subscribers"] == 0  # at once: the block's end closed it
    assert (sub.waiting, sub.closed) == (0, True)

    followers: list[AsyncFollower] = []

    async def bare() -> None:
        follower = replay.follow(start)
        followers.append(follower)  # still held: only the cancel can close it
        async for _item in follower:
            pass

    sub = await cancel_consumer(bare)
    assert rt.metrics()["replay_subscribers"] == 0
    assert (sub.waiting, sub.closed) == (0, True)
    assert followers[0].closed


async def test_next_item_waits_with_a_bound_and_goes_on_following(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt(subscriber_queue_size=2)
    replay = AsyncReplay(rt.replay)
    async with replay.follow(await replay.current_cursor("s")) as follower:
        with pytest.raises(Timeout, match="still following"):
            await follower.next_item(timeout=0)
        with pytest.raises(InvalidInput, match="timeout"):
            await follower.next_item(timeout=-1)
        with pytest.raises(InvalidInput, match="timeout"):
            await follower.next_item(timeout=float("inf"))
        await replay.append_many("s", [1, 2, 3])  # lags: a re-subscribe follows
        got = [await follower.next_item(WAIT) for _ in range(3)]
        assert [item.payload for item in got] == [1, 2, 3]  # type: ignore[union-attr]
        assert follower.lags == 1
        assert not follower.closed
    with pytest.raises(Stopped):
        await follower.next_item(timeout=0)

    follower = replay.follow(await replay.current_cursor("s"))
    with anyio.move_on_after(0):
        await follower.__anext__()  # a cancelled iteration: it stops following
    assert follower.closed
    assert rt.metrics()["replay_subscribers"] == 0


async def test_polling_a_follower_while_its_subscribe_is_held_piles_up_nothing(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = AsyncReplay(rt.replay)
    entered, release = threading.Event(), threading.Event()
    subscribe = ReplayBuffer._subscribe
    callbacks = 0
    add_done_callback = GreenroomFuture.add_done_callback

    def held(buffer: ReplayBuffer, message: Any) -> Any:
        entered.set()
        release.wait(WAIT)  # a slow buffer: the Subscribe stays unanswered meanwhile
        return subscribe(buffer, message)

    def counted(future: GreenroomFuture[Any], fn: Callable[..., object]) -> None:
        nonlocal callbacks
        callbacks += 1
        add_done_callback(future, fn)

    start = await replay.current_cursor("s")
    await replay.append("s", "first")  # the session's buffer exists
    monkeypatch.setattr(ReplayBuffer, "_subscribe", held)
    follower = replay.follow(start)
    await until(entered.is_set)
    monkeypatch.setattr(GreenroomFuture, "add_done_callback", counted)
    try:
        for _ in range(2_000):
            with pytest.raises(Timeout):
                await follower.next_item(0)
        # One wake-up for the pending subscribe, however often the host polled.
        assert callbacks == 1
    finally:
        release.set()
    item = await follower.next_item(WAIT)
    assert isinstance(item, ObservationEvent)
    assert item.payload == "first"
    await replay.append("s", "second")
    assert (await follower.next_item(WAIT)).payload == "second"  # type: ignore[union-attr]
    await follower.aclose()
    assert rt.metrics()["replay_subscribers"] == 0


async def test_closing_a_follower_from_another_thread_ends_its_iteration(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    follower = replay.follow(await replay.current_cursor("s"))
    await replay.append("s", "kept")  # something to yield, then a wait
    items: list[Any] = []

    async def consume() -> None:
        async for item in follower:
            items.append(item)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            # Closed once "kept" came and the follower waits for more (a close drops
            # what is still queued, so closing earlier could race the replay).
            await until(lambda: len(items) == 1 and waiting(rt) == 1)
            await anyio.to_thread.run_sync(follower.close)
    assert [item.payload for item in items] == ["kept"]
    assert rt.metrics()["replay_subscribers"] == 0


async def test_closing_a_follower_wakes_a_task_awaiting_its_subscribe(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("s")
    entered, release = threading.Event(), threading.Event()
    subscribe = ReplayBuffer._subscribe

    def held(buffer: ReplayBuffer, message: Any) -> Any:
        entered.set()
        release.wait(WAIT)
        return subscribe(buffer, message)

    monkeypatch.setattr(ReplayBuffer, "_subscribe", held)
    follower = replay.follow(start)
    items: list[Any] = []

    async def consume() -> None:
        items.extend([item async for item in follower])

    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await until(entered.is_set)
                await ticks(5)  # the consumer awaits the subscribe's answer
                follower.close()  # ends the iteration before the buffer answers
    finally:
        release.set()
    assert items == []
    await off_loop(rt.settle)
    assert rt.metrics()["replay_subscribers"] == 0


async def test_closing_the_runtime_ends_a_waiting_follower(
    db_path: Path, fake_clock: FakeClock
) -> None:
    rt = await off_loop(Runtime.open, db_path, clock=fake_clock)
    replay = AsyncReplay(rt.replay)
    follower = replay.follow(await replay.current_cursor("s"))
    items: list[Any] = []

    async def consume() -> None:
        items.extend([item async for item in follower])

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            await until(lambda: waiting(rt) == 1)
            await off_loop(rt.close)  # off the loop: the consumer's wake-up comes meanwhile
    assert items == []
    assert follower.closed


async def test_a_follower_says_how_many_items_it_yields_without_waiting(rt: Runtime) -> None:
    replay = AsyncReplay(rt.replay)
    cursor = await replay.current_cursor("s1")
    await replay.append_many("s1", [{"n": n} for n in range(3)])
    follower = replay.follow(cursor)
    assert follower.pending == 0  # subscribing: nothing taken in yet
    with anyio.fail_after(WAIT):
        first = await follower.next_item(WAIT)
    assert isinstance(first, ObservationEvent)
    assert follower.pending == 2
    with anyio.fail_after(WAIT):
        await follower.next_item()  # (no timeout: one is there)
        await follower.next_item()
    assert follower.pending == 0
    await follower.aclose()
