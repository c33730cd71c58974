"""The monitor dashboard in headless Chromium during a replay: sign in, see the charts fill,
see the surge alert appear; no console errors, no request leaves the machine.

Set-up: `.ci/setup-browser.sh`. By default the tiny test model classifies a synthetic stream
(label "card" plays the negative class) and the screenshot goes to the test's temp dir. With
TUNEFORGE_MONITOR_HOME=path/to/home (made by `tuneforge monitor init`) the real models replay
the shipped financial sample and the screenshot is saved as docs/monitor.png (the README's).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from conftest import make_texts, write_csv
from monitor_fakes import write_tiny_model_home

DOCS = Path(__file__).resolve().parents[2] / "docs"
KEY = "browser-test-key-" + "y" * 24

pytestmark = pytest.mark.browser


@pytest.fixture
def replay_setup(tiny_model_dir, tmp_path, monkeypatch):
    """(monitor home, labelled replay file, screenshot path)."""
    from tuneforge.apps.monitor.sentiment import DEMO_REPLAY

    monkeypatch.setenv("TUNEFORGE_MONITOR_DB", f"sqlite:///{tmp_path}/browser.db")
    given = os.environ.get("TUNEFORGE_MONITOR_HOME")
    if given:
        DOCS.mkdir(exist_ok=True)
        return Path(given), DEMO_REPLAY, DOCS / "monitor.png"
    home = tmp_path / "home"
    write_tiny_model_home(home, tiny_model_dir)
    file = write_csv(tmp_path / "replay.csv", make_texts(300, seed=3))
    return home, file, tmp_path / "monitor.png"


def test_dashboard_shows_trends_and_the_alert_during_a_replay(
    playwright_api, launch_chromium, replay_setup
):
    from tuneforge.apps.monitor.app import create_app
    from tuneforge.apps.monitor.home import open_monitor
    from tuneforge.apps.monitor.replay import plan_replay, read_labelled, run_replay
    from tuneforge.serving.testing import LiveServer

    home, file, shot = replay_setup
    monitor = open_monitor(home)
    texts, negatives = read_labelled(file, monitor.settings.negative_labels)
    plan = plan_replay(texts, negatives, int(time.time()))
    problems, remote = [], []
    with LiveServer(create_app(monitor, [KEY])) as server:
        replay = threading.Thread(target=run_replay, args=(monitor.ingestor, plan, 600.0))
        replay.start()
        try:
            with playwright_api.sync_playwright() as pw:
                browser = launch_chromium(pw)
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc: problems.append(str(exc)))

                def local_only(route):
                    if route.request.url.startswith(server.url):
                        return route.continue_()
                    remote.append(route.request.url)
                    return route.abort()

                page.route("**/*", local_only)
                response = page.goto(server.url + "/")
                assert response.status == 401  # signed out: the login form
                page.fill("#k", KEY)
                page.click("button")
                page.wait_for_selector("#share-chart polyline.series-neg_share", timeout=60_000)
                page.wait_for_selector("#alert-list .alert", timeout=300_000)
                assert "all:" in page.locator("#alert-list .alert").first.inner_text()
                assert page.locator("#volume-chart rect.bar").count() >= 20
                assert page.locator("#share-chart rect.alert-band").count() >= 1
                assert page.locator("#items tbody tr").count() > 0
                time.sleep(3)  # a few windows after the surge, as a user would see it
                page.screenshot(path=str(shot), full_page=True)
                browser.close()
        finally:
            replay.join()
            monitor.close()
    signed_out = [p for p in problems if "401" in p]  # the first load, before signing in
    assert [p for p in problems if p not in signed_out] == [] and remote == []
    assert shot.stat().st_size > 20_000
