"""The `Runtime` facade's transcripts methods (a mixin of `Runtime`)."""

from __future__ import annotations

__all__ = ["TranscriptsAPI"]


class TranscriptsAPI:
    """`Runtime` methods for transcripts; `Runtime` inherits them."""

    def _init_transcripts(self) -> None:
        """Set up this part's state; called once from `Runtime.__init__`."""

    def _transcripts_metrics(self) -> dict[str, int]:
        """This part's counters (at zero until bumped) and gauges for `metrics()`."""
        return {}

    def _close_transcripts(self) -> None:
        """Release this part's resources; `close()` calls it after every actor stopped."""
