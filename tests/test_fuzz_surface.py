"""Hypothesis over the public surface: hostile input ends in a `GreenroomError`, never more.

Cursors, ids, feeds and archive metadata are fed wide inputs (random and mutated text,
NUL, lone surrogates, huge numbers, wrong types). Every call either works or raises a
`GreenroomError` subclass; a refused call leaves what it would have changed as it was.
Anything else (a bare `ValueError`, `TypeError`, `OverflowError`, ...) escapes the
helper `typed` and fails the test with its traceback. `tests/test_bad_input.py` holds
the hand-picked cases; this file the generated ones.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenroom import FeedResult, Gap, Replayed, Runtime, RuntimeConfig, Subscription, Usage
from greenroom.aio.replay import AsyncReplay, AsyncSubscription
from greenroom.checks import MAX_TIMEOUT_S
from greenroom.cursor import parse_cursor
from greenroom.errors import (
    ExecutionTimeout,
    GreenroomError,
    InvalidInput,
    MalformedCursor,
    NotFound,
)
from greenroom.usage import MAX_TOKENS

from .actors_for_tests import Counter

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(FUZZ, max_examples=100)

HUGE = 10**400  # too large for a float
HUGE_PARAM = pytest.param(HUGE, id="10**400")
ENORMOUS = 10**5000  # too many digits to print


class Enormous(int):
    """`ENORMOUS` (or its negative) with a repr Hypothesis can print."""

    def __repr__(self) -> str:
        return f"{'-' if self < 0 else ''}ENORMOUS"


enormous = st.sampled_from([Enormous(ENORMOUS), Enormous(-ENORMOUS)])


def typed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`call(*args, **kwargs)`, or the `GreenroomError` it raised (anything else escapes).

    The error's message is read too: an error whose message cannot be made is no help.
    """
    try:
        return call(*args, **kwargs)
    except GreenroomError as error:
        caught = error
    assert str(caught)
    return caught


def refused(result: object) -> bool:
    """Whether `typed` gave back an error."""
    return isinstance(result, GreenroomError)


class Huge(str):
    """A long str whose repr is short, so that a failing example can be read."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'x' * {len(self)}"


# -- strategies ---------------------------------------------------------------------------

surrogates = st.characters(categories=["Cs"])
nasty_chars = st.one_of(
    st.characters(),  # any code point but a surrogate (NUL included)
    surrogates,
    st.sampled_from(["\x00", ":", "#", "/", ".", "٣", "²", "\n", "\udfff"]),
)
nasty_text = st.text(alphabet=nasty_chars, max_size=30)
huge_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64, 10**19, 10**30, HUGE]),
).map(str)
base64_junk = st.binary(max_size=48).map(lambda raw: base64.urlsafe_b64encode(raw).decode())
cursor_parts = st.one_of(
    nasty_text,
    huge_numbers,
    base64_junk,
    st.text(alphabet="0123456789abcdefABCDEF", min_size=15, max_size=17),
    st.sampled_from(["", "0", "00", "-0", "+1", "1e3", "0x10", " 1", "1_000", "٣", "²"]),
)
# Values of the wrong type, for arguments that take one type.
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.just([]),
    st.just({}),
    st.just(()),
    st.builds(object),
)
hostile_ids = st.one_of(
    nasty_text,
    st.text(alphabet=st.characters(), min_size=1, max_size=8).map(lambda text: text + "\x00"),
    surrogates,
    st.just("x" * 100_000).map(Huge),
    st.just(""),
    wrong_types,
)
bad_timeouts = st.one_of(
    st.floats(),  # nan, inf, negatives and 1e300 among them
    st.integers(min_value=-(10**20), max_value=HUGE),
    st.sampled_from(["x", "1", -1, True, False, 1e12, HUGE, float("nan"), [], {}]),
)


def is_text(value: object) -> bool:
    """Whether `value` is a non-empty str with no NUL that encodes to UTF-8."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- cursors ------------------------------------------------------------------------------


