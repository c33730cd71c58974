"""The monitor's web app (auth, ingest API, JSON APIs, dashboard) and the webhook sink."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monitor_fakes import fake_classifier, write_settings
from tuneforge.apps.monitor.app import COOKIE, create_app
from tuneforge.apps.monitor.home import open_monitor
from tuneforge.apps.monitor.settings import WebhookSettings
from tuneforge.apps.monitor.webhook import WebhookSink, post_with_retry

KEY = "monitor-test-key-" + "x" * 20
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    write_settings(tmp_path / "home")
    monitor = open_monitor(tmp_path / "home", classifier=fake_classifier())
    with TestClient(create_app(monitor, [KEY])) as c:
        yield c
    monitor.close()


ITEMS = {
    "items": [
        {"id": "1", "timestamp": 1_700_000_000, "text": "$NVDA up", "url": "https://x.test/1"},
        {"id": "2", "timestamp": 1_700_000_060, "text": "Boeing down", "source": "wire"},
    ]
}


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/ingest"), ("get", "/"), ("get", "/api/trends"), ("get", "/api/alerts")],
)
def test_everything_but_health_needs_a_key(client, method, path):
    body = {"json": ITEMS} if method == "post" else {}
    assert getattr(client, method)(path, **body).status_code == 401
    bad = {"Authorization": "Bearer wrong-key-of-some-length"}
    assert getattr(client, method)(path, headers=bad, **body).status_code == 401
    assert client.get("/health").status_code == 200


def test_dashboard_without_a_key_shows_the_login_form(client):
    page = client.get("/")
    assert page.status_code == 401 and 'type="password"' in page.text


def test_login_cookie_opens_reads_but_never_ingest(client):
    assert client.post("/login", json={"key": "nope-nope-nope-nope"}).status_code == 401
    response = client.post("/login", json={"key": KEY})
    assert response.status_code == 204
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=strict" in response.headers["set-cookie"].lower()
    assert client.cookies.get(COOKIE) == KEY
    assert client.get("/").status_code == 200
    assert "share-chart" in client.get("/").text
    assert client.post("/ingest", json=ITEMS).status_code == 401  # cookies cannot write


def test_ingest_then_read_the_apis(client):
    first = client.post("/ingest", json=ITEMS, headers=AUTH).json()
    again = client.post("/ingest", json=ITEMS, headers=AUTH).json()
    assert first == {"received": 2, "inserted": 2, "duplicates": 0}
    assert again == {"received": 2, "inserted": 0, "duplicates": 2}
    trends = client.get("/api/trends?window=minute&points=5", headers=AUTH).json()
    assert trends["window_seconds"] == 60
    assert [w["n"] for w in trends["windows"]] == [1, 1]  # from the first item's window on
    latest = client.get("/api/items", headers=AUTH).json()
    assert [r["id"] for r in latest] == ["2", "1"]
    assert latest[1]["entities"] == ["$NVDA"] and latest[1]["url"] == "https://x.test/1"
    nvda = client.get("/api/items?scope=entity:$NVDA", headers=AUTH).json()
    assert [r["id"] for r in nvda] == ["1"]
    scopes = {r["scope"] for r in client.get("/api/scopes", headers=AUTH).json()}
    assert {"entity:$NVDA", "entity:$BA"} <= scopes
    assert client.get("/api/alerts", headers=AUTH).json() == []


def test_bad_input_is_a_clear_422(client):
    bad = client.post("/ingest", json={"items": [{"text": ""}]}, headers=AUTH)
    assert bad.status_code == 422 and "item 0" in bad.json()["detail"]
    url = client.post(
        "/ingest", json={"items": [{"text": "a", "url": "javascript:x"}]}, headers=AUTH
    )
    assert url.status_code == 422
    long = client.post("/ingest", json={"items": [{"text": "x" * 20_001}]}, headers=AUTH)
    assert long.status_code == 422 and "limit is 20000" in long.json()["detail"]
    scope = client.get("/api/trends?scope=sector:x", headers=AUTH)
    assert scope.status_code == 422 and "Unknown scope" in scope.json()["detail"]


class FlakyReceiver(BaseHTTPRequestHandler):
    """Fails the first `failures` POSTs with 503, then accepts; records what it got."""

    failures, received, attempts = 2, [], 0

    def do_POST(self):
        cls = type(self)
        cls.attempts += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 503 if cls.attempts <= cls.failures else 200
        if status == 200:
            cls.received.append(json.loads(body))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    FlakyReceiver.received, FlakyReceiver.attempts = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_webhook_retries_with_backoff_until_delivered(receiver):
    waits = []
    cfg = WebhookSettings(url=receiver, retries=3, backoff_seconds=0.5)
    assert post_with_retry(receiver, {"scope": "all"}, cfg, sleep=waits.append)
    assert FlakyReceiver.attempts == 3 and waits == [0.5, 1.0]
    assert FlakyReceiver.received == [{"scope": "all"}]


def test_webhook_gives_up_after_its_retries(receiver):
    FlakyReceiver.failures = 10
    try:
        cfg = WebhookSettings(url=receiver, retries=2, backoff_seconds=0.01)
        assert not post_with_retry(receiver, {"a": 1}, cfg, sleep=lambda s: None)
        assert FlakyReceiver.attempts == 3
    finally:
        FlakyReceiver.failures = 2


def test_webhook_sink_delivers_in_the_background(receiver):
    sink = WebhookSink(WebhookSettings(url=receiver, backoff_seconds=0.01))
    sink.post({"event": "negative_surge"})
    sink.close()
    assert FlakyReceiver.received == [{"event": "negative_surge"}]
