"""`benchmarks/run_all.py` and the rows of `benchmarks/_table.py`, on fake bench scripts.

No real benchmark runs here and nothing is timed: the fake scripts in `tmp_path` write
fixed rows (or crash), and the tests check what the runner makes of them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from greenroom.errors import InvalidInput

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
RUN_ALL = BENCH / "run_all.py"
WHEN = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """The runner module (with `_table`), imported from the benchmarks folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        return importlib.import_module("run_all")


@pytest.fixture(scope="module")
def table() -> ModuleType:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCH))
        return importlib.import_module("_table")


def _machine(bench: ModuleType) -> Any:
    return bench.Machine(
        cpu="Test CPU 3000", cpus="2 CPUs", python="3.11.7 (CPython)", os="Linux 6.1"
    )


def _result(bench: ModuleType, name: str, rows: list[Any], error: str | None = None) -> Any:
    return bench.ScriptResult(name, BENCH / f"bench_{name}.py", rows=tuple(rows), error=error)


# -- rows and targets ------------------------------------------------------------------------


def test_ratio_target_gives_label_and_verdict(table: ModuleType) -> None:
    target = table.Target("<=", 2.0)
    met = table.figure("feed p50", 40.0, "us", baseline=25.0, ratio=1.6, target=target)
    missed = table.figure("feed p50", 80.0, "us", baseline=25.0, ratio=3.2, target=target)
    edge = table.figure("feed p50", 50.0, "us", baseline=25.0, ratio=2.0, target=target)
    assert (met.target, met.passed) == ("<= 2.0", True)
    assert (missed.target, missed.passed) == ("<= 2.0", False)
    assert edge.passed is True  # "<=" includes the bound

    at_least = table.Target(">=", 1.0)
    assert table.figure("fan-out", 9.0, "/s", ratio=0.99, target=at_least).passed is False
    assert table.figure("fan-out", 9.0, "/s", ratio=1.0, target=at_least).passed is True


def test_value_target_checks_the_value_and_shows_the_unit(table: ModuleType) -> None:
    target = table.Target("<", 0.25, on="value")
    fast = table.figure("flush", 0.1, "s", baseline=2.2, ratio=0.05, target=target)
    slow = table.figure("flush", 0.25, "s", baseline=0.1, ratio=2.5, target=target)
    assert (fast.target, fast.passed) == ("< 0.25 s", True)
    assert slow.passed is False  # "<" excludes the bound; the ratio plays no part
    rss = table.figure("RSS growth", 39.4, "MB", target=table.Target("<", 64, on="value"))
    assert (rss.target, rss.passed) == ("< 64 MB", True)


def test_no_target_means_no_verdict(table: ModuleType) -> None:
    row = table.figure("RSS per actor", 1995.0, "bytes")
    assert (row.target, row.passed, row.ratio, row.baseline) == (None, None, None, None)


def test_a_ratio_target_needs_a_ratio(table: ModuleType) -> None:
    with pytest.raises(InvalidInput, match="no ratio"):
        table.figure("x", 1.0, "s", target=table.Target(">=", 1.0))
    with pytest.raises(InvalidInput, match=r"Target\.op must be one of"):
        table.Target("=~", 1.0)
    with pytest.raises(InvalidInput, match=r"Target\.on must be one of"):
        table.Target("<", 1.0, on="baseline")


