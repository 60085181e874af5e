"""greenroom: an actor runtime for AI-agent sessions.

    from runtime import Runtime, RuntimeConfig, FakeClock, SystemClock

Each part's records are importable from here too: blocks (`Block`, `SessionStats`,
...), executions (`FeedResult`, `LlmRequest`), transcripts (`UserMessage`,
`Transcript`, `CompactionConfig`, ...) and replay buffers (`ObservationEvent`,
`Replayed`, `Gap`, `Subscription`). Errors live in `runtime.errors`; the actor base in
`actors.base`.
"""

import logging
from typing import TYPE_CHECKING, Any

from runtime.blocks import (
    ArchiveResult,
    Block,
    OutputRead,
    RestoreResult,
    SessionStats,
    SweepStats,
)
from runtime.clock import Clock, FakeClock, SystemClock, TimerHandle
from runtime.config import RuntimeConfig
from runtime.models import FileInfo, StoredObject
from runtime.store import Store

if TYPE_CHECKING:
    from runtime.runtime import Runtime

__all__ = [
    "ArchiveResult",
    "AssistantMessage",
    "AsyncRuntime",
    "Block",
    "Clock",
    "CompactionConfig",
    "CompactionResult",
    "CompactionSummary",
    "CostBreakdown",
    "FakeClock",
    "FeedResult",
    "FileInfo",
    "Gap",
    "LlmRequest",
    "ModelPricing",
    "ObservationEvent",
    "OutputRead",
    "RecoveryReport",
    "Replayed",
    "RestoreResult",
    "Runtime",
    "RuntimeConfig",
    "SessionStats",
    "Store",
    "StoredObject",
    "Subscription",
    "SweepProgress",
    "SweepStats",
    "SystemClock",
    "TimerHandle",
    "ToolCall",
    "ToolResult",
    "Transcript",
    "TurnResult",
    "Usage",
    "UserMessage",
]

__version__ = "0.1.0.dev0"

# A library logs but never configures logging; hosts attach their own handlers.
logging.getLogger("greenroom").addHandler(logging.NullHandler())


# Loaded on first use: `Runtime` wires in the actors package, which itself imports
# runtime.errors, so importing it here would make `import actors.base` circular.
_LAZY = {
    "Runtime": "runtime.runtime",
    "AsyncRuntime": "runtime.aio",
    # executions
    "FeedResult": "runtime.executions",
    "LlmRequest": "runtime.executions",
    # transcripts
    "UserMessage": "runtime.transcripts",
    "AssistantMessage": "runtime.transcripts",
    "ToolCall": "runtime.transcripts",
    "ToolResult": "runtime.transcripts",
    "Usage": "runtime.transcripts",
    "CompactionSummary": "runtime.transcripts",
    "CompactionConfig": "runtime.transcripts",
    "CompactionResult": "runtime.transcripts",
    "TurnResult": "runtime.transcripts",
    "Transcript": "runtime.transcripts",
    "RecoveryReport": "runtime.transcripts",
    "CostBreakdown": "runtime.pricing",
    "ModelPricing": "runtime.pricing",
    # blocks
    "SweepProgress": "actors.sweeper",
    # replay buffers
    "ObservationEvent": "runtime.replay",
    "Replayed": "runtime.replay",
    "Gap": "runtime.replay",
    "Subscription": "runtime.replay",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
