"""`greenroom sweep`: one sweep with optional overrides, a dry run, a progress bar.

With `--json` it prints one JSON object, the sweep's summary: its settings and counts,
and the items archived, pruned, skipped and failed, each list made of item objects
(`block_id`, `path`, `bytes`; a skipped one adds `error`, a failed one `phase` and
`error`).
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from greenroom.blocks.records import SweepProgress, SweepStats
from greenroom.checks import check_number
from greenroom.cli.common import emit_object, open_database, plural, say, warn
from greenroom.clock import stopwatch
from greenroom.errors import InvalidInput

__all__ = ["ProgressBar", "parse_byte_count", "parse_days", "run_sweep"]

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_BYTES = re.compile(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_byte_count(text: str) -> int:
    """`--max-archive-bytes`: a byte count >= 0, with an optional binary unit
    (`K`, `M`, `G`, `T`, also written `KiB`, `KB`: powers of 1024)."""
    match = _BYTES.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a byte count such as 1048576, 500M or 2G, got {text!r}"
        )
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def parse_days(text: str) -> float:
    """`--inactive-days`: a finite number of days >= 0 (fractions allowed)."""
    try:
        return check_number(float(text), "--inactive-days", minimum=0)
    except (ValueError, InvalidInput):
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got {text!r}") from None


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal (`\\r`), at most ~20
    times a second; `close()` clears the line."""

    _WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._columns = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        self._last = -math.inf
        self._shown = False
        self._lock = threading.Lock()

    def update(self, event: SweepProgress) -> None:
        """Draw `event` (called on the sweep's thread)."""
        if event.total == 0:
            return
        now = stopwatch()
        if event.done not in (0, event.total) and now - self._last < 0.05:
            return
        self._last = now
        label = "archiving" if event.phase == "archive" else "pruning"
        if event.dry_run:
            label = f"planning: {label}"
        filled = self._WIDTH * event.done // event.total
        bar = "#" * filled + "-" * (self._WIDTH - filled)
        item = event.block_id or (Path(event.path).name if event.path else "")
        text = f"{label} [{bar}] {event.done}/{event.total} {item}"[: self._columns]
        with self._lock:
            self._stream.write("\r" + text.ljust(self._columns))
            self._stream.flush()
            self._shown = True

    def close(self) -> None:
        """Clear the bar's line."""
        with self._lock:
            if self._shown:
                self._stream.write("\r" + " " * self._columns + "\r")
                self._stream.flush()
                self._shown = False


def run_sweep(args: argparse.Namespace) -> int:
    """`greenroom sweep DB`: archive idle agent blocks, prune the archives (exit 1 when
    an item failed; the others are done all the same)."""
    events: list[SweepProgress] = []
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None

    def progress(event: SweepProgress) -> None:
        events.append(event)
        if bar is not None:
            bar.update(event)

    with open_database(args.db, args.archive_dir) as rt:
        days = rt.config.inactive_days if args.inactive_days is None else args.inactive_days
        budget = (
            rt.config.max_archive_bytes
            if args.max_archive_bytes is None
            else args.max_archive_bytes
        )
        try:
            stats = rt.blocks.sweep(
                inactive_days=days,
                max_archive_bytes=budget,
                dry_run=args.dry_run,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.close()
    done = [event for event in events if event.outcome != "started"]
    archived = [e for e in done if e.outcome in ("archived", "would_archive")]
    pruned = [e for e in done if e.outcome in ("pruned", "would_prune")]
    skipped = [e for e in done if e.outcome == "skipped"]
    failed = [e for e in done if e.outcome == "failed"]
    if args.json:
        emit_object(
            {
                "dry_run": args.dry_run,
                "inactive_days": days,
                "max_archive_bytes": budget,
                "archived_count": stats.archived_count,
                "pruned_count": stats.pruned_count,
                "skipped_count": stats.skipped_count,
                "bytes_freed": stats.bytes_freed,
                "archived": [_item(e) for e in archived],
                "pruned": [_item(e) for e in pruned],
                "skipped": [dict(_item(e), error=e.error) for e in skipped],
                "failed": [dict(_item(e), phase=e.phase, error=e.error) for e in failed],
            }
        )
    else:
        _print_sweep(args.dry_run, days, budget, stats, archived, pruned, skipped)
    for event in failed:
        if event.phase == "archive":
            warn(f"could not archive block {event.block_id!r}: {event.error}")
        else:
            warn(f"could not prune {event.path}: {event.error}")
    return 1 if failed else 0


def _item(event: SweepProgress) -> dict[str, Any]:
    # `str()`: the path may come back as a `str` or a `pathlib.Path`.
    path = None if event.path is None else str(event.path)
    return {"block_id": event.block_id, "path": path, "bytes": event.bytes}


def _print_sweep(
    dry_run: bool,
    days: float,
    budget: int,
    stats: SweepStats,
    archived: list[SweepProgress],
    pruned: list[SweepProgress],
    skipped: list[SweepProgress],
) -> None:
    archive_verb, prune_verb = ("archived", "pruned")
    if dry_run:
        archive_verb, prune_verb = ("would archive", "would prune")
    for event in archived:
        say(f"{archive_verb} {event.block_id} ({plural(event.bytes, 'byte')})")
    for event in skipped:
        why = event.error or "nothing live to archive any more"
        say(f"skipped {event.block_id} ({why})")
    for event in pruned:
        owner = f"block {event.block_id}" if event.block_id else "no block"
        name = Path(event.path).name if event.path else "?"
        say(f"{prune_verb} {name} ({owner}, {plural(event.bytes, 'byte')})")
    say(f"settings: agent blocks idle {days:g} days or more; archive budget {budget:,} bytes")
    if dry_run:
        say(
            f"dry run, nothing changed: would archive {plural(stats.archived_count, 'block')}, "
            f"prune {plural(stats.pruned_count, 'archive')}, free "
            f"{plural(stats.bytes_freed, 'byte')}"
        )
    else:
        say(
            f"swept: archived {plural(stats.archived_count, 'block')}, pruned "
            f"{plural(stats.pruned_count, 'archive')}, freed {plural(stats.bytes_freed, 'byte')}"
        )
