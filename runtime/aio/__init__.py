"""`greenroom.aio`: the runtime for asyncio and trio hosts, on anyio; nothing blocks the loop.

    from greenroom.aio import AsyncRuntime

    async with AsyncRuntime.open("app.db") as art:
        pane = await art.blocks.get("pane-1")
        first = await art.executions.start(strategy, "topic")
        log = await art.transcripts.create(model="anthropic:claude-sonnet-4-5")
        async for item in art.replay.follow(cursor):
            ...

`wait(future)` awaits any greenroom future (a host's own actor's `ask(block=False)` or
proxy call) the same way.
"""

from greenroom.aio.blocks import AsyncBlock, AsyncBlocks
from greenroom.aio.bridge import off_loop, settled, wait
from greenroom.aio.executions import AsyncExecutions
from greenroom.aio.facade import AsyncRuntime, Opening
from greenroom.aio.replay import AsyncFollower, AsyncReplay, AsyncSubscription
from greenroom.aio.transcripts import AsyncTranscript, AsyncTranscripts

__all__ = [
    "AsyncBlock",
    "AsyncBlocks",
    "AsyncExecutions",
    "AsyncFollower",
    "AsyncReplay",
    "AsyncRuntime",
    "AsyncSubscription",
    "AsyncTranscript",
    "AsyncTranscripts",
    "Opening",
    "off_loop",
    "settled",
    "wait",
]