@st.composite
def mutated_cursors(draw: st.DrawFn, valid: str) -> str:
    """`valid` with one part replaced, a junk character put in, or cut short."""
    parts = valid.split(":", 4)
    how = draw(st.sampled_from(["replace", "insert", "cut", "append"]))
    if how == "replace":
        index = draw(st.integers(0, len(parts) - 1))
        parts[index] = draw(cursor_parts)
        return ":".join(parts)
    if how == "insert":
        at = draw(st.integers(0, len(valid)))
        return valid[:at] + draw(nasty_chars) + valid[at:]
    if how == "cut":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    return valid + draw(st.sampled_from([":", "\x00", "\ud800", "0", ":x", "٣"]))


def check_cursor(rt: Runtime, cursor: Any, session_id: Any = None) -> None:
    """`after`, `subscribe` and `follow` of `cursor`: an answer or a typed error; a
    refused call makes no buffer and no subscriber; an answer is about the cursor's
    session, and its cursors are text."""
    kwargs = {} if session_id is None else {"session_id": session_id}
    before = rt.metrics()
    result = typed(rt.replay.after, cursor, **kwargs)
    after = rt.metrics()
    assert after["replay_buffers"] == before["replay_buffers"]  # a read makes none
    if not refused(result):
        assert isinstance(result, Replayed | Gap)
        sid = parse_cursor(cursor).session_id
        assert is_text(sid.replace("\x00", "x"))  # the embedded session id was checked
        if isinstance(result, Replayed):
            assert all(event.session_id == sid for event in result.events)
        parse_cursor(result.latest_cursor, session_id=sid)
    subscribed = typed(rt.replay.subscribe, cursor, **kwargs)
    if refused(subscribed):
        assert rt.metrics()["replay_subscribers"] == before["replay_subscribers"]
        assert isinstance(result, MalformedCursor | InvalidInput), (result, subscribed)
    elif isinstance(subscribed, Subscription):
        subscribed.close()
    follower = typed(rt.replay.follow, cursor, **kwargs)
    if refused(follower):
        assert refused(subscribed), (subscribed, follower)
    else:
        follower.close()
    assert rt.metrics()["replay_subscribers"] == before["replay_subscribers"]


@pytest.fixture
def cursor_of_s(rt: Runtime) -> Iterator[str]:
    """A valid cursor of session `s`, whose buffer holds three events."""
    start = rt.replay.current_cursor("s", revision=2)
    rt.replay.append_many("s", [1, 2, 3], revision=2)
    yield start
    assert rt.metrics()["ask_errors"] == 0
    assert rt.metrics()["actor_failures"] == 0


@FUZZ
@given(data=st.data())
def test_mutated_cursors_get_an_answer_or_a_typed_error(
    rt: Runtime, cursor_of_s: str, data: st.DataObject
) -> None:
    cursor = data.draw(mutated_cursors(cursor_of_s))
    check_cursor(rt, cursor)
    check_cursor(rt, cursor, session_id="s")


@FUZZ
@given(cursor=st.one_of(nasty_text, base64_junk, wrong_types, st.just("v1:" + "9" * 5000)))
def test_random_cursors_get_an_answer_or_a_typed_error(
    rt: Runtime, cursor_of_s: str, cursor: Any
) -> None:
    check_cursor(rt, cursor)


@FEW
@given(session_id=st.one_of(nasty_text, surrogates, wrong_types))
def test_a_cursors_session_id_is_text_checked_and_so_is_the_one_asked_for(
    rt: Runtime, cursor_of_s: str, session_id: Any
) -> None:
    embedded = cursor_of_s.rsplit(":", 1)[0] + f":{session_id}"
    check_cursor(rt, embedded)
    if isinstance(session_id, str) and not is_text(session_id.replace("\x00", "x")):
        with pytest.raises(MalformedCursor, match="session id"):
            rt.replay.after(embedded)
    check_cursor(rt, cursor_of_s, session_id=session_id)


