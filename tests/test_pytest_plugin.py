"""The `pytest11` plugin gives a host's test suite `fake_clock` and `greenroom_runtime`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

pytest_plugins = ["pytester"]

HOST_TESTS = """
from greenroom import FakeClock, Runtime, RuntimeConfig

SEEN = []


def test_fixtures_work_together(greenroom_runtime, fake_clock):
    assert isinstance(greenroom_runtime, Runtime)
    assert isinstance(fake_clock, FakeClock)
    pane = greenroom_runtime.blocks.get("pane-1", view="agent")
    pane.append_output(b"one\\ntwo\\n")
    fake_clock.advance(1.0)
    assert pane.stats().line_count == 2
    assert pane.meta()["session:line_count"] == 2
    SEEN.append(greenroom_runtime)


def test_the_runtime_was_closed_after_the_test(tmp_path):
    from greenroom.errors import Stopped
    import pytest

    (rt,) = SEEN
    with pytest.raises(Stopped):
        rt.blocks.get("pane-2")


def test_each_test_gets_its_own_database(greenroom_runtime):
    assert greenroom_runtime.actor_ids("block") == []
"""


def test_host_suite_gets_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_host=HOST_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_a_suite_can_override_the_config(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from greenroom import RuntimeConfig

@pytest.fixture
def greenroom_config():
    return RuntimeConfig(dispatcher_threads=2, settle_timeout_s=5.0)
"""
    )
    pytester.makepyfile(
        test_cfg="""
def test_config(greenroom_runtime):
    assert greenroom_runtime.config.dispatcher_threads == 2
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_readme_example_passes_under_pytest(pytester: pytest.Pytester) -> None:
    snippets = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (example,) = [code for code in snippets if "def test_" in code and "greenroom_runtime" in code]
    pytester.makepyfile(test_readme_example=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_host_with_its_own_runtime_and_actors_packages_runs_greenroom(
    pytester: pytest.Pytester,
) -> None:
    # Both folder names of greenroom's repository are common package names; installed,
    # greenroom is one import package, so a host's own `runtime` and `actors` stay its.
    pytester.mkpydir("runtime").joinpath("__init__.py").write_text("HOST = 'runtime'\n")
    pytester.mkpydir("actors").joinpath("__init__.py").write_text("HOST = 'actors'\n")
    pytester.makepyfile(
        test_host_runtime="""
import actors
import runtime

from greenroom import Runtime


def test_the_hosts_own_packages():
    assert (runtime.HOST, actors.HOST) == ("runtime", "actors")


def test_greenroom_and_its_fixtures(greenroom_runtime, fake_clock):
    assert isinstance(greenroom_runtime, Runtime)
    pane = greenroom_runtime.blocks.get("pane-1")
    pane.append_output(b"one\\n")
    fake_clock.advance(1.0)
    assert pane.stats().line_count == 1
    assert runtime.HOST == "runtime"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
