"""What every protocol does the same way: find the model, apply limits, run, map errors."""

from __future__ import annotations

import math

from fastapi import HTTPException, Request

from tuneforge.serving.batching import Closed, Overloaded
from tuneforge.serving.images import MEDIA_HELP, Upload, decode, reads_images

TEXTS_HELP = 'send application/json {"texts": [...]}'


def clean(texts: list[str]) -> list[str]:
    """Lone surrogates (valid in JSON escapes, invalid in UTF-8) become U+FFFD for the tokenizer."""
    return [t.encode("utf-8", "replace").decode("utf-8") for t in texts]


def served_or_404(request: Request, name: str):
    served = request.app.state.repository.get(name)
    if served is None:
        names = ", ".join(sorted(request.app.state.repository.models)) or "none"
        raise HTTPException(404, f"Model '{name}' not found. Served models: {names}.")
    return served


async def run(request: Request, name: str, op: str, texts: list[str]):
    """(served model, result) for `op` on `texts`, with HTTP errors for limits and overload."""
    served = served_or_404(request, name)
    if reads_images(served):  # a text would be taken for a path on the server: never
        raise HTTPException(
            422,
            f"Model '{name}' classifies images, not texts: send them to "
            f"/v1/models/{name}/predict ({MEDIA_HELP}) or /v2/models/{name}/infer (BYTES).",
        )
    if not texts:
        raise HTTPException(422, "No texts given: send at least one text.")
    problem = request.app.state.limits.check_texts(texts)
    if problem:
        raise HTTPException(*problem)
    return await call(request, name, op, clean(texts))


async def run_images(request: Request, name: str, uploads: list[Upload]):
    """(served model, predictions) for the images of `uploads` (their count already checked),
    decoded off the event loop; 4xx naming the image on any problem with one."""
    served = served_or_404(request, name)
    if not reads_images(served):
        raise HTTPException(415, f"Model '{name}' classifies texts, not images: {TEXTS_HELP}.")
    images = await decode(request, served, uploads)
    return await call(request, name, "predict", images)


async def call(request: Request, name: str, op: str, payload: list):
    """`ModelRepository.call` with overload and shutdown as 503s (texts already checked)."""
    try:
        return await request.app.state.repository.call(name, op, payload)
    except Overloaded as exc:
        raise overloaded(request, name, exc) from None
    except Closed:
        raise HTTPException(
            503, "Server shutting down; retry on another replica.", headers={"Retry-After": "1"}
        ) from None


def overloaded(request: Request, name: str, exc: Overloaded) -> HTTPException:
    """The 503 for a request admission control refused (counted as shed)."""
    request.app.state.metrics.shed.labels(name).inc()
    return HTTPException(
        503,
        "Server at capacity; request not queued. Retry after the Retry-After delay.",
        headers={"Retry-After": str(math.ceil(exc.retry_after))},
    )
