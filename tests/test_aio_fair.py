"""`greenroom.aio.bridge.fair_turn`: greenroom's calls share an asyncio loop in slices.

Thousands of calls in flight at once would otherwise run all their sends (or all their
answers) in one iteration of the loop, and the host's timers would wait for all of
them. The slice is made zero here, so every slice admits exactly one call and the
order of what runs is exact, not a matter of timing.
"""

from __future__ import annotations

import asyncio

import pytest

from greenroom.aio import bridge

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_calls_in_flight_take_turns_with_the_loops_own_callbacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bridge, "LOOP_SLICE_S", 0.0)  # every slice used up at once
    order: list[str] = []

    async def call(n: int) -> None:
        await bridge.fair_turn()
        order.append(f"call {n}")

    await bridge.fair_turn()  # (the loop's first call opens its first slice)
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(call(n)) for n in range(4)]
    await asyncio.sleep(0)  # they start, and wait for slices of their own

    def host_callback() -> None:
        order.append("host")

    loop.call_soon(host_callback)
    await asyncio.gather(*tasks)
    assert sorted(order) == ["call 0", "call 1", "call 2", "call 3", "host"]
    assert order.index("host") < 3  # not after every call: between them
    assert order[-1].startswith("call")


async def test_a_call_within_its_slice_goes_on_at_once() -> None:
    await bridge.fair_turn()
    slices = bridge._SLICES[asyncio.get_running_loop()]
    slices.began = bridge.stopwatch()  # a slice just opened, far from used up
    ran: list[int] = []

    async def call() -> None:
        await bridge.fair_turn()
        ran.append(1)

    task = asyncio.create_task(call())
    await asyncio.sleep(0)  # one iteration: the call ran through without waiting
    assert ran == [1]
    await task


async def test_a_call_after_a_pause_as_long_as_a_slice_opens_a_new_one() -> None:
    await bridge.fair_turn()
    share = bridge._SLICES[asyncio.get_running_loop()]
    # The slice is long used up, but no call came for longer than a slice: the loop
    # had its share of time, so a lone call (an MCP server's, say) never waits.
    share.began = share.seen = bridge.stopwatch() - 10 * bridge.LOOP_SLICE_S
    ran: list[int] = []

    async def call() -> None:
        await bridge.fair_turn()
        ran.append(1)

    task = asyncio.create_task(call())
    await asyncio.sleep(0)
    assert ran == [1]
    assert not share.queue
    await task
    # Within a slice of the last call, a used-up slice makes the next call wait.
    share.began = bridge.stopwatch() - 10 * bridge.LOOP_SLICE_S
    share.seen = bridge.stopwatch()
    task = asyncio.create_task(call())
    await asyncio.sleep(0)
    assert ran == [1]
    assert len(share.queue) == 1
    await task
    assert ran == [1, 1]


async def test_a_thousand_waiting_calls_are_admitted_in_order_one_wake_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bridge, "LOOP_SLICE_S", 0.0)
    await bridge.fair_turn()
    order: list[int] = []
    wakes = 0
    real = bridge._pump

    def counted(share: bridge.LoopShare) -> None:
        nonlocal wakes
        wakes += 1
        real(share)

    monkeypatch.setattr(bridge, "_pump", counted)

    async def call(n: int) -> None:
        await bridge.fair_turn()
        order.append(n)

    await asyncio.gather(*(call(n) for n in range(1000)))
    assert order == list(range(1000))
    assert wakes == 1000  # one admission each (a shared future woke all 1,000 each time)


async def test_off_asyncio_it_does_nothing() -> None:
    import trio

    async def on_trio() -> None:
        await bridge.fair_turn()

    trio.run(on_trio)


async def test_cancelling_one_waiting_call_leaves_the_others_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bridge, "LOOP_SLICE_S", 0.0)
    await bridge.fair_turn()
    done: list[int] = []

    async def call(n: int) -> None:
        await bridge.fair_turn()
        done.append(n)

    tasks = [asyncio.create_task(call(n)) for n in range(5)]
    await asyncio.sleep(0)  # all wait for slices now
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(result).__name__ for result in results] == [
        "NoneType",
        "NoneType",
        "CancelledError",
        "NoneType",
        "NoneType",
    ]
    assert sorted(done) == [0, 1, 3, 4]
