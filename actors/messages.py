"""Messages the actor machinery sends itself, and how messages are named in logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from pykka.messages import ProxyCall, ProxyGetAttr, ProxySetAttr

__all__ = ["BlockingDone", "Start", "describe_message"]


@attrs.frozen
class Start:
    """The first message of every actor: run `on_start` on a dispatcher thread."""


START = Start()


@attrs.frozen
class BlockingDone:
    """Work started with `run_blocking` finished: hand its future to `then` in the actor."""

    then: Callable[[Any], object]
    future: Any


def describe_message(message: Any) -> str:
    """A short, log-safe description of a message (its type or the proxied call)."""
    if isinstance(message, ProxyCall):
        return f"call {'.'.join(message.attr_path)}()"
    if isinstance(message, ProxyGetAttr | ProxySetAttr):
        return f"{type(message).__name__} {'.'.join(message.attr_path)}"
    if isinstance(message, BlockingDone):
        return f"BlockingDone {getattr(message.then, '__qualname__', message.then)!r}"
    return type(message).__name__
