"""One host of `tests/test_two_hosts.py`: runs one block operation in a loop.

    python tests/two_hosts_worker.py DB BLOCK OPERATION ROUNDS TAG

Prints one JSON object: rounds done, how many lost a race (`Conflict`, "not
archived"), and every other error (there must be none).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from greenroom import Runtime, RuntimeConfig
from greenroom.cli import main as cli_main
from greenroom.errors import Conflict, InvalidTransition

CONFIG = RuntimeConfig(sweep_first_after_s=1e9, sweep_interval_s=1e9)


def run(db: str, block_id: str, operation: str, rounds: int, tag: str) -> dict[str, Any]:
    """Run `operation` `rounds` times on `block_id`; the tally."""
    ok = raced = 0
    errors: list[str] = []
    with Runtime.open(db, config=CONFIG) as rt:
        block = rt.blocks.get(block_id)
        for n in range(rounds):
            try:
                if operation == "append":
                    block.append_output(f"{tag} line {n}\n".encode())
                    block.flush()
                elif operation == "read":
                    data = block.read_output().data
                    if data and not data.endswith(b"\n"):
                        errors.append(f"a read ended mid-line: {data[-40:]!r}")
                elif operation == "export":
                    target = Path(db).with_name(f"export-{tag}.out")
                    said = io.StringIO()  # what the command says on failure goes in the tally
                    with contextlib.redirect_stderr(said):
                        status = cli_main(["export", db, block_id, "-o", str(target)])
                    if status != 0:
                        errors.append(f"greenroom export failed ({status}): {said.getvalue()}")
                elif operation == "archive":
                    block.archive()
                elif operation == "restore":
                    block.restore()
                elif operation == "sweep":
                    stats = rt.blocks.sweep(inactive_days=0)
                    raced += stats.skipped_count
                else:
                    raise SystemExit(f"unknown operation {operation!r}")
                ok += 1
            except Conflict:
                raced += 1
            except InvalidTransition as error:
                if "not archived" in str(error):
                    raced += 1  # the other host restored it first
                else:
                    errors.append(f"{type(error).__name__}: {error}")
            except Exception as error:  # every other error is a finding
                errors.append(f"{type(error).__name__}: {error}")
        failures = rt.metrics()["sweep_failures"]
    if failures:
        errors.append(f"{failures} sweep items failed")
    return {"ok": ok, "raced": raced, "errors": errors}


if __name__ == "__main__":
    db, block_id, operation, rounds, tag = sys.argv[1:6]
    print(json.dumps(run(db, block_id, operation, int(rounds), tag)))
