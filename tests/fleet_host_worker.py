"""A host of a fleet for tests/test_fleet.py: one runtime on a shared PostgreSQL, driven
line by line from its standard input, on a fake clock the test moves.

    python -m tests.fleet_host_worker <postgres url> <archive folder> <host id>

Commands (one per line; each answered with one JSON line):

    start <count> <rounds>   start `count` executions of `lease.answers`: {"sids": [...]}
    feed <sid> <text>        feed one answer: {"status": ..., "result": ...}, or
                             {"error": "LeaseHeld", "owner": ...} / {"error": <type>}
    advance <seconds>        move this host's clock (its lease timers fire): {"ok": true}
    close                    close the runtime and exit: {"ok": true}

The clock starts at the real time, so every host of a fleet agrees on the time until
the test moves some of them ahead (past a dead host's leases).
"""

from __future__ import annotations

import json
import sys

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.clock import SystemClock
from greenroom.errors import GreenroomError, LeaseHeld
from tests.lease_strategies import answers


def main(argv: list[str]) -> int:
    """Serve commands until `close` or the end of input."""
    url, archives, host = argv
    clock = FakeClock(SystemClock().now_ms())
    config = RuntimeConfig(archive_dir=archives, host_id=host, lease_s=30.0, settle_timeout_s=30.0)
    rt = Runtime.open(url, clock=clock, config=config)
    rt.executions.register("lease.answers", answers)
    print(json.dumps({"ready": host}), flush=True)
    for line in sys.stdin:
        words = line.split(maxsplit=2)
        reply: dict[str, object]
        if words[0] == "start":
            count, rounds = int(words[1]), int(words[2])
            sids = [rt.executions.start("lease.answers", rounds).session_id for _ in range(count)]
            reply = {"sids": sids}
        elif words[0] == "feed":
            try:
                step = rt.executions.feed(words[1], words[2].strip())
                reply = {"status": step.status, "result": step.result}
            except LeaseHeld as held:
                reply = {"error": "LeaseHeld", "owner": held.owner}
            except GreenroomError as error:
                reply = {"error": type(error).__name__, "message": str(error)}
        elif words[0] == "advance":
            clock.advance(float(words[1]))
            reply = {"ok": True}
        else:
            rt.close()
            print(json.dumps({"ok": True}), flush=True)
            return 0
        print(json.dumps(reply), flush=True)
    rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
