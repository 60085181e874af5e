"""`greenroom.ids`: ids unique in the process without a system call each."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from greenroom import Runtime
from greenroom.cursor import parse_cursor
from greenroom.ids import next_hex_id


def test_ids_are_16_hex_digits_and_never_repeat_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(next_hex_id() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [one for into in made for one in into]
    assert len(set(ids)) == 20_000
    assert all(re.fullmatch(r"[0-9a-f]{16}", one) for one in ids)


def test_a_replay_buffer_made_again_has_a_new_epoch(open_rt: Callable[..., Runtime]) -> None:
    one, two = open_rt(), open_rt()
    epochs = {parse_cursor(rt.replay.append("s", {"n": 1}).cursor).epoch for rt in (one, two)}
    assert len(epochs) == 2
