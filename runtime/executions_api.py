"""The `Runtime` facade's executions methods (a mixin of `Runtime`)."""

from __future__ import annotations

__all__ = ["ExecutionsAPI"]


class ExecutionsAPI:
    """`Runtime` methods for executions; `Runtime` inherits them."""

    def _init_executions(self) -> None:
        """Set up this part's state; called once from `Runtime.__init__`."""

    def _executions_metrics(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges for `metrics()`."""
        return {}

    def _close_executions(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped."""
