"""The web tier on Redis replay buffers: one runtime appends (the agent tier), another
serves the session's events as Server-Sent Events (the web tier), both on one Redis.

Against a real Redis (`GREENROOM_REDIS_URL`), served with uvicorn on 127.0.0.1 and read
with httpx, as tests/test_web.py does for one runtime.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from greenroom import FakeClock, Runtime, RuntimeConfig
from greenroom.web import app
from tests.test_web import serving, stream

pytestmark = pytest.mark.redis


def test_the_web_tier_streams_what_the_agent_tier_appends(
    redis_url: str, tmp_path: Path, fake_clock: FakeClock
) -> None:
    session = f"web-{uuid.uuid4().hex}"
    config = RuntimeConfig(replay_url=redis_url, settle_timeout_s=10.0)
    with (
        Runtime.open(tmp_path / "agents.db", clock=fake_clock, config=config) as agents,
        Runtime.open(tmp_path / "web.db", clock=fake_clock, config=config) as web,
    ):
        agents.replay.append_many(session, [{"n": n} for n in (1, 2, 3)])
        with serving(app(web)) as base:
            with stream(base, session) as events:
                first = events.events(3)
                assert [e["payload"]["n"] for e in first] == [1, 2, 3]
                agents.replay.append(session, {"n": 4})  # live, from the other host
                assert events.events(1)[0]["payload"] == {"n": 4}
            agents.replay.append_many(session, [{"n": 5}, {"n": 6}])
            resume = {"Last-Event-ID": first[-1]["cursor"]}
            with stream(base, session, headers=resume) as again:
                assert [e["payload"]["n"] for e in again.events(3)] == [4, 5, 6]
