"""A host process for tests/test_replay_redis.py: appends to, or follows, one session.

    python -m tests.redis_replay_worker append <url> <session> <count> <tag>
    python -m tests.redis_replay_worker follow <url> <session> <cursor> <count>

`append` appends `count` events `{"tag": tag, "n": i}` one by one and prints each
event's cursor; `follow` prints one JSON line per event or gap it is given until it
has seen `count` events, then the cursor it stopped at.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from greenroom import Gap, Runtime, RuntimeConfig


def main(argv: list[str]) -> int:
    """Run the role `argv[0]` names; 0 on success."""
    role, url, session = argv[0], argv[1], argv[2]
    config = RuntimeConfig(replay_url=url)
    with (
        tempfile.TemporaryDirectory() as folder,
        Runtime.open(Path(folder) / "host.db", config=config) as rt,
    ):
        if role == "append":
            count, tag = int(argv[3]), argv[4]
            for n in range(count):
                event = rt.replay.append(session, {"tag": tag, "n": n})
                print(event.cursor, flush=True)
            return 0
        cursor, count = argv[3], int(argv[4])
        print("ready", flush=True)
        seen = 0
        with rt.replay.follow(cursor) as follower:
            while seen < count:
                item = follower.next_item(timeout=30)
                if isinstance(item, Gap):
                    print(json.dumps({"gap": item.reason}), flush=True)
                    continue
                seen += 1
                print(json.dumps({"position": item.position, "payload": item.payload}))
            print(json.dumps({"cursor": follower.cursor}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
