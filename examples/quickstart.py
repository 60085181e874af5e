"""A first look at greenroom: a runtime, an actor of your own, the fake clock, the store.

Run it with `make demo`. It writes `quickstart.db` in the current folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from greenroom import FakeClock, Runtime
from greenroom.actors.base import ActorContext, GreenroomActor


class PaneWatcher(GreenroomActor):
    """Counts output lines of one agent pane and saves the count every 5 seconds."""

    kind = "watcher"

    def __init__(self, ctx: ActorContext) -> None:
        super().__init__(ctx)
        self.lines = 0
        self.saved = 0

    def on_start(self) -> None:
        # The store and the clock come with the context; the actor alone touches its
        # counter, so no lock is needed.
        self.ctx.store.ensure_object("pane", self.ctx.actor_id, {"view": "agent"})
        self.schedule_every(5.0, "save")

    def on_receive(self, message: Any) -> Any:
        if message == "save":
            self._save()
        else:
            self.lines += message.count(b"\n")

    def on_stop(self) -> None:
        self._save()  # nothing counted is lost on close

    def _save(self) -> None:
        if self.lines != self.saved:
            self.ctx.store.update_meta(
                "pane",
                self.ctx.actor_id,
                {"lines": self.lines, "saved_at_ms": self.ctx.clock.now_ms()},
            )
            self.saved = self.lines


def main() -> None:
    path = Path("quickstart.db")
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    clock = FakeClock(start_ms=1_767_225_600_000)  # 2026-01-01T00:00:00Z

    with Runtime.open(path, clock=clock) as rt:
        panes = [rt.spawn(PaneWatcher, actor_id=f"pane-{n}") for n in range(3)]
        for n, pane in enumerate(panes):
            for _ in range(10 * (n + 1)):
                pane.tell(b'{"event": "token"}\n')  # fire-and-forget

        clock.advance(5)  # fires each pane's save timer, then waits until all are idle
        saved = {obj.id: obj.meta["lines"] for obj in rt.store.list_objects("pane")}
        print("after 5 s the panes saved their line counts:", saved)
        assert saved == {"pane-0": 10, "pane-1": 20, "pane-2": 30}, saved

        # Metadata merge rules: None deletes a key, "prefix:*": True deletes a prefix.
        rt.store.update_meta("pane", "pane-0", {"session:a": 1, "session:b": 2})
        merged = rt.store.update_meta("pane", "pane-0", {"session:*": True, "lines": None})
        print(f"pane-0 meta after a wildcard delete: {merged.meta} (version {merged.version})")
        assert "lines" not in merged.meta
        assert "session:a" not in merged.meta

        panes[2].tell(b"one more line\n")
        metrics = rt.metrics()
        print(
            f"metrics: {metrics['actors_alive']} actors alive, "
            f"{metrics['messages_handled']} messages handled, "
            f"{metrics['actor_failures']} failures"
        )
        assert metrics["actor_failures"] == 0

    # close() stopped every actor; each saved its last count in on_stop.
    with Runtime.open(path, clock=clock) as rt:
        final = rt.store.get_object("pane", "pane-2").meta["lines"]
        print("pane-2 after close and re-open:", final)
        assert final == 31
    print(f"ok: see {path} (sqlite3 {path} 'select kind, id, meta from objects')")


if __name__ == "__main__":
    main()
