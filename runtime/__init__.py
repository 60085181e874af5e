"""greenroom: an actor runtime for AI-agent sessions.

    from greenroom import Runtime, RuntimeConfig, FakeClock, SystemClock

Each part's records are importable from here too: blocks (`Block`, `SessionStats`,
...), executions (`FeedResult`, `LlmRequest`), transcripts (`UserMessage`,
`Transcript`, `CompactionConfig`, ...) and replay buffers (`ObservationEvent`,
`Replayed`, `Gap`, `Subscription`). Errors live in `greenroom.errors`; the actor base in
`greenroom.actors.base`.
"""

import logging

from greenroom.aio import AsyncRuntime
from greenroom.blocks.handle import Block
from greenroom.blocks.records import (
    ArchiveResult,
    OutputRead,
    RestoreResult,
    SessionStats,
    SweepProgress,
    SweepStats,
)
from greenroom.clock import Clock, FakeClock, SystemClock, TimerHandle
from greenroom.config import RuntimeConfig
from greenroom.executions.records import FeedResult, LlmRequest
from greenroom.models import FileInfo, StoredObject
from greenroom.pricing import CostBreakdown, ModelPricing
from greenroom.replay.records import Gap, ObservationEvent, Replayed
from greenroom.replay.subscription import Subscription
from greenroom.runtime import Runtime
from greenroom.store import Store
from greenroom.transcripts.handle import Transcript
from greenroom.transcripts.records import (
    AssistantMessage,
    CompactionConfig,
    CompactionResult,
    CompactionSummary,
    RecoveryReport,
    ToolCall,
    ToolResult,
    TurnResult,
    Usage,
    UserMessage,
)

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