@pytest.mark.parametrize("sid", ["\ud800", "a\udfffb", "\udc80:x"])
def test_a_cursor_whose_session_id_has_a_lone_surrogate_is_malformed(
    rt: Runtime, cursor_of_s: str, sid: str
) -> None:
    cursor = cursor_of_s.split(":", 4)
    cursor[4] = sid
    text = ":".join(cursor)
    for call in (rt.replay.after, rt.replay.subscribe, rt.replay.follow):
        with pytest.raises(MalformedCursor, match="not valid Unicode"):
            call(text)
    assert rt.metrics()["replay_buffers"] == 1  # only s's


# -- subscription timeouts -------------------------------------------------------------------


@FUZZ
@given(timeout=bad_timeouts)
def test_next_event_checks_its_timeout_even_with_an_event_queued(rt: Runtime, timeout: Any) -> None:
    sub = rt.replay.subscribe(rt.replay.current_cursor("t"))
    assert isinstance(sub, Subscription)
    with sub:
        rt.replay.append("t", "queued")
        result = typed(sub.next_event, timeout)
        valid = (
            isinstance(timeout, int | float)
            and not isinstance(timeout, bool)
            and 0 <= timeout <= MAX_TIMEOUT_S  # (False for nan)
        )
        if valid:
            assert not refused(result)
            assert result.payload == "queued"
            assert sub.pending == 0
        else:
            assert isinstance(result, InvalidInput), result
            assert sub.pending == 1  # the event is still there for the next call
            assert sub.next_event(timeout=0).payload == "queued"


@pytest.mark.parametrize("timeout", ["x", -1, float("nan"), 1e300, True, "1", HUGE_PARAM])
def test_every_replay_wait_checks_its_timeout(rt: Runtime, timeout: Any) -> None:
    start = rt.replay.current_cursor("t")
    rt.replay.append("t", "queued")
    sub = rt.replay.subscribe(start)
    assert isinstance(sub, Subscription)
    follower = rt.replay.follow(start)
    pending = rt.replay.subscribe_pending(start)
    try:
        for wait in (sub.next_event, follower.next_item, pending.wait):
            with pytest.raises(InvalidInput, match="timeout"):
                wait(timeout)
        assert sub.next_event(0).payload == "queued"
        item = follower.next_item(0)
        assert not isinstance(item, Gap)
        assert item.payload == "queued"
    finally:
        sub.close()
        follower.close()
        pending.cancel()


@pytest.mark.anyio
@pytest.mark.parametrize("timeout", ["x", -1, float("nan"), 1e300, True, HUGE_PARAM])
async def test_the_async_waits_check_their_timeout_too(rt: Runtime, timeout: Any) -> None:
    replay = AsyncReplay(rt.replay)
    start = await replay.current_cursor("t")
    await replay.append("t", "queued")
    sub = await replay.subscribe(start)
    assert isinstance(sub, AsyncSubscription)
    follower = replay.follow(start)
    try:
        for wait in (sub.next_event, follower.next_item):
            with pytest.raises(InvalidInput, match="timeout"):
                await wait(timeout)
        assert (await sub.next_event(0)).payload == "queued"
        item = await follower.next_item(5)  # (it subscribes on its first wait)
        assert not isinstance(item, Gap)
        assert item.payload == "queued"
    finally:
        sub.close()
        follower.close()


# -- config ----------------------------------------------------------------------------------


@FUZZ
@given(
    name=st.sampled_from([field.name for field in attrs.fields(RuntimeConfig)]),
    value=st.one_of(bad_timeouts, wrong_types, nasty_text, st.integers(0, 0o7777)),
)
def test_every_config_field_takes_its_values_or_says_which_field(name: str, value: Any) -> None:
    config = typed(RuntimeConfig, **{name: value})
    if refused(config):
        assert isinstance(config, InvalidInput), config
        assert f"RuntimeConfig.{name}" in str(config)


