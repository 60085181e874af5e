"""The documentation is true: README.md and docs/*.md run, and the references are complete.

* Every ```python block of a page runs: the page's blocks in order, in one namespace
  (a later block may use what an earlier one defined), in a fresh interpreter whose
  working folder is a temporary one, with a timeout. A traceback names the page and
  the line of the Markdown file.
* A block right after `<!-- test file: ... -->` is a pytest module instead: it runs
  under pytest, with greenroom's installed plugin, and must pass.
* A block right after `<!-- not run: reason -->` is skipped; the reason is required.
* The reference pages list every `RuntimeConfig` field (with its default), every
  `greenroom.errors` class, every `rt.metrics()` key and every command; README.md has
  at most 250 lines; `mkdocs build --strict` succeeds (deselect with `-k "not mkdocs"`).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

README_MAX_LINES = 250
PAGE_TIMEOUT_S = 60.0  # real seconds for all of a page's blocks
MAX_NOT_RUN = 3  # skipped blocks are for fragments that cannot run; keep them rare

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_MARKERS = ("not run", "test file")


@dataclass(frozen=True)
class CodeBlock:
    page: Path
    line: int  # the line of the Markdown file the code starts on (1-based)
    code: str
    marker: str | None  # None (run it), "not run" or "test file"
    reason: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[CodeBlock]:
    """The ```python blocks of `page`, each with the marker comment right before it."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        marker = None
        reason = ""
        before = text[: match.start()].rstrip()
        if before.endswith("-->"):  # an HTML comment right before the fence
            comment = before[before.rfind("<!--") + 4 : -3]
            kind, _, said = comment.strip().partition(":")
            if kind.strip() in _MARKERS:
                marker, reason = kind.strip(), said.strip()
        line = text.count("\n", 0, match.start(1)) + 1
        blocks.append(CodeBlock(page, line, match.group(1), marker, reason))
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in code_blocks(page)]
RUN_PAGES = [page for page in PAGES if any(b.page == page and b.marker is None for b in ALL_BLOCKS)]
TEST_FILES = [block for block in ALL_BLOCKS if block.marker == "test file"]

# Runs in a fresh interpreter: exec each block in one namespace, with its Markdown file
# and line as the code's file and line, so a traceback shows the failing line.
_DRIVER = textwrap.dedent(
    """
    import json, sys, traceback

    namespace = {"__name__": "__main__"}
    for block in json.loads(open(sys.argv[1], encoding="utf-8").read()):
        source = "\\n" * (block["line"] - 1) + block["code"]
        try:
            exec(compile(source, block["path"], "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"\\nthe block at {block['name']} failed", file=sys.stderr)
            sys.exit(1)
    """
)


def _short(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- the code runs -------------------------------------------------------------------------


def test_the_pages_have_code_that_runs() -> None:
    runnable = {_short(page) for page in RUN_PAGES}
    for page in ("README.md", "docs/blocks.md", "docs/executions.md", "docs/transcripts.md"):
        assert page in runnable, f"{page} has no ```python block that runs"
    assert "docs/replay.md" in runnable
    assert "docs/aio.md" in runnable
    assert TEST_FILES, "the pytest plugin's example is marked <!-- test file: ... -->"


@pytest.mark.timeout(PAGE_TIMEOUT_S + 30)
@pytest.mark.parametrize("page", RUN_PAGES, ids=_short)
def test_the_code_of_a_page_runs(page: Path, tmp_path: Path) -> None:
    blocks = [
        {"path": str(b.page), "name": b.name, "line": b.line, "code": b.code}
        for b in ALL_BLOCKS
        if b.page == page and b.marker is None
    ]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    work = tmp_path / "work"  # the blocks' current folder: app.db and friends go here
    work.mkdir()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(tmp_path / "blocks.json")],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=PAGE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"the code of {_short(page)} did not finish within {PAGE_TIMEOUT_S:g} s\n"
            f"{expired.stdout or ''}{expired.stderr or ''}"
        )
    assert done.returncode == 0, f"{_short(page)}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("block", TEST_FILES, ids=lambda block: block.name)
def test_a_test_file_block_passes_under_pytest(block: CodeBlock, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{f"test_{block.page.stem}_{block.line}": block.code})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert outcomes.get("passed", 0) >= 1, result.stdout.str()


