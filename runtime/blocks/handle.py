"""`Block`: the handle on one block (an agent pane); every call goes to the block's actor."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pykka

from greenroom.blocks.messages import line_message, output_message
from greenroom.blocks.records import ArchiveResult, OutputRead, RestoreResult, SessionStats

if TYPE_CHECKING:
    from greenroom.actors.base import GreenroomActorRef

__all__ = ["Block"]


class Block:
    """A handle on one block; every call goes to the block's actor.

    `append_output` and `record_line` are fire and forget; the others wait for the
    actor's answer. Get one with `Runtime.blocks.get(block_id)`. A handle outlives its
    actor: if the actor was stopped, the next call starts a new one (which carries
    on from the stored counters); after `Runtime.close()` calls raise `Stopped`.
    """

    __slots__ = ("_proxy_cache", "_ref", "_resolve", "block_id")

    def __init__(
        self,
        ref: GreenroomActorRef,
        block_id: str,
        resolve: Callable[[str], Block] | None = None,
    ) -> None:
        self._ref = ref
        self._proxy_cache: Any = None
        self._resolve = resolve
        self.block_id = block_id

    @property
    def _proxy(self) -> Any:
        # Made on first use: a pykka proxy inspects the actor's attributes, which a
        # handle used only for appends never needs.
        if self._proxy_cache is None:
            self._proxy_cache = self._ref.proxy()
        return self._proxy_cache

    def _reconnect(self) -> None:
        """Point this handle at the block's current actor (starting one if needed)."""
        if self._resolve is None:
            raise
        fresh = self._resolve(self.block_id)  # `Stopped` once the runtime is closed
        self._ref, self._proxy_cache = fresh._ref, None

    def _ask(self, name: str, *args: Any) -> Any:
        try:
            return self._send(name, *args).get()
        except pykka.ActorDeadError:
            # Not delivered (the actor had stopped): safe to send again, once.
            self._reconnect()
            return self._send(name, *args).get()

    def _send(self, name: str, *args: Any) -> Any:
        """Call the actor's method `name` without waiting; the answer's future.

        `ActorDeadError` (raised, or in the future) means the call was not delivered:
        reconnect and send it again (what `_ask` does; `greenroom.aio` awaits the future).
        """
        return getattr(self._proxy, name)(*args)

    def _tell(self, message: Any) -> None:
        try:
            self._ref.tell(message)
        except pykka.ActorDeadError:
            self._reconnect()
            self._ref.tell(message)

    def _tell_once(self, message: Any) -> None:
        """Tell the actor `message`; `ActorDeadError` if it has stopped (no reconnect)."""
        self._ref.tell(message)

    def append_output(self, data: bytes) -> None:
        """Append `data` to the output and count its non-empty lines; returns at once."""
        self._tell(output_message(data))

    def record_line(self, n_bytes: int) -> None:
        """Count one line of `n_bytes` bytes kept elsewhere; returns at once."""
        self._tell(line_message(n_bytes))

    def stats(self) -> SessionStats:
        """The live stats, including lines not flushed yet."""
        return self._ask("stats")

    def meta(self) -> dict[str, Any]:
        """The metadata as stored (stats as of the last flush)."""
        return self._ask("meta")

    def update_meta(self, update: dict[str, Any]) -> dict[str, Any]:
        """Merge `update` into the metadata (the store's rules); returns the new metadata."""
        return self._ask("update_meta", update)

    def flush(self) -> None:
        """Store the stats and the output handed over so far; returns once they are stored.

        Output that arrives while an archive or restore runs is held back until it ends.
        """
        self._ask("flush")

    def archive(self) -> ArchiveResult:
        """Compress the output into the archive folder and drop the live copy."""
        return self._ask("archive")

    def restore(self) -> RestoreResult:
        """Bring an archived output back; `InvalidTransition` if it is not archived."""
        return self._ask("restore")

    def read_output(self) -> OutputRead:
        """The whole output, read from the archive when the block is archived."""
        return self._ask("read_output")

    def prune_archive(self, path: str) -> int:
        """Delete the archive file `path` (pruning) and unlink it from the metadata.

        Used by the sweep; returns the bytes freed.
        """
        return self._ask("prune_archive", path)

    def __repr__(self) -> str:
        return f"<Block {self.block_id!r}>"
