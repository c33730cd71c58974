"""The HTML report in headless Chromium: no console errors, no network, key sections visible.

Set-up: `.ci/setup-browser.sh` (Debian's Chromium + the Playwright Python package).
By default the report of a tiny model is built here and its screenshot goes to the test's temp
dir. With TUNEFORGE_REPORT_HTML=path/to/report.html the test checks that report instead and saves
its screenshot to docs/report.png (the README's picture: see the README for the command).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
SECTIONS = ["summary", "per-class", "confusion", "calibration", "abstention", "errors"]
SECTIONS += ["robustness", "data", "explanations", "training"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report_file(tiny_model_dir, tiny_data, tmp_path_factory) -> tuple[Path, Path]:
    """(report.html, where its screenshot goes)."""
    given = os.environ.get("TUNEFORGE_REPORT_HTML")
    if given:
        DOCS.mkdir(exist_ok=True)
        return Path(given), DOCS / "report.png"
    import tuneforge
    from tuneforge.data.dataset import load_data
    from tuneforge.evaluation.report import ReportOptions, build_report
    from tuneforge.evaluation.report_html import write_report

    root = tmp_path_factory.mktemp("browser")
    model = tuneforge.TunedModel.load(tiny_model_dir)
    opts = ReportOptions(bootstrap_resamples=50, faithfulness_texts=6, ig_steps=8)
    report = build_report(
        model, load_data(tiny_data["test"]), opts, train=load_data(tiny_data["train"])
    )
    return write_report(report, root / "report.html"), root / "report.png"


def test_report_opens_offline_without_errors(playwright_api, launch_chromium, report_file):
    html, shot = report_file
    problems, remote = [], []
    with playwright_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))

            def block_remote(route):
                if route.request.url.startswith("file:"):
                    return route.continue_()
                remote.append(route.request.url)
                return route.abort()

            page.route("**/*", block_remote)
            page.goto(html.resolve().as_uri(), wait_until="load")
            for section in SECTIONS:
                assert page.locator(f"section#{section} h2").is_visible(), section
            assert page.locator("#calibration svg").count() >= 2
            assert page.locator("#explanations .tok").count() > 0
            _check_sorting(page)
            page.reload(wait_until="load")  # the screenshot shows the default order
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert problems == [] and remote == []
    assert shot.stat().st_size > 10_000


def _check_sorting(page) -> None:
    """Clicking the F1 header sorts the per-class table by F1, both ways."""
    header = page.locator("#per-class th").nth(3)
    cells = page.locator("#per-class tbody tr td:nth-child(4)")
    header.click()
    ascending = [float(x) for x in cells.all_inner_texts()]
    header.click()
    descending = [float(x) for x in cells.all_inner_texts()]
    assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
