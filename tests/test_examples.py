"""The examples run and their own assertions hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `examples/<name>` in `cwd`; its result (output captured)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_quickstart_runs(tmp_path: Path) -> None:
    done = run_example("quickstart.py", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pane-2 after close and re-open: 31" in done.stdout
    assert (tmp_path / "quickstart.db").exists()


def test_the_mcp_server_example_serves_both_strategies(tmp_path: Path) -> None:
    done = run_example("mcp_server.py", tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'judge_panel: {"yes": 2, "no": 1} yes' in done.stdout
    assert "after 2 critiques, 4 rounds" in done.stdout