def test_rows_round_trip_through_json(table: ModuleType, tmp_path: Path) -> None:
    rows = [
        table.figure(
            "a",
            1.5,
            "us",
            baseline=1.0,
            baseline_label="pykka",
            ratio=1.5,
            target=table.Target("<=", 2.0),
        ),
        table.figure("threads", 6, "threads", baseline=6),
    ]
    path = tmp_path / "rows.json"
    table.write_rows(path, rows)
    data = json.loads(path.read_text())
    assert data[0] == {
        "figure": "a",
        "value": 1.5,
        "unit": "us",
        "baseline": 1.0,
        "baseline_label": "pykka",
        "ratio": 1.5,
        "target": "<= 2.0",
        "passed": True,
    }
    assert table.read_rows(path) == rows
    table.write_rows(None, rows)  # no --json given: writes nothing, no error


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{}", "JSON list"),
        ("[1]", "JSON object"),
        ('[{"figure": "a", "value": 1}]', "missing \\['unit'\\]"),
        ('[{"figure": "a", "value": 1, "unit": "s", "colour": "red"}]', "unknown keys"),
        ('[{"figure": "a", "value": "fast", "unit": "s"}]', "must be a number"),
        ('[{"figure": "a", "value": 1, "unit": "s", "passed": "yes"}]', "true, false or null"),
        ("[{", "not JSON"),
    ],
)
def test_malformed_rows_are_refused(
    table: ModuleType, tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "rows.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=match):
        table.read_rows(path)


# -- the table --------------------------------------------------------------------------------


def test_text_table_shows_every_cell_aligned(bench: ModuleType, table: ModuleType) -> None:
    results = [
        _result(
            bench,
            "executions",
            [
                table.figure(
                    "feed p50, threads on any CPU",
                    83.5,
                    "us",
                    baseline=30.1,
                    baseline_label="bare pykka ask",
                    ratio=2.774,
                    target=table.Target("<=", 2.0),
                ),
                table.figure("peak RSS per paused session", 4828.4, "bytes"),
            ],
        ),
        _result(
            bench,
            "replay",
            [
                table.figure(
                    "fan-out",
                    1028924.0,
                    "deliveries/s",
                    baseline=349400.0,
                    ratio=2.94,
                    target=table.Target(">=", 1.0),
                ),
            ],
        ),
    ]
    text = bench.render_text(results, _machine(bench), WHEN)
    lines = text.splitlines()
    assert lines[0] == "greenroom benchmarks, 2026-11-30 14:05 UTC"
    assert lines[1] == "machine: Test CPU 3000, 2 CPUs, Python 3.11.7 (CPython), Linux 6.1"
    head = next(line for line in lines if line.startswith("figure"))
    feed = next(line for line in lines if "feed p50" in line)
    rss = next(line for line in lines if "paused session" in line)
    fan = next(line for line in lines if "fan-out" in line)
    assert "83.5 us" in feed
    assert "30.1 (bare pykka ask)" in feed
    assert feed.split()[-3:] == ["<=", "2.0", "FAIL"]
    assert "2.77" in feed
    assert "4,828 bytes" in rss
    # Values line up on their last digit, the units after them.
    assert feed.index("83.5 us") + len("83.5") == rss.index("4,828 bytes") + len("4,828")
    assert rss.endswith("-")
    assert "1,028,924 deliveries/s" in fan
    assert fan.endswith("PASS")
    # The columns line up: each row's result sits under the header's "result".
    column = head.index("result")
    for line in (feed, rss, fan):
        assert line[column:].strip() in ("PASS", "FAIL", "-")
    # The ratios are right-aligned under "ratio".
    ratio_end = head.index("ratio") + len("ratio")
    assert feed[:ratio_end].endswith("2.77")
    assert fan[:ratio_end].endswith("2.94")
    assert lines[-1] == (
        "targets: 2 checked, 1 met, 1 missed (executions: feed p50, threads on any CPU). "
        "scripts: 2 ran, 0 crashed."
    )


def test_crashed_script_is_reported(bench: ModuleType, table: ModuleType) -> None:
    results = [
        _result(bench, "blocks", [table.figure("x", 1.0, "s")]),
        _result(bench, "store", [], error="exited with status 1"),
    ]
    text = bench.render_text(results, _machine(bench), WHEN, quick=True)
    assert "--quick" in text.splitlines()[0]
    crash = next(line for line in text.splitlines() if line.startswith("store"))
    assert crash.endswith("CRASH")
    assert "  exited with status 1" in text.splitlines()
    assert text.splitlines()[-1].endswith("scripts: 2 ran, 1 crashed (store).")
    summary = bench.summarise(results)
    assert (summary.checked, summary.missed, summary.crashed) == (0, (), ("store",))


def test_markdown_table(bench: ModuleType, table: ModuleType) -> None:
    results = [
        _result(
            bench,
            "blocks",
            [
                table.figure(
                    "a | b",
                    0.112,
                    "s",
                    baseline=2.218,
                    baseline_label="update_meta",
                    ratio=0.0505,
                    target=table.Target("<", 0.25, on="value"),
                )
            ],
        ),
        _result(bench, "store", [], error="timed out after 5 s"),
    ]
    md = bench.render_markdown(results, _machine(bench), WHEN).splitlines()
    assert md[0].startswith("greenroom benchmarks, 2026-11-30 14:05 UTC; machine: Test CPU 3000")
    assert md[2] == "| figure | value | baseline | ratio | target | result |"
    assert "| **blocks** | | | | | |" in md
    assert "| a \\| b | 0.112 s | 2.22 (update_meta) | 0.05 | < 0.25 s | PASS |" in md
    assert "| **store**: timed out after 5 s | | | | | CRASH |" in md


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (6, "6"),
        (100_000, "100,000"),
        (132381.7, "132,382"),
        (245.54, "245.5"),
        (83.46, "83.5"),
        (2.774, "2.77"),
        (0.112, "0.112"),
        (0.0, "0"),
    ],
)
def test_format_number(bench: ModuleType, value: float, text: str) -> None:
    assert bench.format_number(value) == text


