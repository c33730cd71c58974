"""Auth and limits for an app's API: the serving stack's own middleware, wired in one place.

Order, outermost first: admission (503 beyond the in-flight bound, before any parsing) →
API keys (401 before the body is read; hashed keys, `serving/auth.py`) → per-key rate limit
(429) → body size (413 while the body streams in). A limit set to 0 is left out.
"""

from __future__ import annotations

from tuneforge.serving.auth import OPEN_PATHS, AuthMiddleware, KeySet
from tuneforge.serving.limits import (
    AdmissionMiddleware,
    BodyLimitMiddleware,
    Limits,
    RateLimitMiddleware,
)


def guard(
    app,
    api_keys: list[str] | None,
    limits: Limits,
    *,
    open_paths: tuple[str, ...] = OPEN_PATHS,
    auth=AuthMiddleware,
):
    """`app` (FastAPI) behind the middleware above; returns it.

    `api_keys=None` means no authentication (only with an explicit --insecure-no-auth).
    `auth` is an ASGI middleware class taking `(app, keys: KeySet | None)`: an app whose
    browser pages sign in another way (the monitor's login cookie) passes its own.
    `open_paths` (health checks) skip the rate limit and admission.
    """
    # Added innermost first: the last one added runs first.
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)
    if limits.rate_per_second > 0:
        app.add_middleware(
            RateLimitMiddleware,
            rate=limits.rate_per_second,
            burst=limits.burst,
            open_paths=open_paths,
        )
    app.add_middleware(auth, keys=None if api_keys is None else KeySet(api_keys))
    if limits.max_inflight:
        app.add_middleware(
            AdmissionMiddleware, max_inflight=limits.max_inflight, open_paths=open_paths
        )
    return app
