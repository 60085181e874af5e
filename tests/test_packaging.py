"""The built wheel: one top-level import package, `greenroom`, with its plugin and types."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # From a copy of the sources: setuptools keeps a build/ folder in the tree it builds,
    # and a stale one could add files the repository no longer has.
    source = tmp_path_factory.mktemp("source") / "greenroom"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("greenroom-*.whl")
    return built


@pytest.mark.timeout(180)
def test_the_wheel_installs_only_the_greenroom_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"greenroom"}
    assert "greenroom/actors/base.py" in names
    assert "greenroom/pytest_plugin.py" in names
    assert "greenroom/py.typed" in names
    assert not any(name.startswith(("greenroom/tests", "runtime/", "actors/")) for name in names)


@pytest.mark.timeout(180)
def test_the_wheel_declares_the_plugin_and_the_command(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "greenroom = greenroom.pytest_plugin" in text
    assert "greenroom = greenroom.cli:main" in text
