"""The store on PostgreSQL (`greenroom.store_postgres`): what several hosts on one
database need beyond the contract the other store suites check on both engines.

Against a real server (`GREENROOM_PG_URL`; `.ci/run` and `make services` start one),
each test in a schema of its own (the `pg_url` fixture). "Hosts" are stores with
connections of their own, written to from threads started together.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from greenroom import FakeClock
from greenroom.errors import Conflict, InvalidInput, SchemaTooNew, StorageError
from greenroom.store import AppendFile, ExpectFile
from greenroom.store_postgres import PostgresStore, is_postgres_url
from tests.stores import run_together

pytestmark = pytest.mark.postgres


def test_two_hosts_appending_to_one_file_lose_nothing(pg_url: str) -> None:
    hosts = [PostgresStore.connect(pg_url, now_ms=FakeClock().now_ms) for _ in range(2)]
    try:
        hosts[0].ensure_object("block", "b1")

        def append(index: int) -> None:
            for n in range(40):
                hosts[index].append_file(
                    "block", "b1", "output", f"{index}:{n};".encode(), create=True
                )

        assert run_together(2, append) == []
        data = hosts[1].read_file("block", "b1", "output").decode()
        pieces = data.rstrip(";").split(";")
        assert len(pieces) == 80
        for index in range(2):  # each host's pieces whole, and in its order
            assert [p for p in pieces if p.startswith(f"{index}:")] == [
                f"{index}:{n}" for n in range(40)
            ]
        info = hosts[0].stat_file("block", "b1", "output")
        assert info.size == len(data)
    finally:
        for host in hosts:
            host.close()


def test_two_hosts_merging_metadata_keep_every_key(pg_url: str) -> None:
    hosts = [PostgresStore.connect(pg_url, now_ms=FakeClock().now_ms) for _ in range(2)]
    try:
        hosts[0].ensure_object("execution", "e1")

        def merge(index: int) -> None:
            for n in range(30):
                hosts[index].update_meta("execution", "e1", {f"h{index}:{n}": n})

        assert run_together(2, merge) == []
        stored = hosts[1].get_object("execution", "e1")
        assert len(stored.meta) == 60
        assert stored.version == 61  # every merge counted once
    finally:
        for host in hosts:
            host.close()


def test_an_expectation_another_host_broke_is_a_conflict(pg_url: str) -> None:
    one = PostgresStore.connect(pg_url, now_ms=FakeClock().now_ms)
    two = PostgresStore.connect(pg_url, now_ms=FakeClock().now_ms)
    try:
        one.ensure_object("execution", "e1")
        one.append_file("execution", "e1", "journal", b"start\n", create=True)
        seen = two.stat_file("execution", "e1", "journal").size
        one.append_file("execution", "e1", "journal", b"fed by one\n")
        with pytest.raises(Conflict, match="not the 6 expected"):
            two.write_atomic(
                [AppendFile("execution", "e1", "journal", b"fed by two\n")],
                expect=[ExpectFile("execution", "e1", "journal", seen)],
            )
        assert one.read_file("execution", "e1", "journal") == b"start\nfed by one\n"
    finally:
        one.close()
        two.close()


def test_a_schema_written_by_a_newer_greenroom_is_refused(pg_url: str) -> None:
    PostgresStore.connect(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO greenroom_schema (version) VALUES (99)")
    with pytest.raises(SchemaTooNew):
        PostgresStore.connect(pg_url)


def test_urls_and_servers_that_do_not_answer(pg_url: str) -> None:
    assert is_postgres_url("postgresql://x/y")
    assert is_postgres_url("postgres://x/y")
    assert not is_postgres_url("/tmp/x.db")
    with pytest.raises(InvalidInput, match="not a PostgreSQL URL"):
        PostgresStore.connect("/tmp/x.db")
    with pytest.raises(StorageError, match="cannot open store") as caught:
        PostgresStore.connect("postgresql://greenroom:secret@127.0.0.1:9/nothing")
    assert "secret" not in str(caught.value)  # the password never reaches a message


def test_the_writer_connects_again_after_the_server_dropped_it(pg_url: str) -> None:
    name = f"victim-{uuid.uuid4().hex[:8]}"
    store = PostgresStore.connect(f"{pg_url}&application_name={name}")
    try:
        store.ensure_object("block", "b1")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                [name],
            )
        outcomes = []
        for n in range(3):  # the first write may meet the dropped connection
            try:
                store.update_meta("block", "b1", {"n": n})
                outcomes.append("ok")
            except StorageError:
                outcomes.append("failed")
        assert outcomes[-2:] == ["ok", "ok"]
        reads = []
        for _ in range(3):  # so may the first read (a pooled connection it dropped)
            try:
                reads.append(store.get_object("block", "b1").meta["n"])
            except StorageError:
                reads.append(None)
        assert reads[-2:] == [2, 2]
    finally:
        store.close()


def test_query_takes_percent_signs_with_or_without_parameters(pg_url: str) -> None:
    store = PostgresStore.connect(pg_url)
    try:
        store.ensure_object("block", "b1", {"note": "50%"})
        assert store.query("SELECT id FROM objects WHERE meta->>'note' = '50%'") == [("b1",)]
        assert store.query("SELECT id FROM objects WHERE id LIKE ? ", ["b%"]) == [("b1",)]
    finally:
        store.close()