@pytest.mark.parametrize(
    ("name", "mode"), [("file_mode", 0), ("file_mode", 0o400), ("dir_mode", 0o600)]
)
def test_modes_greenroom_could_not_reopen_what_it_made_with_are_refused(
    name: str, mode: int
) -> None:
    with pytest.raises(InvalidInput, match=f"RuntimeConfig.{name} must give the owner"):
        RuntimeConfig(**{name: mode})


# -- ids -------------------------------------------------------------------------------------


@FUZZ
@given(actor_id=hostile_ids)
def test_spawn_takes_text_ids_only(rt: Runtime, actor_id: Any) -> None:
    before = rt.actor_ids(Counter.kind)
    ref = typed(rt.spawn, Counter, actor_id=actor_id)
    if refused(ref):
        assert isinstance(ref, InvalidInput), ref
        assert not is_text(actor_id)
        assert rt.actor_ids(Counter.kind) == before
        return
    assert actor_id is None or is_text(actor_id)
    assert rt.get_actor(Counter.kind, ref.actor_id) is ref
    ref.stop()
    assert rt.actor_ids(Counter.kind) == before


@pytest.mark.parametrize("actor_id", ["a\x00b", "\x00", "\ud800", "x\udfff", 5, b"id", []])
def test_spawn_refuses_a_nul_or_a_lone_surrogate_in_an_id(rt: Runtime, actor_id: Any) -> None:
    with pytest.raises(InvalidInput, match="actor_id"):
        rt.spawn(Counter, actor_id=actor_id)
    assert rt.actor_ids(Counter.kind) == []


@FUZZ
@given(kind=st.one_of(st.just(Counter.kind), hostile_ids), actor_id=hostile_ids)
def test_get_actor_answers_not_found_or_invalid_input(
    rt: Runtime, kind: Any, actor_id: Any
) -> None:
    result = typed(rt.get_actor, kind, actor_id)
    assert isinstance(result, NotFound | InvalidInput), result
    if not (isinstance(kind, str) and isinstance(actor_id, str)):
        assert isinstance(result, InvalidInput)
    assert isinstance(typed(rt.actor_ids, kind), list | InvalidInput)


class _NotAnActor:
    kind = "nope"


@pytest.mark.parametrize("actor_class", [_NotAnActor, "counter", None, int, object()])
def test_spawn_takes_actor_classes_only(rt: Runtime, actor_class: Any) -> None:
    with pytest.raises(InvalidInput, match="GreenroomActor subclass"):
        rt.spawn(actor_class, actor_id="x")


@FEW
@given(block_id=hostile_ids, view=st.one_of(st.just("agent"), hostile_ids))
def test_block_ids_and_views_are_checked(rt: Runtime, block_id: Any, view: Any) -> None:
    before = rt.blocks.ids()
    block = typed(rt.blocks.get, block_id, view=view)
    if refused(block):
        assert isinstance(block, InvalidInput), block
        assert rt.blocks.ids() == before
    else:
        assert block.stats().line_count == 0
    assert isinstance(typed(rt.blocks.ids, view), list | InvalidInput)


@FEW
@given(
    inactive_days=st.one_of(st.none(), bad_timeouts),
    max_archive_bytes=st.one_of(st.none(), st.integers(min_value=-5), wrong_types),
    dry_run=st.one_of(st.just(True), wrong_types),
    progress=st.one_of(st.none(), wrong_types, st.just(lambda progress: None)),
)
def test_sweep_options_are_checked(
    rt: Runtime, inactive_days: Any, max_archive_bytes: Any, dry_run: Any, progress: Any
) -> None:
    result = typed(
        rt.blocks.sweep,
        inactive_days=inactive_days,
        max_archive_bytes=max_archive_bytes,
        dry_run=dry_run,
        progress=progress,
    )
    assert not refused(result) or isinstance(result, InvalidInput), result


