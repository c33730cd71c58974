"""REST API and web chat page of the assistant.

`POST /v1/chat` {session_id, message} → the `Reply` fields. The API is a FastAPI app mounted
at /v1 inside a small outer app that serves the chat page and a health check, so the page
loads without a key while every API call goes through the serving stack's own middleware,
wired by the apps' chassis (`chassis.web.guard`): admission → auth (hashed keys,
`serving/auth.py`) → per-key rate limit → body-size limit.
Tickets are not served: a chat key may sit in a public web page, so the support team reads
them with `tuneforge assist tickets`.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tuneforge.apps.assist.pipeline import Assistant
from tuneforge.apps.chassis.web import guard
from tuneforge.serving.limits import Limits

SESSION_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"


class ChatRequest(BaseModel):
    session_id: str = Field(..., pattern=SESSION_PATTERN, description="The conversation's id.")
    message: str = Field(..., min_length=1)


class ChatReply(BaseModel):
    reply: str
    path: str = Field(..., description="answer, retrieval or handoff")
    confidence: float
    score_kind: str
    intent: str
    intent_score: float
    retrieval_score: float | None = None
    sources: list[dict] = []
    slots: dict[str, str] = {}
    ticket_id: int | None = None
    written: bool = Field(False, description="retrieval: the writer model phrased the article")


def chat_page() -> str:
    return (resources.files("tuneforge.apps.assist") / "static" / "chat.html").read_text()


def _api(assistant: Assistant, limits: Limits) -> FastAPI:
    api = FastAPI(title="tuneforge assistant API")

    @api.post("/chat", response_model=ChatReply)
    async def chat(body: ChatRequest) -> dict:
        problem = limits.check_texts([body.message])
        if problem:
            raise HTTPException(*problem)
        # The model and the database are blocking: keep the event loop free for other clients.
        reply = await run_in_threadpool(assistant.respond, body.session_id, body.message)
        return reply.to_dict()

    return api


def build_app(assistant: Assistant, *, api_keys: list[str] | None, limits: Limits) -> FastAPI:
    """`api_keys=None` means no authentication (only with an explicit --insecure-no-auth)."""
    app = FastAPI(title="tuneforge assistant", docs_url=None, redoc_url=None)
    app.mount("/v1", guard(_api(assistant, limits), api_keys, limits))
    page = chat_page().replace("__AUTH_REQUIRED__", "false" if api_keys is None else "true")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        # No third-party origin may be contacted: the page is self-contained.
        return HTMLResponse(
            page,
            headers={
                "content-security-policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'",
            },
        )

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    return app
