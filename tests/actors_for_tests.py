"""Small actors the tests drive through the runtime."""

from __future__ import annotations

import threading
from typing import Any

from greenroom.actors.base import ActorContext, GreenroomActor, GreenroomActorRef


class Block:
    """A message whose handler blocks until released: breaks the rule on purpose, so
    that the settle timeout has something to report."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event


class Counter(GreenroomActor):
    """Counts what it is told; can be told to fail."""

    kind = "counter"

    def __init__(self, ctx: ActorContext, start: int = 0) -> None:
        super().__init__(ctx)
        self.count = start
        self.stopped_with: int | None = None

    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise RuntimeError("told to fail")
        if isinstance(message, Block):
            message.event.wait(10)
            return None
        if message == "get":
            return self.count
        self.count += message
        return self.count

    def add(self, n: int) -> int:
        self.count += n
        return self.count

    def explode(self) -> None:
        raise ValueError("exploded on purpose")

    def on_stop(self) -> None:
        self.stopped_with = self.count


class Relay(GreenroomActor):
    """Passes a hop counter on to the next relay until it reaches zero."""

    kind = "relay"

    def __init__(self, ctx: ActorContext, sink: GreenroomActorRef) -> None:
        super().__init__(ctx)
        self.sink = sink
        self.next: GreenroomActorRef | None = None

    def link(self, nxt: GreenroomActorRef) -> None:
        self.next = nxt

    def on_receive(self, message: Any) -> Any:
        hops = message
        if hops == 0 or self.next is None:
            self.sink.tell(1)
            return None
        self.next.tell(hops - 1)
        return None


class Ticker(GreenroomActor):
    """Schedules a periodic tick on the runtime clock and counts the ticks."""

    kind = "ticker"

    def __init__(self, ctx: ActorContext, interval_s: float) -> None:
        super().__init__(ctx)
        self.interval_s = interval_s
        self.ticks: list[int] = []

    def on_start(self) -> None:
        self.schedule_every(self.interval_s, "tick")

    def on_receive(self, message: Any) -> Any:
        if message == "tick":
            self.ticks.append(self.ctx.clock.now_ms())
        return None

    def get_ticks(self) -> list[int]:
        return list(self.ticks)


class BadStart(GreenroomActor):
    kind = "badstart"

    def on_start(self) -> None:
        raise RuntimeError("cannot start")