@FUZZ
@given(session_id=hostile_ids)
def test_replay_session_ids_are_checked(rt: Runtime, session_id: Any) -> None:
    start = rt.replay.current_cursor("s")
    before = rt.metrics()["replay_buffers"]
    calls: list[Callable[[], Any]] = [
        lambda: rt.replay.append(session_id, 1),
        lambda: rt.replay.append_many(session_id, [1, 2]),
        lambda: rt.replay.publish(session_id, 1),
        lambda: rt.replay.publish_many(session_id, [1]),
        lambda: rt.replay.current_cursor(session_id),
    ]
    for call in calls:
        result = typed(call)
        if refused(result):
            assert isinstance(result, InvalidInput), result
            assert rt.metrics()["replay_buffers"] == before
    result = typed(rt.replay.after, start, session_id=session_id)
    assert isinstance(result, Replayed | InvalidInput), result


payloads = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.just(HUGE),
        enormous,
        st.floats(),  # nan and inf are not JSON
        nasty_text,
        st.binary(max_size=4),
        st.builds(object),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(nasty_text, st.integers(), st.none()), children, max_size=3),
        st.frozensets(st.integers(), max_size=2),
        st.tuples(children),
    ),
    max_leaves=8,
)


@FUZZ
@given(
    payload=payloads,
    revision=st.one_of(st.integers(min_value=-1, max_value=2**64), wrong_types),
    many=st.booleans(),
)
def test_replay_payloads_and_revisions_are_checked(
    rt: Runtime, payload: Any, revision: Any, many: bool
) -> None:
    start = rt.replay.current_cursor("p")
    if many:
        result = typed(rt.replay.append_many, "p", [1, payload], revision=revision)
    else:
        result = typed(rt.replay.append, "p", payload, revision=revision)
    replayed = rt.replay.after(start)
    assert isinstance(replayed, Replayed)
    if refused(result):
        assert isinstance(result, InvalidInput), result
        assert replayed.events == ()  # all or none
    else:
        assert len(replayed.events) == (2 if many else 1)
        json.dumps([event.payload for event in replayed.events])


@FUZZ
@given(session_id=hostile_ids)
def test_execution_session_ids_are_checked(rt: Runtime, session_id: Any) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: rt.executions.status(session_id),
        lambda: rt.executions.cancel(session_id),
        lambda: rt.executions.feed(session_id, "answer"),
        lambda: rt.executions.feed_many(session_id, [("q-1-0", "answer", None)]),
    ]
    for call in calls:
        result = typed(call)
        assert isinstance(result, NotFound | InvalidInput), result
    assert rt.executions.snapshots() == {}


# -- feeds -----------------------------------------------------------------------------------


async def asks_twice(ctx: Any) -> Any:
    first = await ctx.llm("one")
    second = await ctx.llm("two")
    return [first, second]