def test_blocks_not_run_say_why_and_are_rare() -> None:
    skipped = [block for block in ALL_BLOCKS if block.marker == "not run"]
    for block in skipped:
        assert block.reason, f"{block.name}: say why, as <!-- not run: reason -->"
    assert len(skipped) <= MAX_NOT_RUN, [block.name for block in skipped]


_OLD_NAMES = re.compile(
    r"\b(?:rt|art|runtime|greenroom_runtime)\.(?:"
    r"block|blocks\(|sweep|archive_dir|start_execution|feed|feed_many|cancel|"
    r"execution_status|execution_snapshots|transcript_create|transcript_resume|"
    r"transcript_fork|transcript_dir|replay_append|replay_append_many|replay_publish|"
    r"replay_publish_many|current_cursor|replay_after|subscribe_after|follow"
    r")\b"
    r"|\b(?:from|import) (?:runtime|actors)\b|\bpython -m runtime\b|greenroom_pytest"
)


@pytest.mark.parametrize("page", PAGES, ids=_short)
def test_a_page_uses_no_old_name(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    found = [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}"
        for match in _OLD_NAMES.finditer(text)
    ]
    assert not found, f"{_short(page)} uses names the runtime no longer has: {found}"


# -- the README ----------------------------------------------------------------------------


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_the_readme_links_every_page_and_only_pages_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    linked = {Path(link) for link in re.findall(r"\]\((docs/[^)#\s]+)", text)}
    for link in linked:
        assert (ROOT / link).is_file(), f"README.md links to {link}, which does not exist"
    for page in DOCS.glob("*.md"):
        assert page.relative_to(ROOT) in linked, f"README.md does not link {_short(page)}"


def test_the_extras_named_exist() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(pyproject["project"].get("optional-dependencies", {}))
    for page in PAGES:
        for extra in re.findall(r"greenroom\[([\w,-]+)\]", page.read_text(encoding="utf-8")):
            for name in extra.split(","):
                assert name in extras, f"{_short(page)} names the extra {name!r}"


def test_the_install_section_names_every_dependency() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    install = text[text.index("## Install") : text.index("## Two commands")]
    for requirement in pyproject["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        assert name in install, f"docs/index.md's Install section does not name {name}"


# -- the reference pages -------------------------------------------------------------------


def test_the_configuration_reference_lists_every_field_with_its_default() -> None:
    import attrs

    from greenroom import RuntimeConfig

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, re.MULTILINE))
    defaults = RuntimeConfig()
    fields = {field.name for field in attrs.fields(RuntimeConfig)}
    for name in sorted(fields):
        assert name in rows, f"docs/configuration.md lacks RuntimeConfig.{name}"
        default = repr(getattr(defaults, name)).replace("'", '"')
        assert rows[name] == default, f"RuntimeConfig.{name} defaults to {default}"
    assert not set(rows) - fields, f"not RuntimeConfig fields: {sorted(set(rows) - fields)}"


def test_the_error_reference_lists_every_error_class() -> None:
    from greenroom import errors

    text = (DOCS / "errors.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(\w+)`", text, re.MULTILINE))
    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.GreenroomError)
    }
    assert not classes - rows, f"docs/errors.md lacks {sorted(classes - rows)}"
    assert not rows - classes, f"not in greenroom.errors: {sorted(rows - classes)}"


def test_the_metrics_reference_lists_every_key(tmp_path: Path) -> None:
    from greenroom import FakeClock, Runtime

    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    with Runtime.open(tmp_path / "metrics.db", clock=FakeClock()) as rt:
        keys = set(rt.metrics())
    missing = sorted(key for key in keys if f"`{key}`" not in text)
    assert not missing, f"docs/metrics.md lacks {missing}"


def test_the_command_line_reference_covers_every_command() -> None:
    import argparse

    from greenroom.cli import build_parser

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    (subcommands,) = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    assert subcommands.choices
    for command in subcommands.choices:
        assert f"`greenroom {command} " in text, f"docs/cli.md lacks `greenroom {command}`"


# -- the site builds -----------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    config = ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")]
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", *config],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()