def test_machine_names_this_python(bench: ModuleType) -> None:
    where = bench.machine()
    assert where.python.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    assert "CPU" in where.cpus
    assert where.cpu
    assert where.os


# -- the command, on fake scripts -----------------------------------------------------------

GOOD = """
import json, sys
args = sys.argv[1:]
path = args[args.index("--json") + 1]
quick = "--quick" in args
print("human output of the good script")
rows = [
    {"figure": f"headline, quick={quick}", "value": 1.5, "unit": "us", "baseline": 1.0,
     "baseline_label": "pykka ask", "ratio": 1.5, "target": "<= 2.0", "passed": True},
    {"figure": "info only", "value": 10, "unit": "threads", "baseline": None,
     "baseline_label": None, "ratio": None, "target": None, "passed": None},
]
with open(path, "w") as out:
    json.dump(rows, out)
"""

MISSED = """
import json, sys
path = sys.argv[sys.argv.index("--json") + 1]
rows = [{"figure": "too slow", "value": 3.0, "unit": "us", "ratio": 3.0,
         "target": "<= 2.0", "passed": False}]
with open(path, "w") as out:
    json.dump(rows, out)
"""

CRASHES = """
print("about to fail")
raise RuntimeError("the benchmark broke")
"""

NO_JSON = """
print("measured, but wrote nothing")
"""

HANGS = """
import threading
print("waiting forever", flush=True)
threading.Event().wait()
"""


def _scripts(folder: Path, **scripts: str) -> Path:
    folder.mkdir(exist_ok=True)
    for name, source in scripts.items():
        (folder / f"bench_{name}.py").write_text(textwrap.dedent(source))
    (folder / "helper_not_a_bench.py").write_text("raise SystemExit('never run')\n")
    return folder


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_ALL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_runner_collects_rows_and_reports_crashes(tmp_path: Path) -> None:
    folder = _scripts(tmp_path / "b", a_good=GOOD, b_crashes=CRASHES, c_no_json=NO_JSON)
    md = tmp_path / "table.md"
    done = _run("--dir", folder, "--quick", "--markdown", md)
    assert done.returncode == 1, done.stderr  # scripts crashed
    out = done.stdout.splitlines()
    assert "(--quick" in out[0]
    assert out[1].startswith("machine: ")
    headline = next(line for line in out if "headline" in line)
    assert "headline, quick=True" in headline  # --quick was forwarded
    assert "1.50 us" in headline
    assert "1.00 (pykka ask)" in headline
    assert headline.endswith("PASS")
    assert next(line for line in out if "info only" in line).endswith("-")
    assert next(line for line in out if line.startswith("b_crashes")).endswith("CRASH")
    assert "  exited with status 1" in out
    assert any("wrote no figures" in line for line in out)
    assert out[-1] == (
        "targets: 1 checked, 1 met, 0 missed. scripts: 3 ran, 2 crashed (b_crashes, c_no_json)."
    )
    assert "never run" not in done.stdout + done.stderr  # only bench_*.py scripts run
    # Progress, each script's own output, and a crash's last lines go to stderr.
    assert "[1/3] bench_a_good.py --quick ..." in done.stderr
    assert "[1/3] bench_a_good.py: 2 figures in" in done.stderr
    assert "human output of the good script" in done.stderr
    assert "[2/3] bench_b_crashes.py: CRASHED, exited with status 1" in done.stderr
    assert "RuntimeError: the benchmark broke" in done.stderr
    markdown = md.read_text()
    assert "| **a_good** | | | | | |" in markdown
    assert "| **b_crashes**: exited with status 1 | | | | | CRASH |" in markdown


