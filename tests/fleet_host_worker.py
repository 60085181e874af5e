"""A host of a fleet for tests/test_fleet.py: one runtime on a shared PostgreSQL, driven
line by line from its standard input, on a fake clock the test moves.

    python -m tests.fleet_host_worker <postgres url> <archive folder> <host id>

Commands (one per line; each answered with one JSON line):

    start <count> <rounds>   start `count` executions of `lease.answers`: {"sids": [...]}
    feed <sid> <text>        feed one answer: {"status": ..., "result": ...}, or
                             {"error": "LeaseHeld", "owner": ...} / {"error": <type>}
    append <block> <n> <tag> append lines "<tag> 0" .. "<tag> n-1" to a block, then flush:
                             {"ok": n}, or {"error": "LeaseHeld", "owner": ...}
    spew <block> <tag>       append "<tag> 0", "<tag> 1", ... to a block without end,
                             flushing every 100 lines: {"flushed": 100} after the first
                             flush (the test kills the host mid-stream)
    read <block>             the block's whole output: {"data": ...} (or an error)
    sweep                    sweep every idle agent block now: {"archived": ..., ...}
    advance <seconds>        move this host's clock (its lease timers fire): {"ok": true}
    close                    close the runtime and exit: {"ok": true}

The clock starts at the real time, so every host of a fleet agrees on the time until
the test moves some of them ahead (past a dead host's leases).
"""

from __future__ import annotations

import json
import sys
import threading

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.clock import SystemClock
from greenroom.errors import GreenroomError, LeaseHeld
from tests.lease_strategies import answers


def blocks(rt: Runtime, words: list[str]) -> dict[str, object]:
    """The reply to a block command (`append`, `read`, `sweep`)."""
    if words[0] == "append":
        block_id, tag = words[1], words[2].split()
        count, name = int(tag[0]), tag[1]
        pane = rt.blocks.get(block_id)
        for index in range(count):
            pane.append_output(f"{name} {index}\n".encode())
        pane.flush()
        return {"ok": count}
    if words[0] == "read":
        return {"data": rt.blocks.get(words[1]).read_output().data.decode()}
    stats = rt.blocks.sweep(inactive_days=0)
    return {"archived": stats.archived_count, "skipped": stats.skipped_count}


def spew(rt: Runtime, block_id: str, tag: str, flushed: threading.Event) -> None:
    """Append lines to `block_id` until the process dies, flushing every 100."""
    pane = rt.blocks.get(block_id)
    index = 0
    while True:
        pane.append_output(f"{tag} {index}\n".encode())
        index += 1
        if index % 100 == 0:
            pane.flush()
            flushed.set()


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
        elif words[0] == "spew":
            flushed = threading.Event()
            threading.Thread(
                target=spew, args=(rt, words[1], words[2].strip(), flushed), daemon=True
            ).start()
            flushed.wait()
            reply = {"flushed": 100}
        elif words[0] in ("append", "read", "sweep"):
            try:
                reply = blocks(rt, words)
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
