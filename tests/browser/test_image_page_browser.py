"""The image page of `serve` (GET /) in headless Chromium: paste the key, pick a picture, see
its label, score and top scores next to a thumbnail; a broken file shows the server's message.

Set-up: `.ci/setup-browser.sh` (Debian's Chromium + the Playwright Python package). The model
is a tiny ViT head trained on coloured pictures in the test (a few seconds, offline).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # image_fakes

from image_fakes import CLASSES, make_image_folder, picture, tiny_vit_dir

KEY = "image-page-key-" + "q" * 24
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, a red picture, a broken file) of a live server on 127.0.0.1."""
    import tuneforge
    from tuneforge.serving.app import build_app
    from tuneforge.serving.limits import Limits
    from tuneforge.serving.models import BatchSettings, ModelRepository
    from tuneforge.serving.testing import LiveServer

    root = tmp_path_factory.mktemp("image-page")
    folder = make_image_folder(root / "train", 8, seed=0)
    vit = tiny_vit_dir(root / "vit")
    tuneforge.tune(str(folder), base=str(vit), method="head", progress=False, out=str(root / "m"))
    repo = ModelRepository(BatchSettings(max_wait_ms=1))
    repo.add("colours", root / "m")
    red = root / "red-square.png"
    picture(CLASSES["red"], np.random.default_rng(3), size=48).save(red)
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    app = build_app(repo, api_keys=[KEY], limits=Limits(rate_per_second=0))
    with LiveServer(app) as live:
        yield live.url + "/", red, broken


def test_pick_a_picture_and_see_its_label(playwright_api, launch_chromium, server):
    url, red, broken = server
    problems, remote = [], []
    with playwright_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            # Chromium logs every 4xx as a console error: the broken file's 422 is expected.
            expected = "the server responded with a status of 422"
            page.on(
                "console",
                lambda m: (
                    problems.append(m.text)
                    if m.type == "error" and expected not in m.text
                    else None
                ),
            )
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            def block_remote(route):
                if route.request.url.startswith(url):
                    return route.continue_()
                remote.append(route.request.url)
                return route.abort()

            page.route("**/*", block_remote)
            page.goto(url, wait_until="load")
            assert page.locator("#key-row").is_visible()  # the API needs a key
            page.fill("#api-key", KEY)
            page.click("#save-key")
            page.locator("#model option").first.wait_for(state="attached", timeout=30_000)
            assert page.locator("#model").input_value() == "colours"
            assert not page.locator("#key-row").is_visible()
            stored = page.evaluate("sessionStorage.getItem('tuneforge-key')")
            kept = page.evaluate("localStorage.length + document.cookie.length")

            page.set_input_files("#file", str(red))
            result = page.locator(".result").first
            result.locator(".label").wait_for(timeout=30_000)
            label = result.locator(".label").inner_text()
            score = result.locator(".score").inner_text()
            top = result.locator(".scores li").all_inner_texts()
            thumb = result.locator("img.thumb")
            thumb_width = thumb.evaluate("img => img.naturalWidth")
            name = result.locator(".name").inner_text()

            page.set_input_files("#file", str(broken))
            error = page.locator(".result").first.locator(".error")
            error.wait_for(timeout=30_000)
            message = error.inner_text()
            page.screenshot(path=str(red.parent / "page.png"), full_page=True)
        finally:
            browser.close()
    assert problems == [] and remote == []
    assert stored == KEY and kept == 0  # the key stays in sessionStorage only
    assert label == "red" and name == "red-square.png"
    assert score.endswith("%") and float(score.rstrip("%")) > 50
    assert len(top) == len(CLASSES) and top[0].startswith("red")
    assert thumb_width == 48  # the thumbnail is the picture itself
    assert "broken.jpg" in message and "image 0" in message
