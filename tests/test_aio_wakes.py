"""The wake-ups `greenroom.aio` hands a loop from the buffers' threads: batched per
loop, and gone with the loop's last subscriber (a closed loop is never kept alive)."""

from __future__ import annotations

import gc

import anyio

from greenroom import ObservationEvent, Runtime
from greenroom.aio import replay as aio_replay
from greenroom.aio.replay import AsyncReplay

WAIT = 10.0


def test_a_loop_s_wake_ups_go_with_its_last_subscriber(rt: Runtime) -> None:
    async def follow_once(n: int) -> None:
        replay = AsyncReplay(rt.replay)
        cursor = await replay.current_cursor("s")
        await replay.append_many("s", [{"n": n}, {"n": n + 1}])
        async with replay.follow(cursor) as follower:
            with anyio.fail_after(WAIT):
                first = await follower.next_item(WAIT)
                second = await follower.next_item(WAIT)
        assert isinstance(first, ObservationEvent)
        assert isinstance(second, ObservationEvent)
        assert [first.payload, second.payload] == [{"n": n}, {"n": n + 1}]

    for n in range(0, 6, 2):
        anyio.run(follow_once, n)  # three loops, each closed once done
    gc.collect()
    assert len(aio_replay._wakes) == 0
