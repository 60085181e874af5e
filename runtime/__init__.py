"""greenroom: an actor runtime for AI-agent sessions.

    from greenroom import Runtime, RuntimeConfig, FakeClock, SystemClock

    with Runtime.open("app.db") as rt:
        rt.blocks.get("pane-1").append_output(b"hello\n")

Every part's records and namespaces are importable from here: blocks (`Block`,
`SessionStats`, ...), executions (`FeedResult`, `LlmRequest`, `ExecutionContext`),
transcripts (`UserMessage`, `Transcript`, `CompactionConfig`, ...), replay buffers
(`ObservationEvent`, `Replayed`, `Gap`, `Subscription`) and the one `Usage`. Errors are in
`greenroom.errors`, the actor base in `greenroom.actors`, the async facade in
`greenroom.aio`.
"""

import logging

from greenroom.aio import AsyncRuntime
from greenroom.blocks.handle import Block
from greenroom.blocks.namespace import Blocks
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
from greenroom.executions.namespace import Executions, PendingStep
from greenroom.executions.records import (
    AsyncExecutionContext,
    ExecutionContext,
    FeedResult,
    LlmQuery,
    LlmRequest,
)
from greenroom.executions.strategies import strategy
from greenroom.futures import GreenroomFuture
from greenroom.models import FileInfo, StoredObject
from greenroom.pricing import CostBreakdown, ModelPricing
from greenroom.replay.follower import Follower
from greenroom.replay.namespace import PendingSubscribe, Replay
from greenroom.replay.records import Gap, ObservationEvent, Replayed
from greenroom.replay.subscription import Subscription
from greenroom.runtime import Runtime
from greenroom.store import Store
from greenroom.transcripts.handle import Transcript
from greenroom.transcripts.namespace import Transcripts
from greenroom.transcripts.records import (
    AssistantMessage,
    CompactionConfig,
    CompactionResult,
    CompactionSummary,
    RecoveryReport,
    ToolCall,
    ToolResult,
    TurnResult,
    UserMessage,
)
from greenroom.usage import Usage

__all__ = [
    "ArchiveResult",
    "AssistantMessage",
    "AsyncExecutionContext",
    "AsyncRuntime",
    "Block",
    "Blocks",
    "Clock",
    "CompactionConfig",
    "CompactionResult",
    "CompactionSummary",
    "CostBreakdown",
    "ExecutionContext",
    "Executions",
    "FakeClock",
    "FeedResult",
    "FileInfo",
    "Follower",
    "Gap",
    "GreenroomFuture",
    "LlmQuery",
    "LlmRequest",
    "ModelPricing",
    "ObservationEvent",
    "OutputRead",
    "PendingStep",
    "PendingSubscribe",
    "RecoveryReport",
    "Replay",
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
    "Transcripts",
    "TurnResult",
    "Usage",
    "UserMessage",
    "strategy",
]

__version__ = "0.1.0.dev0"

# A library logs but never configures logging; hosts attach their own handlers.
logging.getLogger("greenroom").addHandler(logging.NullHandler())
