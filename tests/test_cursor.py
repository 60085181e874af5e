"""Replay cursors: format, parse, and the errors a bad cursor gets."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import FakeClock, Gap, Replayed, Runtime, RuntimeConfig
from greenroom.cursor import ParsedCursor, format_cursor, format_stream_cursor, parse_cursor
from greenroom.errors import InvalidInput, MalformedCursor, WrongSession

EPOCH = "0123456789abcdef"

epochs = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
ints = st.integers(min_value=0, max_value=2**63 - 1)
session_ids = st.one_of(
    st.text(min_size=1),
    st.lists(st.text(max_size=5), min_size=2, max_size=5).map(":".join),  # with colons
)


def test_format_then_parse_gives_the_parts_back() -> None:
    cursor = format_cursor(EPOCH, 3, 9, "session:with:colons")
    assert cursor == "v1:0123456789abcdef:3:9:session:with:colons"
    assert parse_cursor(cursor) == ParsedCursor(EPOCH, 3, 9, "session:with:colons")
    assert parse_cursor(cursor).format() == cursor


@given(epoch=epochs, revision=ints, position=ints, session_id=session_ids)
def test_round_trip_of_any_session_id(
    epoch: str, revision: int, position: int, session_id: str
) -> None:
    cursor = format_cursor(epoch, revision, position, session_id)
    parsed = parse_cursor(cursor, session_id=session_id)
    assert parsed == ParsedCursor(epoch, revision, position, session_id)
    assert parsed.format() == cursor


stream_ids = st.builds(
    "{}-{}".format,
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=0, max_value=2**64 - 1),
)


@given(epoch=epochs, revision=ints, position=ints, stream_id=stream_ids, session_id=session_ids)
def test_stream_cursors_round_trip_with_their_stream_id(
    epoch: str, revision: int, position: int, stream_id: str, session_id: str
) -> None:
    cursor = format_stream_cursor(epoch, revision, position, stream_id, session_id)
    assert cursor.startswith("v2:")
    parsed = parse_cursor(cursor, session_id=session_id)
    assert parsed == ParsedCursor(epoch, revision, position, session_id, stream_id)
    assert parsed.format() == cursor


@given(st.text())
def test_random_strings_raise_nothing_but_malformed_cursor(text: str) -> None:
    try:
        parsed = parse_cursor(text)
    except MalformedCursor:
        return
    assert parsed.format() == text  # the rare string that is a cursor is a canonical one


# Strings shaped like cursors, so the parts past the prefix get exercised too.
near_cursors = st.builds(
    lambda prefix, parts: prefix + ":".join(parts),
    st.sampled_from(["v1:", "v1", "v2:", "V1:", ""]),
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789abcdefABCDEF-+_ x", max_size=20),
            epochs,
            st.integers(min_value=-5, max_value=10**25).map(str),
            st.text(max_size=5),
        ),
        max_size=6,
    ),
)


@given(near_cursors)
def test_near_cursors_raise_nothing_but_malformed_cursor(text: str) -> None:
    try:
        parsed = parse_cursor(text)
    except MalformedCursor:
        return
    assert parsed.format() == text


@pytest.mark.parametrize(
    ("cursor", "named"),
    [
        ("", "version prefix"),
        ("lashsc1:0:1:s", "version prefix"),
        ("v3:0123456789abcdef:0:0:s", "version prefix"),
        ("v2:0123456789abcdef:0:0:s", "session id is missing"),
        ("v2:0123456789abcdef:0:0:1:s", "stream id '1' is not <ms>-<seq>"),
        ("v2:0123456789abcdef:0:0:01-0:s", "stream id"),
        ("v2:0123456789abcdef:0:0:1--1:s", "stream id"),
        ("v2:0123456789abcdef:0:0:18446744073709551616-0:s", "stream id"),
        ("v2:0123456789abcdef:0:0:-:s", "stream id"),
        ("v1", "epoch is missing"),
        ("v1:0123456789abcdef", "revision is missing"),
        ("v1:0123456789abcdef:0", "position is missing"),
        ("v1:0123456789abcdef:0:0", "session id is missing"),
        ("v1:0123456789abcdef:0:0:", "session id is empty"),
        ("v1:0123456789ABCDEF:0:0:s", "epoch"),
        ("v1:0123:0:0:s", "epoch"),
        ("v1:0123456789abcdef::0:s", "revision is empty"),
        ("v1:0123456789abcdef:-1:0:s", "revision '-1' is not a non-negative integer"),
        ("v1:0123456789abcdef:1.5:0:s", "revision"),
        ("v1:0123456789abcdef:\u0661:0:s", "revision"),  # an Arabic-Indic digit
        ("v1:0123456789abcdef:01:0:s", "revision '01' has a leading zero"),
        ("v1:0123456789abcdef:0: 1:s", "position"),
        ("v1:0123456789abcdef:0:+1:s", "position"),
        ("v1:0123456789abcdef:0:1_0:s", "position"),
        ("v1:0123456789abcdef:0:" + "9" * 20 + ":s", "position is not below 2\\*\\*63"),
        ("v1:0123456789abcdef:0:" + "9" * 5000 + ":s", "position is not below 2\\*\\*63"),
        ("v1:0123456789abcdef:9223372036854775808:0:s", "revision is not below 2\\*\\*63"),
        ("v1:0123456789abcdef:0:9999999999999999999:s", "position is not below 2\\*\\*63"),
    ],
)
def test_malformed_cursors_name_the_bad_part(cursor: str, named: str) -> None:
    with pytest.raises(MalformedCursor, match=named):
        parse_cursor(cursor)


def test_the_int_bound_is_2_to_the_63_as_in_the_facade(rt: Runtime) -> None:
    """Below 2**63 parses; 2**63 (19 digits, as are larger ones) is refused."""
    top = 2**63 - 1
    parsed = parse_cursor(format_cursor(EPOCH, top, top, "s"))
    assert (parsed.revision, parsed.position) == (top, top)
    for revision, position in ((2**63, 0), (0, 2**63)):
        with pytest.raises(MalformedCursor, match="not below 2\\*\\*63"):
            parse_cursor(format_cursor(EPOCH, revision, position, "s"))
    # The facade takes the same revisions: the largest cursor revision is a valid one.
    cursor = rt.replay.current_cursor("s", revision=top)
    assert parse_cursor(cursor).revision == top
    with pytest.raises(InvalidInput, match=f"revision must be an int >= 0 and <= {top},"):
        rt.replay.current_cursor("s", revision=2**63)


@pytest.mark.parametrize("cursor", [None, 5, b"v1:0123456789abcdef:0:0:s", ["v1"]])
def test_a_cursor_that_is_not_a_str_is_malformed(cursor: object) -> None:
    with pytest.raises(MalformedCursor, match="a cursor is a str"):
        parse_cursor(cursor)


def test_malformed_cursor_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        parse_cursor("nope")


def test_a_long_bad_cursor_is_shortened_in_the_message() -> None:
    with pytest.raises(MalformedCursor) as caught:
        parse_cursor("x" * 10_000)
    assert len(str(caught.value)) < 300


def test_wrong_session() -> None:
    cursor = format_cursor(EPOCH, 0, 0, "a")
    with pytest.raises(WrongSession, match="belongs to session 'a', not 'b'"):
        parse_cursor(cursor, session_id="b")
    assert isinstance(WrongSession("x"), InvalidInput)
    assert parse_cursor(cursor, session_id="a").session_id == "a"


def test_the_runtime_raises_nothing_but_malformed_cursor_for_random_strings() -> None:
    config = RuntimeConfig(settle_timeout_s=10.0)
    with Runtime.open(":memory:", clock=FakeClock(), config=config) as rt:

        @settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
        @given(st.one_of(st.text(), near_cursors))
        def check(text: str) -> None:
            for call in (rt.replay.after, rt.replay.subscribe):
                try:
                    result = call(text)
                except MalformedCursor:
                    continue
                # A well-formed random cursor names an epoch no buffer has.
                assert isinstance(result, Gap), result
                assert result.reason == "unavailable"
            try:
                follower = rt.replay.follow(text)
            except MalformedCursor:
                return
            follower.close()

        check()
        assert rt.metrics()["ask_errors"] == 0


def test_the_runtime_round_trips_any_session_id() -> None:
    config = RuntimeConfig(settle_timeout_s=10.0)
    with Runtime.open(":memory:", clock=FakeClock(), config=config) as rt:

        @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
        @given(session_ids)
        def check(session_id: str) -> None:
            start = rt.replay.current_cursor(session_id)
            event = rt.replay.append(session_id, session_id)
            assert parse_cursor(event.cursor, session_id=session_id).position == event.position
            result = rt.replay.after(start, session_id=session_id)
            assert isinstance(result, Replayed)
            assert result.events[-1] == event

        check()
