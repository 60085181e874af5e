"""Bad input anywhere on the public surface: a typed error, and nothing changed.

Found by a review that called every public method with wrong types and edge values;
each case here once raised a bare Python error, hung, or broke a part of the runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig, ToolCall, Usage
from greenroom.aio.bridge import call_soon_threadsafe
from greenroom.errors import GreenroomError, InvalidInput, InvalidTransition
from greenroom.usage import as_usage

HUGE = 10**400  # too large for a float
ENORMOUS = 10**5000  # too many digits to print


@pytest.mark.parametrize(
    "config",
    [
        {"stop_timeout_s": 1e300},
        {"settle_timeout_s": HUGE},
        {"sweep_interval_s": float("inf")},
        {"gc_interval_s": 1e300},
        {"stop_timeout_s": 1e9},  # a wait: at most ten years
        {"dispatcher_threads": 10**29},
        {"strategy_threads": 0},
        {"max_archive_bytes": HUGE},
    ],
)
def test_config_values_that_would_overflow_later_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match=f"RuntimeConfig.{next(iter(config))}"):
        RuntimeConfig(**config)


@pytest.mark.parametrize("timeout", ["1", [], float("nan"), 1e300, HUGE, True, -1])
def test_settle_checks_its_timeout(rt: Runtime, timeout: Any) -> None:
    with pytest.raises(InvalidInput, match="timeout"):
        rt.settle(timeout)


def test_settles_timeout_message_says_how_long_at_most(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match="<= 315,360,000"):
        rt.settle(1e12)


@pytest.mark.parametrize("timeout", [HUGE, 1e300, float("inf")])
def test_execution_timeouts_too_large_are_refused(rt: Runtime, timeout: Any) -> None:
    async def strategy(ctx: Any) -> str:
        return str(await ctx.llm("q"))

    with pytest.raises(InvalidInput, match="timeout"):
        rt.executions.start(strategy, timeout=timeout)
    assert rt.executions.snapshots() == {}  # nothing started


def test_a_fake_clock_refuses_durations_beyond_ten_years() -> None:
    clock = FakeClock()
    before = clock.now_ms()
    for seconds in (HUGE, 1e300):
        with pytest.raises(InvalidInput, match="at most 1e12"):
            clock.advance(seconds)
    assert clock.now_ms() == before


def test_a_clock_class_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "app.db"
    with pytest.raises(InvalidInput, match=r"pass FakeClock\(\)"):
        Runtime.open(target, clock=FakeClock)  # type: ignore[arg-type]
    assert not target.parent.exists()


def test_a_line_count_that_would_overflow_the_stats_is_refused(rt: Runtime) -> None:
    pane = rt.blocks.get("pane")
    with pytest.raises(InvalidInput, match="n_bytes"):
        pane.record_line(2**70)
    pane.record_line(10)
    pane.flush()  # the writer is not poisoned: flushes still return
    assert pane.stats().line_count == 1


@pytest.mark.parametrize("value", [ENORMOUS, -ENORMOUS], ids=["positive", "negative"])
def test_metadata_with_ints_too_long_to_print_is_refused(rt: Runtime, value: int) -> None:
    pane = rt.blocks.get("pane")
    before = pane.meta()
    with pytest.raises(InvalidInput, match="not JSON-serialisable"):
        pane.update_meta({"x": value})
    assert pane.meta() == before


def test_deeply_nested_input_is_refused_not_a_recursion_error(rt: Runtime) -> None:
    nested: Any = "leaf"
    for _ in range(5_000):
        nested = {"a": nested}
    with pytest.raises(InvalidInput):
        ToolCall(id="c1", name="tool", arguments=nested)
    pane = rt.blocks.get("pane")
    with pytest.raises(InvalidInput):
        pane.update_meta({"x": nested})


def test_replay_payloads_with_ints_too_long_to_print_are_refused(rt: Runtime) -> None:
    with pytest.raises(InvalidInput, match="payload"):
        rt.replay.append("s", ENORMOUS)
    with pytest.raises(InvalidInput, match="payload"):
        rt.replay.publish("s", ENORMOUS)
    assert rt.replay.append("s", 10**100).payload == 10**100  # long, but printable


@pytest.mark.parametrize("part", ["executions", "transcripts", "replay"])
def test_a_parts_close_is_refused_while_the_runtime_is_open(rt: Runtime, part: str) -> None:
    with pytest.raises(InvalidTransition, match=r"Runtime\.close"):
        getattr(rt, part).close()
    assert rt.replay.append("s", "still works").payload == "still works"


def test_a_waker_without_release_is_refused_and_a_failing_one_is_contained(
    rt: Runtime,
) -> None:
    start = rt.replay.current_cursor("s")
    broken, healthy = rt.replay.subscribe(start), rt.replay.subscribe(start)
    assert not isinstance(broken, type(None))
    with pytest.raises(InvalidInput, match="release"):
        broken.take(None)  # type: ignore[union-attr, arg-type]

    class Failing:
        def release(self) -> None:
            raise RuntimeError("a waker bug")

    assert broken.take(Failing()) is None  # type: ignore[union-attr]
    rt.replay.append("s", "one")
    rt.replay.append("s", "two")  # the same buffer: the failing waker did not take it down
    assert [healthy.next_event(timeout=5).payload for _ in range(2)] == ["one", "two"]  # type: ignore[union-attr]
    assert rt.metrics()["actor_failures"] == 0


@pytest.mark.parametrize(
    "usage",
    [
        {
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "total_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        {
            "input_tokens": 12,
            "output_tokens": 30,
            "cache_creation": {"ephemeral_5m_input_tokens": 0},
            "service_tier": "standard",
        },
        {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42},
    ],
)
def test_real_provider_usage_mappings_are_read(usage: dict[str, Any]) -> None:
    assert as_usage(usage) == Usage(input_tokens=12, output_tokens=30)


def test_every_error_here_is_a_greenroom_error() -> None:
    assert issubclass(InvalidInput, GreenroomError)
    assert callable(call_soon_threadsafe)
