"""`AsyncRuntime`: the runtime for asyncio and trio hosts; every call leaves the loop free.

    async with AsyncRuntime.open("app.db") as art:            # or AsyncRuntime(rt)
        step = await art.executions.start(strategy, "topic")
        step = await art.executions.feed(step.session_id, "an answer")
        pane = await art.blocks.get("pane-1")
        pane.append_output(b'{"type":"text"}\\n')
        print(await pane.stats())
        log = await art.transcripts.create(model="anthropic:claude-sonnet-4-5")
        async for item in art.replay.follow(cursor):           # events, and gaps
            ...

The four namespaces mirror the `Runtime`'s (`rt.blocks`, `rt.executions`,
`rt.transcripts`, `rt.replay`): the same names, arguments, results and errors, built on
the same public seam of each part (calls that send a message and hand back a future),
awaited through `greenroom.aio.bridge`. It runs on anyio, so under asyncio and trio.
"""

from __future__ import annotations

from os import PathLike
from types import TracebackType
from typing import Any, Self

import anyio

from greenroom.aio.blocks import AsyncBlocks
from greenroom.aio.bridge import off_loop
from greenroom.aio.executions import AsyncExecutions
from greenroom.aio.replay import AsyncReplay
from greenroom.aio.transcripts import AsyncTranscripts
from greenroom.archives import Archives
from greenroom.clock import Clock
from greenroom.config import RuntimeConfig
from greenroom.errors import InvalidInput
from greenroom.runtime import Runtime

__all__ = ["AsyncRuntime"]


class AsyncRuntime:
    """A `Runtime` for async hosts: its waiting calls are coroutines that never block.

    Wrap a running runtime, `AsyncRuntime(rt)`, or open one: `art = await
    AsyncRuntime.open(path, clock=..., config=...)`, or `async with AsyncRuntime.open(...)
    as art:` (closed at the block's end). `runtime` is the wrapped `Runtime`, for what
    the facade does not cover (its never-waiting calls, such as `executions.status` or
    `replay.publish`, are safe on the loop; its waiting calls are not).
    """

    __slots__ = ("_rt", "blocks", "executions", "replay", "transcripts")

    blocks: AsyncBlocks
    """`rt.blocks`, awaited: `await art.blocks.get("pane-1")` gives an `AsyncBlock`."""
    executions: AsyncExecutions
    """`rt.executions`, awaited: start, feed, feed_many, cancel (status never waits)."""
    transcripts: AsyncTranscripts
    """`rt.transcripts`, awaited: create, resume and fork give an `AsyncTranscript`."""
    replay: AsyncReplay
    """`rt.replay`, awaited; `follow` is an async iterator of events and gaps."""

    def __init__(self, runtime: Runtime) -> None:
        """Wrap `runtime` (a `Runtime`); `InvalidInput` for anything else."""
        if not isinstance(runtime, Runtime):
            raise InvalidInput(f"AsyncRuntime wraps a Runtime, got {type(runtime).__name__}")
        self._rt = runtime
        self.blocks = AsyncBlocks(runtime.blocks)
        self.executions = AsyncExecutions(runtime.executions)
        self.transcripts = AsyncTranscripts(runtime.transcripts)
        self.replay = AsyncReplay(runtime.replay)

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        *,
        clock: Clock | None = None,
        config: RuntimeConfig | None = None,
        archives: Archives | None = None,
    ) -> Opening:
        """Open a runtime as `Runtime.open` does, on a worker thread.

        `await AsyncRuntime.open(...)` gives the `AsyncRuntime`; `async with
        AsyncRuntime.open(...) as art:` also closes it at the end of the block.
        """
        return Opening(path, clock, config, archives)

    @property
    def runtime(self) -> Runtime:
        """The wrapped `Runtime`."""
        return self._rt

    @property
    def closed(self) -> bool:
        """Whether the runtime has been closed."""
        return self._rt.closed

    def metrics(self) -> dict[str, int]:
        """`Runtime.metrics()` (never waits)."""
        return self._rt.metrics()

    async def settle(self, timeout: float | None = None) -> None:
        """`Runtime.settle` on a worker thread: until every actor is idle."""
        await off_loop(self._rt.settle, timeout, abandon_on_cancel=True)

    async def aclose(self) -> None:
        """Close the runtime (`Runtime.close`: stops every actor, joins its threads) on a
        worker thread; the loop goes on meanwhile. Idempotent."""
        # Shielded: a cancelled `async with` must still stop every actor and thread.
        with anyio.CancelScope(shield=True):
            await off_loop(self._rt.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncRuntime {self._rt!r}>"


class Opening:
    """What `AsyncRuntime.open` returns: awaitable, and an async context manager."""

    __slots__ = ("_archives", "_art", "_clock", "_config", "_path")

    def __init__(
        self,
        path: str | PathLike[str],
        clock: Clock | None,
        config: RuntimeConfig | None,
        archives: Archives | None = None,
    ) -> None:
        self._path = path
        self._clock = clock
        self._config = config
        self._archives = archives
        self._art: AsyncRuntime | None = None

    async def _open(self) -> AsyncRuntime:
        rt = await off_loop(
            Runtime.open,
            self._path,
            clock=self._clock,
            config=self._config,
            archives=self._archives,
        )
        return AsyncRuntime(rt)

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncRuntime:
        self._art = await self._open()
        return self._art

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._art is not None
        await self._art.aclose()
