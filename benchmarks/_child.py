"""What the benchmark scripts share: running a part in a child process, reading memory,
a busy thread.

Each benchmark runs its memory-sensitive parts in a child process, so each starts from
a clean heap; the child prints one JSON line, which `run_child` returns. Imported by
the scripts in this folder (Python puts a script's own folder on `sys.path`).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["BusyThread", "run_child", "status_kb"]


def run_child(script: str, *args: object) -> dict[str, Any]:
    """Run `script` with `args` in a new interpreter; the JSON of its last line."""
    out = subprocess.run(
        [sys.executable, script, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(script).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def status_kb(field: str) -> int:
    """A `/proc/self/status` figure (such as `VmRSS`, `VmHWM`) in KB.

    `ru_maxrss` will not do for a base line: an exec'd child starts with its parent's
    RSS at fork as its high-water mark. Off Linux, `ru_maxrss` is the fallback.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class BusyThread:
    """Another thread running Python all the time (a host's busy worker), while in use."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy", daemon=True)

    def _run(self) -> None:
        count = 0
        while not self._stop.is_set():
            count += 1  # pure Python: it takes the interpreter's lock and keeps it

    def __enter__(self) -> BusyThread:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
