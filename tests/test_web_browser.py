"""The page in a real browser: headless Chromium follows a session over Server-Sent
Events, and reconnects by itself when the server comes back after a restart.

Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them) and selenium
(the `dev` extra). Without them the test is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
uvicorn = pytest.importorskip("uvicorn")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

from greenroom import Runtime  # noqa: E402
from greenroom.web import app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 20.0

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and chromedriver (.ci/run installs them)")
        pytest.skip("chromium and chromedriver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # (as root, in a container)
        "--disable-gpu",
        "--disable-dev-shm-usage",
        # The closed network refuses Chromium's own connections; keep it off them.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,800",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def serving(rt: Runtime, port: int) -> Iterator[None]:
    """Serve `rt` on 127.0.0.1:`port`; end the streams and stop on exit."""
    web = app(rt, heartbeat_s=1.0)
    listener = socket.create_server(("127.0.0.1", port))  # (SO_REUSEADDR: a restart binds again)
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        web.close_streams()
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


def say(rt: Runtime, *texts: str) -> None:
    rt.replay.publish_many("pane-1", [{"type": "line", "text": text} for text in texts])


def page_text(driver: Any, wanted: Callable[[str], bool]) -> str:
    """The page's event list once `wanted(text)` holds (waiting in real time)."""
    events = driver.find_element("id", "events")
    WebDriverWait(driver, WAIT_S).until(lambda _d: wanted(events.text))
    text: str = events.text
    return text


def test_the_page_follows_a_session_and_comes_back_after_a_restart(
    browser: Any, open_rt: Callable[..., Runtime], tmp_path: Path
) -> None:
    port = free_port()
    first = open_rt()
    pane = first.blocks.get("pane-1")
    pane.append_output(b"booting\n")
    pane.flush()
    say(first, "booting")
    with serving(first, port):
        browser.get(f"http://127.0.0.1:{port}/#pane-1")
        assert "booting" in page_text(browser, lambda text: "booting" in text)
        assert "pane-1" in browser.find_element("id", "blocks").text
        say(first, "live one", "live two")  # events the page gets as they come
        page_text(browser, lambda text: "live two" in text)
        status = browser.find_element("id", "status").text
        assert status == "following pane-1 (live)"
    first.close()

    second = open_rt()  # the server restarted: its buffers have a new epoch
    with serving(second, port):
        # EventSource reconnects by itself with the last event's id: a cursor from
        # before the restart, so the page shows the gap, then what comes next.
        page_text(browser, lambda text: "gap (unavailable)" in text)
        say(second, "after the restart")
        text = page_text(browser, lambda text: "after the restart" in text)
        browser.save_screenshot(str(tmp_path / "page.png"))
    lines = text.splitlines()
    assert lines[:3] == ["booting", "live one", "live two"]
    assert lines[3].startswith("-- gap (unavailable): ")
    assert lines[4:] == ["after the restart"]
    assert (tmp_path / "page.png").stat().st_size > 1000
