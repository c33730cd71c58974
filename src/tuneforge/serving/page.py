"""`GET /`: a small page to drop a picture on an image model and see its label.

Served (without a key: it holds no data) only when an image model is loaded; a text-only
server answers 404 as before. The page is self-contained (no third-party origin); the key the
user pastes stays in the tab's sessionStorage and goes out only as `Authorization: Bearer`.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from tuneforge.serving.images import reads_images

router = APIRouter(include_in_schema=False)
CSP = (
    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'"
)


def page_html(auth_required: bool) -> str:
    html = (resources.files("tuneforge.serving") / "static" / "images.html").read_text()
    return html.replace("__AUTH_REQUIRED__", "true" if auth_required else "false")


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    models = request.app.state.repository.models.values()
    if not any(reads_images(m) for m in models):
        raise HTTPException(404, "Not Found")
    html = page_html(request.app.state.auth_required)
    return HTMLResponse(html, headers={"content-security-policy": CSP})
