"""Shared fixtures on top of the shipped plugin's (`greenroom.pytest_plugin`).

The plugin gives `fake_clock` (at START_MS) and `greenroom_runtime` on
`tmp_path / "greenroom.db"`; this suite overrides `greenroom_config` (keeping the
default sweep timer) and names the runtime `rt`.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.futures import GreenroomFuture

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# Sweeps run only when a test asks (rt.blocks.sweep()) unless it sets the timer itself.
QUIET = RuntimeConfig(settle_timeout_s=10.0, sweep_first_after_s=1e9, sweep_interval_s=1e9)


@pytest.fixture
def greenroom_config() -> RuntimeConfig:
    """The suite's config: the plugin's, but with the default sweep timer."""
    return RuntimeConfig(settle_timeout_s=10.0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The database `greenroom_runtime` is opened on."""
    return tmp_path / "greenroom.db"


@pytest.fixture
def rt(greenroom_runtime: Runtime, fake_clock: FakeClock) -> Runtime:
    """The plugin's runtime, on the plugin's fake clock."""
    assert greenroom_runtime.clock is fake_clock
    return greenroom_runtime


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


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test (`@pytest.mark.anyio`) runs under asyncio and under trio."""
    backend: str = request.param
    return backend


@pytest.fixture
def loop_waits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every wait on an unresolved future that this thread (the loop's) makes.

    A `get` or `wait` of a future that has not resolved would hold the loop; the
    facade must only ever read futures that have. Yields the list of such calls.
    """
    loop_thread = threading.get_ident()
    seen: list[str] = []
    original_get, original_wait = GreenroomFuture.get, GreenroomFuture.wait

    def get(self: GreenroomFuture[Any], *, timeout: float | None = None) -> Any:
        if threading.get_ident() == loop_thread and not self.done:
            seen.append(f"get(timeout={timeout})")
        return original_get(self, timeout=timeout)

    def wait(self: GreenroomFuture[Any], timeout: float | None = None) -> bool:
        if threading.get_ident() == loop_thread and not self.done:
            seen.append(f"wait({timeout})")
        return original_wait(self, timeout)

    monkeypatch.setattr(GreenroomFuture, "get", get)
    monkeypatch.setattr(GreenroomFuture, "wait", wait)
    return seen


# -- backend servers (`.ci/services`, `make services`) --------------------------------------

_BACKENDS = {"redis": "GREENROOM_REDIS_URL", "postgres": "GREENROOM_PG_URL"}


@pytest.fixture
def redis_url() -> str:
    """The Redis server of the backend suites; the test is skipped without one."""
    url = os.environ.get("GREENROOM_REDIS_URL")
    if not url:
        pytest.skip(
            'GREENROOM_REDIS_URL is not set: no Redis to test against (`eval "$(make -s '
            'services)"` starts one on 127.0.0.1; .ci/run does)'
        )
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables are the test's own (a fresh schema, dropped after);
    the test is skipped without a server."""
    url = os.environ.get("GREENROOM_PG_URL")
    if not url:
        pytest.skip(
            'GREENROOM_PG_URL is not set: no PostgreSQL to test against (`eval "$(make -s '
            'services)"` starts one on 127.0.0.1; .ci/run does)'
        )
    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_hosts(pg_url: str, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Open hosts on the test's PostgreSQL schema: `pg_hosts(name, clock, **config)`,
    each a runtime with `host_id=name` and leases of 30 s (closed after the test)."""
    opened: list[Runtime] = []

    def open_host(name: str, clock: FakeClock, **config: Any) -> Runtime:
        settings = RuntimeConfig(
            settle_timeout_s=10.0,
            archive_dir=tmp_path / "archives",
            host_id=name,
            lease_s=30.0,
            **config,
        )
        rt = Runtime.open(pg_url, clock=clock, config=settings)
        opened.append(rt)
        return rt

    yield open_host
    for rt in opened:
        rt.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say plainly when a backend suite did not run (its tests were skipped)."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "is not set: no" in str(getattr(report, "longrepr", ""))
    ]
    if skipped:
        names = sorted(
            {env for env in _BACKENDS.values() if any(env in str(r.longrepr) for r in skipped)}
        )
        terminalreporter.write_line(
            f"backend suites skipped ({len(skipped)} tests): {', '.join(names)} not set; "
            '`eval "$(make -s services)"` starts the servers, then run make test again',
            yellow=True,
        )
