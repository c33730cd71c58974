"""The FastAPI app: protocol routers around one `ModelRepository`, wrapped (outermost first) in
access log + metrics → admission (in-flight bound) → auth → rate limit → body-size limit →
image routing (an image model's native predict to its own route)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tuneforge import __version__
from tuneforge.serving import page
from tuneforge.serving.auth import OPEN_PATHS, AuthMiddleware, KeySet, bearer
from tuneforge.serving.images import image_model_at
from tuneforge.serving.limits import (
    AdmissionMiddleware,
    BodyLimitMiddleware,
    Limits,
    RateLimitMiddleware,
)
from tuneforge.serving.logs import AccessLogMiddleware, server_log
from tuneforge.serving.metrics import ServerMetrics
from tuneforge.serving.models import ModelRepository
from tuneforge.serving.openapi import Error, install
from tuneforge.serving.protocols import native, openai, openai_chat, v2


def build_app(
    repository: ModelRepository,
    *,
    api_keys: list[str] | None,
    admin_keys: list[str] | None = None,
    limits: Limits | None = None,
    metrics: ServerMetrics | None = None,
) -> FastAPI:
    """`api_keys=None` means no authentication (only with an explicit --insecure-no-auth)."""
    limits = limits or Limits()
    metrics = metrics or repository.metrics or ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        # uvicorn has stopped accepting and finished in-flight requests; drain the batchers.
        app.state.draining = True
        await repository.close()
        decoder, app.state.image_decoder = getattr(app.state, "image_decoder", None), None
        if decoder is not None:
            decoder.shutdown(wait=False)
        server_log.info("all models drained and closed")

    app = FastAPI(title="tuneforge", version=__version__, lifespan=lifespan)
    app.state.repository, app.state.limits, app.state.metrics = repository, limits, metrics
    app.state.admin_keys = KeySet(admin_keys or [])
    app.state.draining = False
    app.state.auth_required = api_keys is not None
    for router in (native.router, v2.router, openai.router, openai_chat.router, page.router):
        app.include_router(router)
    _add_operations(app)
    # the responses the middlewares and handlers give, in the OpenAPI schema
    install(app, native.document_images)
    app.add_exception_handler(v2.V2Error, v2.v2_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RecursionError, _too_deep)
    app.add_exception_handler(Exception, _unexpected_error)

    # Added innermost first: the last one added runs first.
    app.add_middleware(native.ImageRouting)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=limits.max_body_bytes,
        image_bytes=limits.max_image_request_bytes,
        for_images=lambda scope: image_model_at(scope) is not None,
    )
    app.add_middleware(
        RateLimitMiddleware, rate=limits.rate_per_second, burst=limits.burst, open_paths=OPEN_PATHS
    )
    keyset = None if api_keys is None else KeySet([*api_keys, *(admin_keys or [])])
    app.add_middleware(AuthMiddleware, keys=keyset)
    app.add_middleware(
        AdmissionMiddleware,
        max_inflight=limits.max_inflight,
        open_paths=OPEN_PATHS,
        max_loop_lag=limits.max_loop_lag_ms / 1000,
        target_latency=limits.target_latency_ms / 1000,
    )
    app.add_middleware(AccessLogMiddleware, metrics=metrics)
    return app


def _add_operations(app: FastAPI) -> None:
    # Declared as text: the Prometheus exposition format (its version in the content type).
    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus text exposition format."}},
    )
    async def prometheus(request: Request) -> Response:
        m = request.app.state.metrics
        return Response(m.render(request.app.state.repository), media_type=m.content_type)

    @app.post(
        "/admin/models/{name}/reload",
        tags=["operations"],
        responses={403: {"model": Error, "description": "Reload disabled, or not an admin key."}},
    )
    async def reload(name: str, request: Request) -> dict:
        """Load the model's directory again (a new version saved there) and swap it in."""
        admin = request.app.state.admin_keys
        if not len(admin):
            raise HTTPException(403, "Reload is disabled: start the server with --admin-key-file.")
        if admin.match(bearer(request.scope["headers"])) is None:
            raise HTTPException(403, "This endpoint needs an admin key.")
        repo = request.app.state.repository
        if repo.get(name) is None:
            raise HTTPException(404, f"Model '{name}' not found.")
        old = repo.get(name).version
        new = await repo.reload(name)
        server_log.info("reloaded %s: %s -> %s", name, old, new.version)
        return {"name": name, "previous_version": old, "version": new.version}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default echoes the offending input back; keep the location and message only,
    # so personal data in a bad request never travels further (or into a client's logs).
    errors = [
        {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
    # The JSON parser recurses per nesting level; found by the hypothesis fuzz test.
    return JSONResponse({"detail": "JSON nested too deeply."}, status_code=400)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    server_log.error("unexpected error on %s: %r", request.url.path, exc, exc_info=exc)
    return JSONResponse({"detail": "Internal error (logged on the server)."}, status_code=500)


def quiet_logs() -> None:
    logging.getLogger("uvicorn.access").disabled = True  # our access log replaces it
