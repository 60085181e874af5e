"""The asyncio and trio facade (being rebuilt on anyio; see bridge.py)."""

from greenroom.aio.legacy import AsyncBlock, AsyncFollower, AsyncRuntime, wrap_future

__all__ = ["AsyncBlock", "AsyncFollower", "AsyncRuntime", "wrap_future"]
