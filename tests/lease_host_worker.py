"""A host process for tests/test_execution_leases.py: drives one execution, then waits.

    python -m tests.lease_host_worker <postgres url> <archive folder>

Opens a runtime on the database as host "worker" (the system clock), starts
`lease.answers` (three questions, one a round), feeds the first answer, prints
`started <session id>` and `fed 1`, then waits (renewing its lease) until killed.
"""

from __future__ import annotations

import sys
import threading

from greenroom import Runtime, RuntimeConfig
from tests.lease_strategies import answers


def main(argv: list[str]) -> int:
    """Run as the docstring says; never returns while the host lives."""
    url, archives = argv[0], argv[1]
    config = RuntimeConfig(host_id="worker", archive_dir=archives, lease_s=30.0)
    rt = Runtime.open(url, config=config)
    rt.executions.register("lease.answers", answers)
    step = rt.executions.start("lease.answers", 3)
    print(f"started {step.session_id}", flush=True)
    rt.executions.feed(step.session_id, "one")
    print("fed 1", flush=True)
    threading.Event().wait()  # until kill -9
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
