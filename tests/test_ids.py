"""`greenroom.ids`: ids unique in the process without a system call each."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable

import pytest

from greenroom import AsyncExecutionContext, Runtime
from greenroom.cursor import parse_cursor
from greenroom.errors import InvalidInput
from greenroom.ids import next_hex_id, secret_hex


def made_on_threads(make: Callable[[], str], each: int) -> list[str]:
    """`each` ids made by `make` on each of 4 threads at once."""
    made: list[list[str]] = [[] for _ in range(4)]

    def run(into: list[str]) -> None:
        into.extend(make() for _ in range(each))

    threads = [threading.Thread(target=run, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [one for into in made for one in into]


def test_ids_are_16_hex_digits_and_never_repeat_across_threads() -> None:
    ids = made_on_threads(next_hex_id, 5_000)
    assert len(set(ids)) == 20_000
    assert all(re.fullmatch(r"[0-9a-f]{16}", one) for one in ids)


def test_a_replay_buffer_made_again_has_a_new_epoch(open_rt: Callable[..., Runtime]) -> None:
    one, two = open_rt(), open_rt()
    epochs = {parse_cursor(rt.replay.append("s", {"n": 1}).cursor).epoch for rt in (one, two)}
    assert len(epochs) == 2


def test_secret_ids_are_hex_of_their_length_and_never_repeat_across_threads() -> None:
    ids = made_on_threads(lambda: secret_hex(12), 3_000)  # (several pools each)
    assert len(set(ids)) == 12_000
    assert all(re.fullmatch(r"[0-9a-f]{24}", one) for one in ids)
    assert re.fullmatch(r"[0-9a-f]{8192}", secret_hex(4096))  # (a whole pool)


@pytest.mark.parametrize("count", [0, -8, 4097, 1.5, True, "12"])
def test_a_secret_of_no_sensible_length_is_refused_and_hands_out_nothing_twice(
    count: object,
) -> None:
    before = secret_hex(8)
    with pytest.raises(InvalidInput, match="secret_hex"):
        secret_hex(count)  # type: ignore[arg-type]
    after = secret_hex(8)
    assert before != after
    assert before not in after + secret_hex(8)


def made_in_a_forked_child(make: Callable[[], str]) -> str:
    """What `make` returns in a child forked now (its first call there)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            os.write(write, make().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read().decode()
    os.waitpid(child, 0)
    return theirs


def test_a_forked_child_draws_secrets_of_its_own() -> None:
    secret_hex(1)  # (the pool holds unread bytes now)
    theirs = made_in_a_forked_child(lambda: secret_hex(16))
    assert len(theirs) == 32
    assert theirs != secret_hex(16)


def test_a_forked_child_makes_ids_of_its_own() -> None:
    next_hex_id()
    theirs = made_in_a_forked_child(next_hex_id)
    assert len(theirs) == 16
    assert theirs[:8] != next_hex_id()[:8]  # (another prefix: never the parent's ids)


def test_execution_ids_are_secret_hex_after_the_runtime(
    open_rt: Callable[..., Runtime],
) -> None:
    rt = open_rt()
    rt.executions.register("t.ask", _ask)
    ids = {rt.executions.start("t.ask").session_id for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"s-[0-9a-f]{8}[0-9a-f]{24}", one) for one in ids)
    assert len({one[2:10] for one in ids}) == 1  # (the runtime's incarnation)


async def _ask(ctx: AsyncExecutionContext) -> str:
    return await ctx.llm("q")
