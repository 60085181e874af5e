"""The Runtime facade: open, close, Stopped, metrics, config, store access."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import attrs
import pytest

import greenroom
from greenroom import FakeClock, Runtime, RuntimeConfig, SystemClock
from greenroom.errors import GreenroomError, InvalidInput, SchemaTooNew, Stopped, StorageError

from .actors_for_tests import Counter


def test_public_names_import_from_runtime() -> None:
    assert {"Runtime", "RuntimeConfig", "FakeClock", "SystemClock"} <= set(greenroom.__all__)


def test_every_error_is_a_greenroom_error() -> None:
    from greenroom import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), GreenroomError)
    assert issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.InvalidInput, ValueError)
    assert issubclass(errors.Timeout, TimeoutError)


def test_open_creates_the_database_and_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "app.db"
    with Runtime.open(path, clock=FakeClock()) as rt:
        rt.store.ensure_object("block", "b1", {"view": "agent"})
    assert path.exists()
    with Runtime.open(path, clock=FakeClock()) as rt:
        assert rt.store.get_object("block", "b1").meta == {"view": "agent"}


def test_close_is_idempotent_and_everything_after_it_is_stopped(rt: Runtime) -> None:
    rt.close()
    rt.close()
    assert rt.closed
    for call in (
        rt.metrics,
        rt.settle,
        lambda: rt.spawn(Counter),
        lambda: rt.get_actor("counter", "x"),
        lambda: rt.actor_ids("counter"),
        lambda: rt.store,
    ):
        with pytest.raises(Stopped, match="closed"):
            call()


def test_stopped_store_refuses_calls(db_path: Path) -> None:
    rt = Runtime.open(db_path, clock=FakeClock())
    store = rt.store
    rt.close()
    with pytest.raises(Stopped):
        store.get_object("block", "b")


def test_runtime_with_system_clock_settles_and_closes_its_threads(db_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    with Runtime.open(db_path) as rt:
        assert isinstance(rt.clock, SystemClock)
        ref = rt.spawn(Counter, actor_id="c")
        for _ in range(100):
            ref.tell(1)
        rt.settle(timeout=10)
        assert ref.ask("get") == 100
        rt.clock.call_later(3600, lambda: None)  # starts the timer thread
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    for thread in leftover:
        thread.join(timeout=5)
    assert not [t for t in leftover if t.is_alive()]


def test_newer_schema_is_refused_with_a_clear_error(db_path: Path) -> None:
    Runtime.open(db_path, clock=FakeClock()).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 42")
    conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 42") as info:
        Runtime.open(db_path, clock=FakeClock())
    assert isinstance(info.value, StorageError)


def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match=r"junk\.db"):
        Runtime.open(path, clock=FakeClock())


def test_metrics_is_a_plain_dict_of_ints(rt: Runtime) -> None:
    ref = rt.spawn(Counter, actor_id="c")
    ref.tell(1)
    rt.settle()
    metrics = rt.metrics()
    assert type(metrics) is dict
    assert all(type(value) is int for value in metrics.values())
    assert metrics["actors_started"] == 1
    assert metrics["actors_alive"] == 1
    assert metrics["messages_handled"] >= 1


def test_open_rejects_bad_arguments(db_path: Path) -> None:
    with pytest.raises(InvalidInput, match="RuntimeConfig"):
        Runtime.open(db_path, config={"settle_timeout_s": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not a Clock"):
        Runtime.open(db_path, clock=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("settle_timeout_s", 0),
        ("settle_timeout_s", -1.0),
        ("stop_timeout_s", float("nan")),
        ("file_chunk_bytes", 0),
        ("file_chunk_bytes", 1.5),
        ("sqlite_synchronous", "SOMETIMES"),
        ("sqlite_busy_timeout_s", -5),
    ],
)
def test_config_validates_on_construction(field: str, value: object) -> None:
    with pytest.raises(InvalidInput, match=field):
        RuntimeConfig(**{field: value})


def test_config_is_frozen_and_evolvable() -> None:
    config = RuntimeConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.settle_timeout_s = 1.0  # type: ignore[misc]
    assert attrs.evolve(config, stop_timeout_s=2.0).stop_timeout_s == 2.0
    with pytest.raises(InvalidInput):
        attrs.evolve(config, stop_timeout_s=-2.0)


def test_memory_store_for_throwaway_use() -> None:
    with Runtime.open(":memory:", clock=FakeClock()) as rt:
        rt.store.ensure_object("block", "b")
        assert rt.store.list_ids("block") == ["b"]


def test_every_public_name_is_importable_from_runtime() -> None:
    import greenroom

    for name in greenroom.__all__:
        assert getattr(greenroom, name) is not None, name
    for name in ("FeedResult", "LlmRequest", "Transcript", "Gap", "Subscription", "Block"):
        assert name in greenroom.__all__
    with pytest.raises(AttributeError):
        greenroom.NoSuchThing  # noqa: B018