def test_missed_target_fails_only_under_strict(tmp_path: Path) -> None:
    folder = _scripts(tmp_path / "b", good=GOOD, missed=MISSED)
    relaxed = _run("--dir", folder, "--quiet")
    assert relaxed.returncode == 0, relaxed.stderr
    assert "headline, quick=False" in relaxed.stdout
    assert next(line for line in relaxed.stdout.splitlines() if "too slow" in line).endswith("FAIL")
    assert relaxed.stdout.splitlines()[-1] == (
        "targets: 2 checked, 1 met, 1 missed (missed: too slow). scripts: 2 ran, 0 crashed."
    )
    assert "human output" not in relaxed.stderr  # --quiet: progress lines only
    strict = _run("--dir", folder, "--quiet", "--strict")
    assert strict.returncode == 1
    assert _run("--dir", folder, "--quiet", "--strict", "--only", "good").returncode == 0


def test_a_hanging_script_is_killed(tmp_path: Path) -> None:
    folder = _scripts(tmp_path / "b", good=GOOD, hangs=HANGS)
    done = _run("--dir", folder, "--quiet", "--timeout", "1")
    assert done.returncode == 1
    assert "timed out after 1 s" in done.stdout
    assert "waiting forever" in done.stderr  # its last lines


def test_no_scripts_is_an_error(tmp_path: Path) -> None:
    done = _run("--dir", tmp_path)
    assert done.returncode == 2
    assert "no bench_*.py scripts" in done.stderr


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("missing/t.md", "does not exist"),
        (".", "is a folder"),
    ],
)
def test_a_bad_markdown_path_is_refused_before_any_script_runs(
    tmp_path: Path, where: str, message: str
) -> None:
    marker = tmp_path / "ran"
    runs = f"open({str(marker)!r}, 'w').close()\n" + GOOD
    folder = _scripts(tmp_path / "b", runs=runs)
    done = _run("--dir", folder, "--quiet", "--markdown", tmp_path / where)
    assert done.returncode == 2, done.stderr
    assert "usage:" in done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()  # refused before the benchmark ran
    assert done.stdout == ""


def test_a_read_only_markdown_folder_is_refused(tmp_path: Path) -> None:
    folder = _scripts(tmp_path / "b", good=GOOD)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        done = _run("--dir", folder, "--quiet", "--markdown", locked / "t.md")
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert "is not writable" in done.stderr
    assert done.stdout == ""


# -- the real scripts ---------------------------------------------------------------------


REAL_SCRIPTS = sorted(BENCH.glob("bench_*.py"))


def test_there_are_real_scripts() -> None:
    assert len(REAL_SCRIPTS) >= 6, REAL_SCRIPTS


@pytest.mark.parametrize("script", REAL_SCRIPTS, ids=lambda path: path.name)
def test_every_real_script_takes_json(script: Path) -> None:
    # `--help` only parses the options: no benchmark runs.
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\s+--json PATH\b", done.stdout, re.MULTILINE), done.stdout
    assert "--quick" in done.stdout  # run_all.py passes it on too
