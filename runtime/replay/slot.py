"""`BufferSlot`: what the facade and one replay buffer actor share about that buffer."""

from __future__ import annotations

__all__ = ["BufferSlot"]


class BufferSlot:
    """One buffer incarnation's epoch and its told appends (shared state, not a message).

    `sent` is bumped by publishers under the facade's replay lock before they tell;
    `handled` only by the buffer, on its own thread, as it handles each one. The
    buffer may retire only when the two are equal, checked under that same lock (see
    `greenroom.actors.replay`). The facade keeps the buffer's actor ref in a subclass
    of its own (`greenroom.replay.namespace`): this module sits below the actors.
    """

    __slots__ = ("epoch", "handled", "sent")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.sent = 0
        self.handled = 0

    @property
    def pending(self) -> int:
        """Told appends sent and not handled yet."""
        return self.sent - self.handled

    def __repr__(self) -> str:
        return f"<BufferSlot epoch={self.epoch} sent={self.sent} handled={self.handled}>"
