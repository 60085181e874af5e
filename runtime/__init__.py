"""greenroom: an actor runtime for AI-agent sessions.

    from runtime import Runtime, RuntimeConfig, FakeClock, SystemClock

Errors live in `runtime.errors`; the actor base in `actors.base`.
"""

import logging

from runtime.clock import Clock, FakeClock, SystemClock, TimerHandle
from runtime.config import RuntimeConfig
from runtime.models import FileInfo, StoredObject
from runtime.runtime import Runtime
from runtime.store import Store

__all__ = [
    "Clock",
    "FakeClock",
    "FileInfo",
    "Runtime",
    "RuntimeConfig",
    "Store",
    "StoredObject",
    "SystemClock",
    "TimerHandle",
]

__version__ = "0.1.0.dev0"

# A library logs but never configures logging; hosts attach their own handlers.
logging.getLogger("greenroom").addHandler(logging.NullHandler())
