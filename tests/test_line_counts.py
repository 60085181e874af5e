"""`LineCounts`: a block's lines counted the same however its output is cut up."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from greenroom.blocks.counting import LineCounts

streams = st.binary(max_size=300).map(lambda raw: bytes(10 if b < 60 else 120 for b in raw))


def _counted(pieces: list[bytes]) -> tuple[tuple[int, ...], list[bool]]:
    counts = LineCounts({})
    changed = [counts.add_output(piece, lambda: 7) for piece in pieces]
    return counts.snapshot(), changed


@given(data=streams, cuts=st.lists(st.integers(0, 300), max_size=12))
def test_any_cut_of_the_output_counts_its_lines_as_the_whole(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut <= len(data))})
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    # What a block's stats say: every non-empty line that ended, and its bytes // 4.
    ended = data.split(b"\n")[:-1]
    lines = [line for line in ended if line]
    at = 7 if lines else 0  # (the start and last activity: when a line was counted)
    expected = (at, at, len(lines), sum(len(line) // 4 for line in lines), 0)
    snapshot, changed = _counted(pieces)
    assert snapshot == expected
    assert snapshot == _counted([data])[0]
    # A piece says it changed the counts exactly when it ended a non-empty line.
    for piece, said, before in zip(pieces, changed, _prefixes(pieces), strict=True):
        assert said == (_counted([*before, piece])[0][2] > _counted(before)[0][2])


def _prefixes(pieces: list[bytes]) -> list[list[bytes]]:
    return [pieces[:index] for index in range(len(pieces))]


def test_a_line_ended_after_its_open_part_was_counted_is_not_counted_again() -> None:
    counts = LineCounts({})
    assert counts.add_output(b"abcdefgh", lambda: 5) is False
    assert counts.end_partial_line(5) is True  # (an archive: the open line counts once)
    assert counts.snapshot() == (5, 5, 1, 2, 1)
    # Its newline arrives: not counted again, but the stored open-line mark is now wrong.
    assert counts.add_output(b"\n", lambda: 9) is True
    assert counts.snapshot() == (5, 5, 1, 2, 0)
    assert counts.add_output(b"ijkl\n", lambda: 9) is True
    assert counts.snapshot() == (5, 9, 2, 3, 0)
