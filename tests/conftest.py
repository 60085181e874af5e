"""Shared fixtures: a fake clock and a runtime on a real SQLite file in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import FakeClock, Runtime, RuntimeConfig

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


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
