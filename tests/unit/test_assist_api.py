"""The assistant's HTTP API and chat page (in-process ASGI, fake classifier) and its CLI."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from typer.testing import CliRunner

from assist_fakes import FakeModel, bag_of_words, write_assistant
from tuneforge.apps.assist.api import build_app
from tuneforge.apps.assist.calibration import Calibration
from tuneforge.apps.assist.knowledge import AssistConfig, load_answers, load_articles
from tuneforge.apps.assist.pipeline import Assistant, open_store
from tuneforge.apps.assist.retrieval import Retriever
from tuneforge.apps.assist.store import Store
from tuneforge.serving.limits import Limits

KEY = "test-key-" + "x" * 24


@pytest.fixture
def assistant(tmp_path) -> Assistant:
    directory = write_assistant(tmp_path / "bot")
    return Assistant(
        FakeModel(),
        load_answers(directory / "answers.yaml"),
        Calibration({"msp": 0.9}, 0.5),
        retriever=Retriever(load_articles(directory / "articles"), bag_of_words),
        store=Store(f"sqlite:///{tmp_path / 'a.db'}"),
    )


def call(app, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(go())


def test_chat_needs_a_key(assistant):
    app = build_app(assistant, api_keys=[KEY], limits=Limits())
    body = {"session_id": "s1", "message": "my card has not arrived"}
    assert call(app, "POST", "/v1/chat", json=body).status_code == 401
    assert call(app, "POST", "/v1/chat", "wrong-key-" + "y" * 20, json=body).status_code == 401
    response = call(app, "POST", "/v1/chat", KEY, json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["path"] == "answer" and data["intent"] == "card_arrival"
    assert 0.9 <= data["confidence"] <= 1 and data["reply"].startswith("Cards arrive")


def test_limits_and_validation(assistant):
    app = build_app(assistant, api_keys=None, limits=Limits(max_text_chars=20, max_body_bytes=200))
    long = {"session_id": "s", "message": "card " * 10}
    assert call(app, "POST", "/v1/chat", json=long).status_code == 422
    huge = {"session_id": "s", "message": "x" * 500}
    assert call(app, "POST", "/v1/chat", json=huge).status_code == 413
    bad_session = {"session_id": "no spaces/please", "message": "card"}
    assert call(app, "POST", "/v1/chat", json=bad_session).status_code == 422
    assert call(app, "POST", "/v1/chat", json={"session_id": "s", "message": ""}).status_code == 422


def test_rate_limit_per_key(assistant):
    app = build_app(assistant, api_keys=[KEY], limits=Limits(rate_per_second=0.01, burst=2))
    body = {"session_id": "s", "message": "card"}
    codes = [call(app, "POST", "/v1/chat", KEY, json=body).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_page_is_open_and_self_contained(assistant):
    app = build_app(assistant, api_keys=[KEY], limits=Limits())
    page = call(app, "GET", "/")
    assert page.status_code == 200 and '<form id="chat-form"' in page.text
    assert "const AUTH_REQUIRED = true;" in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # no CDN, no remote asset
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert call(app, "GET", "/health").json() == {"status": "ok"}


def test_cli_init_and_errors(tmp_path):
    from tuneforge.cli.app import _register, app

    _register()
    runner = CliRunner()
    result = runner.invoke(app, ["assist", "init", str(tmp_path / "bot")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bot" / "assist.yaml").exists()
    assert len(list((tmp_path / "bot" / "articles").glob("*.md"))) >= 5
    listing = ["assist", "tickets", str(tmp_path / "bot")]
    assert "0 ticket(s)." in runner.invoke(app, listing).output
    store = open_store(tmp_path / "bot", AssistConfig.load(tmp_path / "bot"))
    store.log_exchange("web-1", "write to a@example.com", "sorry", "handoff", 0.1, "x")
    store.open_ticket("web-1", "no confident intent")
    output = runner.invoke(app, listing).output
    assert "#1 [open] session web-1: no confident intent" in output
    assert "customer: write to [EMAIL]" in output and "1 ticket(s)." in output
    serve = ["assist", "serve", str(tmp_path / "bot")]
    result = runner.invoke(app, serve, env={"TUNEFORGE_API_KEYS": ""})
    assert "No API keys" in str(result.exception)