usage_counts = st.one_of(
    st.integers(min_value=-5, max_value=2**70),
    st.sampled_from([HUGE, 2**63, 2**63 - 1]),
    enormous,
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
usage_keys = st.sampled_from(
    [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "prompt_tokens_details",
        "service_tier",
        "other",
    ]
)
usages = st.one_of(
    st.none(),
    st.dictionaries(usage_keys, usage_counts, max_size=5),
    st.dictionaries(st.one_of(nasty_text, st.integers()), usage_counts, max_size=3),
    wrong_types,
)
responses = st.one_of(nasty_text, st.just("r" * 100_000), wrong_types)
feed_timeouts = st.one_of(st.none(), st.just(5.0), bad_timeouts)


class Paused:
    """A session of `asks_twice` paused at a query, made again once it finished."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.result = rt.executions.start(asks_twice)

    def session(self) -> FeedResult:
        if self.result.finished:
            self.result = self.rt.executions.start(asks_twice)
        assert self.result.status == "needs_response", self.result
        return self.result

    def check(self, result: Any, before: dict[str, Any]) -> None:
        """A refused feed changed nothing; an accepted one moved the session on."""
        session_id = before["session_id"]
        if isinstance(result, ExecutionTimeout):
            # Not refused: the answer stays applied, the session goes on (timeout=0).
            assert result.session_id == session_id
            self.rt.settle()
            now = self.rt.executions.status(session_id)
            assert now["pending_queries"] != before["pending_queries"]
            typed(self.rt.executions.cancel, session_id)
            self.result = self.rt.executions.start(asks_twice)
            return
        after = self.rt.executions.status(session_id)
        if refused(result):
            assert after["state"] == before["state"]
            assert after["pending_queries"] == before["pending_queries"]
            assert after["metrics"] == before["metrics"], (before, after)
        else:
            assert isinstance(result, FeedResult)
            self.result = result
            if after["pending_queries"] == before["pending_queries"] and not result.finished:
                # The same answer again to a query answered in an earlier round (an
                # example before this one fed it): a no-op returning the current state.
                assert result.status == "needs_response"
                assert after["round"] == before["round"]
                assert after["metrics"] == before["metrics"], (before, after)
            # What a host sends on (an MCP server): it must print as JSON.
            json.dumps(result.to_json())
            json.dumps(after)


@pytest.fixture
def paused(rt: Runtime) -> Iterator[Paused]:
    yield Paused(rt)
    assert rt.metrics()["actor_failures"] == 0


@FUZZ
@given(response=responses, usage=usages, timeout=feed_timeouts, by_id=st.booleans())
def test_feed_takes_good_answers_and_refuses_the_rest_changing_nothing(
    rt: Runtime, paused: Paused, response: Any, usage: Any, timeout: Any, by_id: bool
) -> None:
    session = paused.session()
    before = rt.executions.status(session.session_id)
    query_id = session.query_ids[0] if by_id else None
    result = typed(
        rt.executions.feed,
        session.session_id,
        response,
        query_id=query_id,
        usage=usage,
        timeout=timeout,
    )
    paused.check(result, before)


@FUZZ
@given(
    items=st.one_of(
        st.lists(st.tuples(st.sampled_from(["q-1-0", "q-2-0"]), responses, usages), max_size=3),
        st.lists(st.one_of(st.tuples(nasty_text), wrong_types, st.text()), max_size=3),
        wrong_types,
        nasty_text,
    ),
    timeout=feed_timeouts,
)
def test_feed_many_is_all_or_nothing(rt: Runtime, paused: Paused, items: Any, timeout: Any) -> None:
    session = paused.session()
    before = rt.executions.status(session.session_id)
    paused.check(typed(rt.executions.feed_many, session.session_id, items, timeout=timeout), before)


@FEW
@given(
    timeout=feed_timeouts,
    args=st.lists(st.one_of(wrong_types, nasty_text), max_size=2),
)
def test_start_checks_its_timeout_before_starting_anything(
    rt: Runtime, timeout: Any, args: list[Any]
) -> None:
    live = set(rt.executions.snapshots())
    result = typed(rt.executions.start, asks_twice, *args, timeout=timeout)
    if isinstance(result, ExecutionTimeout):  # (timeout=0) started, and goes on
        assert set(rt.executions.snapshots()) == live | {result.session_id}
        status = rt.executions.status(result.session_id)["state"]
        if status in ("running", "paused"):
            # (It may end meanwhile, as a strategy given bad arguments does at once.)
            cancelled = typed(rt.executions.cancel, result.session_id)
            assert not isinstance(cancelled, Exception) or "already" in str(cancelled)
    elif refused(result):
        assert isinstance(result, InvalidInput), result
        assert set(rt.executions.snapshots()) == live
    else:
        assert isinstance(result, FeedResult)
        if not result.finished:
            rt.executions.cancel(result.session_id)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": ENORMOUS, "output_tokens": 1},
        {"prompt_tokens": 2**64, "completion_tokens": 1},
        {"input_tokens": 1, "output_tokens": 1, "total_tokens": HUGE},
        Usage(input_tokens=10**16),
        Usage(cache_write_tokens=ENORMOUS),
    ],
)
def test_usage_beyond_a_quadrillion_tokens_is_refused(
    rt: Runtime, paused: Paused, usage: Any
) -> None:
    session = paused.session()
    before = rt.executions.status(session.session_id)
    with pytest.raises(InvalidInput, match=r"<= [12]0{15},"):
        rt.executions.feed(session.session_id, "a", usage=usage)
    assert rt.executions.status(session.session_id) == before
    largest = {"input_tokens": MAX_TOKENS, "output_tokens": MAX_TOKENS}
    result = rt.executions.feed(session.session_id, "a", usage=largest)
    json.dumps(result.to_json())


@pytest.mark.parametrize("timeout", [1e12, float("nan"), -1, "1", HUGE_PARAM, True])
def test_feed_and_start_refuse_bad_timeouts(rt: Runtime, paused: Paused, timeout: Any) -> None:
    session = paused.session()
    before = rt.executions.status(session.session_id)
    for call in (
        lambda: rt.executions.feed(session.session_id, "a", timeout=timeout),
        lambda: rt.executions.feed_many(
            session.session_id, [(session.query_ids[0], "a", None)], timeout=timeout
        ),
        lambda: rt.executions.start(asks_twice, timeout=timeout),
    ):
        with pytest.raises(InvalidInput, match="timeout"):
            call()
    assert rt.executions.status(session.session_id) == before
    assert len(rt.executions.snapshots()) == 1


# -- archive metadata ------------------------------------------------------------------------

archive_paths = st.one_of(
    nasty_text,
    st.sampled_from(
        [
            "..",
            "../..",
            "../../etc/passwd",
            "/etc/passwd",
            "/",
            "/tmp",
            "agent-1.1767225600000.zst",
            "other.1767225600000.zst",
            "agent-1.1767225600000.gz/..",
            "./agent-1.99999999999999999999999999.zst",
            "agent-1." + "9" * 5000 + ".zst",
            "x" * 5000,
            "a\x00b.zst",
            "\ud800.zst",
        ]
    ),
    st.text(min_size=1, max_size=20).map(lambda name: f"/{name}/../agent-1.1.zst"),
    wrong_types,
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
other_session_keys = st.sampled_from(
    [
        "session:archive_backup_path",
        "session:archived_at",
        "session:archived_bytes",
        "session:archive_pruned_at",
        "session:last_activity_ms",
        "session:start_ts_ms",
        "session:line_count",
        "session:token_estimate",
        "session:open_line_counted",
    ]
)
meta_values = st.one_of(
    archive_paths,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**17, 10**30, -1, 2**63, HUGE, 1.5, float(2**70)]),
)


@pytest.fixture
def stored_block(rt: Runtime) -> Iterator[Any]:
    """`agent-1`, with output stored."""
    block = rt.blocks.get("agent-1")
    block.append_output(b"line one\nline two\n")
    block.flush()
    yield block
    assert rt.metrics()["actor_failures"] == 0


@FEW
@given(
    path=archive_paths,
    extra=st.dictionaries(other_session_keys, meta_values, max_size=2),
    by_store=st.booleans(),
)
def test_hostile_archive_metadata_ends_in_typed_errors(
    rt: Runtime, stored_block: Any, path: Any, extra: Any, by_store: bool
) -> None:
    block = stored_block
    update = {"session:archive_path": path, **extra}
    # Through the block, or straight into the store (as another host, or a script, would).
    if by_store:
        written = typed(rt.store.update_meta, "block", "agent-1", update)
    else:
        written = typed(block.update_meta, update)
    if refused(written):
        assert isinstance(written, InvalidInput)
        return
    outside = rt.blocks.archive_dir.parent / "outside.txt"
    outside.write_bytes(b"secret\n")
    read = typed(block.read_output)
    assert refused(read) or b"secret" not in read.data
    typed(block.stats)
    typed(block.meta)
    stats = typed(rt.blocks.sweep, inactive_days=0, dry_run=True)
    assert not refused(stats), stats  # a dry run goes on past one bad block
    typed(block.restore)
    typed(block.archive)
    typed(block.read_output)
    if isinstance(path, str):
        typed(block.prune_archive, path)
    assert outside.read_bytes() == b"secret\n"  # never written, never removed
    # Put it back, for the next example.
    block.update_meta({"session:archive_path": None, **dict.fromkeys(extra)})
