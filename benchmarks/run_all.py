"""Run every benchmark script in this folder and print one table of their headline figures.

Each `bench_*.py` here (found by name, run in sorted order, each in its own interpreter,
the same Python as this one) writes its headline figures as JSON rows through
`--json PATH` (see `_table.py`); this script gathers them into one table: figure, value,
baseline, ratio, target and PASS / FAIL (or `-` for a figure without a target), under a
line naming the machine and the date. Each script's own output goes to stderr as it
runs, with a progress line per script; the table goes to stdout.

    .venv/bin/python benchmarks/run_all.py                      # the full set (make bench)
    .venv/bin/python benchmarks/run_all.py --quick              # smaller counts, a smoke test
    .venv/bin/python benchmarks/run_all.py --markdown table.md  # also the table as Markdown

Exit status: 2 for a usage error (no scripts to run, or a `--markdown` path whose folder
does not exist or is not writable: checked before any script runs); 1 if a script crashed
(a non-zero exit, a timeout, or no figures written), or, with `--strict`, if a figure
missed its target; otherwise 0. A missed target is always shown in the table and in the
summary line.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

import attrs

from greenroom.clock import stopwatch
from greenroom.errors import InvalidInput

from _table import Row, cpu_model, read_rows  # isort: skip (this folder's own module)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TAIL_LINES = 20  # how much of a crashed script's output the progress report repeats
COLUMNS = ("figure", "value", "baseline", "ratio", "target", "result")


@attrs.frozen
class ScriptResult:
    """One benchmark script's run: its figures, or why it has none."""

    name: str  # "executions" for bench_executions.py
    path: Path
    rows: tuple[Row, ...] = ()
    error: str | None = None  # None when the script ran and wrote its figures
    seconds: float = 0.0
    tail: tuple[str, ...] = ()  # the last lines of its output (stdout and stderr)

    @property
    def crashed(self) -> bool:
        """Whether the script failed to give its figures."""
        return self.error is not None


@attrs.frozen
class Machine:
    """What the figures were measured on."""

    cpu: str
    cpus: str
    python: str
    os: str

    def describe(self) -> str:
        """One line: CPU model, CPU count, Python version, OS."""
        return f"{self.cpu}, {self.cpus}, Python {self.python}, {self.os}"


@attrs.frozen
class Summary:
    """The verdicts over a whole run."""

    checked: int  # figures with a target
    missed: tuple[str, ...]  # "script: figure" of each figure that missed its target
    ran: int
    crashed: tuple[str, ...]  # names of the scripts that crashed

    def line(self) -> str:
        """The summary line printed under the table."""
        met = self.checked - len(self.missed)
        text = f"targets: {self.checked} checked, {met} met, {len(self.missed)} missed"
        if self.missed:
            text += " (" + "; ".join(self.missed) + ")"
        text += f". scripts: {self.ran} ran, {len(self.crashed)} crashed"
        if self.crashed:
            text += " (" + ", ".join(self.crashed) + ")"
        return text + "."


# -- the machine ------------------------------------------------------------------------


def _cpu_count() -> str:
    total = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    if usable and usable != total:
        return f"{usable} of {total} CPUs usable"
    return f"{total} CPU" + ("" if total == 1 else "s")


def _os_name() -> str:
    name = f"{platform.system()} {platform.release()} ({platform.machine()})"
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    return f"{name}, {pretty}" if pretty else name


def machine() -> Machine:
    """The machine this process runs on, as the table's header names it."""
    return Machine(
        cpu=cpu_model(),
        cpus=_cpu_count(),
        python=f"{platform.python_version()} ({platform.python_implementation()})",
        os=_os_name(),
    )


# -- running the scripts ------------------------------------------------------------------


def discover(folder: Path, only: Sequence[str] = ()) -> list[Path]:
    """The `bench_*.py` scripts in `folder`, sorted; those whose name contains one of
    `only` when it is given."""
    scripts = sorted(Path(folder).glob("bench_*.py"))
    if only:
        scripts = [path for path in scripts if any(word in path.stem for word in only)]
    return scripts


