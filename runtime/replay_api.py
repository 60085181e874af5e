"""The `Runtime` facade's replay methods (a mixin of `Runtime`)."""

from __future__ import annotations

__all__ = ["ReplayAPI"]


class ReplayAPI:
    """`Runtime` methods for replay; `Runtime` inherits them."""

    def _init_replay(self) -> None:
        """Set up this part's state; called once from `Runtime.__init__`."""

    def _replay_metrics(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges for `metrics()`."""
        return {}

    def _close_replay(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped."""
