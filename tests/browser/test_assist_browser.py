"""The assistant's web chat page in headless Chromium: an answer, an article, a hand-off.

Set-up: `.ci/setup-browser.sh` (Debian's Chromium + the Playwright Python package).
By default the page talks to an assistant with a fake classifier (seconds, offline) and the
screenshot goes to the test's temp dir. With TUNEFORGE_ASSIST_DIR=path/to/trained-assistant
it talks to that assistant (the banking77 demo) and saves docs/assist.png, the README's picture.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from assist_fakes import FakeModel, bag_of_words, write_assistant

DOCS = Path(__file__).resolve().parents[2] / "docs"
KEY = "browser-key-" + "z" * 24
FAKE_MESSAGES = ["my card has not arrived", "what is the ATM fee", "tell me a joke"]
DEMO_MESSAGES = [
    "My card still hasn't arrived, it's been a week",
    "How much does it cost to exchange 300 euros?",
    "Should I pay in the local currency at a shop abroad?",
    "Can you recommend a good pizza place near the office?",
]

pytestmark = pytest.mark.browser


def fake_assistant(root: Path):
    from tuneforge.apps.assist.calibration import Calibration
    from tuneforge.apps.assist.knowledge import load_answers, load_articles
    from tuneforge.apps.assist.pipeline import Assistant
    from tuneforge.apps.assist.retrieval import Retriever
    from tuneforge.apps.assist.store import Store

    directory = write_assistant(root / "bot")
    retriever = Retriever(load_articles(directory / "articles"), bag_of_words)
    # Between the similarity of the fee question (an article) and the joke (nothing).
    fee, joke = (retriever.search(m, 1)[0].similarity for m in FAKE_MESSAGES[1:])
    assert fee > joke
    return Assistant(
        FakeModel(),
        load_answers(directory / "answers.yaml"),
        Calibration({"msp": 0.9}, (fee + joke) / 2),
        retriever=retriever,
        store=Store(f"sqlite:///{root / 'chat.db'}"),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, messages to send, screenshot path) of a live server on 127.0.0.1."""
    import uvicorn

    from tuneforge.apps.assist.api import build_app
    from tuneforge.apps.assist.knowledge import AssistConfig
    from tuneforge.apps.assist.pipeline import Assistant, open_store
    from tuneforge.serving.limits import Limits

    root = tmp_path_factory.mktemp("assist-browser")
    given = os.environ.get("TUNEFORGE_ASSIST_DIR")
    if given:
        store = open_store(given, AssistConfig.load(Path(given)), f"sqlite:///{root / 'c.db'}")
        assistant = Assistant.load(Path(given), store)
        messages, shot = DEMO_MESSAGES, DOCS / "assist.png"
        DOCS.mkdir(exist_ok=True)
    else:
        assistant, messages, shot = fake_assistant(root), FAKE_MESSAGES, root / "assist.png"
    app = build_app(assistant, api_keys=[KEY], limits=Limits())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start within 30 s"
    yield f"http://127.0.0.1:{port}/", messages, shot
    server.should_exit = True
    thread.join(10)


def test_chat_page_answers_retrieves_and_hands_off(playwright_api, launch_chromium, server):
    url, messages, shot = server
    problems, remote = [], []
    with playwright_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
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
            for i, message in enumerate(messages, start=1):
                page.fill("#message", message)
                page.press("#message", "Enter")
                page.locator(".msg.assistant .badge").nth(i - 1).wait_for(timeout=30_000)
            badges = page.locator(".msg.assistant .badge").all_inner_texts()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == [] and remote == []
    assert {"ANSWER", "RETRIEVAL", "HAND-OFF"} <= {b.upper() for b in badges}
    assert badges[-1].upper() == "HAND-OFF"
    assert shot.stat().st_size > 10_000
