"""The examples run and their own assertions hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pane-2 after close and re-open: 31" in done.stdout
    assert (tmp_path / "quickstart.db").exists()


def test_the_mcp_server_example_serves_both_strategies(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mcp_server.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'judge_panel: {"yes": 2, "no": 1} yes' in done.stdout
    assert "after 2 critiques, 4 rounds" in done.stdout
