"""greenroom: an actor runtime for AI-agent sessions.

    from runtime import Runtime, RuntimeConfig, FakeClock, SystemClock

Errors live in `runtime.errors`; the actor base in `actors.base`.
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
    "Block",
    "Clock",
    "FakeClock",
    "FileInfo",
    "OutputRead",
    "RestoreResult",
    "Runtime",
    "RuntimeConfig",
    "SessionStats",
    "Store",
    "StoredObject",
    "SweepStats",
    "SystemClock",
    "TimerHandle",
]

__version__ = "0.1.0.dev0"

# A library logs but never configures logging; hosts attach their own handlers.
logging.getLogger("greenroom").addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # `Runtime` wires in the actors package, which itself imports runtime.errors:
    # loading it on first use keeps `import actors.base` free of an import cycle.
    if name == "Runtime":
        from runtime.runtime import Runtime

        return Runtime
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
