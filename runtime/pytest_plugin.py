"""pytest fixtures for host test suites: a fake clock and a runtime on a temporary database.

Installed with greenroom as a `pytest11` plugin, so a host's tests get the fixtures
without importing anything:

    def test_pane_counts_lines(greenroom_runtime, fake_clock):
        pane = greenroom_runtime.blocks.get("pane-1", view="agent")
        pane.append_output(b"one\\ntwo\\n")
        fake_clock.advance(1.0)  # fires due timers, then waits until every actor is idle
        assert pane.stats().line_count == 2

* `fake_clock`: a `FakeClock` at 2026-01-01T00:00:00Z that moves only when the test
  calls `advance`, so no test sleeps.
* `greenroom_runtime`: a `Runtime` on a SQLite file in the test's `tmp_path`, on
  `fake_clock`, closed after the test (a close that fails fails the test).
* `greenroom_config`: the `RuntimeConfig` the runtime gets; override this fixture in a
  `conftest.py` to change settings for a suite. The default waits at most 10 s for
  actors to settle and runs sweeps only when the test asks (`rt.blocks.sweep()`).

A suite that defines fixtures of the same names (in its `conftest.py`) keeps its own:
pytest prefers them to a plugin's.

The plugin is `greenroom.pytest_plugin`, inside greenroom's one import package, so a
host with packages of its own named `runtime` or `actors` keeps them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from greenroom.clock import FakeClock
from greenroom.config import RuntimeConfig
from greenroom.runtime import Runtime

__all__ = ["fake_clock", "greenroom_config", "greenroom_runtime"]

# No sweep unless the test starts one: a sweep that fires in the middle of a test's
# `advance` is rarely what the test is about.
_NEVER_S = 1e9


@pytest.fixture
def fake_clock() -> FakeClock:
    """A `FakeClock` at 2026-01-01T00:00:00Z; `advance(seconds)` moves it."""
    return FakeClock(settle_timeout_s=10.0)


@pytest.fixture
def greenroom_config() -> RuntimeConfig:
    """The `RuntimeConfig` of `greenroom_runtime`; override it to change settings."""
    return RuntimeConfig(
        settle_timeout_s=10.0, sweep_first_after_s=_NEVER_S, sweep_interval_s=_NEVER_S
    )


@pytest.fixture
def greenroom_runtime(
    tmp_path: Path, fake_clock: FakeClock, greenroom_config: RuntimeConfig
) -> Iterator[Runtime]:
    """A `Runtime` on `tmp_path / "greenroom.db"` and `fake_clock`, closed afterwards."""
    rt = Runtime.open(tmp_path / "greenroom.db", clock=fake_clock, config=greenroom_config)
    try:
        yield rt
    finally:
        rt.close()
