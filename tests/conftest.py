"""Shared fixtures: a fake clock and a runtime on a real SQLite file in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# Sweeps run only when a test asks (rt.blocks.sweep()) unless it sets the timer itself.
QUIET = RuntimeConfig(settle_timeout_s=10.0, sweep_first_after_s=1e9, sweep_interval_s=1e9)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(start_ms=START_MS, settle_timeout_s=10.0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "greenroom.db"


@pytest.fixture
def rt(db_path: Path, fake_clock: FakeClock) -> Iterator[Runtime]:
    runtime = Runtime.open(db_path, clock=fake_clock, config=RuntimeConfig(settle_timeout_s=10.0))
    yield runtime
    runtime.close()


@pytest.fixture
def open_rt(db_path: Path, fake_clock: FakeClock) -> Iterator[Callable[..., Runtime]]:
    """Open runtimes on the test's database (closing whichever are left open)."""
    opened: list[Runtime] = []

    def open_(**config: Any) -> Runtime:
        new = Runtime.open(db_path, clock=fake_clock, config=attrs.evolve(QUIET, **config))
        opened.append(new)
        return new

    yield open_
    for each in opened:
        each.close()
