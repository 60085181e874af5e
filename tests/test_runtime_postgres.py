"""A runtime on PostgreSQL (`Runtime.open("postgresql://...")`): its parts on that store.

The durable-execution suite runs on both stores (tests/test_durable_executions.py);
here, blocks (output, stats, archives and restore) and a host that restarts, against
a real server (`GREENROOM_PG_URL`), each test in a schema of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.errors import InvalidInput
from greenroom.leases import LEASE_OWNER
from greenroom.store_postgres import PostgresStore

pytestmark = pytest.mark.postgres


def _config(tmp_path: Path, **extra: object) -> RuntimeConfig:
    return RuntimeConfig(
        settle_timeout_s=10.0,
        archive_dir=tmp_path / "archives",
        **extra,  # type: ignore[arg-type]
    )


def test_blocks_on_postgres_survive_a_restart_and_archive(
    pg_url: str, tmp_path: Path, fake_clock: FakeClock
) -> None:
    with Runtime.open(pg_url, clock=fake_clock, config=_config(tmp_path)) as rt:
        assert isinstance(rt.store, PostgresStore)
        pane = rt.blocks.get("pane-1")
        pane.append_output(b"hello\nworld\n")
        pane.flush()
        assert pane.stats().line_count == 2
        pane.update_meta({"title": "build"})
    with Runtime.open(pg_url, clock=fake_clock, config=_config(tmp_path)) as again:
        pane = again.blocks.get("pane-1")
        assert pane.read_output().data == b"hello\nworld\n"
        assert pane.meta()["session:line_count"] == 2
        assert pane.meta()["title"] == "build"
        archived = pane.archive()
        assert archived.path is not None
        assert archived.path.parent == (tmp_path / "archives").resolve()
        read = pane.read_output()  # through the archive
        assert (read.data, read.archived) == (b"hello\nworld\n", True)
        assert again.blocks.ids() == ["pane-1"]


def test_a_runtime_on_postgres_needs_a_shared_archive_folder(
    pg_url: str, fake_clock: FakeClock
) -> None:
    with pytest.raises(InvalidInput, match="archive_dir"):
        Runtime.open(pg_url, clock=fake_clock)
    # Nothing was left open: with the folder it opens at once.
    Runtime.open(pg_url, clock=fake_clock, config=RuntimeConfig(archive_dir="/tmp")).close()


def test_a_runtime_without_a_host_id_has_one_name_for_all_its_leases(
    pg_url: str, tmp_path: Path, fake_clock: FakeClock
) -> None:
    with Runtime.open(pg_url, clock=fake_clock, config=_config(tmp_path)) as rt:
        host = rt.config.host_id
        assert host is not None  # drawn when the runtime opened: <hostname>:<pid>:<random>
        rt.executions.register("ask", _ask)
        step = rt.executions.start("ask")
        rt.blocks.get("pane-1").append_output(b"x\n")
        block = rt.store.get_object("block", "pane-1").meta
        execution = rt.store.get_object("execution", step.session_id).meta
        assert block[LEASE_OWNER] == execution[LEASE_OWNER] == host
    with Runtime.open(tmp_path / "one.db", clock=fake_clock) as alone:
        assert alone.config.host_id is None  # one host: no leases, no name needed


async def _ask(ctx: Any) -> str:
    """One question."""
    answer: str = await ctx.llm("q")
    return answer