def script_name(path: Path) -> str:
    """The name the table gives a script: `bench_executions.py` is "executions"."""
    return path.stem.removeprefix("bench_")


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill the script and any child process it started (they share its session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (AttributeError, OSError):
        proc.kill()


def run_script(
    path: Path, *, quick: bool, timeout: float | None, echo: TextIO | None
) -> ScriptResult:
    """Run one script with `--json` (and `--quick`), echoing its output to `echo`."""
    name = script_name(path)
    with tempfile.TemporaryDirectory(prefix="greenroom-bench-") as tmp:
        rows_path = Path(tmp) / "rows.json"
        command = [sys.executable, str(path), *(["--quick"] if quick else []), "--json"]
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        timed_out = threading.Event()
        began = stopwatch()
        with subprocess.Popen(
            [*command, str(rows_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its children can be killed with it
        ) as proc:

            def expire() -> None:
                timed_out.set()
                _kill(proc)

            timer = threading.Timer(timeout, expire) if timeout else None
            try:
                if timer is not None:
                    timer.daemon = True
                    timer.start()
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail.append(line.rstrip("\n"))
                    if echo is not None:
                        echo.write(line)
                        echo.flush()
                status = proc.wait()
            except BaseException:
                _kill(proc)  # an interrupted run leaves no benchmark behind
                raise
            finally:
                if timer is not None:
                    timer.cancel()
        seconds = stopwatch() - began
        result = ScriptResult(name, path, seconds=seconds, tail=tuple(tail))
        if timed_out.is_set():
            return attrs.evolve(result, error=f"timed out after {timeout:g} s")
        if status != 0:
            return attrs.evolve(result, error=f"exited with status {status}")
        if not rows_path.exists():
            return attrs.evolve(result, error="wrote no figures (does it take --json PATH?)")
        try:
            rows = read_rows(rows_path)
        except InvalidInput as exc:
            return attrs.evolve(result, error=f"wrote malformed figures: {exc}")
        if not rows:
            return attrs.evolve(result, error="wrote an empty list of figures")
        return attrs.evolve(result, rows=tuple(rows))


# -- the table ----------------------------------------------------------------------------


def format_number(x: float) -> str:
    """A figure as the table prints it: thousands separated, about 3-4 significant digits."""
    if isinstance(x, int):
        return f"{x:,}"
    size = abs(x)
    if size >= 1000:
        return f"{x:,.0f}"
    if size >= 10:
        return f"{x:.1f}"
    if size >= 1:
        return f"{x:.2f}"
    if size == 0:
        return "0"
    return f"{x:.3g}"


def _with_unit(x: float, unit: str) -> str:
    return f"{format_number(x)} {unit}".rstrip()


def result_label(row: Row) -> str:
    """PASS, FAIL, or `-` for a figure without a verdict."""
    if row.passed is None:
        return "-"
    return "PASS" if row.passed else "FAIL"


def cells(row: Row) -> tuple[str, str, str, str, str, str]:
    """A row's six cells, as text (the baseline in the value's unit, which it does not
    repeat, then what the baseline is)."""
    baseline = ""
    if row.baseline is not None:
        baseline = format_number(row.baseline)
        if row.baseline_label:
            baseline += f" ({row.baseline_label})"
    elif row.baseline_label:
        baseline = row.baseline_label
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
    return (
        row.figure,
        _with_unit(row.value, row.unit),
        baseline,
        ratio,
        row.target or "",
        result_label(row),
    )


def summarise(results: Sequence[ScriptResult]) -> Summary:
    """How many figures had a target, which missed it, and which scripts crashed."""
    checked = [
        (result.name, row) for result in results for row in result.rows if row.passed is not None
    ]
    return Summary(
        checked=len(checked),
        missed=tuple(f"{name}: {row.figure}" for name, row in checked if not row.passed),
        ran=len(results),
        crashed=tuple(result.name for result in results if result.crashed),
    )


def header(where: Machine, when: datetime, *, quick: bool) -> list[str]:
    """The lines above the table: the date (and whether it was a quick run), the machine."""
    line = f"greenroom benchmarks, {when.strftime('%Y-%m-%d %H:%M %Z').rstrip()}"
    if quick:
        line += " (--quick: smaller counts, a smoke test; not figures to quote)"
    return [line, f"machine: {where.describe()}"]


def render_text(
    results: Sequence[ScriptResult], where: Machine, when: datetime, *, quick: bool = False
) -> str:
    """The whole report as aligned plain text: header, table, summary line.

    Numbers line up on their last digit: the value's and the baseline's number parts
    are right-aligned within their cells, the unit and the baseline's label follow.
    """
    rows = [row for result in results for row in result.rows]
    value_w = max((len(format_number(row.value)) for row in rows), default=0)
    base_w = max(
        (len(format_number(row.baseline)) for row in rows if row.baseline is not None),
        default=0,
    )
    body: list[tuple[str, ...] | str] = []
    for result in results:
        if result.crashed:
            body.append((result.name, "", "", "", "", "CRASH"))
            body.append(f"  {result.error}")
            continue
        body.append(result.name)
        for row in result.rows:
            figure, _value, baseline, *rest = cells(row)
            value = f"{format_number(row.value):>{value_w}} {row.unit}".rstrip()
            if row.baseline is not None:
                baseline = f"{format_number(row.baseline):>{base_w}}"
                baseline += f" ({row.baseline_label})" if row.baseline_label else ""
            body.append(("  " + figure, value, baseline, *rest))
    table = [COLUMNS, *(line for line in body if isinstance(line, tuple))]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def fmt(line: tuple[str, ...]) -> str:
        parts = [
            text.rjust(width) if i == 3 else text.ljust(width)  # 3: the ratio
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [*header(where, when, quick=quick), "", fmt(COLUMNS)]
    out.append("  ".join("-" * width for width in widths))
    out.extend(line if isinstance(line, str) else fmt(line) for line in body)
    out += ["", summarise(results).line()]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(
    results: Sequence[ScriptResult], where: Machine, when: datetime, *, quick: bool = False
) -> str:
    """The whole report as Markdown, for the README's Performance section."""
    first, machine_line = header(where, when, quick=quick)
    out = [f"{first}; {machine_line}.", ""]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("| --- | ---: | --- | ---: | --- | --- |")
    for result in results:
        if result.crashed:
            out.append(f"| **{_md(result.name)}**: {_md(result.error or '')} | | | | | CRASH |")
            continue
        out.append(f"| **{_md(result.name)}** | | | | | |")
        for row in result.rows:
            out.append("| " + " | ".join(_md(cell) for cell in cells(row)) + " |")
    out += ["", summarise(results).line()]
    return "\n".join(out) + "\n"


# -- the command ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument(
        "--dir", type=Path, default=HERE, help="the folder of bench_*.py scripts (this one)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only the scripts whose name contains NAME (repeatable)",
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the table as Markdown to PATH"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a figure misses its target"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="a script still running after this long is killed and counted as crashed "
        "(default 1800; 0 for none)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="progress lines only, not each script's output"
    )
    return parser


def markdown_path_problem(path: Path) -> str | None:
    """Why the table could not be written to `path`, or None when it can (it is checked
    before any script runs, so a typo does not cost a whole benchmark run)."""
    folder = path.parent
    if path.is_dir():
        return f"--markdown {path}: is a folder; give a file path such as {path / 'perf.md'}"
    if not folder.is_dir():
        return f"--markdown {path}: the folder {folder} does not exist; create it first"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"--markdown {path}: the folder {folder} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return f"--markdown {path}: the file exists and is not writable"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scripts, print the table; the exit status (see the module's docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.markdown is not None and (problem := markdown_path_problem(args.markdown)):
        parser.error(problem)  # a usage error: exit status 2, before anything runs
    scripts = discover(args.dir, args.only)
    if not scripts:
        print(f"run_all: no bench_*.py scripts to run in {args.dir}", file=sys.stderr)
        return 2
    when = datetime.now().astimezone()
    results: list[ScriptResult] = []
    began = stopwatch()
    for n, path in enumerate(scripts, 1):
        flag = " --quick" if args.quick else ""
        print(f"[{n}/{len(scripts)}] {path.name}{flag} ...", file=sys.stderr, flush=True)
        result = run_script(
            path,
            quick=args.quick,
            timeout=args.timeout or None,
            echo=None if args.quiet else sys.stderr,
        )
        results.append(result)
        if result.crashed:
            print(
                f"[{n}/{len(scripts)}] {path.name}: CRASHED, {result.error} "
                f"({result.seconds:.1f} s); its last lines:",
                file=sys.stderr,
            )
            for line in result.tail:
                print(f"    {line}", file=sys.stderr)
        else:
            print(
                f"[{n}/{len(scripts)}] {path.name}: {len(result.rows)} figures "
                f"in {result.seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    print(f"all scripts: {stopwatch() - began:.1f} s", file=sys.stderr)
    where = machine()
    print(render_text(results, where, when, quick=args.quick), end="")
    if args.markdown:
        args.markdown.write_text(render_markdown(results, where, when, quick=args.quick))
        print(f"Markdown table written to {args.markdown}", file=sys.stderr)
    summary = summarise(results)
    if summary.crashed or (args.strict and summary.missed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
