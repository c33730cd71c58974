"""The monitor's web app (FastAPI): authenticated ingest, JSON APIs and a live dashboard.

    POST /ingest              {"items": [{id?, timestamp?, source?, text, url?}, ...]}
    GET  /api/trends          ?window=5min&scope=all&points=72   per-window series
    GET  /api/scopes          topics and entities over the same span
    GET  /api/alerts          ?limit=20
    GET  /api/items           ?limit=20&scope=...
    GET  /                    dashboard (hand-drawn SVG charts, refreshes every 2 s)

Auth reuses serving/auth.py, wired by the apps' chassis (`chassis.web.guard`): API keys as
`Authorization: Bearer KEY` everywhere; a browser signs in once on the login form (POST /login
checks the key against the same keys) and then carries it in an HttpOnly, SameSite=Strict
cookie that is accepted for GET requests only, so another site can neither read data nor make
the browser ingest anything.
"""

from __future__ import annotations

import threading
from http.cookies import SimpleCookie
from pathlib import Path

from pydantic import BaseModel, Field

from tuneforge.serving.auth import KeySet, bearer, send_json

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "tuneforge_monitor_key"
OPEN_PATHS = ("/health", "/login")


class IngestBody(BaseModel):
    items: list[dict] = Field(..., max_length=1000)


class Login(BaseModel):
    key: str


def _cookie_key(headers) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            jar = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


class MonitorAuth:
    """Pure ASGI: Bearer key on every path, or the login cookie on GET/HEAD."""

    def __init__(self, app, keys: KeySet | None) -> None:
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.keys is None or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        key = bearer(scope["headers"])
        if key is None and scope["method"] in ("GET", "HEAD"):
            key = _cookie_key(scope["headers"])
        if self.keys.match(key) is not None:
            return await self.app(scope, receive, send)
        if scope["path"] == "/":
            return await _send_login(send)
        return await send_json(
            send,
            401,
            {"detail": "Missing or invalid API key: send 'Authorization: Bearer KEY'."},
            [(b"www-authenticate", b"Bearer")],
        )


async def _send_login(send) -> None:
    body = (STATIC / "login.html").read_bytes()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(monitor, api_keys: list[str] | None, max_body_bytes: int = 4 << 20):
    """The ASGI app of an open monitor (`home.open_monitor`); api_keys None: no auth."""
    from fastapi import FastAPI, HTTPException, Query, Response
    from fastapi.responses import HTMLResponse, JSONResponse

    from tuneforge.apps.chassis.web import guard
    from tuneforge.apps.monitor import queries
    from tuneforge.apps.monitor.ingest import to_item
    from tuneforge.errors import DataError, TuneforgeError
    from tuneforge.serving.limits import Limits

    keys = KeySet(api_keys) if api_keys is not None else None
    api = FastAPI(title="tuneforge monitor", docs_url=None, redoc_url=None)
    lock = threading.Lock()  # one writer: batches of concurrent requests do not interleave

    @api.exception_handler(TuneforgeError)
    def bad_request(_request, exc: TuneforgeError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @api.post("/login", status_code=204)
    def login(body: Login):
        if keys is not None and keys.match(body.key) is None:
            raise HTTPException(401, "Invalid API key.")
        response = Response(status_code=204)
        response.set_cookie(COOKIE, body.key, httponly=True, samesite="strict", path="/")
        return response

    @api.post("/ingest")
    def ingest(body: IngestBody) -> dict:
        try:
            items = [to_item(x, f"item {i}", "api") for i, x in enumerate(body.items)]
        except DataError as exc:
            raise HTTPException(422, str(exc)) from None
        with lock:
            return monitor.ingestor.ingest(items).to_dict()

    def span(window: str | None, points: int):
        return queries.Span.of(monitor, window, points)

    @api.get("/api/trends")
    def trends(window: str | None = None, scope: str = "all", points: int = Query(72, le=2000)):
        return queries.trends(monitor.engine, span(window, points), scope)

    @api.get("/api/scopes")
    def scopes(
        window: str | None = None,
        points: int = Query(72, le=2000),
        limit: int = Query(50, ge=1, le=500),
    ):
        return queries.scopes(monitor.engine, span(window, points), limit)

    @api.get("/api/alerts")
    def alerts(limit: int = Query(20, ge=1, le=500)):
        return queries.alerts(monitor.engine, limit)

    @api.get("/api/items")
    def items(scope: str = "all", limit: int = Query(20, ge=1, le=500)):
        return queries.items(monitor.engine, scope, limit)

    @api.get("/", response_class=HTMLResponse)
    def dashboard() -> str:
        return (STATIC / "dashboard.html").read_text(encoding="utf-8")

    # No rate or in-flight limit: ingest is for the operator's own feeds, not the public.
    limits = Limits(max_body_bytes=max_body_bytes, rate_per_second=0, max_inflight=0)
    return guard(api, api_keys, limits, open_paths=OPEN_PATHS, auth=MonitorAuth)


def serve(monitor, api_keys, host: str, port: int) -> None:
    import uvicorn

    from tuneforge.serving.logs import setup_logging

    setup_logging()
    uvicorn.run(create_app(monitor, api_keys), host=host, port=port, log_config=None)
